import { ConfigError } from '@walship/core';
import { joinKey, type BackendContext, type ReplicaBackend, type ReplicaConfig } from '@walship/core/backend';
import { AzureReplicaClient, type AzureReplicaClientOptions } from './client.js';

/** Environment variable holding the account key when `account-key` is not set (as in Litestream). */
export const ACCOUNT_KEY_ENV = 'LITESTREAM_AZURE_ACCOUNT_KEY';
/** Environment variable holding a SAS token when neither `account-key` nor `sas-token` is set. */
export const SAS_TOKEN_ENV = 'AZURE_STORAGE_SAS_TOKEN';

const CONFIG_KEYS = ['account-name', 'account-key', 'sas-token', 'bucket', 'path', 'endpoint'] as const;

function optString(config: ReplicaConfig, key: string): string | undefined {
  const v = config[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  throw new ConfigError(`invalid ${key} for abs replica: expected a string`);
}

/**
 * Parses `abs://[<account>@]<container>/<path>` into replica config keys
 * (`bucket`, `path`, and `account-name` when the URL has user info).
 * @throws ConfigError when the URL cannot be parsed or is not an `abs://` URL
 */
function parseUrl(url: string): Record<string, unknown> {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new ConfigError(`cannot parse abs replica url: ${url}`);
  }
  if (u.protocol !== 'abs:') throw new ConfigError(`invalid abs replica url scheme: ${u.protocol.replace(/:$/, '')}`);
  const out: Record<string, unknown> = {};
  if (u.username) out['account-name'] = decodeURIComponent(u.username);
  if (u.hostname) out.bucket = decodeURIComponent(u.hostname);
  out.path = joinKey(decodeURIComponent(u.pathname)).replace(/^\/+/, '');
  return out;
}

/** Merges URL-derived keys under explicit ones, applying Litestream's conflict rules. */
function resolveConfig(config: ReplicaConfig): ReplicaConfig {
  const url = optString(config, 'url');
  if (!url) return config;
  const fromUrl = parseUrl(url);
  const path = optString(config, 'path');
  if (path !== undefined && path !== '' && joinKey(path).replace(/^\/+/, '') !== fromUrl.path) {
    throw new ConfigError('cannot specify url & path for abs replica');
  }
  const bucket = optString(config, 'bucket');
  if (bucket !== undefined && bucket !== '' && bucket !== fromUrl.bucket) {
    throw new ConfigError('cannot specify url & bucket for abs replica');
  }
  const merged: Record<string, unknown> = { ...config, bucket: fromUrl.bucket, path: fromUrl.path };
  if (!optString(config, 'account-name') && fromUrl['account-name'] !== undefined) {
    merged['account-name'] = fromUrl['account-name'];
  }
  return merged;
}

/**
 * Turns a replica config (litestream.yml keys) into {@link AzureReplicaClientOptions}.
 * Credentials, first match wins: `account-key`, `sas-token` (both set is an error), env
 * `LITESTREAM_AZURE_ACCOUNT_KEY`, env `AZURE_STORAGE_SAS_TOKEN`, else `DefaultAzureCredential`.
 * @throws ConfigError `bucket required for abs replica`, `cannot specify url & path for abs replica`, …
 */
export function azureOptionsFromConfig(
  config: ReplicaConfig,
  env: Readonly<Record<string, string | undefined>> = process.env,
): AzureReplicaClientOptions {
  const c = resolveConfig(config);
  const container = optString(c, 'bucket');
  if (!container) throw new ConfigError('bucket required for abs replica');
  const explicitKey = optString(c, 'account-key') || undefined;
  const explicitSas = optString(c, 'sas-token') || undefined;
  if (explicitKey && explicitSas) throw new ConfigError('cannot specify account-key & sas-token for abs replica');
  let accountKey = explicitKey;
  let sasToken = explicitSas;
  if (!accountKey && !sasToken) {
    accountKey = env[ACCOUNT_KEY_ENV] || undefined;
    if (!accountKey) sasToken = env[SAS_TOKEN_ENV] || undefined;
  }
  const accountName = optString(c, 'account-name') || undefined;
  const endpoint = optString(c, 'endpoint') || undefined;
  const path = optString(c, 'path') ?? '';
  return {
    container,
    path,
    ...(accountName !== undefined && { accountName }),
    ...(endpoint !== undefined && { endpoint }),
    ...(accountKey !== undefined && { accountKey }),
    ...(sasToken !== undefined && { sasToken }),
  };
}

/** The `abs` replica backend: YAML `type: abs`, URLs `abs://[account@]container/path`. */
export const azureBackend: ReplicaBackend = {
  type: 'abs',
  schemes: ['abs'],
  configKeys: CONFIG_KEYS,
  parseUrl,
  createClient(config: ReplicaConfig, context: BackendContext): AzureReplicaClient {
    return new AzureReplicaClient(azureOptionsFromConfig(config, context?.env ?? process.env));
  },
  describe(config: ReplicaConfig): Record<string, string> {
    const c = resolveConfig(config);
    const out: Record<string, string> = {};
    const bucket = optString(c, 'bucket');
    const path = optString(c, 'path');
    const accountName = optString(c, 'account-name');
    const endpoint = optString(c, 'endpoint') || (accountName ? `https://${accountName}.blob.core.windows.net` : undefined);
    if (bucket) out.bucket = bucket;
    if (path) out.path = path;
    if (accountName) out['account-name'] = accountName;
    if (endpoint) out.endpoint = endpoint.replace(/\?.*$/, '');
    return out;
  },
};
