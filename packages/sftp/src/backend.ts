import { ConfigError, isWalshipError } from '@walship/core';
import type { BackendContext, ReplicaBackend, ReplicaConfig } from '@walship/core/backend';
import { SftpReplicaClient, type SftpReplicaClientOptions, splitHostPort } from './client.js';
import { parsePublicKey } from './host-key.js';

/** Replica config keys specific to the sftp backend (litestream.yml spelling). */
export const SFTP_CONFIG_KEYS = [
  'host',
  'user',
  'password',
  'key-path',
  'key-passphrase',
  'path',
  'host-key',
  'known-hosts-path',
  'insecure-ignore-host-key',
] as const;

function str(config: ReplicaConfig, key: string): string {
  const v = config[key];
  if (v === undefined || v === null) return '';
  if (typeof v === 'string') return v;
  if (typeof v === 'number') return String(v);
  throw new ConfigError(`${key} must be a string for sftp replica`);
}

function bool(config: ReplicaConfig, key: string): boolean {
  const v = config[key];
  if (v === undefined || v === null || v === '') return false;
  if (typeof v === 'boolean') return v;
  if (v === 'true') return true;
  if (v === 'false') return false;
  throw new ConfigError(`${key} must be true or false for sftp replica`);
}

/**
 * Parses `sftp://user[:password]@host[:port]/path` into replica config keys
 * (`host` keeps the port; `path` keeps its leading `/`).
 * @throws ConfigError when the URL cannot be parsed or is not an sftp URL
 */
export function parseSftpUrl(url: string): Record<string, unknown> {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new ConfigError(`invalid sftp replica url: ${redact(url)}`);
  }
  if (u.protocol !== 'sftp:') {
    throw new ConfigError(`invalid sftp replica url (scheme must be sftp): ${redact(url)}`);
  }
  const out: Record<string, unknown> = {};
  if (u.host) out.host = u.host;
  if (u.username) out.user = decodeURIComponent(u.username);
  if (u.password) out.password = decodeURIComponent(u.password);
  const path = decodeURIComponent(u.pathname);
  if (path !== '') out.path = path;
  return out;
}

function redact(url: string): string {
  return url.replace(/^(\w+:\/\/[^:@/]*):[^@/]*@/, '$1:****@');
}

/**
 * Builds client options from a replica config (URL keys already merged, explicit keys win).
 * @throws ConfigError with Litestream's messages where it has one
 */
export function sftpOptionsFromConfig(config: ReplicaConfig, context?: BackendContext): SftpReplicaClientOptions {
  let host = str(config, 'host');
  let user = str(config, 'user');
  let password = str(config, 'password');
  let path = str(config, 'path');
  const url = str(config, 'url');
  if (url) {
    const fromUrl = parseSftpUrl(url);
    // Litestream refuses url together with path or host. The CLI merges URL keys into the
    // config, so only a value that differs from the URL's can be told apart here.
    if (path && fromUrl.path !== undefined && path !== fromUrl.path) {
      throw new ConfigError('cannot specify url & path for sftp replica');
    }
    if (host && fromUrl.host !== undefined && host !== fromUrl.host) {
      throw new ConfigError('cannot specify url & host for sftp replica');
    }
    user ||= (fromUrl.user as string | undefined) ?? '';
    password ||= (fromUrl.password as string | undefined) ?? '';
    host = (fromUrl.host as string | undefined) ?? host;
    path = (fromUrl.path as string | undefined) ?? path;
  }
  if (!host) throw new ConfigError('host required for sftp replica');
  if (!user) throw new ConfigError('user required for sftp replica');
  try {
    splitHostPort(host);
  } catch (err) {
    throw new ConfigError((err as Error).message);
  }

  const hostKey = str(config, 'host-key');
  const knownHostsPath = str(config, 'known-hosts-path');
  const insecure = bool(config, 'insecure-ignore-host-key');
  if (hostKey && !parsePublicKey(hostKey)) {
    throw new ConfigError('invalid host-key for sftp replica: expected "<type> <base64>", e.g. "ssh-ed25519 AAAA..."');
  }
  if (hostKey && knownHostsPath) {
    throw new ConfigError('cannot specify host-key & known-hosts-path for sftp replica');
  }
  if (insecure && (hostKey || knownHostsPath)) {
    throw new ConfigError(`cannot specify insecure-ignore-host-key & ${hostKey ? 'host-key' : 'known-hosts-path'} for sftp replica`);
  }
  const keyPath = str(config, 'key-path');
  const keyPassphrase = str(config, 'key-passphrase');

  return {
    host,
    user,
    ...(password ? { password } : {}),
    ...(keyPath ? { keyPath } : {}),
    ...(keyPassphrase ? { keyPassphrase } : {}),
    ...(path ? { path } : {}),
    ...(hostKey ? { hostKey } : {}),
    ...(knownHostsPath ? { knownHostsPath } : {}),
    ...(insecure ? { insecureIgnoreHostKey: true } : {}),
    ...(context?.warn ? { warn: context.warn } : {}),
  };
}

/** The sftp backend: `type: sftp` replicas and `sftp://` URLs. */
export const sftpBackend: ReplicaBackend = {
  type: 'sftp',
  schemes: ['sftp'],
  configKeys: SFTP_CONFIG_KEYS,
  parseUrl: parseSftpUrl,
  createClient(config: ReplicaConfig, context: BackendContext): SftpReplicaClient {
    const options = sftpOptionsFromConfig(config, context);
    try {
      return new SftpReplicaClient(options);
    } catch (err) {
      if (isWalshipError(err, 'WALSHIP_INVALID_ARGUMENT')) throw new ConfigError(err.message, { cause: err });
      throw err;
    }
  },
  describe(config: ReplicaConfig): Record<string, string> {
    try {
      return describeConfig(config);
    } catch {
      return { type: 'sftp' };
    }
  },
};

function describeConfig(config: ReplicaConfig): Record<string, string> {
  const out: Record<string, string> = {};
  let host = str(config, 'host');
  let user = str(config, 'user');
  let path = str(config, 'path');
  const url = str(config, 'url');
  if (url) {
    try {
      const u = parseSftpUrl(url);
      host = (u.host as string | undefined) ?? host;
      user ||= (u.user as string | undefined) ?? '';
      path = (u.path as string | undefined) ?? path;
    } catch {
      // describe never throws
    }
  }
  if (host) out.host = host;
  if (user) out.user = user;
  if (path) out.path = path;
  const keyPath = str(config, 'key-path');
  if (keyPath) out['key-path'] = keyPath;
  if (bool(config, 'insecure-ignore-host-key')) out['host-key-check'] = 'disabled';
  else if (str(config, 'host-key')) out['host-key-check'] = 'host-key';
  else out['host-key-check'] = `known_hosts ${str(config, 'known-hosts-path') || '~/.ssh/known_hosts'}`;
  return out;
}
