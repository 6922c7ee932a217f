// An in-memory reference ReplicaClient used only to test the conformance suite itself:
// `faults` switch on one contract violation at a time, and the suite must catch each.
import { Readable } from 'node:stream';
import {
  InvalidArgumentError,
  NotFoundError,
  isGenerationName,
  layout,
  parseSnapshotFileName,
  parseWalSegmentFileName,
} from '@walship/core';
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
  /** Snapshots are listed from every folder below the generation (basename match). */
  deepListing?: boolean;
  /** Empty generation gives a differently worded message. */
  wrongMessage?: boolean;
}

type Obj = { data: Buffer; createdAt: Date };
export type MemoryStore = Map<string, Obj>;

export function memoryBackdoor(store: MemoryStore): StoreBackdoor {
  return {
    async listKeys() {
      return [...store.keys()];
    },
    async readKey(key) {
      return store.get(key)?.data;
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
  readonly capabilities = { maxConcurrency: 16 };
  closed = 0;

  constructor(
    private readonly store: MemoryStore,
    private readonly faults: Faults = {},
  ) {
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

  private segmentKey(p: Pos): string {
    if (this.faults.wrongMessage && !p.generation) throw new InvalidArgumentError('generation required');
    const offset = this.faults.truncateOffsets ? p.offset % 2 ** 32 : p.offset;
    return layout.walSegment('', p.generation, p.index, offset);
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
      if (parsed) out.push({ generation, index: parsed.index, size: obj.data.length, createdAt: obj.createdAt });
    }
    return this.page(out);
  }

  private async store_(key: string, body: Readable): Promise<Obj> {
    const chunks: Buffer[] = [];
    try {
      for await (const c of body) chunks.push(Buffer.from(c as Uint8Array));
    } catch (err) {
      if (!this.faults.keepPartialWrite) throw err;
    }
    const obj = {
      data: Buffer.concat(chunks),
      createdAt: this.faults.epochCreatedAt ? new Date(0) : new Date(),
    };
    this.store.set(key, obj);
    return obj;
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
    return Readable.from([obj.data], { objectMode: false });
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
      if (parsed) out.push({ generation, ...parsed, size: obj.data.length, createdAt: obj.createdAt });
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
