import type { Logger } from '../logger.js';
import type { Pos } from '../pos.js';
import type { DamageLocation, RestoreProgress, RestoreReplica } from '../restore/types.js';

/** Options of {@link Follower}. */
export interface FollowerOptions {
  /** Replicas to follow from (at least one; names unique). The newest is chosen as by `restore()`, then followed. */
  readonly replicas: readonly RestoreReplica[];
  /** Only consider the replica with this name. */
  readonly replicaName?: string;
  /** Time between two polls of the replica, in milliseconds (default 1000). Each poll is one listing request. */
  readonly intervalMs?: number;
  /**
   * Time between polls once 30 polls in a row found nothing new, in milliseconds (default
   * twice `intervalMs`; at least `intervalMs`): halves an idle follower's requests and CPU. The
   * first poll that finds news returns to `intervalMs`.
   */
  readonly idleIntervalMs?: number;
  /**
   * How long a batch waits for readers to finish their read transactions before it is retried
   * at the next poll, in milliseconds (default 5000). Readers never wait longer than one
   * batch's write (milliseconds) for the follower.
   */
  readonly lockTimeoutMs?: number;
  /** Check of each full restore (at start and on a new generation): `integrity` (default), `quick` or `none`. */
  readonly verify?: 'integrity' | 'quick' | 'none';
  /**
   * Replace an existing database at the output path that was not written by a follower
   * (default false: it fails with `WALSHIP_FOLLOW_OUTPUT_EXISTS`). A follower's own output (it
   * has a `<db>-walship-follow` marker beside it) is always taken over, in place.
   */
  readonly overwrite?: boolean;
  /** Segment downloads in flight during a full restore (default 8). */
  readonly parallelism?: number;
  /** Log sink (default: silent). */
  readonly logger?: Logger;
  /** Download progress of each full restore, as `restore()`'s `onProgress`. */
  readonly onProgress?: (progress: RestoreProgress) => void;
}

export type FollowerState = 'new' | 'restoring' | 'following' | 'stalled' | 'stopped';

/** What {@link Follower.status} reports. */
export interface FollowerStatus {
  /** `following`: applying what the replica receives. `stalled`: damage stops it (see `damage`). */
  readonly state: FollowerState;
  readonly replicaName?: string;
  readonly generation?: string;
  /** Position just after the last commit written to the output database. */
  readonly pos?: Pos;
  /** When the follower last wrote to the output (a batch or a full restore). */
  readonly lastAppliedAt?: Date;
  /**
   * How far the output is behind the replica: 0 when the last poll found nothing unapplied,
   * otherwise the age of the oldest WAL segment the replica holds that is not applied yet.
   */
  readonly lagMs: number;
  /** Damage that stops the follower from advancing (it keeps polling; a new generation or a repaired object clears it). */
  readonly damage?: DamageLocation;
  /** The last poll's error (storage unreachable…), cleared by the next successful poll. */
  readonly lastError?: string;
  /** Storage requests made: listings and object downloads (the full restores' excluded). */
  readonly requests: number;
}

/** Events of {@link Follower}. */
export interface FollowerEvents {
  /** The output was (re)built from a snapshot: at start, on a new generation, or when the WAL it needed was removed. */
  restored: [{ replicaName: string; generation: string; pos: Pos; reason: 'start' | 'new-generation' | 'wal-removed'; durationMs: number }];
  /** A batch of transactions was written to the output. */
  applied: [{ pos: Pos; commits: number; pages: number; durationMs: number; lockWaitMs: number }];
  /** Damage found (once per damaged object); the follower does not advance past it. */
  damage: [{ damage: DamageLocation }];
  /** A poll failed (storage unreachable, readers holding the lock too long…); the next poll retries. */
  'poll-error': [{ error: Error }];
}
