import { EventEmitter } from 'node:events';
import fsSync from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { CorruptDataError, WalshipError } from '../errors.js';
import type { Logger } from '../logger.js';
import { MAX_INDEX, newGenerationName } from '../naming.js';
import { type Pos, ZERO_POS } from '../pos.js';
import { Mutex } from '../util/async.js';
import { fileSystemError, fsyncDir, readFullAt, sleepSync, statOrUndefined, writeFullAtSync } from '../util/fs.js';
import { heldFileHandle } from '../util/held-files.js';
import type { Checksum } from '../wal/checksum.js';
import { calcWalSize, frameSize, parseWalHeader, WAL_HEADER_SIZE, type WalHeader } from '../wal/format.js';
import { readWalIndexSync } from '../wal/wal-index.js';
import { scanCommittedFrames, scanCommittedFramesSync, tryParseWalHeader, WalFile } from '../wal/wal-file.js';
import { type CheckpointResult, DbConnections } from './connections.js';
import {
  type DbFingerprint,
  fingerprintOf,
  type MetaState,
  readMetaState,
  removeOtherGenerations,
  removeTempFiles,
  sameFingerprint,
  type SpillRecord,
  spillFile,
  writeMetaState,
  writeMetaStateSync,
} from './meta-state.js';
import { type LitestreamLookup, lookForLitestream, retireLeftoverLitestreamGeneration, retireLitestreamMeta } from './litestream-meta.js';

/** Engine settings, already normalised to milliseconds / counts. */
export interface EngineSettings {
  readonly metaPath: string;
  readonly checkpointIntervalMs: number;
  readonly minCheckpointPageCount: number;
  readonly maxCheckpointPageCount: number;
  readonly truncatePageCount: number;
  readonly busyTimeoutMs: number;
  readonly logger: Logger;
  /**
   * Litestream v0.3's meta directory for this database: when walship has no state of its own,
   * a Litestream generation found there is continued if the WAL proves continuity
   * (litestream-meta.ts). Undefined: not looked for.
   */
  readonly litestreamMetaPath?: string | undefined;
}

/** Where a replica at some position reads its next bytes. */
export type SegmentSource =
  | { readonly kind: 'data'; readonly index: number; readonly start: number; readonly end: number; readonly from: 'wal' | 'spill' }
  | { readonly kind: 'caught-up' }
  /**
   * The bytes the replica needs are gone locally: it must take a new snapshot. `ahead`: the
   * replica holds commits past the local WAL (the local database lost them, or another copy
   * wrote them): continuing the generation would fork it, so a new generation is needed.
   */
  | { readonly kind: 'unavailable'; readonly reason: string; readonly ahead?: true };

interface Epoch {
  index: number;
  headerBytes: Buffer;
  header: WalHeader;
  /** End of the last verified commit frame. */
  end: number;
  checksum: Checksum;
  /** Commit ends at ≥ SEGMENT_SPLIT spacing, so replicas can cap segment sizes. */
  boundaries: number[];
}

/** The first 32 bytes of a -wal file, read synchronously; undefined when missing or short. */
function readWalHeaderSync(walPath: string): Buffer | undefined {
  let fd: number;
  try {
    fd = fsSync.openSync(walPath, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  try {
    const buf = Buffer.alloc(WAL_HEADER_SIZE);
    return fsSync.readSync(fd, buf, 0, WAL_HEADER_SIZE, 0) === WAL_HEADER_SIZE ? buf : undefined;
  } finally {
    fsSync.closeSync(fd);
  }
}

/**
 * True when `after` is the header SQLite writes when it restarts the WAL whose header was
 * `before` (salt-1 incremented, same page size). Called only after walship's own restarting
 * write under its write lock, so nobody else can have restarted it in between.
 *
 * The checkpoint sequence is deliberately not compared: SQLite keeps it per connection and
 * only the connection that ran WAL recovery knows the real value (after a kill -9, or when
 * walship's connections join an application that opened the database first, walship's writer
 * restarts the WAL with a sequence of 1).
 */
function isRestartOf(after: WalHeader, before: WalHeader): boolean {
  return after.salt1 === (before.salt1 + 1) >>> 0 && after.pageSize === before.pageSize;
}

/** Largest WAL segment walship uploads as one object (uncompressed); a single larger transaction is kept whole. */
const SEGMENT_SPLIT = 64 * 1024 * 1024;
const READ_CHUNK = 1024 * 1024;
/** A WAL-restarting commit truncates a `-wal` file up to this size (freeing it is quick)… */
const TRUNCATE_CHEAP_BYTES = 32 * 1024 * 1024;
/** …or any size once nothing was committed for this long (nobody waits on the lock then). */
const TRUNCATE_QUIET_MS = 1000;
/** Unlocked checkpoint passes before a controlled restart takes the write lock (see restartWal). */
const UNLOCKED_CHECKPOINT_PASSES = 3;
/** An unlocked checkpoint pass this quick leaves too little behind to be worth another. */
const QUICK_CHECKPOINT_MS = 20;
/**
 * After this long without a change or checkpoint, a database keeps only its pin connection
 * open. Short on purpose: memory SQLite frees is only reused, never given back to the system
 * (measured: 500 databases holding 6 connections each, then closing 5, kept 950 KiB per
 * database; opening and closing the 5 one database at a time kept 203 KiB), so the spare
 * connections of many databases must never be open all at once — as they would be for the
 * whole catch-up of a directory if they stayed open for long after each database's start.
 */
export const SHED_IDLE_MS = 2_000;

/**
 * The database side of replication: owns walship's SQLite connections and the read lock that
 * keeps the WAL append-only, tracks the committed end of the current WAL epoch, decides
 * generations, runs controlled checkpoints/restarts, and serves WAL bytes to replicas.
 *
 * Continuity rules (a new generation starts only when one of them fails):
 * - the `-wal` header equals the recorded header of the current index → same index continues;
 * - after a clean stop that checkpointed everything, an unchanged database file proves that
 *   every transaction since is in the current `-wal` → the next index continues;
 * - the WAL is restarted only under walship's write lock, after the old epoch's unsent tail is
 *   kept locally (spilled) for every lagging replica.
 */
export class WalEngine extends EventEmitter {
  readonly dbPath: string;
  readonly walPath: string;
  readonly settings: EngineSettings;
  #conns: DbConnections | undefined;
  #wal: WalFile;
  #generation = '';
  #epoch: Epoch | undefined;
  #pageSize = 0;
  #dbDev = 0;
  #dbIno = 0;
  /** Closed indexes whose end is known (index → end). */
  #closedEnds = new Map<number, number>();
  #spills = new Map<number, SpillRecord>();
  #snapshotDepth = 0;
  /** Counts state writes: an asynchronous write that a newer one overtook is dropped (see #persist). */
  #stateVersion = 0;
  /** Spill files written but not yet fsynced (see #syncSpills). */
  readonly #unsyncedSpills = new Set<string>();
  #snapshotMutex = new Mutex();
  #lastCheckpointAt = Date.now();
  #lastChangeAt = Date.now();
  #positions: () => Array<Pos | undefined>;
  #log: Logger;

  constructor(dbPath: string, settings: EngineSettings, positions: () => Array<Pos | undefined>) {
    super();
    this.dbPath = path.resolve(dbPath);
    this.walPath = `${this.dbPath}-wal`;
    this.settings = settings;
    this.#wal = new WalFile(this.walPath);
    this.#positions = positions;
    this.#log = settings.logger;
  }

  get generation(): string {
    return this.#generation;
  }

  get pageSize(): number {
    return this.#pageSize;
  }

  get isOpen(): boolean {
    return this.#conns !== undefined;
  }

  /** Newest committed position in the local WAL (zero before open). */
  get pos(): Pos {
    const e = this.#epoch;
    if (!e || !this.#generation) return ZERO_POS;
    return { generation: this.#generation, index: e.index, offset: e.end };
  }

  get connections(): DbConnections {
    if (!this.#conns) throw new WalshipError('WALSHIP_NOT_OPEN', 'database is not open');
    return this.#conns;
  }

  /**
   * Opens connections and decides the generation. Returns false (and opens nothing) when the
   * database file does not exist yet.
   */
  async open(): Promise<boolean> {
    const dbStat = await statOrUndefined(this.dbPath);
    if (!dbStat) return false;
    const metaPath = this.settings.metaPath;
    await fs.mkdir(metaPath, { recursive: true, mode: 0o700 });
    await removeTempFiles(metaPath);
    let state = await readMetaState(metaPath);

    // Fingerprint before SQLite touches anything: proves "unchanged since a clean stop".
    // (Through the never-closed handle: the application's connections may hold locks on it.)
    const fingerprint: DbFingerprint = await fingerprintOf(await heldFileHandle(this.dbPath));

    const conns = await DbConnections.open(this.dbPath, {
      busyTimeoutMs: this.settings.busyTimeoutMs,
      journalSizeLimit: calcWalSize(4096, Math.max(1, this.settings.minCheckpointPageCount)),
    });
    this.#conns = conns;
    const st = await conns.dbFile.stat();
    this.#dbDev = Number(st.dev);
    this.#dbIno = Number(st.ino);

    try {
      let litestream: LitestreamLookup = { kind: 'none' };
      if (!state && this.settings.litestreamMetaPath) {
        litestream = await lookForLitestream({
          litestreamMetaPath: this.settings.litestreamMetaPath,
          metaPath,
          walPath: this.walPath,
          dbDev: this.#dbDev,
          dbIno: this.#dbIno,
          logger: this.#log,
        });
        if (litestream.kind === 'adopted') {
          state = litestream.state;
          for (const s of state.spills) this.#unsyncedSpills.add(spillFile(metaPath, state.generation, s.index));
        }
      } else if (state && this.settings.litestreamMetaPath) {
        await retireLeftoverLitestreamGeneration(this.settings.litestreamMetaPath, metaPath, state.generation);
      }
      await this.#openUnderLock(state, fingerprint, litestream);
    } catch (err) {
      await this.#closeConnections();
      throw err;
    }
    return true;
  }

  async #openUnderLock(state: MetaState | undefined, fingerprint: DbFingerprint, litestream: LitestreamLookup, attempt = 0): Promise<void> {
    const conns = this.connections;
    this.#spills.clear();
    this.#closedEnds.clear();
    // Decide from what is on disk now (unlocked); the locked section below re-checks the header.
    const present = await this.#wal.ensureOpen();
    const headerBytes = present ? await this.#wal.readHeaderBytes() : undefined;
    const header = tryParseWalHeader(headerBytes);
    const sameDbFile = !!state && state.dbDev === this.#dbDev && state.dbIno === this.#dbIno;
    let reason: string | undefined;
    let epoch: Epoch | undefined;
    if (!state) reason = litestream.kind === 'rejected' ? litestream.reason : 'no generation exists';
    else if (!sameDbFile) reason = 'database file replaced';
    else if (header && headerBytes && headerBytes.toString('hex') === state.walHeader) {
      // Same epoch: everything up to the replicas' positions is still in the WAL.
      this.#adoptState(state);
      epoch = await this.#scanNewEpoch(state.index, headerBytes, header);
      if (litestream.kind === 'adopted' && epoch.end < litestream.shadowEnd) {
        reason = `litestream generation ${state.generation} cannot be continued: the wal's valid commits end at ${epoch.end}, before the end of litestream's shadow wal (${litestream.shadowEnd})`;
      }
    } else if (header && headerBytes && (await this.#restartedByUs(state, header))) {
      // walship restarted the WAL right before a kill -9, too soon to record it: next index.
      this.#adoptState(state);
      this.#closedEnds.set(state.index, state.restartIntent!.end);
      epoch = await this.#scanNewEpoch(state.index + 1, headerBytes, header);
    } else if (state.cleanStop && sameFingerprint(state.cleanStop.fingerprint, fingerprint)) {
      // Unchanged database since a clean stop: the current WAL (if any) holds only later commits.
      this.#adoptState(state);
      this.#closedEnds.set(state.index, state.cleanStop.end);
      if (header && headerBytes) epoch = await this.#scanNewEpoch(state.index + 1, headerBytes, header);
    } else {
      reason = header ? 'wal header mismatch' : 'no primary wal';
    }
    if (reason !== undefined) {
      this.#generation = newGenerationName();
      this.#spills.clear();
      this.#closedEnds.clear();
      epoch = undefined;
    }
    const nextIndex = reason !== undefined ? 0 : state!.index + 1;

    // Locked and synchronous: confirm the header, then write one frame. The frame guarantees the
    // WAL exists and holds a frame not yet checkpointed, so the read lock taken right after pins
    // a WAL read mark. If the WAL was fully checkpointed this write restarts it — under our
    // lock, so the old epoch ended exactly at the end scanned under the lock.
    const deadline = Date.now() + Math.max(this.settings.busyTimeoutMs, 1000) * 10;
    while (!conns.tryLockWrites(Math.min(this.settings.busyTimeoutMs, 50))) {
      if (Date.now() > deadline)
        throw new WalshipError('WALSHIP_BUSY', 'cannot take the database write lock to start replication: another connection keeps it');
      await new Promise((r) => setTimeout(r, 20));
    }
    let after: Buffer | undefined;
    let changedBeforeLock = false;
    let closedEnd = 0;
    try {
      const now = readWalHeaderSync(this.walPath);
      changedBeforeLock = (now?.toString('hex') ?? 'none') !== (headerBytes?.toString('hex') ?? 'none');
      if (!changedBeforeLock && epoch) {
        this.#epoch = epoch;
        this.#scanMoreSync();
        closedEnd = epoch.end;
      }
      if (!changedBeforeLock) {
        if (epoch && this.#epoch === epoch) this.#recordRestartIntentSync(epoch);
        // Pin before the commit releases the lock, so nobody can restart the WAL in between.
        // A read transaction begun now does not stop our own write from restarting the WAL:
        // when everything is copied into the database file it gets read mark 0 (which only
        // keeps others from copying), otherwise the write appends anyway.
        conns.pinRead();
        conns.commitSeqWrite();
        // Record a restart our write caused before anything else, so a kill -9 finds a state
        // that matches the WAL; then move the pin onto the WAL as written.
        const written = readWalHeaderSync(this.walPath);
        const wh = tryParseWalHeader(written);
        if (epoch && written && wh && !written.equals(epoch.headerBytes)) {
          if (isRestartOf(wh, epoch.header)) this.#persistRestartSync(epoch.index, closedEnd, written, wh);
          // A WAL that held no frame got a new header from our write: the same index (see below).
          else if (closedEnd === WAL_HEADER_SIZE) this.#writeStateSync(epoch.index, written, wh.pageSize);
        }
        conns.repin();
        after = readWalHeaderSync(this.walPath);
      }
    } finally {
      conns.unlockWrites();
    }
    if (changedBeforeLock) {
      // Someone wrote between our look and our lock: decide again.
      if (attempt >= 20) throw new WalshipError('WALSHIP_BUSY', 'cannot start replication: the wal keeps changing between reads');
      return this.#openUnderLock(state, fingerprint, litestream, attempt + 1);
    }
    await this.#wal.ensureOpen();
    if (!after) after = await this.#wal.readHeaderBytes();
    const ah = tryParseWalHeader(after);
    if (!after || !ah) throw new CorruptDataError('wal missing after write: cannot start replication');
    if (!epoch) {
      this.#epoch = await this.#scanNewEpoch(nextIndex, after, ah);
    } else if (after.equals(epoch.headerBytes)) {
      this.#epoch = epoch;
      await this.#scanMore();
    } else if (isRestartOf(ah, epoch.header)) {
      this.#closedEnds.set(epoch.index, closedEnd);
      this.#epoch = await this.#scanNewEpoch(epoch.index + 1, after, ah);
    } else if (closedEnd === WAL_HEADER_SIZE) {
      // The WAL held no frame (a kill -9 right after a restart's header was written, say), so
      // our write was its first and wrote a new header (new salts: SQLite draws them when its
      // connection has not restarted a WAL itself). Nothing of this index was ever shipped: it
      // begins again under the new header.
      this.#epoch = await this.#scanNewEpoch(epoch.index, after, ah);
    } else {
      reason = 'wal restarted during start-up';
      this.#generation = newGenerationName();
      this.#closedEnds.clear();
      this.#spills.clear();
      this.#epoch = await this.#scanNewEpoch(0, after, ah);
    }
    this.#pageSize = this.#epoch.header.pageSize;
    await this.#persist();
    await removeOtherGenerations(this.settings.metaPath, this.#generation);
    if (reason !== undefined) {
      this.#log.info('new generation', { db: this.dbPath, generation: this.#generation, reason });
      this.emit('generation', { generation: this.#generation, reason });
    } else if (litestream.kind === 'adopted' && this.#generation === litestream.state.generation) {
      // Recorded as walship's: Litestream must not continue it behind walship's back.
      await retireLitestreamMeta(litestream, this.settings.metaPath);
      this.#log.info('continuing litestream generation', {
        db: this.dbPath,
        generation: this.#generation,
        index: litestream.state.index,
        from: litestream.litestreamMetaPath,
      });
      this.emit('litestream-generation', { generation: this.#generation, index: litestream.state.index });
    }
  }

  /**
   * True when the WAL (header `h`) is the one walship's own restarting write began after the
   * recorded state: the state holds a restart intent for its header, `h` is a restart of it,
   * and the WAL's first transaction is a single valid commit frame of `_litestream_seq`'s page —
   * the write walship was making. An application that restarted the WAL itself (after walship
   * died, possibly losing frames) would have written its own pages first.
   *
   * Also true when the restarted WAL holds no valid frame yet and the rest of the file is still
   * the previous WAL, whose commits end exactly where the intent says: SQLite writes and fsyncs
   * a restart's header before its first frame, and a kill -9 during that fsync leaves this.
   * Nothing was committed after walship's last scan, so whoever wrote the header lost nothing.
   */
  async #restartedByUs(state: MetaState, h: WalHeader): Promise<boolean> {
    const intent = state.restartIntent;
    const prev = tryParseWalHeader(Buffer.from(state.walHeader, 'hex'));
    if (!intent || !prev || !isRestartOf(h, prev) || intent.seqPage !== this.connections.seqPage) return false;
    const read = (b: Uint8Array, n: number, p: number) => this.#wal.readAt(b, 0, n, p);
    // Only the first frame matters: a valid commit frame of the seq page, or none at all.
    const first = await scanCommittedFrames(read, h, WAL_HEADER_SIZE, h.checksum, frameSize(h.pageSize));
    if (first.commits === 0) {
      const old = await scanCommittedFrames(read, prev, WAL_HEADER_SIZE, prev.checksum);
      return old.end === intent.end;
    }
    const fh = Buffer.alloc(8);
    if ((await this.#wal.readAt(fh, 0, 8, WAL_HEADER_SIZE)) !== 8) return false;
    return fh.readUInt32BE(0) === intent.seqPage; // its page number (it is a commit: the scan found one)
  }

  /** Records, under the write lock and right before walship's restarting write, what it restarts. */
  #recordRestartIntentSync(e: Epoch): void {
    const extra = { restartIntent: { end: e.end, seqPage: this.connections.seqPage } };
    this.#writeStateSync(e.index, e.headerBytes, e.header.pageSize, extra);
  }

  /** Replaces the state synchronously; an asynchronous write still in flight is then dropped. */
  #writeStateSync(index: number, headerBytes: Buffer, pageSize: number, extra?: Partial<MetaState>): void {
    this.#stateVersion++;
    writeMetaStateSync(this.settings.metaPath, this.#stateOf(index, headerBytes, pageSize, extra));
  }

  #adoptState(state: MetaState): void {
    this.#generation = state.generation;
    if (state.prevIndexEnd !== undefined) this.#closedEnds.set(state.index - 1, state.prevIndexEnd);
    for (const s of state.spills) {
      this.#closedEnds.set(s.index, s.end);
      // A spill cut short (a power loss before its fsync) is not used: a replica that needed
      // it takes a new snapshot instead.
      const size = fsSync.statSync(spillFile(this.settings.metaPath, state.generation, s.index), { throwIfNoEntry: false })?.size ?? 0;
      if (size >= s.end) this.#spills.set(s.index, s);
      else
        this.#log.warn('a kept wal tail is shorter than recorded; replicas that need it take a new snapshot', {
          index: s.index,
          size,
          end: s.end,
        });
    }
  }

  async #scanNewEpoch(index: number, headerBytes: Buffer, header: WalHeader): Promise<Epoch> {
    const e: Epoch = { index, headerBytes, header, end: WAL_HEADER_SIZE, checksum: header.checksum, boundaries: [] };
    const r = await scanCommittedFrames((b, n, p) => this.#wal.readAt(b, 0, n, p), header, WAL_HEADER_SIZE, header.checksum);
    this.#recordBoundaries(e, r.end);
    e.end = r.end;
    e.checksum = r.checksum;
    return e;
  }

  #recordBoundaries(e: Epoch, newEnd: number): void {
    // Boundaries are only ever commit ends seen by a scan; one per scan is enough spacing info.
    const last = e.boundaries.length ? e.boundaries[e.boundaries.length - 1]! : WAL_HEADER_SIZE;
    if (newEnd > e.end && newEnd - last >= SEGMENT_SPLIT / 4) e.boundaries.push(newEnd);
  }

  /** Scans for commits after the current end; the epoch header must be unchanged. */
  async #scanMore(): Promise<boolean> {
    const e = this.#epoch!;
    const r = await scanCommittedFrames((b, n, p) => this.#wal.readAt(b, 0, n, p), e.header, e.end, e.checksum);
    // Another scan may have finished first (the monitor's and a snapshot's): only ever forward,
    // end and checksum together.
    if (r.end <= e.end) return false;
    this.#recordBoundaries(e, r.end);
    e.end = r.end;
    e.checksum = r.checksum;
    return true;
  }

  #stateOf(index: number, headerBytes: Buffer, pageSize: number, extra?: Partial<MetaState>): MetaState {
    return {
      version: 1,
      generation: this.#generation,
      index,
      walHeader: headerBytes.toString('hex'),
      pageSize,
      dbDev: this.#dbDev,
      dbIno: this.#dbIno,
      spills: [...this.#spills.values()].sort((a, b) => a.index - b.index),
      prevIndexEnd: this.#closedEnds.get(index - 1),
      ...extra,
    };
  }

  async #persist(extra?: Partial<MetaState>): Promise<void> {
    // The spills the state names are durable before the state is.
    await this.#syncSpills();
    const e = this.#epoch!;
    const version = ++this.#stateVersion;
    await writeMetaState(
      this.settings.metaPath,
      this.#stateOf(e.index, e.headerBytes, e.header.pageSize, extra),
      () => this.#stateVersion === version,
    );
  }

  /**
   * Records, synchronously and right after walship's own restarting write, that index `index`
   * (header `headerBytes`) follows the one that ended at `closedEnd`: a kill -9 from here on
   * still finds a state that matches the WAL, and the generation continues.
   */
  #persistRestartSync(prevIndex: number, closedEnd: number, headerBytes: Buffer, header: WalHeader): void {
    this.#closedEnds.set(prevIndex, closedEnd);
    this.#writeStateSync(prevIndex + 1, headerBytes, header.pageSize);
  }

  /**
   * One monitor step: detects new commits, a replaced database or a WAL restarted behind our
   * back (→ new generation). Resolves true when something changed.
   */
  async scan(): Promise<boolean> {
    if (!this.#conns) return false;
    const dbStat = await statOrUndefined(this.dbPath);
    if (!dbStat || Number(dbStat.ino) !== this.#dbIno || Number(dbStat.dev) !== this.#dbDev) {
      // Deleted, or deleted and recreated under the same path.
      this.#log.warn('database file replaced or removed; reopening', { db: this.dbPath });
      await this.#closeConnections();
      return this.open().catch((err) => {
        this.#log.error('reopen failed', { db: this.dbPath, error: String(err) });
        return false;
      });
    }
    const e = this.#epoch!;
    const present = await this.#wal.ensureOpen();
    const hb = present ? await this.#wal.readHeaderBytes() : undefined;
    if (!hb?.equals(e.headerBytes)) {
      const size = present ? await this.#wal.size() : 0;
      await this.#newGeneration(size < e.end ? 'wal truncated by another process' : 'wal overwritten by another process');
      return true;
    }
    const changed = await this.#scanMore();
    if (changed) {
      this.#lastChangeAt = Date.now();
      // Move the read lock forward so checkpoints (ours or the app's) can copy the new frames.
      // Not while a snapshot streams: the database file must not get ahead of what the replica
      // sent before the snapshot.
      // Not when every frame is already in the database file either: a read lock taken then
      // would not keep the WAL from being restarted (see readWalIndexSync); the current one does.
      if (this.#snapshotDepth === 0 && hasUncopiedFrames(this.#conns)) this.#conns.repin();
    }
    return changed;
  }

  /**
   * Starts a new generation because of `reason`, unless the generation is no longer
   * `expected` (another caller already moved on). Returns true when it started one.
   */
  async forkGeneration(expected: string, reason: string): Promise<boolean> {
    if (!this.isOpen || this.#generation !== expected) return false;
    await this.#newGeneration(reason);
    return true;
  }

  async #newGeneration(reason: string): Promise<void> {
    const conns = this.connections;
    this.#log.warn('new generation', { db: this.dbPath, reason });
    // Take the write lock so the header we adopt is the epoch we pin; pin under it (see
    // #openUnderLock) so the WAL stays pinned from here on.
    while (!conns.tryLockWrites(Math.min(this.settings.busyTimeoutMs, 200))) await new Promise((r) => setTimeout(r, 20));
    try {
      conns.repin();
      conns.commitSeqWrite();
    } finally {
      conns.unlockWrites();
    }
    conns.repin();
    await this.#wal.ensureOpen();
    const hb = await this.#wal.readHeaderBytes();
    const h = tryParseWalHeader(hb);
    if (!h || !hb) throw new CorruptDataError('wal missing after write');
    this.#generation = newGenerationName();
    this.#spills.clear();
    this.#closedEnds.clear();
    this.#epoch = await this.#scanNewEpoch(0, hb, h);
    this.#pageSize = h.pageSize;
    await this.#persist();
    await removeOtherGenerations(this.settings.metaPath, this.#generation);
    this.emit('generation', { generation: this.#generation, reason });
  }

  /** Where a replica at `pos` continues. */
  sourceFor(pos: Pos): SegmentSource {
    const e = this.#epoch;
    if (!e || pos.generation !== this.#generation) return { kind: 'unavailable', reason: 'generation changed' };
    let { index, offset } = pos;
    for (;;) {
      if (index === e.index) {
        if (offset === e.end || (offset === 0 && e.end === WAL_HEADER_SIZE)) return { kind: 'caught-up' };
        if (offset > e.end)
          return { kind: 'unavailable', ahead: true, reason: `replica position ${offset} is past the local wal end ${e.end}` };
        let end = e.end;
        if (end - offset > SEGMENT_SPLIT) {
          const b = e.boundaries.find((x) => x > offset && x - offset <= SEGMENT_SPLIT) ?? e.boundaries.find((x) => x > offset);
          if (b !== undefined) end = b;
        }
        return { kind: 'data', index, start: offset, end, from: 'wal' };
      }
      if (index > e.index)
        return { kind: 'unavailable', ahead: true, reason: `replica index ${index} is ahead of the local index ${e.index}` };
      const closedEnd = this.#closedEnds.get(index);
      if (closedEnd !== undefined && offset === closedEnd) {
        index += 1;
        offset = 0;
        continue;
      }
      const spill = this.#spills.get(index);
      if (spill && offset >= spill.start && offset < spill.end) {
        return { kind: 'data', index, start: offset, end: spill.end, from: 'spill' };
      }
      return {
        kind: 'unavailable',
        reason: `wal index ${index.toString(16).padStart(8, '0')} offset ${offset} is no longer available locally`,
      };
    }
  }

  /**
   * Streams bytes [start, end) of a source. Reading from the WAL, the header is re-read after
   * every chunk: SQLite rewrites the header before it overwrites any frame, so an unchanged
   * header proves the chunk predates any restart. When a controlled restart ends the index
   * while the stream is open, the rest is read from the tail the restart kept for this replica
   * in the meta dir (it always covers a lagging replica's unsent bytes); only when no such tail
   * exists does the stream fail (and the upload is retried), so no torn segment is stored.
   */
  openSegment(src: Extract<SegmentSource, { kind: 'data' }>): Readable {
    const expectedHeader = this.#epoch!.headerBytes;
    const generation = this.#generation;
    const metaPath = this.settings.metaPath;
    const spillFor = (index: number): SpillRecord | undefined => (this.#generation === generation ? this.#spills.get(index) : undefined);
    const { start, end, index } = src;
    const log = this.#log;
    const walPath = this.walPath;
    async function* gen() {
      let from = src.from;
      let file = from === 'wal' ? walPath : spillFile(metaPath, generation, index);
      let fh = await fs.open(file, 'r');
      const hb = Buffer.alloc(WAL_HEADER_SIZE);
      try {
        let pos = start;
        while (pos < end) {
          const n = Math.min(READ_CHUNK, end - pos);
          const buf = Buffer.allocUnsafe(n);
          const got = await readFullAt(fh, buf, 0, n, pos);
          if (from === 'wal') {
            const h = await readFullAt(fh, hb, 0, WAL_HEADER_SIZE, 0);
            if (got !== n || h !== WAL_HEADER_SIZE || !hb.equals(expectedHeader)) {
              const spill = spillFor(index);
              if (!spill || spill.start > pos || spill.end < end) {
                throw new CorruptDataError(
                  `wal index ${index.toString(16).padStart(8, '0')} restarted while reading a segment and no local copy of its tail was kept`,
                );
              }
              log.debug('wal restarted while reading a segment; continuing from the kept tail', { index, pos });
              await fh.close();
              from = 'spill';
              file = spillFile(metaPath, generation, index);
              fh = await fs.open(file, 'r');
              continue;
            }
          } else if (got !== n) {
            throw new CorruptDataError(`short read of ${file} at ${pos}: wanted ${n} bytes, got ${got}`);
          }
          pos += n;
          yield buf;
        }
      } finally {
        await fh.close();
      }
    }
    return Readable.from(gen(), { objectMode: false });
  }

  /** Sizes for metrics. */
  async sizes(): Promise<{ dbSizeBytes: number; walSizeBytes: number }> {
    const [d, w] = await Promise.all([statOrUndefined(this.dbPath), statOrUndefined(this.walPath)]);
    return { dbSizeBytes: d?.size ?? 0, walSizeBytes: w?.size ?? 0 };
  }

  /**
   * Checkpoint policy, run after scans and uploads:
   * - epoch ≥ minCheckpointPageCount pages and the replicas' unsent tail is small, or
   * - epoch ≥ maxCheckpointPageCount pages (lagging tails are spilled locally), or
   * - idle for checkpointInterval with more than one frame in the epoch
   * → controlled restart. Past truncatePageCount the restart waits for readers.
   * While an upload is in flight (`uploading`) only the forced and emergency restarts run: the
   * upload's reader moves to the kept tail when the WAL restarts under it, but an ordinary
   * restart can wait for it to end, and a writer faster than the uploads must not grow the WAL
   * without bound meanwhile.
   */
  async maybeCheckpoint(opts: { uploading?: boolean } = {}): Promise<void> {
    const e = this.#epoch;
    if (!e || !this.#conns) return;
    const pages = (e.end - WAL_HEADER_SIZE) / (e.header.pageSize + 24);
    if (pages <= 1) return;
    const s = this.settings;
    const behind = this.#unsentBytes();
    const idle = s.checkpointIntervalMs > 0 && Date.now() - Math.max(this.#lastChangeAt, this.#lastCheckpointAt) >= s.checkpointIntervalMs;
    const emergency = s.truncatePageCount > 0 && pages >= s.truncatePageCount;
    const forced = s.maxCheckpointPageCount > 0 && pages >= s.maxCheckpointPageCount;
    const due = pages >= s.minCheckpointPageCount && behind <= Math.max(4 * 1024 * 1024, (e.end - WAL_HEADER_SIZE) / 4);
    if (emergency || forced) {
      await this.restartWal(emergency ? 'TRUNCATE' : 'PASSIVE');
    } else if (opts.uploading) {
      return;
    } else if (due) {
      await this.restartWal('PASSIVE');
    } else if (pages >= s.minCheckpointPageCount || (idle && hasUncopiedFrames(this.#conns))) {
      // An idle database only gets a PASSIVE checkpoint: a restart would write a frame that
      // then has to be uploaded, and idle databases make no storage requests. None at all once
      // every frame is in the database file (it would only reopen the checkpointer).
      this.#lastCheckpointAt = Date.now();
      // Cheap, concurrent with writers: copy what the read lock allows into the database file.
      const t = Date.now();
      const r = this.#conns.checkpoint('PASSIVE');
      this.emit('checkpoint', { mode: 'PASSIVE', durationMs: Date.now() - t, result: r });
    }
  }

  #unsentBytes(): number {
    const e = this.#epoch!;
    let behind = 0;
    for (const p of this.#positions()) {
      if (!p || p.generation !== this.#generation || p.index < e.index) {
        behind = Math.max(behind, e.end);
        continue;
      }
      if (p.index === e.index) behind = Math.max(behind, e.end - p.offset);
    }
    return behind;
  }

  /**
   * Controlled WAL restart. Everything done while holding SQLite's write lock is synchronous:
   * an application in the same thread blocks on its own write while the lock is held, so an
   * `await` under the lock would deadlock it.
   *
   * 1. Unlocked (pinned): catch up and copy lagging replicas' unsent tail into the meta dir.
   * 2. Write lock: copy the last frames too; checkpoint. If not everything could be copied into
   *    the database file (a reader uses old frames), give up for now.
   * 3. Re-take the write lock (so the writer's read mark is 0, which lets its write restart the
   *    WAL) while the pin — taken before the checkpoint completed — stops anyone else from
   *    restarting it in between; hand the pin to a bridging read transaction, write one frame
   *    (restart), move the pin onto the new WAL.
   * In `TRUNCATE` (emergency) mode step 2 retries the checkpoint for up to busyTimeout,
   * blocking writers while waiting for readers. The restarting commit truncates the WAL file to
   * journal_size_limit either way.
   * Resolves true when the WAL was restarted.
   */
  async restartWal(mode: 'PASSIVE' | 'TRUNCATE' = 'PASSIVE'): Promise<boolean> {
    const conns = this.connections;
    if (this.#snapshotDepth > 0) return false;
    const t0 = Date.now();
    await this.scan();
    // A snapshot may have begun meanwhile: the pin must not move under it.
    if (!this.#epoch || !this.#conns || this.#snapshotDepth > 0) return false;
    const spillsBefore = this.#spills.size;
    this.#spillSync(this.#epoch);
    const e = this.#epoch;
    // Copy what can be copied without the write lock first, beside the application's writers,
    // so the checkpoint under the lock has only the frames of the last moments left. The pin
    // moves only onto frames not yet copied (see scan), so it keeps a WAL read mark. Under a
    // high write rate a pass leaves what was appended while it ran: a slow pass is followed by
    // another (at most UNLOCKED_CHECKPOINT_PASSES) while each is shorter than the one before.
    // A pass no quicker than the one before means the writer outruns the copy: more passes would
    // only grow the WAL, so the lock is taken then.
    let previousMs = Number.POSITIVE_INFINITY;
    for (let pass = 0; pass < UNLOCKED_CHECKPOINT_PASSES; pass++) {
      if (!hasUncopiedFrames(conns)) break;
      conns.repin();
      const started = performance.now();
      const r = conns.checkpoint('PASSIVE');
      const ms = performance.now() - started;
      if (r.busy !== 0 || ms < QUICK_CHECKPOINT_MS || ms >= previousMs) break;
      previousMs = ms;
    }
    // Catch up with what was appended meanwhile, so the locked section scans and keeps only the
    // last moments' frames.
    if (await this.#scanMore()) this.#lastChangeAt = Date.now();
    this.#spillSync(e);
    const lockWait = Math.min(50, this.settings.busyTimeoutMs);
    if (this.#snapshotDepth > 0 || this.#epoch !== e) {
      if (this.#spills.size !== spillsBefore && this.#epoch === e) await this.#persist();
      return false;
    }
    if (!conns.tryLockWrites(lockWait)) {
      if (this.#spills.size !== spillsBefore) await this.#persist();
      return false;
    }
    // Write lock held from here to the last unlock (both stretches, and the gap between).
    const lockedAt = performance.now();
    let checkpointed: { durationMs: number; result: CheckpointResult } | undefined;
    type Outcome = 'busy' | 'header-changed' | 'appended' | 'restarted' | 'lost';
    let outcome: Outcome = 'busy';
    let closedEnd = e.end;
    let after: Buffer | undefined;
    try {
      const hb = this.#wal.readHeaderBytesSync();
      if (!hb?.equals(e.headerBytes)) outcome = 'header-changed';
      else {
        this.#scanMoreSync();
        this.#spillSync(e);
        let r = conns.checkpoint('PASSIVE');
        const isFull = () => r.busy === 0 && r.log >= 0 && r.checkpointed === r.log;
        if (!isFull()) {
          // Move the pin to the end (not everything is copied yet, so it gets a WAL read mark),
          // then copy everything up to it.
          conns.repin();
          r = conns.checkpoint('PASSIVE');
          const deadline = Date.now() + this.settings.busyTimeoutMs;
          while (mode === 'TRUNCATE' && !isFull() && Date.now() < deadline) {
            sleepSync(10);
            r = conns.checkpoint('PASSIVE');
          }
        }
        let full = isFull();
        checkpointed = { durationMs: Date.now() - t0, result: r };
        if (full) {
          // Our writer began before the checkpoint finished, so its read mark is not 0 and its
          // write would only append. Begin again; the pin keeps others from restarting meanwhile.
          conns.unlockWrites();
          if (!conns.tryLockWrites(lockWait)) full = false;
          else if (this.#scanMoreSync()) {
            this.#spillSync(e); // someone appended in between: not this time
            full = false;
          }
        }
        if (full) {
          closedEnd = e.end;
          // Truncate the file only when that is cheap or nobody is writing (see truncateOnRestart).
          const walBytes = fsSync.statSync(this.walPath, { throwIfNoEntry: false })?.size ?? 0;
          const quiet = Date.now() - this.#lastChangeAt >= TRUNCATE_QUIET_MS;
          conns.truncateOnRestart(mode === 'TRUNCATE' || quiet || walBytes <= TRUNCATE_CHEAP_BYTES);
          this.#recordRestartIntentSync(e);
          // The pin's read mark would stop the restart; a bridging read transaction keeps
          // everyone else from restarting the WAL meanwhile (see commitRestartingWrite).
          conns.commitRestartingWrite();
          // Record the restart before anything else (even moving the pin, whose read can wait
          // on locks), so a kill -9 from here on finds a state that matches the WAL.
          const written = this.#wal.readHeaderBytesSync();
          const wh = tryParseWalHeader(written);
          const restarted = !!written && !!wh && !written.equals(e.headerBytes) && isRestartOf(wh, e.header);
          if (restarted && e.index + 1 < MAX_INDEX) this.#persistRestartSync(e.index, closedEnd, written!, wh!);
          conns.repin();
          after = this.#wal.readHeaderBytesSync();
          const ah = tryParseWalHeader(after);
          if (!after || !ah) outcome = 'lost';
          else if (after.equals(e.headerBytes)) outcome = 'appended';
          else if (restarted && after.equals(written!)) outcome = 'restarted';
          else outcome = 'lost';
        }
      }
    } finally {
      conns.unlockWrites();
      const lockHeldMs = performance.now() - lockedAt;
      if (!conns.pinned) conns.pinRead();
      if (checkpointed) this.emit('checkpoint', { mode, ...checkpointed, lockHeldMs, restarted: outcome === 'restarted' });
    }
    switch (outcome) {
      case 'header-changed':
        await this.scan(); // an unexpected restart: new generation
        return false;
      case 'busy':
      case 'appended':
        await this.#scanMore();
        if (this.#spills.size !== spillsBefore) await this.#persist();
        return false;
      case 'lost':
        await this.#newGeneration('wal restarted by another connection during checkpoint');
        return true;
      case 'restarted': {
        this.#closedEnds.set(e.index, closedEnd);
        if (e.index + 1 >= MAX_INDEX) {
          await this.#newGeneration('max index exceeded');
          return true;
        }
        const ah = parseWalHeader(after!);
        this.#epoch = await this.#scanNewEpoch(e.index + 1, after!, ah);
        this.#lastCheckpointAt = Date.now();
        await this.#pruneSpills();
        await this.#persist();
        this.emit('restart', { index: this.#epoch.index, durationMs: Date.now() - t0 });
        return true;
      }
    }
  }

  /** Synchronous scan for new commits (for use under the write lock). */
  #scanMoreSync(): boolean {
    const e = this.#epoch!;
    const r = scanCommittedFramesSync((b, n, p) => this.#wal.readAtSync(b, 0, n, p), e.header, e.end, e.checksum);
    if (r.end <= e.end) return false;
    this.#recordBoundaries(e, r.end);
    e.end = r.end;
    e.checksum = r.checksum;
    return true;
  }

  /**
   * Makes sure every replica's unsent bytes of the current index are in the meta dir (appending
   * only what is missing), synchronously. Records the spill in memory; callers persist the
   * state. The bytes survive a kill -9 once written (the page cache keeps them); the fsync
   * that makes them survive a power loss is left to {@link #syncSpills}, after the write lock
   * is released, so the application's writers never wait for it. (A power loss before it can
   * lose the spill; the next start then finds it short and takes a new snapshot — safe.)
   */
  #spillSync(e: Epoch): void {
    try {
      this.#spillSyncUnwrapped(e);
    } catch (err) {
      throw fileSystemError(`cannot keep unsent wal frames in ${spillFile(this.settings.metaPath, this.#generation, e.index)}`, err);
    }
  }

  #spillSyncUnwrapped(e: Epoch): void {
    let start = e.end;
    for (const p of this.#positions()) {
      if (!p) start = 0;
      else if (p.generation !== this.#generation)
        continue; // will take a new snapshot anyway
      else if (p.index < e.index) start = 0;
      else if (p.index === e.index) start = Math.min(start, p.offset);
    }
    if (start >= e.end) return;
    const existing = this.#spills.get(e.index);
    if (existing && existing.start <= start && existing.end >= e.end) return;
    const file = spillFile(this.settings.metaPath, this.#generation, e.index);
    const fresh = !existing || existing.start > start;
    const from = fresh ? Math.max(start, WAL_HEADER_SIZE) : existing.end;
    fsSync.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    const fd = fsSync.openSync(file, fresh ? 'w' : 'r+', 0o600);
    try {
      if (fresh) fsSync.writeSync(fd, e.headerBytes, 0, WAL_HEADER_SIZE, 0);
      const buf = Buffer.allocUnsafe(4 * READ_CHUNK);
      for (let pos = from; pos < e.end; ) {
        const n = Math.min(buf.length, e.end - pos);
        if (this.#wal.readAtSync(buf, 0, n, pos) !== n) throw new CorruptDataError(`short wal read while keeping unsent frames at ${pos}`);
        writeFullAtSync(fd, buf, 0, n, pos);
        pos += n;
      }
    } finally {
      fsSync.closeSync(fd);
    }
    this.#unsyncedSpills.add(file);
    this.#spills.set(e.index, { index: e.index, start: fresh ? start : existing.start, end: e.end });
    this.#log.debug('kept unsent wal locally', { index: e.index, start, end: e.end });
  }

  /** Makes the spills written since the last call durable (fsync of each file and its directory). */
  async #syncSpills(): Promise<void> {
    const dirs = new Set<string>();
    for (const file of [...this.#unsyncedSpills]) {
      // Unlisted first: an append while this fsync runs lists it again.
      this.#unsyncedSpills.delete(file);
      let fh: fs.FileHandle | undefined;
      try {
        fh = await fs.open(file, 'r');
        await fh.sync();
        dirs.add(path.dirname(file));
      } catch (err) {
        // Pruned meanwhile: nothing left to make durable. Otherwise listed again for the next try.
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
          this.#unsyncedSpills.add(file);
          throw fileSystemError(`cannot fsync unsent wal frames in ${file}`, err);
        }
      } finally {
        await fh?.close();
      }
    }
    for (const dir of dirs) await fsyncDir(dir);
  }

  /** Deletes spilled tails every replica has moved past. */
  async #pruneSpills(): Promise<void> {
    if (this.#spills.size === 0) return;
    const ps = this.#positions();
    let min = Number.POSITIVE_INFINITY;
    for (const p of ps) {
      // A replica whose position is not known yet (not computed from the remote since the
      // start) may need any kept tail: pruning it would cost that replica a full snapshot.
      if (!p) return;
      if (p.generation !== this.#generation) continue; // needs a new snapshot anyway
      // At the end of a closed index a replica continues at the next index's start.
      min = Math.min(min, this.#closedEnds.get(p.index) === p.offset ? p.index + 1 : p.index);
    }
    for (const [index] of this.#spills) {
      if (index < min) {
        this.#spills.delete(index);
        await fs.rm(spillFile(this.settings.metaPath, this.#generation, index), { force: true });
      }
    }
  }

  /** Called after replicas advance: prune spills and forget closed ends nobody needs. */
  async onReplicasAdvanced(): Promise<void> {
    const before = this.#spills.size;
    await this.#pruneSpills();
    if (this.#spills.size !== before && this.#epoch) await this.#persist();
  }

  /**
   * Runs `fn` with the snapshot read transaction held (so checkpoints cannot copy frames past
   * `pos` into the database file) and `source`, which reads the database file's bytes in order
   * into buffers the caller provides (see `encodeSource` in pipeline.ts).
   */
  async withSnapshot<T>(
    fn: (snap: { pos: Pos; size: number; source: { read(buf: Buffer, offset: number, length: number): Promise<number> } }) => Promise<T>,
  ): Promise<T> {
    // One snapshot at a time: they share the snapshot connection's read transaction.
    return this.#snapshotMutex.run(async () => {
      const conns = this.connections;
      const db = conns.snapshotReader;
      // Copy what the pin allows into the database file first, so no checkpoint has anything
      // left to write into it while the snapshot streams (the pin does not move meanwhile).
      conns.checkpoint('PASSIVE');
      db.exec('BEGIN');
      this.#snapshotDepth++;
      let advanced = false;
      try {
        db.prepare('SELECT COUNT(1) FROM _litestream_seq').get();
        // The pin does not move while snapshotting, so checkpoints copy nothing past its read
        // mark into the file. The pin may have begun after the last scan, on frames committed
        // since: scan to the WAL's end now, so `pos` is at or past everything the file can hold.
        if (this.#epoch && (await this.#scanMore())) {
          this.#lastChangeAt = Date.now();
          advanced = true;
        }
        const pos = this.pos;
        const size = (await conns.dbFile.stat()).size;
        const fh = conns.dbFile;
        // Read straight into the consumer's buffers (the LZ4 encoder's reused block): a
        // snapshot allocates nothing per chunk, whatever the database size.
        let off = 0;
        const source = {
          async read(buf: Buffer, offset: number, length: number): Promise<number> {
            const n = Math.min(length, size - off);
            if (n <= 0) return 0;
            const got = await readFullAt(fh, buf, offset, n, off);
            // Short: truncated by a checkpoint; the WAL replay restores the rest.
            off = got < n ? size : off + got;
            return got;
          },
        };
        return await fn({ pos, size, source });
      } finally {
        this.#snapshotDepth--;
        if (db.inTransaction) db.exec('COMMIT');
        // Frames this scan found (rather than the monitor's) are not under the pin yet.
        if (advanced && this.#snapshotDepth === 0 && this.#conns === conns && hasUncopiedFrames(conns)) conns.repin();
      }
    });
  }

  /**
   * Clean stop: with every replica at the end (or its tail spilled), checkpoint everything
   * under the write lock and record the database fingerprint, so the next start continues the
   * generation even if the application later deletes the WAL.
   */
  async close(opts: { clean: boolean }): Promise<void> {
    if (!this.#conns) return;
    if (opts.clean && this.#epoch) {
      try {
        await this.#cleanStop();
      } catch (err) {
        this.#log.warn('clean stop record skipped', { db: this.dbPath, error: String(err) });
      }
    }
    await this.#closeConnections();
  }

  async #cleanStop(): Promise<void> {
    const conns = this.connections;
    await this.scan();
    if (!this.#epoch) return;
    this.#spillSync(this.#epoch);
    if (!conns.tryLockWrites(Math.min(this.settings.busyTimeoutMs, 500))) return;
    let record: MetaState['cleanStop'];
    try {
      const hb = this.#wal.readHeaderBytesSync();
      if (!hb?.equals(this.#epoch.headerBytes)) return;
      this.#scanMoreSync();
      const e = this.#epoch;
      this.#spillSync(e);
      conns.unpin();
      const r = conns.checkpoint('PASSIVE');
      if (!(r.busy === 0 && r.checkpointed === r.log)) return;
      // Let the coarse file-time clock tick past the checkpoint's writes, so that any later
      // write to the database file is guaranteed to change its mtime.
      sleepSync(25);
      const st = fsSync.fstatSync(conns.dbFile.fd, { bigint: true });
      record = {
        end: e.end,
        fingerprint: { dev: Number(st.dev), ino: Number(st.ino), size: Number(st.size), mtimeNs: st.mtimeNs.toString() },
      };
    } finally {
      conns.unlockWrites();
    }
    if (record) await this.#persist({ cleanStop: record });
  }

  /**
   * Milliseconds until `shedConnections()` may close something: undefined when only the pin
   * connection is open (or none).
   */
  shedDueInMs(): number | undefined {
    const c = this.#conns;
    if (!c || c.openCount <= 1) return undefined;
    return Math.max(0, Math.max(this.#lastChangeAt, this.#lastCheckpointAt) + SHED_IDLE_MS - Date.now());
  }

  /**
   * Closes the connections an idle database does not need (all but the pin's; see
   * `DbConnections.shed`), when it has been idle for SHED_IDLE_MS and no snapshot streams.
   * Returns how many it closed.
   */
  shedConnections(): number {
    const due = this.shedDueInMs();
    if (due === undefined || due > 0 || this.#snapshotDepth > 0) return 0;
    return this.#conns!.shed();
  }

  async #closeConnections(): Promise<void> {
    const c = this.#conns;
    this.#conns = undefined;
    await this.#wal.close();
    await c?.close();
  }
}

/**
 * True when the WAL holds frames not yet copied into the database file (or when that cannot be
 * read): only then does a read transaction begun now take a WAL read mark that keeps anyone else
 * from restarting the WAL (see readWalIndexSync).
 */
function hasUncopiedFrames(conns: DbConnections): boolean {
  const wi = conns.shmFd >= 0 ? readWalIndexSync(conns.shmFd) : undefined;
  return !wi || wi.mxFrame > wi.nBackfill;
}
