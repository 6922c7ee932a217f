import { fileURLToPath } from 'node:url';
import { ConfigError } from '@walship/core';
import type { BackendContext, ReplicaBackend, ReplicaConfig } from '@walship/core/backend';
import { FileReplicaClient, expandFileReplicaPath } from './file-replica-client.js';

function configuredPath(config: ReplicaConfig): string {
  const p = config['path'];
  if (p === undefined || p === null || p === '') throw new ConfigError('file replica path required');
  if (typeof p !== 'string') throw new ConfigError(`file replica path must be a string, got ${typeof p}`);
  return p;
}

/**
 * The `file` backend for the CLI and other composers: `type: file` or `url: file:///abs/path`,
 * with the single config key `path`.
 */
export const fileBackend: ReplicaBackend = {
  type: 'file',
  schemes: ['file'],
  configKeys: ['path'],

  /**
   * `file:///var/backups/db` → `{ path: '/var/backups/db' }` (percent-escapes decoded).
   * @throws ConfigError when the URL is malformed, not `file:`, names a non-local host
   *   (`file://host/…`), or has no path
   */
  parseUrl(url: string): Record<string, unknown> {
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      throw new ConfigError(`invalid file replica url: ${url}`);
    }
    if (u.protocol !== 'file:') throw new ConfigError(`file replica url must start with file://, got ${url}`);
    if (u.hostname !== '' && u.hostname !== 'localhost') {
      throw new ConfigError(`file replica url must name a local path (file:///path), got host "${u.hostname}" in ${url}`);
    }
    if (/^file:\/\/(localhost)?$/i.test(url.trim())) throw new ConfigError('file replica path required');
    let p: string;
    try {
      p = fileURLToPath(u);
    } catch (err) {
      throw new ConfigError(`invalid file replica url: ${url}: ${(err as Error).message}`, { cause: err });
    }
    return { path: p };
  },

  /**
   * Builds a {@link FileReplicaClient} from `path` (`~` expanded, made absolute). No I/O.
   * @throws ConfigError `file replica path required` when `path` is missing or empty
   */
  createClient(config: ReplicaConfig, _context: BackendContext): FileReplicaClient {
    return new FileReplicaClient({ path: configuredPath(config) });
  },

  /** `{ path }` as the client will use it (absolute, `~` expanded). */
  describe(config: ReplicaConfig): Record<string, string> {
    const p = config['path'];
    return typeof p === 'string' && p !== '' ? { path: expandFileReplicaPath(p) } : {};
  },
};
