import { BackendError, isWalshipError, NotFoundError } from '@walship/core';
import { isRetryableHttpStatus } from '@walship/core/backend';

/** Service error codes that are transient even when the status says otherwise. */
const RETRYABLE_CODES = new Set(['ServerBusy', 'OperationTimedOut', 'InternalError']);

/** Azure error fields read from a `RestError` (or anything shaped like one). */
export interface AzureErrorInfo {
  readonly statusCode: number | undefined;
  /** Service error code (`BlobNotFound`, `AuthenticationFailed`, …) or a Node network code. */
  readonly code: string | undefined;
}

/** Reads the status and service error code from an `@azure/storage-blob` error. */
export function azureErrorInfo(err: unknown): AzureErrorInfo {
  const e = (err ?? {}) as {
    statusCode?: unknown;
    code?: unknown;
    details?: { errorCode?: unknown };
    response?: { headers?: { get?: (name: string) => string | undefined } };
  };
  const statusCode = typeof e.statusCode === 'number' ? e.statusCode : undefined;
  let code: string | undefined;
  if (typeof e.details?.errorCode === 'string') code = e.details.errorCode;
  else if (typeof e.code === 'string') code = e.code;
  else {
    try {
      const header = e.response?.headers?.get?.('x-ms-error-code');
      if (header) code = header;
    } catch {
      // headers object without get(): ignore
    }
  }
  return { statusCode, code };
}

/** True when the error means "this blob does not exist" (not: "the container does not exist"). */
export function isBlobNotFound(err: unknown): boolean {
  const { statusCode, code } = azureErrorInfo(err);
  if (statusCode !== 404) return false;
  // HEAD responses carry no body, so the SDK reports no code for a missing blob.
  return code === undefined || code === 'BlobNotFound' || code === 'NotFound';
}

/** True when retrying the failed request may succeed. */
export function isRetryable(statusCode: number | undefined, code: string | undefined): boolean {
  if (statusCode === undefined) return true; // network failure, timeout, reset
  if (code !== undefined && RETRYABLE_CODES.has(code)) return true;
  return isRetryableHttpStatus(statusCode);
}

function firstLine(s: string): string {
  return (s.split('\n')[0] ?? '').trim();
}

/**
 * Converts an SDK failure into walship's errors: a missing blob becomes `NotFoundError` (only
 * where `notFound` is set, i.e. for readers), anything else a `BackendError` whose `retryable`
 * follows the HTTP status. Messages read `abs: <op> <container>/<blob>: <status> <code>: <detail>`.
 */
export function toWalshipError(err: unknown, op: string, target: string, notFound = false): Error {
  if (isWalshipError(err)) return err;
  const { statusCode, code } = azureErrorInfo(err);
  const where = `abs: ${op} ${target}`;
  if (notFound && isBlobNotFound(err)) {
    return new NotFoundError(`${where}: not found`, { cause: err });
  }
  const name = err instanceof Error ? err.name : '';
  if (name === 'CredentialUnavailableError' || name === 'AggregateAuthenticationError') {
    // DefaultAzureCredential found no usable identity: retrying will not change that.
    const detail = err instanceof Error ? firstLine(err.message) : '';
    return new BackendError(
      `${where}: no Azure credential available: set account-key (or LITESTREAM_AZURE_ACCOUNT_KEY) or sas-token, or configure DefaultAzureCredential (managed identity, AZURE_CLIENT_ID/AZURE_TENANT_ID/…, az login) (${detail})`,
      { cause: err, retryable: false },
    );
  }
  if (err instanceof Error && /Bearer token authentication is not permitted for non-TLS/.test(err.message)) {
    // The client refuses this at construction; kept for a custom pipeline that reaches it anyway.
    return new BackendError(
      `${where}: account key missing: plain http needs a shared key (Azure AD tokens require https); set account-key in the config or the LITESTREAM_AZURE_ACCOUNT_KEY environment variable (or a sas-token / AZURE_STORAGE_SAS_TOKEN)`,
      { cause: err, retryable: false },
    );
  }
  const status = [statusCode, code].filter((x) => x !== undefined).join(' ');
  let detail = err instanceof Error ? firstLine(err.message) : String(err);
  if (code === 'ContainerNotFound') detail = 'container does not exist; create it first';
  else if (code === 'AuthenticationFailed' || code === 'AuthorizationFailure' || statusCode === 403) {
    detail = `access denied, check the account key, SAS token or role assignment (${detail})`;
  }
  const message = status ? `${where}: ${status}: ${detail}` : `${where}: ${detail}`;
  return new BackendError(message, { cause: err, retryable: isRetryable(statusCode, code) });
}
