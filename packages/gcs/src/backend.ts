import { ConfigError } from '@walship/core';
import { joinKey, type BackendContext, type ReplicaBackend, type ReplicaConfig } from '@walship/core/backend';
import { GcsReplicaClient } from './client.js';

const SCHEMES = ['gcs', 'gs'] as const;

function optionalString(config: ReplicaConfig, key: string): string | undefined {
  const v = config[key];
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v !== 'string') throw new ConfigError(`${key} must be a string for gcs replica`);
  return v;
}

/**
 * Parses `gcs://<bucket>/<path>` (Litestream v0.3) or `gs://<bucket>/<path>` (Litestream v0.5)
 * into `{ bucket, path }`. The path is cleaned and loses its leading `/`, as upstream does.
 * @throws ConfigError when the URL is malformed, has another scheme or names no bucket
 */
function parseUrl(url: string): Record<string, unknown> {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new ConfigError(`invalid gcs replica url: ${url}`);
  }
  const scheme = u.protocol.replace(/:$/, '');
  if (!(SCHEMES as readonly string[]).includes(scheme)) {
    throw new ConfigError(`invalid gcs replica url scheme: ${scheme}:// (use gcs:// or gs://)`);
  }
  if (u.username || u.password || u.port) {
    throw new ConfigError(`invalid gcs replica url: ${url} (expected gcs://<bucket>/<path>)`);
  }
  let bucket: string;
  let rawPath: string;
  try {
    bucket = decodeURIComponent(u.hostname);
    rawPath = decodeURIComponent(u.pathname);
  } catch {
    throw new ConfigError(`invalid gcs replica url: ${url}`);
  }
  if (!bucket) throw new ConfigError('bucket required for gcs replica');
  const path = joinKey(rawPath).replace(/^\/+/, '');
  return { bucket, path };
}

function createClient(config: ReplicaConfig, context: BackendContext): GcsReplicaClient {
  const bucket = optionalString(config, 'bucket');
  if (!bucket) throw new ConfigError('bucket required for gcs replica');
  const path = optionalString(config, 'path');
  const endpoint = optionalString(config, 'endpoint') ?? nonEmpty(context?.env?.['STORAGE_EMULATOR_HOST']);
  return new GcsReplicaClient({
    bucket,
    ...(path !== undefined ? { path } : {}),
    ...(endpoint !== undefined ? { endpoint } : {}),
  });
}

function nonEmpty(v: string | undefined): string | undefined {
  return v ? v : undefined;
}

function describe(config: ReplicaConfig): Record<string, string> {
  const out: Record<string, string> = {};
  for (const key of ['bucket', 'path', 'endpoint']) {
    const v = config[key];
    if (typeof v === 'string' && v !== '') out[key] = v;
  }
  return out;
}

/**
 * The `gcs` replica backend: YAML `type: gcs` or URLs `gcs://bucket/path` and `gs://bucket/path`.
 * Config keys: `bucket` (required), `path`, `endpoint`. `STORAGE_EMULATOR_HOST` in the
 * environment is used as the endpoint when `endpoint` is not set.
 */
export const gcsBackend: ReplicaBackend = {
  type: 'gcs',
  schemes: SCHEMES,
  configKeys: ['bucket', 'path', 'endpoint'],
  parseUrl,
  createClient,
  describe,
};
