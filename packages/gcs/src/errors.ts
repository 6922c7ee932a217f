import { BackendError, isWalshipError, NotFoundError } from '@walship/core';
import { isRetryableHttpStatus } from '@walship/core/backend';

/** HTTP status (number) of an SDK error, when it has one. */
export function statusOf(err: unknown): number | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'number') return code;
  if (typeof code === 'string' && /^\d{3}$/.test(code)) return Number(code);
  return undefined;
}

/** True when the SDK error means "object (or bucket) does not exist". */
export function isGcsNotFound(err: unknown): boolean {
  return statusOf(err) === 404;
}

/**
 * Whether retrying may help: throttling, timeouts, 5xx, network resets and refused connections,
 * and integrity mismatches (a re-upload or re-read may succeed). Other 4xx (bad request,
 * unauthenticated, forbidden, bucket missing, precondition) are permanent.
 */
function isRetryable(err: unknown): boolean {
  const status = statusOf(err);
  if (status !== undefined) return isRetryableHttpStatus(status);
  const code = (err as { code?: unknown } | null)?.code;
  if (code === 'FILE_NO_UPLOAD' || code === 'CONTENT_DOWNLOAD_MISMATCH') return true;
  // Network-level failures (ECONNRESET, ECONNREFUSED, ETIMEDOUT, socket hang up, …) and
  // anything without a status: assume transient.
  return true;
}

/** First line of an error's message, without the SDK's multi-line bodies. */
function reason(err: unknown): string {
  if (err instanceof Error) {
    const line = (err.message || err.name).split('\n')[0]!.trim();
    const status = statusOf(err);
    return status !== undefined && !line.startsWith(String(status)) ? `${status} ${line}` : line;
  }
  return String(err);
}

/**
 * Maps an SDK failure of operation `op` (e.g. `read`, `list`) on `url` (a `gs://bucket/key`
 * string) to walship's typed errors: walship errors pass through; a 404 becomes
 * `NotFoundError` when `notFound` names the missing thing (object reads), otherwise a
 * non-retryable `BackendError` (the bucket is missing); everything else becomes `BackendError`
 * with `retryable` set.
 */
export function toWalshipError(err: unknown, op: string, url: string, notFound?: string): Error {
  if (isWalshipError(err)) return err;
  if (isGcsNotFound(err)) {
    if (notFound) return new NotFoundError(`gcs: ${notFound} not found: ${url}`, { cause: err });
    return new BackendError(`gcs: cannot ${op} ${url}: bucket not found (${reason(err)})`, {
      cause: err,
      retryable: false,
    });
  }
  return new BackendError(`gcs: cannot ${op} ${url}: ${reason(err)}`, {
    cause: err,
    retryable: isRetryable(err),
  });
}
