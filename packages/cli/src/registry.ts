import type { ReplicaBackend } from '@walship/core/backend';
import { ConfigError, errorMessage } from '@walship/core';

/** Where each built-in replica type lives. */
export interface BackendSource {
  readonly type: string;
  readonly schemes: readonly string[];
  readonly packageName: string;
  /** Export names tried in order; failing those, any exported backend of this type is used. */
  readonly exportNames: readonly string[];
}

/** The backends walship knows about (Litestream v0.3's five types). */
export const BUILTIN_BACKENDS: readonly BackendSource[] = [
  { type: 'file', schemes: ['file'], packageName: '@walship/file', exportNames: ['fileBackend'] },
  { type: 's3', schemes: ['s3'], packageName: '@walship/s3', exportNames: ['s3Backend'] },
  { type: 'gcs', schemes: ['gcs', 'gs'], packageName: '@walship/gcs', exportNames: ['gcsBackend'] },
  { type: 'abs', schemes: ['abs'], packageName: '@walship/azure', exportNames: ['absBackend', 'azureBackend'] },
  { type: 'sftp', schemes: ['sftp'], packageName: '@walship/sftp', exportNames: ['sftpBackend'] },
];

/** Every replica config key Litestream v0.3 defines for some type (for "does not apply" warnings). */
export const LITESTREAM_BACKEND_KEYS: Readonly<Record<string, readonly string[]>> = {
  file: [],
  s3: ['access-key-id', 'secret-access-key', 'region', 'bucket', 'endpoint', 'force-path-style', 'skip-verify'],
  gcs: ['bucket'],
  abs: ['account-name', 'account-key', 'bucket', 'endpoint'],
  sftp: ['host', 'user', 'password', 'key-path'],
};

/** Module loader, replaceable for tests. */
export type ModuleImporter = (specifier: string) => Promise<Record<string, unknown>>;

const defaultImporter: ModuleImporter = (specifier) => import(specifier) as Promise<Record<string, unknown>>;

/**
 * Finds and lazily loads replica backends. A backend package is imported only when a replica
 * of its type is used, so a missing or broken package fails only the commands that need it,
 * with `replica type "gcs" is not available in this build: …`.
 */
export class BackendRegistry {
  readonly #sources: readonly BackendSource[];
  readonly #importer: ModuleImporter;
  readonly #loaded = new Map<string, Promise<ReplicaBackend>>();

  constructor(sources: readonly BackendSource[] = BUILTIN_BACKENDS, importer: ModuleImporter = defaultImporter) {
    this.#sources = sources;
    this.#importer = importer;
  }

  /** Every known type name (`file`, `s3`, …). */
  get types(): string[] {
    return this.#sources.map((s) => s.type);
  }

  /** The type that answers a URL scheme (`gs` → `gcs`), or undefined. */
  typeForScheme(scheme: string): string | undefined {
    const lower = scheme.toLowerCase();
    return this.#sources.find((s) => s.schemes.includes(lower))?.type;
  }

  /** True when `type` is a known replica type (whether or not its package is installed). */
  isKnownType(type: string): boolean {
    return this.#sources.some((s) => s.type === type);
  }

  /**
   * Loads the backend of `type`.
   * @throws ConfigError `unknown replica type in config: "x"` for an unknown type
   * @throws ConfigError `replica type "gcs" is not available in this build: <reason>`
   */
  load(type: string): Promise<ReplicaBackend> {
    const source = this.#sources.find((s) => s.type === type);
    if (!source) return Promise.reject(new ConfigError(`unknown replica type in config: ${JSON.stringify(type)}`));
    let p = this.#loaded.get(type);
    if (!p) {
      p = this.#import(source);
      this.#loaded.set(type, p);
    }
    return p;
  }

  async #import(source: BackendSource): Promise<ReplicaBackend> {
    const unavailable = (reason: string) =>
      new ConfigError(`replica type ${JSON.stringify(source.type)} is not available in this build: ${reason}`);
    let mod: Record<string, unknown>;
    try {
      mod = await this.#importer(source.packageName);
    } catch (err) {
      throw unavailable(`cannot load ${source.packageName}: ${errorMessage(err)}`);
    }
    const isBackend = (v: unknown): v is ReplicaBackend => {
      const b = v as Partial<ReplicaBackend> | null | undefined;
      return !!b && typeof b === 'object' && typeof b.createClient === 'function' && typeof b.parseUrl === 'function';
    };
    for (const name of source.exportNames) if (isBackend(mod[name])) return mod[name];
    for (const value of Object.values(mod)) if (isBackend(value) && value.type === source.type) return value;
    throw unavailable(`${source.packageName} does not export ${source.exportNames[0]}`);
  }
}
