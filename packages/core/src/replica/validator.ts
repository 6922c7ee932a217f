import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { WalEngine } from '../db/engine.js';
import { errorMessage, WalshipError } from '../errors.js';
import type { Logger } from '../logger.js';
import { formatPos, type Pos } from '../pos.js';
import { restoreWith } from '../restore/restore.js';
import { RestoreError } from '../restore/errors.js';
import type { ValidationEvent } from '../replicator-types.js';
import { sleep } from '../util/async.js';
import { readFullAt, writeFullAt } from '../util/fs.js';
import { WAL_FRAME_HEADER_SIZE, WAL_HEADER_SIZE } from '../wal/format.js';
import type { Replica } from './replica.js';

/** Bytes of each page's digest (SHA-256, truncated). */
const DIGEST_BYTES = 16;
/** Pages hashed per read: small enough that one chunk costs well under a millisecond of CPU. */
const PAGES_PER_CHUNK = 64;
/** Digests buffered before they are appended to the digest file. */
const DIGEST_FLUSH_BYTES = 1024 * 1024;
/** Segment downloads in flight while validating (restore's default is 8): validation is background work. */
const VALIDATION_PARALLELISM = 2;
/** Mismatched page numbers listed in the event and the log line. */
const LISTED_PAGES = 10;

/** Why a validation could not compare (not a mismatch). */
class Skip extends Error {}

/** Names of every file a validation creates in the meta directory (its own and its restore's). */
const LEFTOVER_RE = /^\.?validation-/;

/**
 * Removes what validations interrupted by a kill -9 left in `metaPath`: the digest file, the
 * restored database and the restore's own temp files (`.validation-….db.tmp.walship-restore-…`,
 * its `.spill`, `-wal`, `-shm`; the restore's janitor usually removed those already). Only
 * call it while holding the meta directory's replication lock and before any validation runs.
 */
export async function removeValidationLeftovers(metaPath: string): Promise<void> {
  let names: string[];
  try {
    names = await fs.readdir(metaPath);
  } catch {
    return;
  }
  await Promise.all(
    names.filter((n) => LEFTOVER_RE.test(n)).map((n) => fs.rm(path.join(metaPath, n), { force: true, recursive: true }).catch(() => {})),
  );
}

export interface ValidatorSettings {
  readonly intervalMs: number;
  /** Meta directory: temp files live here (`validation-*.tmp`, removed at the next start after a kill -9). */
  readonly metaPath: string;
  /** How long to wait for the replica to reach the position taken locally. */
  readonly waitTimeoutMs: number;
  readonly logger: Logger;
}

interface LocalDigest {
  readonly pos: Pos;
  readonly pageSize: number;
  readonly pages: number;
  /** How long the snapshot read transaction was held (WAL restarts wait meanwhile). */
  readonly holdMs: number;
}

function digest(page: Buffer): Buffer {
  return createHash('sha256').update(page).digest().subarray(0, DIGEST_BYTES);
}

/**
 * Digests of the newest version of each page in the WAL: one slot of DIGEST_BYTES per distinct
 * page in one growing buffer (a Map of small numbers, not of Buffers: ~50 bytes per page).
 */
class PageDigests {
  readonly #slot = new Map<number, number>();
  #buf = Buffer.allocUnsafe(1024 * DIGEST_BYTES);

  set(pgno: number, d: Buffer): void {
    let slot = this.#slot.get(pgno);
    if (slot === undefined) {
      slot = this.#slot.size;
      if ((slot + 1) * DIGEST_BYTES > this.#buf.length) {
        const bigger = Buffer.allocUnsafe(this.#buf.length * 2);
        this.#buf.copy(bigger);
        this.#buf = bigger;
      }
      this.#slot.set(pgno, slot);
    }
    d.copy(this.#buf, slot * DIGEST_BYTES, 0, DIGEST_BYTES);
  }

  /** Copies the page's digest to `out[at]`; false when the page is not in the WAL. */
  copyTo(pgno: number, out: Buffer, at: number): boolean {
    const slot = this.#slot.get(pgno);
    if (slot === undefined) return false;
    this.#buf.copy(out, at, slot * DIGEST_BYTES, (slot + 1) * DIGEST_BYTES);
    return true;
  }
}

/**
 * `validation-interval`: restores one replica to a position walship holds locally and compares
 * it page by page with the local database at that same position.
 *
 * 1. Local side, inside the engine's snapshot read transaction (`withSnapshot`, which also
 *    keeps controlled WAL restarts away): `pos` is the WAL end; the database file holds no frame
 *    past `pos` (checkpoints copy at most up to the readers' marks, all ≤ `pos`). The database
 *    at `pos` is the file overlaid with the newest version of each page in the current WAL
 *    index's frames before `pos` (every one committed, since `pos` ends a commit), cut to the
 *    size of the last commit frame. One SHA-256 digest (16 bytes) per page goes to a temp file.
 *    The transaction is released; nothing local is needed any more.
 * 2. Wait (bounded) until the replica has uploaded up to `pos`.
 * 3. Restore the replica to exactly `pos` (restore's `index` + `offset`), streamed, into a temp
 *    file, and compare its pages' digests with the local ones.
 *
 * No false positives: both sides are the same logical position. Snapshot and retention runs of
 * this replica are held back while a validation runs (see `maintenance`), so the snapshot the
 * restore uses was taken at or before `pos` and nothing it needs is deleted; a snapshot this
 * replica still has to take meanwhile (its WAL was lost locally) taints the run, which is then
 * skipped, as are a generation change, a lost lease, a timeout and storage errors.
 */
export class ReplicaValidator {
  readonly replica: Replica;
  readonly settings: ValidatorSettings;
  readonly #engine: WalEngine;
  /** True from the start of a validation to its end: snapshot/retention runs are skipped meanwhile. */
  #busy = false;
  #maintaining: Promise<void> | undefined;
  #tainted: string | undefined;
  #watchPos: Pos | undefined;

  constructor(replica: Replica, engine: WalEngine, settings: ValidatorSettings) {
    this.replica = replica;
    this.#engine = engine;
    this.settings = settings;
  }

  get busy(): boolean {
    return this.#busy;
  }

  /**
   * Runs the replica's snapshot/retention work `fn` unless a validation is running (then it is
   * skipped and runs at the next turn of the replica loop). A validation that starts while `fn`
   * runs waits for it.
   */
  async maintenance(fn: () => Promise<void>): Promise<void> {
    if (this.#busy) return;
    const p = fn();
    this.#maintaining = p.then(
      () => {},
      () => {},
    );
    try {
      await p;
    } finally {
      this.#maintaining = undefined;
    }
  }

  /** One validation. Never throws: failures to compare are `skipped`, with the reason. */
  async validate(signal: AbortSignal): Promise<ValidationEvent> {
    const t0 = performance.now();
    const tag = `${process.pid}-${randomBytes(4).toString('hex')}`;
    const digestPath = path.join(this.settings.metaPath, `validation-${tag}.digest.tmp`);
    const restoredPath = path.join(this.settings.metaPath, `validation-${tag}.db.tmp`);
    const name = this.replica.name;
    let pos: Pos = this.#engine.pos;
    let pages = 0;
    let holdMs: number | undefined;
    let snapshotIndex: number | undefined;
    const done = (result: ValidationEvent['result'], extra: Partial<ValidationEvent> = {}): ValidationEvent => ({
      replica: name,
      result,
      pos,
      pages,
      mismatchedPages: 0,
      durationMs: Math.round(performance.now() - t0),
      ...(holdMs !== undefined ? { localHoldMs: Math.round(holdMs) } : {}),
      ...(snapshotIndex !== undefined ? { snapshotIndex } : {}),
      ...extra,
    });
    this.#busy = true;
    this.#tainted = undefined;
    this.replica.onSnapshotStart = (p) => {
      const w = this.#watchPos;
      if (w && p.generation === w.generation && p.index <= w.index)
        this.#tainted ??= `the replica took a snapshot of wal index ${p.index} meanwhile`;
    };
    try {
      await this.#maintaining;
      if (!this.#engine.isOpen || !this.#engine.generation) throw new Skip('the database is not open');
      // Positions before a generation's first snapshot on the replica cannot be restored from it
      // (its first snapshot may come several WAL indexes into the generation): wait for it.
      if (this.replica.restorablePos?.generation !== this.#engine.generation)
        throw new Skip('the replica has no snapshot of this generation yet');
      await fs.mkdir(this.settings.metaPath, { recursive: true, mode: 0o700 });

      // 1. The local database at `pos`, as page digests.
      const local = await this.#digestLocal(digestPath);
      pos = local.pos;
      pages = local.pages;
      holdMs = local.holdMs;

      // 2. The replica must hold everything up to `pos`.
      await this.#waitForReplica(pos, signal);

      // 3. Restore exactly `pos` and compare.
      let restoredTo: Pos | undefined;
      try {
        // No decode worker threads: validation is background work on a shared machine.
        const res = await restoreWith(
          {
            outputPath: restoredPath,
            replicas: [{ name, client: this.replica.settings.client, stages: this.replica.settings.stages }],
            replicaName: name,
            generation: pos.generation,
            index: pos.index,
            offset: pos.offset,
            verify: 'none',
            overwrite: true,
            parallelism: VALIDATION_PARALLELISM,
            logger: quiet(this.settings.logger),
            signal,
          },
          { workers: 0 },
        );
        restoredTo = res.restoredTo;
        snapshotIndex = res.snapshotIndex;
      } catch (err) {
        if (signal.aborted) throw new Skip('the replicator stopped');
        if (this.#tainted) throw new Skip(this.#tainted);
        if (this.#engine.generation !== pos.generation) throw new Skip(`the generation changed while the replica was restored`);
        if (err instanceof RestoreError && (err.code === 'WALSHIP_RESTORE_DAMAGED' || err.code === 'WALSHIP_RESTORE_NO_BACKUPS')) {
          return done('mismatch', { reason: `the replica cannot be restored to ${formatPos(pos)}: ${err.message}` });
        }
        throw new Skip(`restore failed: ${errorMessage(err)}`);
      }
      if (this.#tainted) throw new Skip(this.#tainted);
      if (!restoredTo || restoredTo.generation !== pos.generation || restoredTo.index !== pos.index || restoredTo.offset !== pos.offset) {
        return done('mismatch', {
          reason: `the replica restores to ${restoredTo ? formatPos(restoredTo) : 'nothing'}, not to ${formatPos(pos)}`,
        });
      }
      const cmp = await this.#compare(restoredPath, digestPath, local);
      if (cmp.reason !== undefined || cmp.mismatched.length > 0) {
        return done('mismatch', {
          mismatchedPages: cmp.count,
          ...(cmp.mismatched.length > 0 ? { mismatchedPageNumbers: cmp.mismatched } : {}),
          reason: cmp.reason ?? `${cmp.count} of ${pages} pages differ (first: ${cmp.mismatched.join(', ')})`,
        });
      }
      return done('ok');
    } catch (err) {
      if (err instanceof Skip) return done('skipped', { reason: err.message });
      if (signal.aborted) return done('skipped', { reason: 'the replicator stopped' });
      return done('skipped', { reason: errorMessage(err) });
    } finally {
      this.replica.onSnapshotStart = undefined;
      this.#watchPos = undefined;
      this.#busy = false;
      for (const p of [digestPath, restoredPath, `${restoredPath}-wal`, `${restoredPath}-shm`])
        await fs.rm(p, { force: true }).catch(() => {});
    }
  }

  /**
   * Digests of every page of the local database at the snapshot position, written to
   * `digestPath`. Holds the snapshot read transaction while it reads the current WAL index up
   * to `pos` and the database file once.
   */
  #digestLocal(digestPath: string): Promise<LocalDigest> {
    const engine = this.#engine;
    return engine.withSnapshot(async ({ pos, size, source }) => {
      const t0 = performance.now();
      // Snapshots of this replica from here on may hold pages past `pos`.
      this.#watchPos = pos;
      const pageSize = engine.pageSize;
      if (!pageSize) throw new Skip('the page size is not known yet');
      // A WAL index without a commit yet (only its header): no restore ends exactly here.
      if (pos.offset <= WAL_HEADER_SIZE) throw new Skip(`wal index ${pos.index} holds no commit yet`);
      // The newest committed version of each page in the current index's WAL before `pos`.
      const walPages = new PageDigests();
      let dbPages: number | undefined;
      const frameSize = WAL_FRAME_HEADER_SIZE + pageSize;
      const frame = Buffer.allocUnsafe(frameSize);
      const header = Buffer.allocUnsafe(WAL_HEADER_SIZE);
      let fill = 0; // bytes in `frame` (or `header` while off < 32)
      let off = 0;
      while (off < pos.offset) {
        const src = engine.sourceFor({ ...pos, offset: off });
        if (src.kind !== 'data' || src.index !== pos.index)
          throw new Skip(`the local wal moved on (${src.kind === 'unavailable' ? src.reason : src.kind})`);
        const end = Math.min(src.end, pos.offset);
        for await (const raw of engine.openSegment({ ...src, end })) {
          const chunk = raw as Buffer;
          let i = 0;
          while (i < chunk.length) {
            if (off < WAL_HEADER_SIZE) {
              const n = Math.min(WAL_HEADER_SIZE - off, chunk.length - i);
              chunk.copy(header, off, i, i + n);
              i += n;
              off += n;
              continue;
            }
            const n = Math.min(frameSize - fill, chunk.length - i);
            chunk.copy(frame, fill, i, i + n);
            fill += n;
            i += n;
            off += n;
            if (fill < frameSize) continue;
            fill = 0;
            if (frame.readUInt32BE(8) !== header.readUInt32BE(16) || frame.readUInt32BE(12) !== header.readUInt32BE(20)) {
              throw new Skip('the local wal was restarted while it was read');
            }
            const pgno = frame.readUInt32BE(0);
            const commit = frame.readUInt32BE(4);
            walPages.set(pgno, digest(frame.subarray(WAL_FRAME_HEADER_SIZE)));
            if (commit !== 0) dbPages = commit;
          }
        }
      }
      if (fill !== 0) throw new WalshipError('WALSHIP_CORRUPT', `local wal position ${formatPos(pos)} is not on a frame boundary`);
      const pages = dbPages ?? Math.floor(size / pageSize);
      const fh = await fs.open(digestPath, 'w', 0o600);
      try {
        const buf = Buffer.allocUnsafe(PAGES_PER_CHUNK * pageSize);
        const out = Buffer.allocUnsafe(DIGEST_FLUSH_BYTES);
        let outLen = 0;
        let written = 0;
        let fileLeft = Math.min(size, pages * pageSize); // bytes of the file that hold pages ≤ `pages`
        let pgno = 1;
        while (pgno <= pages) {
          const want = Math.min(PAGES_PER_CHUNK, pages - pgno + 1);
          let got = 0;
          const fileBytes = Math.min(fileLeft, want * pageSize);
          while (got < fileBytes) {
            const n = await source.read(buf, got, fileBytes - got);
            if (n <= 0) break;
            got += n;
          }
          fileLeft -= fileBytes;
          // Bytes missing from the file (shorter than the database, or cut by a checkpoint's
          // truncation) are zeros, as restore leaves them; such pages are in the WAL anyway.
          if (got < want * pageSize) buf.fill(0, got, want * pageSize);
          for (let k = 0; k < want; k++, pgno++) {
            if (!walPages.copyTo(pgno, out, outLen)) digest(buf.subarray(k * pageSize, (k + 1) * pageSize)).copy(out, outLen);
            outLen += DIGEST_BYTES;
            if (outLen === out.length) {
              await writeFullAt(fh, out, 0, outLen, written);
              written += outLen;
              outLen = 0;
            }
          }
        }
        if (outLen > 0) await writeFullAt(fh, out, 0, outLen, written);
      } finally {
        await fh.close();
      }
      return { pos, pageSize, pages, holdMs: performance.now() - t0 };
    });
  }

  async #waitForReplica(pos: Pos, signal: AbortSignal): Promise<void> {
    const deadline = Date.now() + this.settings.waitTimeoutMs;
    while (!this.replica.reached(pos)) {
      if (signal.aborted) throw new Skip('the replicator stopped');
      if (this.#engine.generation !== pos.generation) throw new Skip(`the generation changed before the replica reached ${formatPos(pos)}`);
      if (this.replica.lease.lostError) throw new Skip(`the replica's lease was lost: ${this.replica.lease.lostError.message}`);
      if (Date.now() >= deadline) throw new Skip(`replica did not reach ${formatPos(pos)} within ${this.settings.waitTimeoutMs} ms`);
      await sleep(100, signal).catch(() => {});
    }
  }

  /** Compares the restored file's pages with the local digests. */
  async #compare(
    restoredPath: string,
    digestPath: string,
    local: LocalDigest,
  ): Promise<{ count: number; mismatched: number[]; reason?: string }> {
    const { pageSize, pages } = local;
    const rf = await fs.open(restoredPath, 'r');
    const df = await fs.open(digestPath, 'r');
    try {
      const size = (await rf.stat()).size;
      if (size !== pages * pageSize) {
        return { count: 0, mismatched: [], reason: `the restored database has ${size / pageSize} pages, the local one ${pages}` };
      }
      const buf = Buffer.allocUnsafe(PAGES_PER_CHUNK * pageSize);
      const dbuf = Buffer.allocUnsafe(PAGES_PER_CHUNK * DIGEST_BYTES);
      const mismatched: number[] = [];
      let count = 0;
      for (let pgno = 1; pgno <= pages; pgno += PAGES_PER_CHUNK) {
        const n = Math.min(PAGES_PER_CHUNK, pages - pgno + 1);
        await readExactly(rf, buf, n * pageSize, (pgno - 1) * pageSize);
        await readExactly(df, dbuf, n * DIGEST_BYTES, (pgno - 1) * DIGEST_BYTES);
        for (let k = 0; k < n; k++) {
          const d = digest(buf.subarray(k * pageSize, (k + 1) * pageSize));
          if (!d.equals(dbuf.subarray(k * DIGEST_BYTES, (k + 1) * DIGEST_BYTES))) {
            count++;
            if (mismatched.length < LISTED_PAGES) mismatched.push(pgno + k);
          }
        }
      }
      return { count, mismatched };
    } finally {
      await rf.close();
      await df.close();
    }
  }
}

async function readExactly(fh: fs.FileHandle, buf: Buffer, len: number, position: number): Promise<void> {
  const got = await readFullAt(fh, buf, 0, len, position);
  if (got < len) throw new WalshipError('WALSHIP_CORRUPT', `short read of a validation temp file at ${position + got}`);
}

/** Restore's progress lines are debug output here: a validation runs every interval. */
function quiet(log: Logger): Logger {
  return { debug: log.debug.bind(log), info: log.debug.bind(log), warn: log.warn.bind(log), error: log.error.bind(log) };
}
