import { ConfigError } from '@walship/core';
import { joinKey } from '@walship/core/backend';

/** Default region used when an endpoint is set but no region (Litestream's `DefaultRegion`). */
export const DEFAULT_REGION = 'us-east-1';

/** Values accepted by `request-checksum-calculation` / `response-checksum-validation`. */
export type ChecksumMode = 'WHEN_SUPPORTED' | 'WHEN_REQUIRED';

/** Result of Litestream's `s3.ParseHost`: what a URL host says about bucket, region, endpoint. */
export interface ParsedHost {
  bucket: string;
  region: string;
  endpoint: string;
  forcePathStyle: boolean;
}

// Litestream v0.3.13 s3/replica_client.go, copied verbatim (including the unescaped dots).
const LOCALHOST_RE = /^(?:(.+)\.)?localhost$/;
const BACKBLAZE_RE = /^(?:(.+)\.)?s3.([^.]+)\.backblazeb2.com$/;
const FILEBASE_RE = /^(?:(.+)\.)?s3.filebase.com$/;
const DIGITALOCEAN_RE = /^(?:(.+)\.)?([^.]+)\.digitaloceanspaces.com$/;
const SCALEWAY_RE = /^(?:(.+)\.)?s3.([^.]+)\.scw\.cloud$/;
const LINODE_RE = /^(?:(.+)\.)?([^.]+)\.linodeobjects.com$/;

/** Go's `net.SplitHostPort`, lenient: returns the whole input as host when it has no port. */
function splitHostPort(s: string): { host: string; port: string } {
  const bracketed = /^\[([^\]]*)\](?::(\d*))?$/.exec(s);
  if (bracketed) {
    return bracketed[2] === undefined ? { host: s, port: '' } : { host: bracketed[1]!, port: bracketed[2] };
  }
  const i = s.lastIndexOf(':');
  if (i < 0 || s.indexOf(':') !== i) return { host: s, port: '' };
  return { host: s.slice(0, i), port: s.slice(i + 1) };
}

function joinHostPort(host: string, port: string): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * Litestream's `ParseHost`: derives bucket, region, endpoint and path style from the host part
 * of an `s3://` URL. First match wins; unknown hosts are the bucket name (AWS, virtual-host style).
 */
export function parseHost(s: string): ParsedHost {
  const { host, port } = splitHostPort(s);
  let bucket = '';
  let region = '';
  let endpoint = '';
  let forcePathStyle = true;
  let scheme = 'https';
  let a: RegExpExecArray | null;
  if ((a = LOCALHOST_RE.exec(host))) {
    bucket = a[1] ?? '';
    region = DEFAULT_REGION;
    scheme = 'http';
    endpoint = 'localhost';
  } else if ((a = BACKBLAZE_RE.exec(host))) {
    bucket = a[1] ?? '';
    region = a[2]!;
    endpoint = `s3.${region}.backblazeb2.com`;
  } else if ((a = FILEBASE_RE.exec(host))) {
    bucket = a[1] ?? '';
    endpoint = 's3.filebase.com';
  } else if ((a = DIGITALOCEAN_RE.exec(host))) {
    bucket = a[1] ?? '';
    region = a[2]!;
    endpoint = `${region}.digitaloceanspaces.com`;
  } else if ((a = SCALEWAY_RE.exec(host))) {
    bucket = a[1] ?? '';
    region = a[2]!;
    endpoint = `s3.${region}.scw.cloud`;
  } else if ((a = LINODE_RE.exec(host))) {
    bucket = a[1] ?? '';
    region = a[2]!;
    endpoint = `${region}.linodeobjects.com`;
  } else {
    bucket = host;
    forcePathStyle = false;
  }
  if (endpoint !== '' && port !== '') endpoint = joinHostPort(endpoint, port);
  if (endpoint !== '') endpoint = `${scheme}://${endpoint}`;
  return { bucket, region, endpoint, forcePathStyle };
}

/**
 * Turns `s3://<host>[:port]/<path>` into replica config keys (Litestream's `ParseReplicaURL` +
 * `ParseHost`). Keys whose value is empty are omitted, and `force-path-style` is only present
 * when the host implies it, so that merging the result under explicit keys never overrides them.
 * @throws ConfigError when the URL cannot be parsed or its scheme is not `s3`
 */
export function parseS3Url(url: string): Record<string, unknown> {
  const m = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([^/?#]*)([^?#]*)/.exec(url);
  if (!m) {
    if (/^[A-Za-z][A-Za-z0-9+.-]*:/.test(url) || url === '') {
      throw new ConfigError(`invalid s3 replica url: ${JSON.stringify(url)} (expected s3://bucket/path)`);
    }
    throw new ConfigError(`replica url scheme required: ${url}`);
  }
  const scheme = m[1]!.toLowerCase();
  if (scheme !== 's3') {
    throw new ConfigError(`invalid s3 replica url: scheme ${JSON.stringify(scheme)} is not s3 (expected s3://bucket/path)`);
  }
  let authority = m[2]!;
  const at = authority.lastIndexOf('@');
  if (at >= 0) authority = authority.slice(at + 1); // userinfo is ignored, as Go's u.Host does
  let rawPath: string;
  try {
    authority = decodeURIComponent(authority);
    rawPath = decodeURIComponent(m[3]!);
  } catch {
    throw new ConfigError(`invalid s3 replica url: ${JSON.stringify(url)} (bad percent-encoding)`);
  }
  // Go: strings.TrimPrefix(path.Clean(u.Path), "/"); an empty result means "." (the root).
  const path = joinKey(`/${rawPath}`).replace(/^\//, '');
  const host = parseHost(authority);
  const out: Record<string, unknown> = {};
  if (host.bucket !== '') out['bucket'] = host.bucket;
  if (path !== '') out['path'] = path;
  if (host.region !== '') out['region'] = host.region;
  if (host.endpoint !== '') out['endpoint'] = host.endpoint;
  if (host.forcePathStyle) out['force-path-style'] = true;
  return out;
}

// ---------------------------------------------------------------------------------------------
// Reading raw config values.

export function optString(config: Readonly<Record<string, unknown>>, key: string): string | undefined {
  const v = config[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'string') return v === '' ? undefined : v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  throw new ConfigError(`invalid ${key} for s3 replica: expected a string, got ${typeof v}`);
}

export function optBool(config: Readonly<Record<string, unknown>>, key: string): boolean | undefined {
  const v = config[key];
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v === 'boolean') return v;
  if (typeof v === 'string') {
    const s = v.trim().toLowerCase();
    if (s === 'true' || s === '1' || s === 'yes' || s === 'on') return true;
    if (s === 'false' || s === '0' || s === 'no' || s === 'off') return false;
  }
  throw new ConfigError(`invalid ${key} for s3 replica: ${JSON.stringify(v)} is not a boolean (use true or false)`);
}

/** Parses `when_supported` / `when_required` (any case); undefined when empty. */
export function parseChecksumMode(value: unknown, key: string): ChecksumMode | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  if (typeof value === 'string') {
    const s = value.trim().toUpperCase();
    if (s === 'WHEN_SUPPORTED' || s === 'WHEN_REQUIRED') return s;
  }
  throw new ConfigError(`invalid ${key} for s3 replica: ${JSON.stringify(value)} (use when_supported or when_required)`);
}
