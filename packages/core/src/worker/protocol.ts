import type { ReplicaClientCapabilities } from '../replica-client.js';
import type { ReplicatorStatus } from '../replicator-types.js';
import type { WireError } from './wire.js';

/**
 * What the application's thread and the engine worker say to each other (over `Wire`).
 *
 *   app → worker  request `create` (CreateArgs) · request `call` (CallArgs) · note `crash` (tests)
 *   worker → app  request `client` (ClientCall, see remote-client.ts) · note `event` (EventNote) ·
 *                 note `log` (LogNote)
 */

/** Which object stages run in the worker: LZ4 (the default), or none (all on the app's side). */
type WorkerStages = 'lz4' | 'none';

export interface ReplicaSpec {
  /** Id of the client served on the application's side. */
  readonly client: number;
  readonly type: string;
  readonly capabilities?: ReplicaClientCapabilities;
  readonly stages: WorkerStages;
  /** The replica's options without `client` and `stages` (all cloneable). */
  readonly options: Record<string, unknown>;
}

export interface CreateArgs {
  readonly id: number;
  readonly dbPath: string;
  /** The database's options without `replicas` and `logger` (all cloneable). */
  readonly options: Record<string, unknown>;
  readonly replicas: readonly ReplicaSpec[];
  /** Forward log lines (the application passed a logger). */
  readonly log: boolean;
}

export type CallMethod = 'start' | 'sync' | 'stop' | 'checkpoint' | 'status';

export interface CallArgs {
  readonly id: number;
  readonly method: CallMethod;
  readonly arg?: { timeout?: number };
}

/** Every call's reply carries the replicator's status after it. */
export interface CallReply {
  readonly value: unknown;
  readonly status: ReplicatorStatus;
}

export interface EventNote {
  readonly id: number;
  readonly name: string;
  readonly payload: Record<string, unknown>;
  /** Error fields of the payload, as wire errors. */
  readonly errors: Record<string, WireError>;
  readonly status: ReplicatorStatus;
}

export interface LogNote {
  readonly id: number;
  readonly level: 'debug' | 'info' | 'warn' | 'error';
  readonly message: string;
  readonly fields?: Record<string, unknown>;
}

/** Events a replicator emits (forwarded from the worker by name). */
export const EVENT_NAMES = [
  'sync',
  'sync-error',
  'checkpoint',
  'checkpoint-error',
  'generation',
  'litestream-continued',
  'wal-restart',
  'replica-sync',
  'replica-error',
  'snapshot',
  'validation',
  'operation',
] as const;
