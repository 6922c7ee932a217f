/**
 * Builds Litestream v0.3-shaped replicas straight from the format reference, independent of
 * walship's own writer:
 *
 * - a real WAL-mode database written with better-sqlite3 (`wal_autocheckpoint = 0`);
 * - snapshots = byte copies of the main database file, labelled with the current WAL index
 *   (optionally after a PASSIVE checkpoint, as Litestream v0.3.13 does);
 * - WAL segments = slices of the `-wal` file cut at commit boundaries, found by walking the
 *   frames' salts and checksum chain with this file's own checksum code (§1.3); a new index
 *   starts after a TRUNCATE or RESTART checkpoint (§1.4);
 * - objects compressed by the `lz4` command-line tool with varied frame options (block sizes
 *   64 KiB–4 MiB, linked blocks, block checksums, with and without content checksum and
 *   content size) and stored at `generations/<gen>/snapshots/%08x.snapshot.lz4` and
 *   `generations/<gen>/wal/%08x_%08x.wal.lz4` (§5.6) with controlled mtimes (= createdAt);
 * - optionally a big-endian-checksum WAL (magic `0x377f0683`), re-checksummed here.
 *
 * Every shipped segment records the expected database state (`sqlite3 .dump`) at that moment.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';

export const SQLITE3 = '/usr/bin/sqlite3';
export const LZ4 = '/usr/bin/lz4';

/** LZ4 CLI option sets cycled through for successive objects. */
export const LZ4_VARIANTS: readonly (readonly string[])[] = [
  ['-B7'], // Litestream-like: 4 MiB independent blocks, content checksum
  ['-B4', '-BD'], // 64 KiB linked blocks
  ['-B5', '--no-frame-crc'], // 256 KiB, no content checksum
  ['-B6', '-BD', '--content-size'], // 1 MiB linked, content size
  ['-B4', '-BX'], // block checksums
  ['-B5', '-BD', '-BX', '--no-frame-crc', '--content-size'],
  ['-B7', '-9', '--content-size'], // high compression
  ['-B4', '-BD', '--no-frame-crc'],
];

// -- WAL checksum (format reference §1.3), written independently of walship's ----------------

function cksum(buf: Buffer, start: number, end: number, be: boolean, s0: number, s1: number): [number, number] {
  for (let i = start; i < end; i += 8) {
    const x0 = be ? buf.readUInt32BE(i) : buf.readUInt32LE(i);
    const x1 = be ? buf.readUInt32BE(i + 4) : buf.readUInt32LE(i + 4);
    s0 = (s0 + x0 + s1) >>> 0;
    s1 = (s1 + x1 + s0) >>> 0;
  }
  return [s0, s1];
}

interface WalHeaderInfo {
  bytes: Buffer;
  be: boolean;
  pageSize: number;
  salt1: number;
  salt2: number;
  ck: [number, number];
}

function readHeader(h: Buffer): WalHeaderInfo | undefined {
  if (h.length < 32) return undefined;
  const magic = h.readUInt32BE(0);
  if (magic !== 0x377f0682 && magic !== 0x377f0683) return undefined;
  const be = magic === 0x377f0683;
  const ck = cksum(h, 0, 24, be, 0, 0);
  if (ck[0] !== h.readUInt32BE(24) || ck[1] !== h.readUInt32BE(28)) return undefined;
  const raw = h.readUInt32BE(8);
  return {
    bytes: Buffer.from(h.subarray(0, 32)),
    be,
    pageSize: raw === 1 ? 65536 : raw,
    salt1: h.readUInt32BE(16),
    salt2: h.readUInt32BE(20),
    ck,
  };
}

/** One shipped segment and the database state right after it. */
export interface FixturePoint {
  readonly generation: string;
  readonly index: number;
  readonly offset: number;
  /** Offset just after the segment (the position a restore up to this point reaches). */
  readonly end: number;
  readonly createdAt: Date;
  /** `sqlite3 .dump` of the live database at this point. */
  readonly dump: string;
}

export interface FixtureSnapshot {
  readonly generation: string;
  readonly index: number;
  readonly createdAt: Date;
  readonly dump: string;
}

export interface FixtureOptions {
  /** Working directory (created). The replica goes to `<dir>/replica`, the live DB to `<dir>/live.db`. */
  dir: string;
  pageSize?: number;
  /** Ship the WAL with big-endian checksums (magic ...83). */
  bigEndian?: boolean;
  /** Time of the first object (default 2024-01-01T00:00:00Z); each object is 1 s later than the previous. */
  startTime?: Date;
  /** LZ4 variants to cycle through (default {@link LZ4_VARIANTS}). */
  lz4Variants?: readonly (readonly string[])[];
  /** Record `.dump` at every point (default true; off for big benchmarks). */
  recordDumps?: boolean;
}

export function sqliteDump(dbPath: string): string {
  return execFileSync(SQLITE3, [dbPath, '.dump'], { encoding: 'utf8', maxBuffer: 1 << 30 });
}

/** Compresses `input` with the lz4 CLI into `out`. */
export function lz4Compress(input: Buffer, out: string, opts: readonly string[]): void {
  const tmp = `${out}.raw-${randomBytes(4).toString('hex')}`;
  fs.writeFileSync(tmp, input);
  try {
    const r = spawnSync(LZ4, ['-q', '-f', ...opts, tmp, out], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`lz4 ${opts.join(' ')} failed: ${r.stderr}`);
  } finally {
    fs.rmSync(tmp, { force: true });
  }
}

export class LitestreamFixture {
  readonly dir: string;
  readonly replicaDir: string;
  readonly dbPath: string;
  readonly db: Database.Database;
  readonly pageSize: number;
  readonly bigEndian: boolean;
  readonly points: FixturePoint[] = [];
  readonly snapshots: FixtureSnapshot[] = [];
  readonly generations: string[] = [];
  generation = '';
  index = 0;
  private clock: number;
  private variant = 0;
  private readonly variants: readonly (readonly string[])[];
  private readonly recordDumps: boolean;
  /** Long-lived descriptors (never closed while the connection is open: POSIX locks). */
  private readonly dbFd: number;
  private walFd: number | undefined;
  /** Current epoch: header, checksum state after the last shipped frame, shipped offset. */
  private epoch: WalHeaderInfo | undefined;
  private shipped = 0;
  private lastCk: [number, number] = [0, 0];
  private beCk: [number, number] = [0, 0];
  /** Salts of the previous epoch: until the header changes, the WAL has not restarted. */
  private staleSalts: string | undefined;

  constructor(opts: FixtureOptions) {
    this.dir = opts.dir;
    fs.mkdirSync(this.dir, { recursive: true });
    this.replicaDir = path.join(this.dir, 'replica');
    this.dbPath = path.join(this.dir, 'live.db');
    this.pageSize = opts.pageSize ?? 4096;
    this.bigEndian = opts.bigEndian ?? false;
    this.clock = (opts.startTime ?? new Date(Date.UTC(2024, 0, 1))).getTime();
    this.variants = opts.lz4Variants ?? LZ4_VARIANTS;
    this.recordDumps = opts.recordDumps ?? true;
    fs.writeFileSync(this.dbPath, '');
    this.dbFd = fs.openSync(this.dbPath, 'r');
    this.db = new Database(this.dbPath);
    this.db.pragma(`page_size = ${this.pageSize}`);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('wal_autocheckpoint = 0');
    this.db.pragma('synchronous = NORMAL');
    // Litestream v0.3 creates these in every database it replicates (§4.2).
    this.db.exec(
      'CREATE TABLE IF NOT EXISTS _litestream_seq (id INTEGER PRIMARY KEY, seq INTEGER); CREATE TABLE IF NOT EXISTS _litestream_lock (id INTEGER);',
    );
    this.newGeneration();
  }

  /** Time the next object gets. */
  private tick(): Date {
    const t = new Date(this.clock);
    this.clock += 1000;
    return t;
  }

  /** The time the next object will get (for timestamp tests). */
  get now(): Date {
    return new Date(this.clock);
  }

  private nextVariant(): readonly string[] {
    const v = this.variants[this.variant % this.variants.length]!;
    this.variant++;
    return v;
  }

  private genDir(gen = this.generation): string {
    return path.join(this.replicaDir, 'generations', gen);
  }

  snapshotPath(index: number, gen = this.generation): string {
    return path.join(this.genDir(gen), 'snapshots', `${hex8(index)}.snapshot.lz4`);
  }

  segmentPath(index: number, offset: number, gen = this.generation): string {
    return path.join(this.genDir(gen), 'wal', `${hex8(index)}_${hex8(offset)}.wal.lz4`);
  }

  private writeObject(file: string, data: Buffer, createdAt: Date): void {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    lz4Compress(data, file, this.nextVariant());
    fs.utimesSync(file, createdAt, createdAt);
  }

  dump(): string {
    return this.recordDumps ? sqliteDump(this.dbPath) : '';
  }

  /** Starts a new generation (as after a lost position): TRUNCATE checkpoint, index 0, fresh snapshot. */
  newGeneration(): string {
    if (this.generation !== '') this.ship();
    this.db.pragma('wal_checkpoint(TRUNCATE)');
    this.generation = randomBytes(8).toString('hex');
    this.generations.push(this.generation);
    this.index = 0;
    this.resetEpoch();
    this.snapshot();
    return this.generation;
  }

  private resetEpoch(): void {
    this.staleSalts = this.epoch ? `${this.epoch.salt1}/${this.epoch.salt2}` : undefined;
    this.epoch = undefined;
    this.shipped = 0;
  }

  /** Copies the main database file as the snapshot of the current index. */
  snapshot(opts: { checkpoint?: 'PASSIVE' } = {}): FixtureSnapshot {
    this.ship();
    if (opts.checkpoint) this.db.pragma(`wal_checkpoint(${opts.checkpoint})`);
    const size = fs.fstatSync(this.dbFd).size;
    const bytes = Buffer.alloc(size);
    let got = 0;
    while (got < size) got += fs.readSync(this.dbFd, bytes, got, size - got, got);
    const createdAt = this.tick();
    this.writeObject(this.snapshotPath(this.index), bytes, createdAt);
    const s: FixtureSnapshot = { generation: this.generation, index: this.index, createdAt, dump: this.dump() };
    this.snapshots.push(s);
    return s;
  }

  /** Ends the current WAL index: ships, checkpoints (TRUNCATE or RESTART), next index. */
  newIndex(mode: 'TRUNCATE' | 'RESTART' = 'TRUNCATE'): void {
    this.ship();
    const rows = this.db.pragma(`wal_checkpoint(${mode})`) as Array<{ busy: number }>;
    if (rows[0]?.busy !== 0) throw new Error(`wal_checkpoint(${mode}) was busy`);
    this.index++;
    this.resetEpoch();
  }

  private walBytes(from: number, to: number): Buffer {
    if (this.walFd === undefined) {
      const walPath = `${this.dbPath}-wal`;
      if (!fs.existsSync(walPath)) return Buffer.alloc(0);
      this.walFd = fs.openSync(walPath, 'r');
    }
    const size = fs.fstatSync(this.walFd).size;
    const end = Math.min(to, size);
    if (end <= from) return Buffer.alloc(0);
    const buf = Buffer.alloc(end - from);
    let got = 0;
    while (got < buf.length) {
      const n = fs.readSync(this.walFd, buf, got, buf.length - got, from + got);
      if (n === 0) break;
      got += n;
    }
    return buf.subarray(0, got);
  }

  /**
   * Ships every newly committed frame of the current index as one segment (as Litestream's
   * syncWAL does). Returns the point, or undefined when nothing new is committed.
   */
  ship(): FixturePoint | undefined {
    if (this.epoch) {
      // SQLite restarts the WAL on its own when a writer starts after a checkpoint back-filled
      // every frame (e.g. a PASSIVE checkpoint with no reader): that begins the next index.
      // Everything of the old epoch was shipped before the checkpoint.
      const h = readHeader(this.walBytes(0, 32));
      if (h && (h.salt1 !== this.epoch.salt1 || h.salt2 !== this.epoch.salt2)) {
        this.index++;
        this.resetEpoch();
      }
    }
    if (!this.epoch) {
      const h = readHeader(this.walBytes(0, 32));
      if (!h) return undefined;
      if (this.staleSalts === `${h.salt1}/${h.salt2}`) return undefined; // not restarted yet
      if (h.pageSize !== this.pageSize) throw new Error(`wal page size ${h.pageSize} != ${this.pageSize}`);
      if (h.be) throw new Error('fixture expects SQLite to write little-endian checksums');
      this.epoch = h;
      this.shipped = 0;
      this.lastCk = h.ck;
    }
    const e = this.epoch;
    const fsz = 24 + this.pageSize;
    // Walk frames after the shipped offset: salts + checksum chain; stop at the first invalid one.
    let pos = Math.max(this.shipped, 32);
    let ck = this.lastCk;
    let commitEnd = -1;
    let commitCk = ck;
    const batch = 256;
    for (;;) {
      const buf = this.walBytes(pos, pos + fsz * batch);
      let i = 0;
      let stop = false;
      for (; i + fsz <= buf.length; i += fsz) {
        if (buf.readUInt32BE(i + 8) !== e.salt1 || buf.readUInt32BE(i + 12) !== e.salt2) {
          stop = true;
          break;
        }
        let c = cksum(buf, i, i + 8, false, ck[0], ck[1]);
        c = cksum(buf, i + 24, i + fsz, false, c[0], c[1]);
        if (c[0] !== buf.readUInt32BE(i + 16) || c[1] !== buf.readUInt32BE(i + 20)) {
          stop = true;
          break;
        }
        ck = c;
        if (buf.readUInt32BE(i + 4) !== 0) {
          commitEnd = pos + i + fsz;
          commitCk = ck;
        }
      }
      pos += i;
      if (stop || buf.length < fsz * batch) break;
    }
    if (commitEnd < 0) return undefined;
    const from = this.shipped;
    let data = this.walBytes(from, commitEnd);
    if (data.length !== commitEnd - from) throw new Error('short wal read');
    if (this.bigEndian) data = this.toBigEndian(data, from);
    const createdAt = this.tick();
    this.writeObject(this.segmentPath(this.index, from), data, createdAt);
    this.shipped = commitEnd;
    this.lastCk = commitCk;
    const p: FixturePoint = { generation: this.generation, index: this.index, offset: from, end: commitEnd, createdAt, dump: this.dump() };
    this.points.push(p);
    return p;
  }

  /** Rewrites a slice of the current epoch with big-endian checksum words (magic ...83). */
  private toBigEndian(data: Buffer, from: number): Buffer {
    const out = Buffer.from(data);
    const fsz = 24 + this.pageSize;
    let at = 0;
    if (from === 0) {
      out.writeUInt32BE(0x377f0683, 0);
      const c = cksum(out, 0, 24, true, 0, 0);
      out.writeUInt32BE(c[0], 24);
      out.writeUInt32BE(c[1], 28);
      this.beCk = c;
      at = 32;
    }
    for (; at + fsz <= out.length; at += fsz) {
      let c = cksum(out, at, at + 8, true, this.beCk[0], this.beCk[1]);
      c = cksum(out, at + 24, at + fsz, true, c[0], c[1]);
      out.writeUInt32BE(c[0], at + 16);
      out.writeUInt32BE(c[1], at + 20);
      this.beCk = c;
    }
    return out;
  }

  private reader: Database.Database | undefined;

  /**
   * Starts a read transaction on a second connection (as Litestream's long-lived read lock):
   * a checkpoint cannot back-fill past it and the WAL cannot restart while it is held.
   */
  beginReader(): void {
    this.reader ??= new Database(this.dbPath, { readonly: true });
    this.reader.exec('BEGIN');
    this.reader.prepare('SELECT count(*) FROM sqlite_master').get();
  }

  endReader(): void {
    this.reader?.exec('COMMIT');
  }

  /** Runs `fn` in one transaction. */
  tx(fn: () => void): void {
    this.db.transaction(fn)();
  }

  /** Expected state after a restore to the end of `index` (its last shipped point). */
  lastPointOfIndex(generation: string, index: number): FixturePoint | undefined {
    return this.points.filter((p) => p.generation === generation && p.index === index).at(-1);
  }

  lastPoint(generation = this.generation): FixturePoint | undefined {
    return this.points.filter((p) => p.generation === generation).at(-1);
  }

  close(): void {
    this.ship();
    this.reader?.close();
    this.db.close();
    if (this.walFd !== undefined) fs.closeSync(this.walFd);
    fs.closeSync(this.dbFd);
  }
}

export function hex8(n: number): string {
  return n.toString(16).padStart(8, '0');
}

/** Deterministic pseudo-random text of `n` characters. */
export function filler(seed: number, n: number): string {
  let x = seed >>> 0 || 1;
  let s = '';
  while (s.length < n) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    s += x.toString(36);
  }
  return s.slice(0, n);
}

/** A small mixed workload: inserts, updates, deletes over a couple of tables. */
export function workload(fx: LitestreamFixture, step: number, rows = 20): void {
  const db = fx.db;
  db.exec(`CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, step INTEGER, v TEXT, b BLOB);
           CREATE INDEX IF NOT EXISTS t_step ON t(step);
           CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v TEXT) WITHOUT ROWID;`);
  const ins = db.prepare('INSERT INTO t (step, v, b) VALUES (?, ?, ?)');
  const upd = db.prepare('UPDATE t SET v = ? WHERE id % 7 = ?');
  const del = db.prepare('DELETE FROM t WHERE id % 11 = ? AND step < ?');
  const kv = db.prepare('INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)');
  fx.tx(() => {
    for (let i = 0; i < rows; i++) ins.run(step, filler(step * 1000 + i, 40 + ((step * 31 + i) % 300)), Buffer.from(filler(i + step, 64)));
    upd.run(filler(step, 30), step % 7);
    if (step % 3 === 2) del.run(step % 11, step);
    kv.run(`k${step % 13}`, filler(step + 99, 100));
  });
}
