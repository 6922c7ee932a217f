import type { FollowErrorCode, FollowError } from './follow/errors.js';
import type { RestoreError, RestoreErrorCode } from './restore/errors.js';

/**
 * Error classes thrown by walship. Every error carries a stable `code` that callers can
 * match on instead of parsing messages; messages are one line and say what to do.
 *
 * | class                   | code                        | thrown when                                         |
 * |-------------------------|-----------------------------|-----------------------------------------------------|
 * | `NotFoundError`         | `WALSHIP_NOT_FOUND`         | a snapshot, WAL segment or file does not exist       |
 * | `InvalidArgumentError`  | `WALSHIP_INVALID_ARGUMENT`  | a caller passed a bad value (empty generation, …)    |
 * | `ConfigError`           | `WALSHIP_CONFIG`            | an option or configuration value is invalid          |
 * | `CorruptDataError`      | `WALSHIP_CORRUPT`           | an object or WAL failed a checksum or format check   |
 * | `BackendError`          | `WALSHIP_BACKEND`           | a storage request failed (network, auth, 5xx, …)     |
 * | `RestoreError`          | `WALSHIP_RESTORE_*`         | restore cannot proceed (see `RestoreError.code`)     |
 * | `ClosedError`           | `WALSHIP_CLOSED`            | an operation was called on a stopped replicator      |
 * | `LockedError`           | `WALSHIP_LOCKED`            | another walship already replicates the database      |
 * | `EngineWorkerError`     | `WALSHIP_ENGINE_WORKER`     | the engine worker thread died (it is replaced)       |
 * | `LeaseError`            | `WALSHIP_LEASE_HELD`        | another walship holds the replica's lease            |
 * |                         | `WALSHIP_LEASE_LOST`        | another walship took the replica's lease over        |
 * | `ReplicaAheadError`     | `WALSHIP_REPLICA_AHEAD`     | a replica holds commits the local WAL lacks (handled: new generation) |
 * | `AgeError`              | `WALSHIP_AGE_KEY`           | a malformed age identity or recipient                |
 * |                         | `WALSHIP_AGE_NO_MATCH`      | no configured identity opens an encrypted object     |
 * |                         | `WALSHIP_AGE_NO_IDENTITY`   | an encrypted object read without age identities      |
 * |                         | `WALSHIP_AGE_NOT_ENCRYPTED` | a plain object read with age identities configured   |
 * | `WalshipError`          | `WALSHIP_TIMEOUT`           | `sync({ timeout })` ran out of time                  |
 * |                         | `WALSHIP_BUSY`              | start-up could not take the write lock, or the WAL kept changing |
 * |                         | `WALSHIP_NOT_OPEN`          | an engine call after its database connections closed (internal) |
 * |                         | `WALSHIP_INTERNAL`          | a bug: the engine worker got a request it has no handler for |
 * | `FollowError`           | `WALSHIP_FOLLOW_*`          | a follower cannot do what was asked (see `FollowErrorCode`) |
 * | `UsageError` (CLI)      | `WALSHIP_USAGE`             | a mistake on the `walship` command line              |
 * | `CliError` (CLI)        | `WALSHIP_CLI`               | a user-fixable problem while a `walship` command ran |
 *
 * Check errors by code with {@link isWalshipError}, not `instanceof`: two copies of
 * `@walship/core` in one app (a backend that bundles its own) have distinct classes.
 */

/** Every `code` a walship error carries; the table above says when each is thrown. */
export type WalshipErrorCode =
  | 'WALSHIP_NOT_FOUND'
  | 'WALSHIP_INVALID_ARGUMENT'
  | 'WALSHIP_CONFIG'
  | 'WALSHIP_CORRUPT'
  | 'WALSHIP_BACKEND'
  | 'WALSHIP_CLOSED'
  | 'WALSHIP_LOCKED'
  | 'WALSHIP_ENGINE_WORKER'
  | 'WALSHIP_LEASE_HELD'
  | 'WALSHIP_LEASE_LOST'
  | 'WALSHIP_REPLICA_AHEAD'
  | AgeErrorCode
  | 'WALSHIP_TIMEOUT'
  | 'WALSHIP_BUSY'
  | 'WALSHIP_NOT_OPEN'
  | 'WALSHIP_INTERNAL'
  | RestoreErrorCode
  | FollowErrorCode
  | 'WALSHIP_USAGE'
  | 'WALSHIP_CLI';

export class WalshipError extends Error {
  /** Stable machine-readable code, e.g. `WALSHIP_NOT_FOUND`. */
  readonly code: WalshipErrorCode;

  constructor(code: WalshipErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** A requested object (snapshot, WAL segment, file) does not exist. */
export class NotFoundError extends WalshipError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('WALSHIP_NOT_FOUND', message, options);
  }
}

/** A caller passed an invalid argument, such as an empty generation name. */
export class InvalidArgumentError extends WalshipError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('WALSHIP_INVALID_ARGUMENT', message, options);
  }
}

/** An option or configuration value is invalid. */
export class ConfigError extends WalshipError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('WALSHIP_CONFIG', message, options);
  }
}

/** Stored data failed verification: bad LZ4 frame, content checksum, WAL checksum or salt. */
export class CorruptDataError extends WalshipError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('WALSHIP_CORRUPT', message, options);
  }
}

/**
 * A storage backend request failed for a reason other than "not found".
 * `retryable` tells the engine whether retrying with backoff may help (throttling, 5xx,
 * network resets) or not (access denied, bucket missing).
 */
export class BackendError extends WalshipError {
  readonly retryable: boolean;
  constructor(message: string, options?: { cause?: unknown; retryable?: boolean }) {
    super('WALSHIP_BACKEND', message, options);
    this.retryable = options?.retryable ?? true;
  }
}

/** The replicator was stopped before the operation could complete. */
export class ClosedError extends WalshipError {
  constructor(message = 'replicator is stopped') {
    super('WALSHIP_CLOSED', message);
  }
}

/**
 * Another replicator (another process, or another `Replicator` in this one) already holds the
 * database's lock in its meta directory. A killed holder's lock is released by the kernel, so
 * this always means a live one.
 */
export class LockedError extends WalshipError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('WALSHIP_LOCKED', message, options);
  }
}

/**
 * The engine worker thread died (a bug, or out of memory). Reported as a `sync-error` event;
 * the replicators it ran restart in a fresh worker from their meta directories.
 */
export class EngineWorkerError extends WalshipError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('WALSHIP_ENGINE_WORKER', message, options);
  }
}

/**
 * A replica's lease (its ownership record) belongs to another walship, so this one does not
 * write to that replica. `WALSHIP_LEASE_HELD`: another writer's lease is live (retried with
 * backoff; taken once it is released or expires, or at once with `takeover`).
 * `WALSHIP_LEASE_LOST`: another writer took over the lease this one held; this replicator
 * never writes to that replica again (restart it to compete for the lease again).
 */
export class LeaseError extends WalshipError {
  constructor(code: 'WALSHIP_LEASE_HELD' | 'WALSHIP_LEASE_LOST', message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

/** True when `err` means "does not exist" (walship's NotFoundError or a Node ENOENT). */
export function isNotFoundError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === 'WALSHIP_NOT_FOUND' || code === 'ENOENT';
}

/** A short, single-line description of any thrown value, for logs and CLI output. */
export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message.split('\n')[0] ?? String(err);
  return String(err);
}

/**
 * The replica holds commits of the current generation past the local WAL: the local database
 * lost them (restored from an older copy, or the WAL was cut) or another writer added them.
 * Continuing would fork the generation, so the replicator starts a new one.
 */
export class ReplicaAheadError extends WalshipError {
  readonly replica: string;
  readonly generation: string;
  constructor(replica: string, generation: string, reason: string) {
    super(
      'WALSHIP_REPLICA_AHEAD',
      `replica ${JSON.stringify(replica)} is ahead of the local database in generation ${generation}: ${reason}`,
    );
    this.replica = replica;
    this.generation = generation;
  }
}

export type AgeErrorCode = 'WALSHIP_AGE_KEY' | 'WALSHIP_AGE_NO_MATCH' | 'WALSHIP_AGE_NO_IDENTITY' | 'WALSHIP_AGE_NOT_ENCRYPTED';

/**
 * age encryption cannot go on (see `ageStage`); nothing is written, and retrying does not help.
 * `WALSHIP_AGE_KEY`: a malformed identity or recipient (`field`, `entry` and the 1-based `line`
 * within the entry say which). `WALSHIP_AGE_NO_MATCH`: none of the identities opens the object
 * (it was encrypted to other recipients). `WALSHIP_AGE_NO_IDENTITY`: an age-encrypted object was
 * read without identities. `WALSHIP_AGE_NOT_ENCRYPTED`: a plain (LZ4) object was read with
 * identities configured.
 */
export class AgeError extends WalshipError {
  readonly retryable = false;
  readonly field: 'identities' | 'recipients' | undefined;
  readonly entry: number | undefined;
  readonly line: number | undefined;
  constructor(
    code: AgeErrorCode,
    message: string,
    details?: { field?: 'identities' | 'recipients'; entry?: number; line?: number | undefined; cause?: unknown },
  ) {
    super(code, message, details?.cause !== undefined ? { cause: details.cause } : undefined);
    this.field = details?.field;
    this.entry = details?.entry;
    this.line = details?.line;
  }
}

/** The class a walship error of code `C` is an instance of (in the copy of core that threw it). */
interface ErrorClassByCode {
  WALSHIP_NOT_FOUND: NotFoundError;
  WALSHIP_INVALID_ARGUMENT: InvalidArgumentError;
  WALSHIP_CONFIG: ConfigError;
  WALSHIP_CORRUPT: CorruptDataError;
  WALSHIP_BACKEND: BackendError;
  WALSHIP_CLOSED: ClosedError;
  WALSHIP_LOCKED: LockedError;
  WALSHIP_ENGINE_WORKER: EngineWorkerError;
  WALSHIP_LEASE_HELD: LeaseError;
  WALSHIP_LEASE_LOST: LeaseError;
  WALSHIP_REPLICA_AHEAD: ReplicaAheadError;
}

/** The error type `isWalshipError(err, code)` narrows to. */
export type WalshipErrorOf<C extends WalshipErrorCode> = C extends keyof ErrorClassByCode
  ? ErrorClassByCode[C]
  : C extends AgeErrorCode
    ? AgeError
    : C extends RestoreErrorCode
      ? RestoreError
      : C extends FollowErrorCode
        ? FollowError
        : WalshipError & { readonly code: C };

/**
 * True when `err` is a walship error — with one of `codes` when any are given. It checks the
 * `code` (an `Error` whose `code` starts with `WALSHIP_`), not the class, so it also recognises
 * errors thrown by another copy of `@walship/core` in the same app, or rebuilt from a worker
 * thread. `isWalshipError(err, 'WALSHIP_BACKEND')` narrows `err` to `BackendError`. Never throws.
 */
export function isWalshipError<C extends WalshipErrorCode = WalshipErrorCode>(err: unknown, ...codes: C[]): err is WalshipErrorOf<C> {
  if (!(err instanceof Error)) return false;
  const code = (err as { code?: unknown }).code;
  if (typeof code !== 'string') return false;
  return codes.length === 0 ? code.startsWith('WALSHIP_') : (codes as string[]).includes(code);
}
