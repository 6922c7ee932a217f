import { ConfigError } from '@walship/core';
import type { BackendContext, ReplicaBackend, ReplicaConfig } from '@walship/core/backend';
import { S3ReplicaClient, type S3ReplicaClientOptions } from './client.js';
import { optBool, optString, parseChecksumMode, parseS3Url } from './config.js';

/** litestream.yml replica keys this backend reads (besides the common ones). */
export const S3_CONFIG_KEYS = [
  'bucket',
  'path',
  'region',
  'endpoint',
  'force-path-style',
  'skip-verify',
  'access-key-id',
  'secret-access-key',
  'request-checksum-calculation',
  'response-checksum-validation',
] as const;

/**
 * Resolves a replica config (YAML keys, optionally with `url`) into client options, with
 * Litestream v0.3.13's precedence rules (`newS3ReplicaClientFromConfig`):
 * - `url` together with a different `path` / `bucket` → ConfigError (`cannot specify url & path
 *   for s3 replica`, `cannot specify url & bucket for s3 replica`). The same value as the URL's
 *   is accepted, so a config that already had the URL's keys merged in still works.
 * - explicit keys win over URL-derived values;
 * - `force-path-style` defaults to true when `endpoint` is set; an explicit value overrides; a URL
 *   naming a provider host can only switch it on.
 * - no bucket → `bucket required for s3 replica`.
 * Credentials: `access-key-id`/`secret-access-key`; otherwise `LITESTREAM_ACCESS_KEY_ID`/
 * `LITESTREAM_SECRET_ACCESS_KEY` when the AWS variables are unset (as Litestream's CLI does);
 * otherwise the AWS default credential chain.
 */
export function resolveS3Options(config: ReplicaConfig, env: BackendContext['env'] = process.env): S3ReplicaClientOptions {
  const url = optString(config, 'url');
  let bucket = optString(config, 'bucket');
  let path = optString(config, 'path');
  let region = optString(config, 'region');
  let endpoint = optString(config, 'endpoint');
  const explicitPathStyle = optBool(config, 'force-path-style');
  let forcePathStyle = explicitPathStyle ?? endpoint !== undefined;

  if (url !== undefined) {
    const u = parseS3Url(url);
    const upath = u['path'] as string | undefined;
    const ubucket = u['bucket'] as string | undefined;
    if (path !== undefined && path !== upath) throw new ConfigError('cannot specify url & path for s3 replica');
    if (bucket !== undefined && bucket !== ubucket) throw new ConfigError('cannot specify url & bucket for s3 replica');
    path ??= upath;
    bucket ??= ubucket;
    region ??= u['region'] as string | undefined;
    endpoint ??= u['endpoint'] as string | undefined;
    if (!forcePathStyle) forcePathStyle = u['force-path-style'] === true;
  }
  if (bucket === undefined) throw new ConfigError('bucket required for s3 replica');

  let accessKeyId = optString(config, 'access-key-id');
  let secretAccessKey = optString(config, 'secret-access-key');
  if (accessKeyId === undefined && secretAccessKey === undefined && !env['AWS_ACCESS_KEY_ID'] && !env['AWS_SECRET_ACCESS_KEY']) {
    if (env['LITESTREAM_ACCESS_KEY_ID'] || env['LITESTREAM_SECRET_ACCESS_KEY']) {
      accessKeyId = env['LITESTREAM_ACCESS_KEY_ID'] || undefined;
      secretAccessKey = env['LITESTREAM_SECRET_ACCESS_KEY'] || undefined;
    }
  }

  const options: {
    -readonly [K in keyof S3ReplicaClientOptions]: S3ReplicaClientOptions[K];
  } = { bucket, forcePathStyle };
  if (path !== undefined) options.path = path;
  if (region !== undefined) options.region = region;
  if (endpoint !== undefined) options.endpoint = endpoint;
  const skipVerify = optBool(config, 'skip-verify');
  if (skipVerify !== undefined) options.skipVerify = skipVerify;
  if (accessKeyId !== undefined) options.accessKeyId = accessKeyId;
  if (secretAccessKey !== undefined) options.secretAccessKey = secretAccessKey;

  const req =
    parseChecksumMode(config['request-checksum-calculation'], 'request-checksum-calculation') ??
    (endpoint !== undefined ? envChecksumMode(env['AWS_REQUEST_CHECKSUM_CALCULATION']) : undefined);
  const res =
    parseChecksumMode(config['response-checksum-validation'], 'response-checksum-validation') ??
    (endpoint !== undefined ? envChecksumMode(env['AWS_RESPONSE_CHECKSUM_VALIDATION']) : undefined);
  if (req !== undefined) options.requestChecksumCalculation = req;
  if (res !== undefined) options.responseChecksumValidation = res;
  return options;
}

function envChecksumMode(v: string | undefined): 'WHEN_SUPPORTED' | 'WHEN_REQUIRED' | undefined {
  const s = v?.trim().toUpperCase();
  return s === 'WHEN_SUPPORTED' || s === 'WHEN_REQUIRED' ? s : undefined;
}

/** The `s3` replica backend: URL scheme `s3://`, litestream.yml `type: s3`. */
export const s3Backend: ReplicaBackend = {
  type: 's3',
  schemes: ['s3'],
  configKeys: S3_CONFIG_KEYS,
  parseUrl(url: string): Record<string, unknown> {
    return parseS3Url(url);
  },
  createClient(config: ReplicaConfig, context: BackendContext): S3ReplicaClient {
    const options = resolveS3Options(config, context?.env ?? process.env);
    if (options.skipVerify) {
      context?.warn?.(`s3 replica ${options.bucket}: TLS certificate verification disabled (skip-verify)`);
    }
    return new S3ReplicaClient(options);
  },
  describe(config: ReplicaConfig): Record<string, string> {
    let o: S3ReplicaClientOptions;
    try {
      o = resolveS3Options(config, {});
    } catch {
      const out: Record<string, string> = {};
      for (const k of ['url', 'bucket', 'path', 'region', 'endpoint']) {
        const v = config[k];
        if (typeof v === 'string' && v !== '') out[k] = v;
      }
      return out;
    }
    const out: Record<string, string> = { bucket: o.bucket };
    if (o.path !== undefined) out['path'] = o.path;
    out['region'] = o.region ?? (o.endpoint !== undefined ? 'us-east-1' : '(lookup)');
    if (o.endpoint !== undefined) out['endpoint'] = o.endpoint;
    out['force-path-style'] = String(o.forcePathStyle ?? false);
    if (o.skipVerify) out['skip-verify'] = 'true';
    return out;
  },
};
