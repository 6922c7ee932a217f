import { PassThrough, Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  IdempotencyStrategy,
  Storage,
  type Bucket,
  type File,
  type GetFilesOptions,
  type GetFilesResponse,
  type StorageOptions,
} from '@google-cloud/storage';
import {
  ConfigError,
  isWalshipError,
  type Pos,
  type ReplicaClient,
  type ReplicaClientCapabilities,
  type SnapshotInfo,
  type StoredLease,
  type WALSegmentInfo,
} from '@walship/core';
import {
  bodyChunkToBuffer,
  findDatabases,
  isGenerationName,
  joinKey,
  layout,
  leaseObjectKey,
  normalizeSubPath,
  parseSnapshotFileName,
  parseWalSegmentFileName,
} from '@walship/core/backend';
import { isGcsNotFound, statusOf, toWalshipError } from './errors.js';

/** Options of {@link GcsReplicaClient}. */
export interface GcsReplicaClientOptions {
  /** Bucket name (required). The bucket must already exist; it is never created or probed. */
  readonly bucket: string;
  /**
   * Root prefix inside the bucket (Litestream's `path`), e.g. `db`. Objects go under
   * `<path>/generations/…`. Empty (default) means the bucket root.
   */
  readonly path?: string;
  /**
   * JSON API endpoint of an emulator or GCS-compatible service, e.g. `http://127.0.0.1:9199`.
   * A value without a scheme gets `https://` (as the SDK does). When set, requests are
   * unauthenticated unless `storageOptions.useAuthWithCustomEndpoint` is true.
   * Default: the SDK's choice — `STORAGE_EMULATOR_HOST` when set, else
   * `https://storage.googleapis.com`.
   */
  readonly endpoint?: string;
  /** Google Cloud project id passed to the SDK. Not needed for object operations. */
  readonly projectId?: string;
  /**
   * Extra `@google-cloud/storage` options (credentials, `keyFilename`, `authClient`,
   * `useAuthWithCustomEndpoint`, `universeDomain`, …). `endpoint`, `projectId` and `retry`
   * take precedence over the same settings here.
   */
  readonly storageOptions?: StorageOptions;
  /**
   * A ready-made SDK client to use instead of building one. `endpoint`, `projectId`,
   * `storageOptions` and `retry` are then ignored: that client's own settings apply.
   */
  readonly storage?: Storage;
  /**
   * Bodies up to this many bytes are buffered and sent in one request, which the SDK retries
   * on transient errors. Larger bodies are streamed (see `resumable`). Default 8 MiB.
   */
  readonly singleRequestThreshold?: number;
  /**
   * Upload bodies larger than `singleRequestThreshold` with a resumable upload (true, default)
   * or stream them in one single-request multipart upload (false) — for emulators and
   * GCS-compatible services without working resumable uploads.
   */
  readonly resumable?: boolean;
  /**
   * Chunk size of resumable uploads, a multiple of 256 KiB. Each chunk is held in memory and
   * retried on its own. Default: unset — the body is streamed in one request and the SDK
   * resumes from the server's offset when it can.
   */
  readonly chunkSize?: number;
  /** Objects per listing page (1–1000). Default 1000. */
  readonly pageSize?: number;
  /** Maximum parallel requests, used for deletes and advertised to walship. Default 8. */
  readonly maxConcurrency?: number;
  /**
   * SDK retry settings. walship's defaults: `autoRetry: true`, `maxRetries: 3`,
   * exponential backoff (`retryDelayMultiplier: 2`, `maxRetryDelay: 64` s,
   * `totalTimeout: 600` s) and `idempotencyStrategy: RetryAlways` — every operation this
   * client issues is idempotent (it only overwrites whole objects with the same bytes and
   * ignores missing objects on delete).
   */
  readonly retry?: GcsRetryOptions;
}

/** The SDK's retry settings (`StorageOptions['retryOptions']`). */
export type GcsRetryOptions = NonNullable<StorageOptions['retryOptions']>;

const DEFAULT_SINGLE_REQUEST_THRESHOLD = 8 * 1024 * 1024;
const DEFAULT_PAGE_SIZE = 1000;
const DEFAULT_MAX_CONCURRENCY = 8;
const CONTENT_TYPE = 'application/octet-stream';
const CHUNK_GRANULARITY = 256 * 1024;

/**
 * Google Cloud Storage replica client in Litestream v0.3's layout
 * (`<path>/generations/<gen>/snapshots/<index>.snapshot.lz4`, `…/wal/<index>_<offset>.wal.lz4`).
 *
 * Uses object operations only (list, read, write, delete); never bucket metadata calls.
 * Credentials come from Google Application Default Credentials unless `storageOptions` or
 * `storage` say otherwise.
 */
export class GcsReplicaClient implements ReplicaClient {
  readonly type = 'gcs';
  readonly capabilities: ReplicaClientCapabilities;
  /** The SDK client in use. */
  readonly storage: Storage;
  /** Bucket name. */
  readonly bucketName: string;
  /** Root prefix (cleaned; empty for the bucket root). */
  readonly root: string;

  readonly #options: GcsReplicaClientOptions;
  readonly #bucket: Bucket;
  readonly #threshold: number;
  readonly #resumable: boolean;
  readonly #chunkSize: number | undefined;
  readonly #pageSize: number;
  readonly #maxConcurrency: number;

  /** @throws ConfigError when an option is invalid. No network I/O. */
  constructor(options: GcsReplicaClientOptions) {
    if (!options || typeof options.bucket !== 'string' || options.bucket === '') {
      throw new ConfigError('bucket required for gcs replica');
    }
    if (/[/\s]/.test(options.bucket)) {
      throw new ConfigError(`invalid gcs bucket name: ${JSON.stringify(options.bucket)}`);
    }
    this.#options = options;
    this.bucketName = options.bucket;
    this.root = joinKey(options.path ?? '');
    this.#threshold = positiveInt(options.singleRequestThreshold, 'singleRequestThreshold', DEFAULT_SINGLE_REQUEST_THRESHOLD, 0);
    this.#resumable = options.resumable ?? true;
    this.#pageSize = positiveInt(options.pageSize, 'pageSize', DEFAULT_PAGE_SIZE, 1);
    if (this.#pageSize > 1000) throw new ConfigError('gcs pageSize must be between 1 and 1000');
    this.#maxConcurrency = positiveInt(options.maxConcurrency, 'maxConcurrency', DEFAULT_MAX_CONCURRENCY, 1);
    if (options.chunkSize !== undefined) {
      const cs = positiveInt(options.chunkSize, 'chunkSize', 0, 1);
      if (cs % CHUNK_GRANULARITY !== 0) throw new ConfigError('gcs chunkSize must be a multiple of 262144 (256 KiB)');
      this.#chunkSize = cs;
    }
    if (options.endpoint !== undefined) checkEndpoint(options.endpoint);
    this.capabilities = { batchDelete: false, maxConcurrency: this.#maxConcurrency, leases: true };

    if (options.storage) {
      this.storage = options.storage;
    } else {
      const storageOptions: StorageOptions = { ...options.storageOptions };
      if (options.endpoint) storageOptions.apiEndpoint = options.endpoint;
      if (options.projectId) storageOptions.projectId = options.projectId;
      storageOptions.retryOptions = {
        autoRetry: true,
        maxRetries: 3,
        idempotencyStrategy: IdempotencyStrategy.RetryAlways,
        ...options.storageOptions?.retryOptions,
        ...options.retry,
      };
      this.storage = new Storage(storageOptions);
    }
    this.#bucket = this.storage.bucket(this.bucketName);
  }

  async generations(): Promise<string[]> {
    const prefix = `${layout.generations(this.root)}/`;
    const out = new Set<string>();
    for await (const page of this.#pages(prefix, '/')) {
      for (const p of page.prefixes) {
        const name = p.slice(prefix.length).replace(/\/$/, '');
        if (isGenerationName(name)) out.add(name);
      }
    }
    return [...out].sort();
  }

  async deleteGeneration(generation: string): Promise<void> {
    const prefix = `${layout.generation(this.root, generation)}/`;
    for await (const page of this.#pages(prefix)) {
      await this.#deleteKeys(page.files.map((f) => f.name));
    }
  }

  async snapshots(generation: string): Promise<SnapshotInfo[]> {
    const prefix = `${layout.snapshots(this.root, generation)}/`;
    const out: SnapshotInfo[] = [];
    for await (const page of this.#pages(prefix)) {
      for (const f of page.files) {
        const parsed = parseSnapshotFileName(f.name.slice(prefix.length));
        if (!parsed) continue;
        const { size, createdAt } = objectInfo(f);
        out.push({ generation, index: parsed.index, size, createdAt });
      }
    }
    return out;
  }

  async writeSnapshot(generation: string, index: number, body: Readable): Promise<SnapshotInfo> {
    const key = layout.snapshot(this.root, generation, index);
    const { size, createdAt } = await this.#upload(key, body);
    return { generation, index, size, createdAt };
  }

  async snapshotReader(generation: string, index: number): Promise<Readable> {
    return this.#reader(layout.snapshot(this.root, generation, index), 'snapshot');
  }

  async deleteSnapshot(generation: string, index: number): Promise<void> {
    await this.#deleteKeys([layout.snapshot(this.root, generation, index)]);
  }

  async walSegments(generation: string): Promise<WALSegmentInfo[]> {
    const prefix = `${layout.wal(this.root, generation)}/`;
    const out: WALSegmentInfo[] = [];
    for await (const page of this.#pages(prefix)) {
      for (const f of page.files) {
        const parsed = parseWalSegmentFileName(f.name.slice(prefix.length));
        if (!parsed) continue;
        const { size, createdAt } = objectInfo(f);
        out.push({ generation, index: parsed.index, offset: parsed.offset, size, createdAt });
      }
    }
    return out;
  }

  async writeWALSegment(pos: Pos, body: Readable): Promise<WALSegmentInfo> {
    const key = layout.walSegment(this.root, pos.generation, pos.index, pos.offset);
    const { size, createdAt } = await this.#upload(key, body);
    return { generation: pos.generation, index: pos.index, offset: pos.offset, size, createdAt };
  }

  async walSegmentReader(pos: Pos): Promise<Readable> {
    return this.#reader(layout.walSegment(this.root, pos.generation, pos.index, pos.offset), 'wal segment');
  }

  async deleteWALSegments(positions: readonly Pos[]): Promise<void> {
    // Validate every position before deleting anything.
    const keys = positions.map((p) => layout.walSegment(this.root, p.generation, p.index, p.offset));
    await this.#deleteKeys(keys);
  }

  /**
   * The lease object `<path>/walship-lease.json`, versioned by its generation: the metadata
   * names the generation, which is then read by number (retried if replaced in between).
   */
  async readLease(): Promise<StoredLease | undefined> {
    const key = leaseObjectKey(this.root);
    for (let attempt = 0; ; attempt++) {
      let generation: string;
      try {
        const [md] = await this.#bucket.file(key).getMetadata();
        generation = String(md.generation ?? '');
      } catch (err) {
        if (isGcsNotFound(err)) return undefined;
        throw toWalshipError(err, 'read', this.#url(key));
      }
      if (!/^\d+$/.test(generation)) throw toWalshipError(new Error('object metadata has no generation'), 'read', this.#url(key));
      try {
        const [data] = await this.#bucket.file(key, { generation }).download();
        return { body: data.toString('utf8'), version: generation };
      } catch (err) {
        if (!isGcsNotFound(err) || attempt >= 3) throw toWalshipError(err, 'read', this.#url(key));
      }
    }
  }

  /**
   * Conditional write of the lease object with `ifGenerationMatch` (0: only if absent; else the
   * generation read). 412 resolves null. The Firebase Storage emulator ignores the
   * precondition; walship notices that at start.
   */
  async writeLease(body: string, ifVersion: string | null): Promise<string | null> {
    const key = leaseObjectKey(this.root);
    if (ifVersion !== null && !/^\d+$/.test(ifVersion)) return null;
    const file = this.#bucket.file(key);
    try {
      await file.save(Buffer.from(body), {
        resumable: false,
        metadata: { contentType: 'application/json' },
        preconditionOpts: { ifGenerationMatch: ifVersion === null ? 0 : ifVersion },
      });
    } catch (err) {
      const status = statusOf(err);
      if (status === 412 || (ifVersion !== null && status === 404)) return null;
      throw toWalshipError(err, 'write', this.#url(key));
    }
    const generation = file.metadata?.generation;
    if (generation === undefined || generation === null || generation === '') {
      throw toWalshipError(new Error('response has no generation'), 'write', this.#url(key));
    }
    return String(generation);
  }

  /**
   * A client rooted at `<path>/<subPath>` (checked and cleaned with `normalizeSubPath`) in the
   * same bucket, on this client's SDK client (`storage`). No I/O; closing it releases nothing.
   * @throws InvalidArgumentError when `subPath` is empty, absolute, or has `.`/`..` segments
   */
  scoped(subPath: string): GcsReplicaClient {
    return new GcsReplicaClient({ ...this.#options, path: joinKey(this.root, normalizeSubPath(subPath)), storage: this.storage });
  }

  /**
   * Relative paths `P` whose `<path>/P/generations/` holds a valid generation, sorted: a walk
   * over delimited listings (prefixes) of the "folders" under the root.
   */
  async databases(): Promise<string[]> {
    return findDatabases({
      listFolders: async (rel) => {
        const dir = joinKey(this.root, rel);
        const prefix = dir === '' || dir.endsWith('/') ? dir : `${dir}/`;
        const names: string[] = [];
        for await (const page of this.#pages(prefix, '/')) {
          for (const p of page.prefixes) {
            if (!p.startsWith(prefix)) continue;
            const name = p.slice(prefix.length).replace(/\/$/, '');
            if (name !== '' && !name.includes('/')) names.push(name);
          }
        }
        return names;
      },
      hasGenerations: async (rel) => (await this.scoped(rel).generations()).length > 0,
      concurrency: this.#maxConcurrency,
    });
  }

  async close(): Promise<void> {
    // The SDK keeps no long-lived connections that need closing beyond the HTTP agent's
    // keep-alive sockets, which do not hold the process open.
  }

  #url(key: string): string {
    return `gs://${this.bucketName}/${key}`;
  }

  /** Listing pages under `prefix` (with `delimiter`, prefixes are returned too). */
  async *#pages(prefix: string, delimiter?: string): AsyncGenerator<{ files: File[]; prefixes: string[] }> {
    let query: GetFilesOptions | null = {
      prefix,
      autoPaginate: false,
      maxResults: this.#pageSize,
      ...(delimiter ? { delimiter } : {}),
    };
    while (query) {
      let files: File[];
      let next: GetFilesOptions | null;
      let response: { prefixes?: string[] } | undefined;
      try {
        const res: GetFilesResponse = await this.#bucket.getFiles(query);
        files = res[0];
        next = (res[1] as GetFilesOptions | null) ?? null;
        response = res[2] as { prefixes?: string[] } | undefined;
      } catch (err) {
        throw toWalshipError(err, 'list', this.#url(prefix));
      }
      yield { files, prefixes: response?.prefixes ?? [] };
      query = next?.pageToken ? { ...query, pageToken: next.pageToken } : null;
    }
  }

  /** Deletes keys with bounded concurrency; missing objects are ignored. */
  async #deleteKeys(keys: readonly string[]): Promise<void> {
    await forEachLimit(keys, this.#maxConcurrency, async (key) => {
      try {
        await this.#bucket.file(key).delete({ ignoreNotFound: true });
      } catch (err) {
        throw toWalshipError(err, 'delete', this.#url(key));
      }
    });
  }

  /** Opens a download; rejects with NotFoundError before resolving when the object is missing. */
  async #reader(key: string, what: string): Promise<Readable> {
    const url = this.#url(key);
    const source = this.#bucket.file(key).createReadStream();
    const out = new PassThrough();
    return new Promise<Readable>((resolve, reject) => {
      let settled = false;
      source.once('response', (res: { statusCode?: number }) => {
        const status = res?.statusCode ?? 0;
        if (status >= 200 && status < 300 && !settled) {
          settled = true;
          resolve(out);
        }
      });
      pipeline(source, out).then(
        () => {
          // An empty object may end before the response listener resolved.
          if (!settled) {
            settled = true;
            resolve(out);
          }
        },
        (err: unknown) => {
          const mapped = toWalshipError(err, 'read', url, what);
          if (!settled) {
            settled = true;
            reject(mapped);
          } else if (!out.destroyed) {
            out.destroy(mapped);
          }
        },
      );
    });
  }

  /**
   * Stores `body` at `key`. Bodies up to the threshold are buffered and saved in one retried
   * request; larger ones are streamed (resumable by default). A failing body aborts the
   * upload before it is finalised, so no object becomes visible.
   */
  async #upload(key: string, body: Readable): Promise<{ size: number; createdAt: Date }> {
    const url = this.#url(key);
    const startedAt = new Date();
    const file = this.#bucket.file(key);
    const iterator = body[Symbol.asyncIterator]() as AsyncIterator<unknown>;
    const head: Buffer[] = [];
    let headBytes = 0;
    let ended = false;
    while (headBytes <= this.#threshold) {
      const r = await iterator.next(); // a body error propagates as is
      if (r.done) {
        ended = true;
        break;
      }
      const chunk = bodyChunkToBuffer(r.value, 'gcs');
      head.push(chunk);
      headBytes += chunk.length;
    }

    let size: number;
    try {
      if (ended) {
        const data = Buffer.concat(head, headBytes);
        await file.save(data, { resumable: false, metadata: { contentType: CONTENT_TYPE } });
        size = data.length;
      } else {
        const counter = new ByteCounter();
        const rest = Readable.from(
          (async function* () {
            yield* head;
            head.length = 0;
            for (;;) {
              const r = await iterator.next();
              if (r.done) return;
              yield bodyChunkToBuffer(r.value, 'gcs');
            }
          })(),
          { objectMode: false },
        );
        const sink = file.createWriteStream({
          resumable: this.#resumable,
          ...(this.#chunkSize !== undefined && this.#resumable ? { chunkSize: this.#chunkSize } : {}),
          metadata: { contentType: CONTENT_TYPE },
        });
        try {
          await pipeline(rest, counter, sink);
        } catch (err) {
          body.destroy();
          throw err;
        }
        size = counter.bytes;
      }
    } catch (err) {
      if (isBodyError(err, body)) throw err;
      throw toWalshipError(err, 'write', url);
    }
    const md = file.metadata ?? {};
    const storedSize = md.size !== undefined ? Number(md.size) : NaN;
    const created = md.timeCreated ? new Date(String(md.timeCreated)) : startedAt;
    return {
      size: Number.isSafeInteger(storedSize) ? storedSize : size,
      createdAt: Number.isNaN(created.getTime()) ? startedAt : created,
    };
  }
}

/** Counts bytes passing through. */
class ByteCounter extends Transform {
  bytes = 0;
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.bytes += chunk.length;
    cb(null, chunk);
  }
}

/** The error came from the caller's body stream rather than from storage. */
function isBodyError(err: unknown, body: Readable): boolean {
  return (
    err !== undefined &&
    err !== null &&
    (body.errored === err || (isWalshipError(err, 'WALSHIP_INVALID_ARGUMENT') && err.message.startsWith('gcs: upload body must')))
  );
}

function objectInfo(f: File): { size: number; createdAt: Date } {
  const md = f.metadata ?? {};
  const size = Number(md.size ?? 0);
  const createdAt = new Date(String(md.timeCreated ?? md.updated ?? 0));
  return { size: Number.isSafeInteger(size) ? size : 0, createdAt };
}

function positiveInt(v: number | undefined, name: string, dflt: number, min: number): number {
  if (v === undefined) return dflt;
  if (!Number.isSafeInteger(v) || v < min) throw new ConfigError(`gcs ${name} must be an integer >= ${min}`);
  return v;
}

function checkEndpoint(endpoint: string): void {
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(endpoint) ? endpoint : `https://${endpoint}`;
  let u: URL;
  try {
    u = new URL(withScheme);
  } catch {
    throw new ConfigError(`invalid gcs endpoint: ${endpoint}`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    throw new ConfigError(`invalid gcs endpoint: ${endpoint} (use http:// or https://)`);
  }
}

/** Runs `fn` over `items` with at most `limit` in flight; stops starting new work after the first failure. */
async function forEachLimit<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failed = false;
  let firstError: unknown;
  const worker = async (): Promise<void> => {
    while (!failed && next < items.length) {
      const item = items[next++]!;
      try {
        await fn(item);
      } catch (err) {
        if (!failed) {
          failed = true;
          firstError = err;
        }
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failed) throw firstError;
}
