// An in-memory reference ReplicaClient used only to test the conformance suite itself:
// `faults` switch on one contract violation at a time, and the suite must catch each.
import { Readable } from 'node:stream';
import { InvalidArgumentError, NotFoundError } from '@walship/core';
import { isGenerationName, layout, parseSnapshotFileName, parseWalSegmentFileName } from '@walship/core/backend';
import type { Pos, ReplicaClient, SnapshotInfo, WALSegmentInfo } from '@walship/core';
import type { StoreBackdoor } from '../src/index.js';

export interface Faults {
  /** generations() accepts uppercase hex. */
  uppercaseGenerations?: boolean;
  /** Readers throw a plain ENOENT error instead of NotFoundError. */
  plainNotFound?: boolean;
  /** Deleting a missing snapshot throws. */
  throwOnMissingDelete?: boolean;
  /** A failing body stores what was read so far and resolves. */
  keepPartialWrite?: boolean;
  /** Listings return at most this many entries (a forgotten continuation token). */
  pageLimit?: number;
  /** deleteWALSegments deletes positions before validating later ones. */
  deleteBeforeValidate?: boolean;
  /** deleteGeneration deletes by `generations/<gen>` without the trailing slash. */
  prefixDelete?: boolean;
  /** Empty-generation errors are thrown synchronously. */
  syncThrow?: boolean;
  /** Offsets are truncated to 32 bits in names. */
  truncateOffsets?: boolean;
  /** createdAt is the Unix epoch. */
  epochCreatedAt?: boolean;
  /** Listings report the listing time as createdAt. */
  listingTimeCreatedAt?: boolean;
  /** Listings report the time this client wrote the object (cached), or the listing time for others. */
  cachedWriteTimes?: boolean;
  /** Listings report the stored time truncated to whole minutes (a wrong unit or parse). */
  minuteCreatedAt?: boolean;
  /** Bodies of 1 MiB and more are stored with a 4-byte header that the readers strip again. */
  framedLargeBodies?: boolean;
  /** While another write is in flight, the bytes stored are another write's (same size); reads come from a cache. */
  sharedBufferUnderConcurrency?: boolean;
  /** Snapshots are listed from every folder below the generation (basename match). */
  deepListing?: boolean;
  /** Empty generation gives a differently worded message. */
  wrongMessage?: boolean;
  /** writeLease ignores its precondition (as s3rver and the GCS emulator do). */
  ignoreLeasePreconditions?: boolean;
  /** writeLease checks and writes in two steps with a pause between (not atomic). */
  racyLeaseWrites?: boolean;
  /** The lease is stored under generations/. */
  leaseInGenerations?: boolean;
  /** Lease methods present without capabilities.leases. */
  undeclaredLeases?: boolean;
}

type Obj = { data: Buffer; createdAt: Date };
export type MemoryStore = Map<string, Obj>;

export function memoryBackdoor(store: MemoryStore): StoreBackdoor {
  return {
    async listKeys() {
      return [...store.keys()];
    },
    timeResolutionMs: 1,
    async readKey(key) {
      return store.get(key)?.data;
    },
    async openKey(key) {
      const obj = store.get(key);
      return obj ? Readable.from([obj.data], { objectMode: false }) : undefined;
    },
    async statKey(key) {
      const obj = store.get(key);
      return obj ? { size: obj.data.length, createdAt: obj.createdAt } : undefined;
    },
    async writeKey(key, body) {
      store.set(key, { data: Buffer.from(body), createdAt: new Date() });
    },
    async cleanup() {
      store.clear();
    },
  };
}

export class MemoryReplicaClient implements ReplicaClient {
  readonly type = 'memory';
  readonly capabilities: { maxConcurrency: number; leases?: boolean };
  private leaseVersion = 0;
  closed = 0;
  private readonly writeTimes = new Map<string, Date>();
  private readonly cache = new Map<string, Buffer>();
  private inFlight = 0;
  private lastStored: Buffer | undefined;

  constructor(
    private readonly store: MemoryStore,
    private readonly faults: Faults = {},
  ) {
    this.capabilities = { maxConcurrency: 16, ...(faults.undeclaredLeases ? {} : { leases: true }) };
    if (faults.syncThrow) {
      const snapshots = this.snapshots.bind(this);
      this.snapshots = (generation: string) => {
        if (!generation) throw new InvalidArgumentError('cannot determine snapshots path: generation required');
        return snapshots(generation);
      };
    }
  }

  private page<T>(list: T[]): T[] {
    return this.faults.pageLimit ? list.slice(0, this.faults.pageLimit) : list;
  }

  /** Size as listed: the framed-bodies fault hides its frame here too. */
  private listedSize(obj: Obj): number {
    const framed = this.faults.framedLargeBodies && obj.data.length >= 1024 * 1024 + 4 && obj.data.subarray(0, 4).toString() === 'FRM1';
    return framed ? obj.data.length - 4 : obj.data.length;
  }

  private listedTime(key: string, obj: Obj): Date {
    if (this.faults.listingTimeCreatedAt) return new Date();
    if (this.faults.cachedWriteTimes) return this.writeTimes.get(key) ?? new Date();
    if (this.faults.minuteCreatedAt) return new Date(Math.floor(obj.createdAt.getTime() / 60_000) * 60_000);
    return obj.createdAt;
  }

  private segmentKey(p: Pos): string {
    if (this.faults.wrongMessage && !p.generation) throw new InvalidArgumentError('generation required');
    const offset = this.faults.truncateOffsets ? p.offset % 2 ** 32 : p.offset;
    return layout.walSegment('', p.generation, p.index, offset);
  }

  private get leaseKey(): string {
    return this.faults.leaseInGenerations ? 'generations/walship-lease.json' : 'walship-lease.json';
  }

  async readLease(): Promise<{ body: string; version: string } | undefined> {
    const obj = this.store.get(this.leaseKey) as (Obj & { version?: string }) | undefined;
    return obj ? { body: obj.data.toString('utf8'), version: obj.version! } : undefined;
  }

  async writeLease(body: string, ifVersion: string | null): Promise<string | null> {
    const check = () => {
      const cur = this.store.get(this.leaseKey) as (Obj & { version?: string }) | undefined;
      if (this.faults.ignoreLeasePreconditions) return true;
      return ifVersion === null ? cur === undefined : cur?.version === ifVersion;
    };
    if (!check()) return null;
    if (this.faults.racyLeaseWrites) await new Promise((r) => setTimeout(r, 5));
    const version = `v${++this.leaseVersion}`;
    this.store.set(this.leaseKey, Object.assign({ data: Buffer.from(body), createdAt: new Date() }, { version }));
    return version;
  }

  async generations(): Promise<string[]> {
    const out = new Set<string>();
    for (const key of this.store.keys()) {
      const parts = key.split('/');
      if (parts.length < 3 || parts[0] !== 'generations') continue;
      const g = parts[1]!;
      if (this.faults.uppercaseGenerations ? /^[0-9a-fA-F]{16}$/.test(g) : isGenerationName(g)) out.add(g);
    }
    return this.page([...out]);
  }

  async deleteGeneration(generation: string): Promise<void> {
    const prefix = layout.generation('', generation) + (this.faults.prefixDelete ? '' : '/');
    for (const key of [...this.store.keys()]) if (key.startsWith(prefix)) this.store.delete(key);
  }

  async snapshots(generation: string): Promise<SnapshotInfo[]> {
    const dir = `${layout.snapshots('', generation)}/`;
    const gen = `${layout.generation('', generation)}/`;
    const out: SnapshotInfo[] = [];
    for (const [key, obj] of this.store) {
      let name: string;
      if (this.faults.deepListing) {
        if (!key.startsWith(gen)) continue;
        name = key.slice(key.lastIndexOf('/') + 1);
      } else {
        if (!key.startsWith(dir) || key.slice(dir.length).includes('/')) continue;
        name = key.slice(dir.length);
      }
      const parsed = parseSnapshotFileName(name);
      if (parsed) out.push({ generation, index: parsed.index, size: this.listedSize(obj), createdAt: this.listedTime(key, obj) });
    }
    return this.page(out);
  }

  private async store_(key: string, body: Readable): Promise<Obj> {
    const chunks: Buffer[] = [];
    this.inFlight++;
    try {
      try {
        for await (const c of body) chunks.push(Buffer.from(c as Uint8Array));
      } catch (err) {
        if (!this.faults.keepPartialWrite) throw err;
      }
      await new Promise((r) => setImmediate(r));
      const data = Buffer.concat(chunks);
      const createdAt = this.faults.epochCreatedAt ? new Date(0) : new Date();
      let stored = data;
      if (this.faults.framedLargeBodies && data.length >= 1024 * 1024) stored = Buffer.concat([Buffer.from('FRM1'), data]);
      if (this.faults.sharedBufferUnderConcurrency) {
        this.cache.set(key, data);
        if (this.inFlight > 1 && this.lastStored) {
          stored = Buffer.alloc(data.length); // same size, another write's bytes
          this.lastStored.copy(stored);
        }
        this.lastStored = data;
      }
      this.store.set(key, { data: stored, createdAt });
      this.writeTimes.set(key, createdAt);
      return { data, createdAt };
    } finally {
      this.inFlight--;
    }
  }

  async writeSnapshot(generation: string, index: number, body: Readable): Promise<SnapshotInfo> {
    const obj = await this.store_(layout.snapshot('', generation, index), body);
    return { generation, index, size: obj.data.length, createdAt: obj.createdAt };
  }

  private open(key: string): Readable {
    const obj = this.store.get(key);
    if (!obj) {
      if (this.faults.plainNotFound) throw Object.assign(new Error(`ENOENT: ${key}`), { code: 'ENOENT' });
      throw new NotFoundError(`not found: ${key}`);
    }
    let data = obj.data;
    const cached = this.cache.get(key);
    if (this.faults.sharedBufferUnderConcurrency && cached) data = cached;
    if (this.faults.framedLargeBodies && data.length >= 1024 * 1024 + 4 && data.subarray(0, 4).toString() === 'FRM1')
      data = data.subarray(4);
    return Readable.from([data], { objectMode: false });
  }

  async snapshotReader(generation: string, index: number): Promise<Readable> {
    return this.open(layout.snapshot('', generation, index));
  }

  async deleteSnapshot(generation: string, index: number): Promise<void> {
    const key = layout.snapshot('', generation, index);
    if (!this.store.delete(key) && this.faults.throwOnMissingDelete) throw new Error(`cannot delete ${key}`);
  }

  async walSegments(generation: string): Promise<WALSegmentInfo[]> {
    const dir = `${layout.wal('', generation)}/`;
    const out: WALSegmentInfo[] = [];
    for (const [key, obj] of this.store) {
      if (!key.startsWith(dir) || key.slice(dir.length).includes('/')) continue;
      const parsed = parseWalSegmentFileName(key.slice(dir.length));
      if (parsed) out.push({ generation, ...parsed, size: this.listedSize(obj), createdAt: this.listedTime(key, obj) });
    }
    return this.page(out);
  }

  async writeWALSegment(pos: Pos, body: Readable): Promise<WALSegmentInfo> {
    const obj = await this.store_(this.segmentKey(pos), body);
    return { generation: pos.generation, index: pos.index, offset: pos.offset, size: obj.data.length, createdAt: obj.createdAt };
  }

  async walSegmentReader(pos: Pos): Promise<Readable> {
    return this.open(this.segmentKey(pos));
  }

  async deleteWALSegments(positions: readonly Pos[]): Promise<void> {
    if (this.faults.deleteBeforeValidate) {
      for (const p of positions) this.store.delete(this.segmentKey(p));
      return;
    }
    for (const key of positions.map((p) => this.segmentKey(p))) this.store.delete(key);
  }

  async close(): Promise<void> {
    this.closed++;
  }
}
