import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { BackendError, errorMessage, LeaseError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { Pos } from '../pos.js';
import type { ReplicaClient, SnapshotInfo, WALSegmentInfo, WalSegmentsOptions } from '../replica-client.js';
import { Mutex, sleep } from '../util/async.js';
import { writeFileAtomic } from '../util/fs.js';

/** Default lease time to live: a crashed writer's lease is free for another host after this. */
export const DEFAULT_LEASE_TTL_MS = 60_000;
/** Smallest accepted TTL (tests use short ones; production should keep the default). */
export const MIN_LEASE_TTL_MS = 1_000;
/** File in the meta directory naming this database's walship across restarts. */
const INSTANCE_FILE = 'lease-instance';
const LEASE_FORMAT = 1;
/** Attempts to take a lease that keeps changing under us before reporting a retryable error. */
const ACQUIRE_ATTEMPTS = 4;

/**
 * The lease object's content (one JSON object). Times are the writer's wall clock, ISO 8601.
 * Only `owner`, `instance`, `released` and `expiresAt` decide anything; the rest is for people.
 */
export interface LeaseRecord {
  readonly walship: 'lease';
  readonly format: number;
  /** Random per replicator start: which running walship wrote this. */
  readonly owner: string;
  /** Random per meta directory (kept in `<meta>/lease-instance`): the same database's walship across restarts. */
  readonly instance: string;
  readonly host: string;
  readonly pid: number;
  /** Database path on the writer's host. */
  readonly db: string;
  /** Replica name in the writer's configuration. */
  readonly replica: string;
  /** The writer's generation when this was written ('' before the database exists). */
  readonly generation: string;
  readonly acquiredAt: string;
  readonly renewedAt: string;
  /** After this time another writer may take the lease over without `takeover`. */
  readonly expiresAt: string;
  readonly ttlMs: number;
  /** Written by a clean stop: the lease is free at once. */
  readonly released?: boolean;
  /** Owner whose live lease this one replaced by a forced takeover. */
  readonly tookOverFrom?: string;
}

/** Parses a stored lease; undefined when it is not a walship lease this version understands. */
export function parseLeaseRecord(body: string): LeaseRecord | undefined {
  let v: unknown;
  try {
    v = JSON.parse(body);
  } catch {
    return undefined;
  }
  const r = v as Partial<LeaseRecord> | null;
  if (!r || typeof r !== 'object' || r.walship !== 'lease' || r.format !== LEASE_FORMAT) return undefined;
  if (typeof r.owner !== 'string' || typeof r.instance !== 'string' || typeof r.expiresAt !== 'string') return undefined;
  if (Number.isNaN(Date.parse(r.expiresAt))) return undefined;
  return r as LeaseRecord;
}

/** `walship on host h (pid 1, db /data/app.db), lease renewed …, expires …` */
export function describeLeaseHolder(r: LeaseRecord): string {
  return `walship on host ${r.host} (pid ${r.pid}, db ${r.db}), lease renewed ${r.renewedAt}, expires ${r.expiresAt}`;
}

export interface LeaseSettings {
  /** The replica's own client (not the guarded one). */
  readonly client: ReplicaClient;
  readonly replica: string;
  readonly dbPath: string;
  readonly metaPath: string;
  /** Time to live; 0 turns leases off for this replica. */
  readonly ttlMs: number;
  /** Replace another writer's live lease (planned failover). */
  readonly takeover: boolean;
  readonly logger: Logger;
  readonly generation: () => string;
  /** Reports each storage request (for the operation metrics). */
  readonly onRequest: (op: 'GET' | 'PUT') => void;
}

type State = 'none' | 'held' | 'lost';

/**
 * One replica's lease: the record in the replica that says which walship writes to it.
 *
 * - Taken before the replica's first write (`begin`, at each sync until held): read it; create
 *   it if absent, or replace it — conditionally on the version read — when it was released,
 *   has expired, was written by an earlier run of this same database (same meta directory; the
 *   process lock proves that run is dead), or when `takeover` is set (then the first upload
 *   waits ¾ TTL, so the previous holder's last uploads land first). Otherwise `LeaseError`
 *   `WALSHIP_LEASE_HELD`.
 * - Renewed only before a write (`guard`), when older than half its TTL, and during writes
 *   that last longer; conditionally on the version this writer holds. A failed renewal means
 *   another writer took the lease: `LeaseError` `WALSHIP_LEASE_LOST`, for good.
 * - Released by a clean stop (`release`).
 *
 * Under constant writes that is one conditional write per TTL/2; an idle replica sends nothing.
 */
export class ReplicaLease {
  readonly #s: LeaseSettings;
  readonly #owner = randomBytes(8).toString('hex');
  readonly #mutex = new Mutex();
  readonly #log: Logger;
  #state: State = 'none';
  #instance: string | undefined;
  #version: string | undefined;
  #record: LeaseRecord | undefined;
  /** performance.now() when the write of the held version was sent. */
  #sentAt = Number.NEGATIVE_INFINITY;
  /** No write before this performance.now() (after a forced takeover). */
  #holdUntil = 0;
  #holdLogged = false;
  #lost: LeaseError | undefined;
  /** The store ignored a create-if-absent precondition: read before every renewal. */
  #advisory = false;
  #probed = false;
  #warnedUnsupported = false;

  constructor(settings: LeaseSettings) {
    this.#s = settings;
    this.#log = settings.logger;
  }

  /** False when this replica runs without a lease (turned off, or a client without lease support). */
  get enabled(): boolean {
    return this.#s.ttlMs > 0 && supportsLeases(this.#s.client);
  }

  /** `held`, `lost`, `none`, or `off` (see `enabled`). */
  get state(): State | 'off' {
    return this.enabled ? this.#state : 'off';
  }

  /** Set once another writer took the lease over: every later write fails with it. */
  get lostError(): LeaseError | undefined {
    return this.#lost;
  }

  /** The held record's version token (tests and diagnostics). */
  get version(): string | undefined {
    return this.#version;
  }

  /**
   * Called at the start of each sync: takes the lease when not held. Resolves false while the
   * first upload must still wait after a forced takeover.
   * @throws LeaseError when another walship holds or took the lease; BackendError when the store fails
   */
  async begin(): Promise<boolean> {
    if (this.#lost) throw this.#lost;
    if (!this.#checkEnabled()) return true;
    if (this.#state !== 'held') {
      await this.#mutex.run(async () => {
        if (this.#lost) throw this.#lost;
        if (this.#state !== 'held') await this.#acquire();
      });
    }
    const wait = this.#holdUntil - performance.now();
    if (wait <= 0) return true;
    if (!this.#holdLogged) {
      this.#holdLogged = true;
      this.#log.warn('first upload after the forced lease takeover is held back, so the previous writer’s last uploads land first', {
        replica: this.#s.replica,
        waitMs: Math.ceil(wait),
      });
    }
    return false;
  }

  /**
   * Before every write or delete: the lease is held, fresh (renewed if older than TTL/2) and
   * not in its post-takeover wait.
   * @throws LeaseError, BackendError as `begin`
   */
  async ensure(): Promise<void> {
    if (this.#lost) throw this.#lost;
    if (!this.#checkEnabled()) return;
    await this.#mutex.run(async () => {
      if (this.#lost) throw this.#lost;
      if (this.#state !== 'held') await this.#acquire();
      else if (this.#stale()) await this.#renew();
    });
    const wait = this.#holdUntil - performance.now();
    if (wait > 0) await sleep(wait);
  }

  /**
   * Wraps the replica's client: every write and delete first `ensure`s the lease, and a write
   * that lasts past TTL/2 renews it meanwhile. Reads pass through.
   */
  guard(inner: ReplicaClient): ReplicaClient {
    const write = <T>(body: Readable | undefined, fn: () => Promise<T>): Promise<T> => this.#write(body, fn);
    return {
      type: inner.type,
      ...(inner.capabilities ? { capabilities: inner.capabilities } : {}),
      generations: () => inner.generations(),
      deleteGeneration: (generation: string) => write(undefined, () => inner.deleteGeneration(generation)),
      snapshots: (generation: string) => inner.snapshots(generation),
      writeSnapshot: (generation: string, index: number, body: Readable): Promise<SnapshotInfo> =>
        write(body, () => inner.writeSnapshot(generation, index, body)),
      snapshotReader: (generation: string, index: number) => inner.snapshotReader(generation, index),
      deleteSnapshot: (generation: string, index: number) => write(undefined, () => inner.deleteSnapshot(generation, index)),
      walSegments: (generation: string, options?: WalSegmentsOptions) => inner.walSegments(generation, options),
      writeWALSegment: (pos: Pos, body: Readable): Promise<WALSegmentInfo> => write(body, () => inner.writeWALSegment(pos, body)),
      walSegmentReader: (pos: Pos) => inner.walSegmentReader(pos),
      deleteWALSegments: (positions: readonly Pos[]) => write(undefined, () => inner.deleteWALSegments(positions)),
    };
  }

  /** Marks the lease free (a clean stop), so another host may take it at once. Never throws. */
  async release(): Promise<void> {
    await this.#mutex.run(async () => {
      const record = this.#record;
      const version = this.#version;
      if (this.#state !== 'held' || !record || version === undefined) return;
      this.#state = 'none';
      this.#record = undefined;
      this.#version = undefined;
      this.#holdUntil = 0;
      const now = new Date().toISOString();
      const body: LeaseRecord = { ...record, released: true, renewedAt: now, expiresAt: now, generation: this.#s.generation() };
      try {
        this.#s.onRequest('PUT');
        const v = await this.#s.client.writeLease!(`${JSON.stringify(body)}\n`, version);
        if (v === null) this.#log.warn('lease changed before it could be released', { replica: this.#s.replica });
        else this.#log.info('lease released', { replica: this.#s.replica });
      } catch (err) {
        this.#log.warn('cannot release the lease; it expires on its own', {
          replica: this.#s.replica,
          expires: record.expiresAt,
          error: errorMessage(err),
        });
      }
    });
  }

  #checkEnabled(): boolean {
    if (this.#s.ttlMs <= 0) return false;
    if (supportsLeases(this.#s.client)) return true;
    if (!this.#warnedUnsupported) {
      this.#warnedUnsupported = true;
      this.#log.warn('replica client has no lease support: a second walship writing to this replica would not be detected', {
        replica: this.#s.replica,
        type: this.#s.client.type,
      });
    }
    return false;
  }

  #stale(): boolean {
    return performance.now() - this.#sentAt >= this.#s.ttlMs / 2;
  }

  async #write<T>(body: Readable | undefined, fn: () => Promise<T>): Promise<T> {
    try {
      await this.ensure();
    } catch (err) {
      body?.destroy();
      throw err;
    }
    if (this.#state !== 'held') return fn();
    // A long write (a large snapshot): renew on time meanwhile, so the lease never runs out
    // under it. A renewal that finds the lease taken marks it lost; the write cannot be recalled.
    const every = Math.max(50, this.#s.ttlMs / 8);
    const timer = setInterval(() => {
      if (this.#state !== 'held' || !this.#stale()) return;
      this.#mutex
        .run(async () => {
          if (this.#state === 'held' && this.#stale()) await this.#renew();
        })
        .catch((err: unknown) => {
          if (!(err instanceof LeaseError))
            this.#log.warn('lease renewal during an upload failed; retried', { replica: this.#s.replica, error: errorMessage(err) });
        });
    }, every);
    timer.unref?.();
    let out: T;
    try {
      out = await fn();
    } finally {
      clearInterval(timer);
    }
    if (this.#lost) throw this.#lost;
    return out;
  }

  async #instanceId(): Promise<string> {
    if (this.#instance) return this.#instance;
    const file = path.join(this.#s.metaPath, INSTANCE_FILE);
    try {
      const text = (await fs.readFile(file, 'utf8')).trim();
      if (/^[0-9a-f]{16}$/.test(text)) return (this.#instance = text);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    const id = randomBytes(8).toString('hex');
    await fs.mkdir(this.#s.metaPath, { recursive: true, mode: 0o700 });
    await writeFileAtomic(file, `${id}\n`, 0o600, 'walship lease instance');
    return (this.#instance = id);
  }

  #newRecord(instance: string, acquiredAt: string, tookOverFrom?: string): LeaseRecord {
    const now = Date.now();
    return {
      walship: 'lease',
      format: LEASE_FORMAT,
      owner: this.#owner,
      instance,
      host: os.hostname(),
      pid: process.pid,
      db: this.#s.dbPath,
      replica: this.#s.replica,
      generation: this.#s.generation(),
      acquiredAt,
      renewedAt: new Date(now).toISOString(),
      expiresAt: new Date(now + this.#s.ttlMs).toISOString(),
      ttlMs: this.#s.ttlMs,
      ...(tookOverFrom ? { tookOverFrom } : {}),
    };
  }

  async #read(): Promise<{ version: string; record: LeaseRecord | undefined; body: string } | undefined> {
    this.#s.onRequest('GET');
    const cur = await this.#s.client.readLease!();
    return cur ? { version: cur.version, record: parseLeaseRecord(cur.body), body: cur.body } : undefined;
  }

  async #acquire(): Promise<void> {
    const client = this.#s.client;
    const instance = await this.#instanceId();
    const name = this.#s.replica;
    for (let attempt = 0; attempt < ACQUIRE_ATTEMPTS; attempt++) {
      const cur = await this.#read();
      let how: 'created' | 'released' | 'expired' | 'restarted' | 'forced';
      const prev = cur?.record;
      if (!cur) how = 'created';
      else if (!prev) {
        if (!this.#s.takeover) {
          throw new LeaseError(
            'WALSHIP_LEASE_HELD',
            `replica "${name}" has a lease object walship cannot read (another tool, or a newer walship): ${JSON.stringify(cur.body.slice(0, 80))}: ` +
              'take it over if no other walship writes to this replica (replica option takeover: true, walship replicate -force)',
          );
        }
        how = 'forced';
      } else if (prev.released) how = 'released';
      else if (prev.owner === this.#owner) {
        // Our own write landed although its reply was lost: hold it, renew at the next write.
        this.#hold(cur.version, prev, Number.NEGATIVE_INFINITY);
        await this.#probe();
        return;
      } else if (Date.parse(prev.expiresAt) <= Date.now()) how = 'expired';
      else if (prev.instance === instance) how = 'restarted';
      else if (this.#s.takeover) how = 'forced';
      else {
        throw new LeaseError(
          'WALSHIP_LEASE_HELD',
          `replica "${name}" is written by another ${describeLeaseHolder(prev)}: stop that one (a clean stop releases its lease), ` +
            'wait until its lease expires, or take it over for a planned failover (replica option takeover: true, walship replicate -force)',
        );
      }
      const record = this.#newRecord(instance, new Date().toISOString(), how === 'forced' ? (prev?.owner ?? 'unknown') : undefined);
      const sentAt = performance.now();
      this.#s.onRequest('PUT');
      const version = await client.writeLease!(`${JSON.stringify(record)}\n`, cur ? cur.version : null);
      if (version === null) continue; // another writer moved first: look again
      this.#hold(version, record, sentAt);
      const fields = { replica: name, expires: record.expiresAt, ...(prev ? { previous: describeLeaseHolder(prev) } : {}) };
      if (how === 'forced') {
        // The previous holder may still start writes until its lease is TTL/2 old, and finish
        // one in flight after that: wait ¾ of its TTL before the first upload.
        const ttl = Math.max(prev?.ttlMs ?? 0, this.#s.ttlMs);
        this.#holdUntil = sentAt + (ttl * 3) / 4;
        this.#holdLogged = false;
        this.#log.warn('lease taken over from a live writer (takeover)', fields);
      } else if (how === 'created') this.#log.info('lease acquired', fields);
      else
        this.#log.info(
          `lease acquired (previous lease ${how === 'restarted' ? 'was left by an earlier run of this database' : how})`,
          fields,
        );
      await this.#probe();
      return;
    }
    throw new BackendError(`replica "${name}": its lease changed on every attempt to take it; retrying`, { retryable: true });
  }

  #hold(version: string, record: LeaseRecord, sentAt: number): void {
    this.#state = 'held';
    this.#version = version;
    this.#record = record;
    this.#sentAt = sentAt;
  }

  /**
   * Once per replicator: does the store honour create-if-absent? Writing the held record again
   * "only if absent" must fail. If it succeeds the store ignores preconditions (s3rver, the
   * GCS emulator, some S3-compatible services): the write replaced our own record with itself,
   * and from now on each renewal reads the lease first (a weaker, non-atomic check).
   */
  async #probe(): Promise<void> {
    if (this.#probed || !this.#record) return;
    this.#probed = true;
    try {
      this.#s.onRequest('PUT');
      const v = await this.#s.client.writeLease!(`${JSON.stringify(this.#record)}\n`, null);
      if (v === null) return;
      this.#version = v;
    } catch (err) {
      this.#log.warn('cannot check whether the store honours conditional writes', { replica: this.#s.replica, error: errorMessage(err) });
    }
    this.#advisory = true;
    this.#log.warn(
      'the store ignores conditional writes (If-None-Match / If-Match / generation preconditions): the lease is checked by reading it before each renewal, which two writers starting at the same moment can both pass',
      { replica: this.#s.replica, type: this.#s.client.type },
    );
  }

  async #renew(): Promise<void> {
    const client = this.#s.client;
    for (let attempt = 0; attempt < 2; attempt++) {
      const held = this.#record!;
      if (this.#advisory) {
        const cur = await this.#read();
        if (cur && !cur.record) throw unreadable(this.#s.replica, cur.body);
        if (!cur || cur.record?.owner !== this.#owner) return this.#lose(cur?.record);
        this.#version = cur.version;
      }
      const now = Date.now();
      const record: LeaseRecord = {
        ...held,
        generation: this.#s.generation(),
        renewedAt: new Date(now).toISOString(),
        expiresAt: new Date(now + this.#s.ttlMs).toISOString(),
        ttlMs: this.#s.ttlMs,
      };
      const sentAt = performance.now();
      this.#s.onRequest('PUT');
      const version = await client.writeLease!(`${JSON.stringify(record)}\n`, this.#version!);
      if (version !== null) {
        this.#hold(version, record, sentAt);
        return;
      }
      const cur = await this.#read();
      // A body that does not parse (a truncated read, or a stranger's object) proves nothing:
      // retry rather than give the replica up.
      if (cur && !cur.record) throw unreadable(this.#s.replica, cur.body);
      if (cur?.record?.owner === this.#owner) {
        // An earlier renewal of ours landed although its reply was lost: renew that version.
        this.#version = cur.version;
        this.#record = cur.record;
        continue;
      }
      if (!cur) {
        // Someone deleted the lease object (reset the replica by hand): nobody holds it.
        this.#s.onRequest('PUT');
        const v = await client.writeLease!(`${JSON.stringify(record)}\n`, null);
        if (v !== null) {
          this.#log.warn('lease object had disappeared; created again', { replica: this.#s.replica });
          this.#hold(v, record, sentAt);
          return;
        }
        return this.#lose((await this.#read())?.record);
      }
      return this.#lose(cur.record);
    }
    return this.#lose(undefined);
  }

  #lose(by: LeaseRecord | undefined): never {
    this.#state = 'lost';
    this.#lost = new LeaseError(
      'WALSHIP_LEASE_LOST',
      `replica "${this.#s.replica}" was taken over by another ${by ? describeLeaseHolder(by) : 'writer'}: ` +
        'this walship no longer writes to it; stop one of the two (restart this one to compete for the lease again)',
    );
    this.#log.error('lease lost: another walship took over the replica; no more writes to it', {
      replica: this.#s.replica,
      ...(by ? { holder: describeLeaseHolder(by) } : {}),
    });
    throw this.#lost;
  }
}

function unreadable(replica: string, body: string): BackendError {
  return new BackendError(
    `replica "${replica}": its lease object does not parse as a walship lease (${JSON.stringify(body.slice(0, 60))}); retrying`,
    {
      retryable: true,
    },
  );
}

/** True when a client declares lease support and implements both methods. */
function supportsLeases(client: ReplicaClient): boolean {
  return client.capabilities?.leases === true && typeof client.readLease === 'function' && typeof client.writeLease === 'function';
}
