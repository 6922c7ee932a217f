import type { ReplicaClient } from './replica-client.js';

/**
 * A replica configuration as read from YAML or built from a URL: the litestream.yml replica
 * keys (kebab-case, e.g. `access-key-id`) with their raw values. Common keys handled by the
 * engine/CLI (`name`, `type`, `url`, `retention`, `retention-check-interval`,
 * `snapshot-interval`, `validation-interval`, `sync-interval`, `age`) are present too; a
 * backend reads only its own keys.
 */
export type ReplicaConfig = Readonly<Record<string, unknown>>;

/** Context a backend may use while building a client. */
export interface BackendContext {
  /** Environment variables (defaults to process.env). */
  readonly env: Readonly<Record<string, string | undefined>>;
  /** Emits a one-line warning (e.g. "host key check disabled"). */
  readonly warn?: (message: string) => void;
}

/**
 * How the CLI (or any composer) discovers a backend: its type name, URL schemes, config keys,
 * URL parser and client constructor. Each backend package exports one of these.
 */
export interface ReplicaBackend {
  /** Replica `type` in YAML: `file`, `s3`, `gcs`, `abs`, `sftp`. */
  readonly type: string;
  /** URL schemes this backend answers, without `:` (e.g. `['gcs', 'gs']`). */
  readonly schemes: readonly string[];
  /** Replica config keys specific to this backend (validated by the CLI as known keys). */
  readonly configKeys: readonly string[];
  /**
   * Turns a replica URL into config keys, e.g. `s3://bkt.localhost:9000/db` →
   * `{ bucket: 'bkt', path: 'db', region: 'us-east-1', endpoint: 'http://localhost:9000', 'force-path-style': true }`.
   * @throws ConfigError with a one-line message when the URL is malformed
   */
  parseUrl(url: string): Record<string, unknown>;
  /**
   * Validates `config` (after URL keys are merged: explicit keys win) and builds a client.
   * Performs no network I/O.
   * @throws ConfigError naming the key and the fix (e.g. `bucket required for s3 replica`)
   */
  createClient(config: ReplicaConfig, context: BackendContext): ReplicaClient;
  /** Non-secret fields to log at start-up (`bucket`, `path`, `endpoint`, …). Never credentials. */
  describe?(config: ReplicaConfig): Record<string, string>;
}
