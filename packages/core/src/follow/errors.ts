import { WalshipError } from '../errors.js';

/** Stable codes of {@link FollowError}. */
export type FollowErrorCode =
  /** A bad option (`outputPath` missing, no replicas, interval not a positive number…). */
  | 'WALSHIP_FOLLOW_INVALID'
  /** The output exists and was not written by a follower (pass `overwrite` to replace it). */
  | 'WALSHIP_FOLLOW_OUTPUT_EXISTS'
  /** `start()` on a follower that is not new. */
  | 'WALSHIP_FOLLOW_STATE'
  /** `waitFor()` gave up: the follower stopped before reaching the position. */
  | 'WALSHIP_FOLLOW_STOPPED'
  /** `waitFor()` gave up: the position was not reached within `timeoutMs`. */
  | 'WALSHIP_FOLLOW_TIMEOUT'
  /** `waitFor()` gave up: the follower moved on to a newer generation without reaching the position. */
  | 'WALSHIP_FOLLOW_GENERATION_CHANGED';

/** A follower cannot do what was asked; `code` says why. Messages are one line. */
export class FollowError extends WalshipError {
  declare readonly code: FollowErrorCode;

  constructor(code: FollowErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}
