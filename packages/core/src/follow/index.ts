export { Follower, DEFAULT_FOLLOW_INTERVAL_MS, DEFAULT_FOLLOW_LOCK_TIMEOUT_MS, FOLLOW_MARKER_SUFFIX } from './follower.js';
export { FollowError } from './errors.js';
export type { FollowErrorCode } from './errors.js';
export type { FollowerEvents, FollowerOptions, FollowerState, FollowerStatus } from './types.js';
