import type { Readable } from 'node:stream';
import { decodeObject, encodeObject, type ObjectStage } from '../pipeline.js';
import type { Pos } from '../pos.js';
import type {
  ReplicaClient,
  ReplicaClientCapabilities,
  SnapshotInfo,
  StoredLease,
  WALSegmentInfo,
  WalSegmentsOptions,
} from '../replica-client.js';
import type { StreamRef, Wire } from './wire.js';

/** One call of a client method, worker → application. Streams travel as `StreamRef`s. */
interface ClientCall {
  readonly client: number;
  readonly method: string;
  readonly args: readonly unknown[];
}

/**
 * The engine worker's stand-in for a `ReplicaClient` that lives on the application's thread
 * (the application built it; clients hold sockets and credentials and cannot move). Every call
 * is forwarded; bodies and readers are flow-controlled streams (see `Wire`). Errors come back
 * as walship's own classes, so `NotFoundError` and `BackendError.retryable` work as before.
 */
export class RemoteReplicaClient implements ReplicaClient {
  readonly type: string;
  readonly capabilities?: ReplicaClientCapabilities;
  readonly #wire: Wire;
  readonly #id: number;

  constructor(wire: Wire, id: number, type: string, capabilities: ReplicaClientCapabilities | undefined) {
    this.#wire = wire;
    this.#id = id;
    this.type = type;
    if (capabilities) this.capabilities = capabilities;
  }

  #call<T>(method: string, ...args: unknown[]): Promise<T> {
    return this.#wire.request<T>('client', { client: this.#id, method, args } satisfies ClientCall);
  }

  async #write<T>(method: string, body: Readable, ...args: unknown[]): Promise<T> {
    const ref = this.#wire.sendStream(body);
    try {
      return await this.#call<T>(method, ...args, ref);
    } finally {
      // The application's side consumed it or failed; either way nothing more is sent.
      this.#wire.cancelStream(ref);
    }
  }

  async #reader(method: string, ...args: unknown[]): Promise<Readable> {
    return this.#wire.receiveStream(await this.#call<StreamRef>(method, ...args));
  }

  generations(): Promise<string[]> {
    return this.#call('generations');
  }
  deleteGeneration(generation: string): Promise<void> {
    return this.#call('deleteGeneration', generation);
  }
  snapshots(generation: string): Promise<SnapshotInfo[]> {
    return this.#call('snapshots', generation);
  }
  writeSnapshot(generation: string, index: number, body: Readable): Promise<SnapshotInfo> {
    return this.#write('writeSnapshot', body, generation, index);
  }
  snapshotReader(generation: string, index: number): Promise<Readable> {
    return this.#reader('snapshotReader', generation, index);
  }
  deleteSnapshot(generation: string, index: number): Promise<void> {
    return this.#call('deleteSnapshot', generation, index);
  }
  walSegments(generation: string, options?: WalSegmentsOptions): Promise<WALSegmentInfo[]> {
    return options ? this.#call('walSegments', generation, options) : this.#call('walSegments', generation);
  }
  writeWALSegment(pos: Pos, body: Readable): Promise<WALSegmentInfo> {
    return this.#write('writeWALSegment', body, pos);
  }
  walSegmentReader(pos: Pos): Promise<Readable> {
    return this.#reader('walSegmentReader', pos);
  }
  deleteWALSegments(positions: readonly Pos[]): Promise<void> {
    return this.#call('deleteWALSegments', positions);
  }
  // Used only when the application's client declares `capabilities.leases` (see lease.ts).
  readLease(): Promise<StoredLease | undefined> {
    return this.#call('readLease');
  }
  writeLease(body: string, ifVersion: string | null): Promise<string | null> {
    return this.#call('writeLease', body, ifVersion);
  }
}

/** A client served to the worker, with the object stages that run on this side (see `splitStages`). */
export interface ServedClient {
  readonly client: ReplicaClient;
  readonly stages: readonly ObjectStage[];
}

const WRITERS = new Set(['writeSnapshot', 'writeWALSegment']);
const READERS = new Set(['snapshotReader', 'walSegmentReader']);
const PLAIN = new Set([
  'generations',
  'deleteGeneration',
  'snapshots',
  'deleteSnapshot',
  'walSegments',
  'deleteWALSegments',
  'readLease',
  'writeLease',
]);

/**
 * Serves the worker's `RemoteReplicaClient` calls on the application's thread. Stages that
 * could not move to the worker (an application's own, e.g. encryption) run here: bodies are
 * encoded before the client stores them, readers decoded before they are sent back.
 */
export function serveClients(wire: Wire, lookup: (id: number) => ServedClient | undefined): void {
  wire.handle('client', async (raw) => {
    const call = raw as ClientCall;
    const served = lookup(call.client);
    if (WRITERS.has(call.method)) {
      // Open the body first, before any await: its bytes start moving only once it is open.
      const args = [...call.args];
      const ref = args.pop() as StreamRef;
      const body = wire.receiveStream(ref);
      try {
        if (!served) throw new Error(`replica client ${call.client} is gone`);
        const encoded = served.stages.length > 0 ? encodeObject(body, served.stages) : body;
        const fn = served.client[call.method as 'writeSnapshot'] as (...a: unknown[]) => Promise<unknown>;
        return await fn.call(served.client, ...args, encoded);
      } finally {
        if (!body.readableEnded) body.destroy();
      }
    }
    if (!served) throw new Error(`replica client ${call.client} is gone`);
    if (READERS.has(call.method)) {
      const fn = served.client[call.method as 'snapshotReader'] as (...a: unknown[]) => Promise<Readable>;
      const stored = await fn.apply(served.client, call.args as never);
      return wire.sendStream(served.stages.length > 0 ? decodeObject(stored, served.stages) : stored);
    }
    if (!PLAIN.has(call.method)) throw new Error(`not a replica client method: ${call.method}`);
    const fn = served.client[call.method as 'generations'] as (...a: unknown[]) => Promise<unknown>;
    return fn.apply(served.client, call.args as never);
  });
}
