import { BackendError, isWalshipError, NotFoundError } from '@walship/core';
import { isRetryableHttpStatus } from '@walship/core/backend';

interface SdkErrorShape {
  name?: unknown;
  code?: unknown;
  Code?: unknown;
  message?: unknown;
  $fault?: unknown;
  $retryable?: unknown;
  $metadata?: { httpStatusCode?: unknown };
}

/** S3 error codes that retrying cannot fix. */
const PERMANENT_CODES = new Set([
  'AccessDenied',
  'AccountProblem',
  'AllAccessDisabled',
  'AuthorizationHeaderMalformed',
  'InvalidAccessKeyId',
  'InvalidBucketName',
  'InvalidBucketState',
  'InvalidRequest',
  'InvalidArgument',
  'InvalidToken',
  'ExpiredToken',
  'TokenRefreshRequired',
  'MethodNotAllowed',
  'MissingContentLength',
  'NoSuchBucket',
  'NotImplemented',
  'PermanentRedirect',
  'SignatureDoesNotMatch',
  'InvalidSignature',
  'CredentialsProviderError',
  'EntityTooLarge',
  'QuotaExceeded',
  'XAmzContentSHA256Mismatch',
]);

/** S3 error codes that a later attempt may get past. */
const TRANSIENT_CODES = new Set([
  'InternalError',
  'ServiceUnavailable',
  'SlowDown',
  'Throttling',
  'ThrottlingException',
  'RequestTimeout',
  'RequestTimeTooSkewed',
  'OperationAborted',
  'TimeoutError',
  'ECONNRESET',
  'ECONNREFUSED',
  'EPIPE',
  'ETIMEDOUT',
]);

/** The S3 error code of an SDK (or network) error, e.g. `NoSuchKey`, `AccessDenied`. */
export function errorCode(err: unknown): string {
  const e = (err ?? {}) as SdkErrorShape;
  for (const c of [e.Code, e.name, e.code]) {
    if (typeof c === 'string' && c !== '' && c !== 'Error') return c;
  }
  return 'Error';
}

export function httpStatus(err: unknown): number | undefined {
  const s = (err as SdkErrorShape | null)?.$metadata?.httpStatusCode;
  return typeof s === 'number' ? s : undefined;
}

/** True when the error means "the key does not exist" (never for a missing bucket). */
export function isNoSuchKey(err: unknown): boolean {
  const code = errorCode(err);
  if (code === 'NoSuchKey') return true;
  if (code === 'NoSuchBucket') return false;
  return httpStatus(err) === 404 && (code === 'NotFound' || code === 'UnknownError' || code === 'Error');
}

/** Whether retrying the request (after backoff) may succeed. */
export function isRetryable(err: unknown): boolean {
  const code = errorCode(err);
  if (PERMANENT_CODES.has(code)) return false;
  if (TRANSIENT_CODES.has(code)) return true;
  const status = httpStatus(err);
  if (status !== undefined) {
    if (status >= 400) return isRetryableHttpStatus(status);
  }
  // No HTTP response at all: connection refused/reset, DNS, socket timeout — transient.
  return true;
}

function oneLine(s: string): string {
  return s.replace(/\s+/g, ' ').trim();
}

/** A one-line description: `<Code>: <message>` (message omitted when it adds nothing). */
function describeError(err: unknown): string {
  const code = errorCode(err);
  const raw = err instanceof Error ? err.message : typeof err === 'string' ? err : '';
  const msg = oneLine(raw);
  const status = httpStatus(err);
  const base = msg === '' || msg === code || msg === 'UnknownError' ? code : `${code}: ${msg}`;
  return status !== undefined ? `${base} (HTTP ${status})` : base;
}

/**
 * Wraps any failure of an S3 request into walship's errors: `NotFoundError` for a missing key
 * when `notFound` is given, otherwise `BackendError` with `retryable` set from the S3 error code
 * and HTTP status. walship errors pass through unchanged.
 */
export function toWalshipError(err: unknown, what: string, opts: { notFound?: boolean } = {}): Error {
  if (isWalshipError(err)) {
    return err;
  }
  if (opts.notFound && isNoSuchKey(err)) {
    return new NotFoundError(`s3: ${what}: not found`, { cause: err });
  }
  const retryable = isRetryable(err);
  return new BackendError(`s3: ${what}: ${describeError(err)}`, { cause: err, retryable });
}
