import { Readable } from 'node:stream';
import {
  AnonymousCredential,
  BlobServiceClient,
  StorageSharedKeyCredential,
  type BlobItem,
  type ContainerClient,
  type StoragePipelineOptions,
} from '@azure/storage-blob';
import type { AccessToken, GetTokenOptions, TokenCredential } from '@azure/identity';
import {
  BackendError,
  ConfigError,
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
import { azureErrorInfo, isBlobNotFound, isRetryable, toWalshipError } from './errors.js';

/** Blob service limit on sub-requests per batch. */
export const MAX_BATCH_SIZE = 256;
const DEFAULT_BLOCK_SIZE = 4 * 1024 * 1024;
const DEFAULT_UPLOAD_CONCURRENCY = 2;
const DEFAULT_MAX_CONCURRENCY = 8;

/** Retry settings passed to the SDK's exponential retry policy. */
export interface AzureRetryOptions {
  /** Attempts per request, including the first (default 5). */
  readonly maxTries?: number;
  /** First back-off delay in ms; doubles per attempt (default 1000). */
  readonly retryDelayInMs?: number;
  /** Longest back-off delay in ms (default 30000). */
  readonly maxRetryDelayInMs?: number;
  /** Time limit of one attempt in ms; 0 = none, the service's own timeout applies (default 0). */
  readonly tryTimeoutInMs?: number;
}

/** Options of {@link AzureReplicaClient}. */
export interface AzureReplicaClientOptions {
  /** Container that holds the replica (Litestream's `bucket`). Required. */
  readonly container: string;
  /** Root path inside the container (leading `/` removed; default: the container root). */
  readonly path?: string;
  /** Storage account name. Required unless `endpoint` is given and no account key is used. */
  readonly accountName?: string;
  /** Shared account key. Takes precedence over `sasToken` and `credential`. */
  readonly accountKey?: string;
  /** Shared-access-signature token (with or without a leading `?`). */
  readonly sasToken?: string;
  /**
   * Azure AD credential (e.g. `new ManagedIdentityCredential()`). When neither `accountKey`,
   * `sasToken` nor `credential` is given, `DefaultAzureCredential` from `@azure/identity` is
   * used (loaded on the first request).
   */
  readonly credential?: TokenCredential;
  /** Blob service URL (default `https://<accountName>.blob.core.windows.net`). */
  readonly endpoint?: string;
  /** Block size of streamed uploads in bytes; bodies up to this size go in one PUT (default 4 MiB). */
  readonly blockSize?: number;
  /** Blocks buffered/uploaded in parallel per upload (default 2). Memory per upload ≈ blockSize × (uploadConcurrency + 2). */
  readonly uploadConcurrency?: number;
  /** Requests the caller may run concurrently (`capabilities.maxConcurrency`, default 8). */
  readonly maxConcurrency?: number;
  /** Listing page size, 1–5000 (default: the service's, 5000). */
  readonly listPageSize?: number;
  /** Delete many blobs per request with the blob batch API (default true). */
  readonly batchDelete?: boolean;
  /** SDK retry policy settings. */
  readonly retry?: AzureRetryOptions;
  /** Extra SDK pipeline options (proxy, user agent, custom HTTP client). `retryOptions` here is overridden by `retry`. */
  readonly pipelineOptions?: StoragePipelineOptions;
}

/** Options key (module-private) by which a scoped client receives its parent's container client. */
const SHARED_CONTAINER = Symbol('walship.abs.sharedContainer');
type InternalOptions = AzureReplicaClientOptions & { readonly [SHARED_CONTAINER]?: ContainerClient };

/** The error for an http endpoint without an account key or SAS token (see the constructor). */
function missingKeyOverHttp(endpoint: string): string {
  return `account key missing for abs replica at ${endpoint}: plain http needs a shared key (Azure AD tokens require https); set account-key in the config or the LITESTREAM_AZURE_ACCOUNT_KEY environment variable (or a sas-token / AZURE_STORAGE_SAS_TOKEN)`;
}

/** Loads `DefaultAzureCredential` on first use, so importing this package stays cheap. */
class LazyDefaultAzureCredential implements TokenCredential {
  private inner: Promise<TokenCredential> | undefined;
  async getToken(scopes: string | string[], options?: GetTokenOptions): Promise<AccessToken | null> {
    this.inner ??= import('@azure/identity').then((m) => new m.DefaultAzureCredential());
    return (await this.inner).getToken(scopes, options);
  }
}

function positiveInt(name: string, value: number | undefined, fallback: number, max = Number.MAX_SAFE_INTEGER): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < 1 || value > max) {
    throw new ConfigError(`invalid ${name} for abs replica: ${value} (want an integer from 1 to ${max})`);
  }
  return value;
}

/**
 * `ReplicaClient` for Azure Blob Storage (Litestream type `abs`), built on `@azure/storage-blob`.
 *
 * Objects are block blobs under `<path>/generations/…` in the container. Bodies up to
 * `blockSize` are stored with one Put Blob; larger ones are streamed as blocks and committed
 * at the end, so a reader never sees a partial object. Missing blobs are reported as
 * `NotFoundError`; every other failure as `BackendError` with `retryable` set from the status.
 */
export class AzureReplicaClient implements ReplicaClient {
  readonly type = 'abs';
  readonly capabilities: ReplicaClientCapabilities;
  /** Container name. */
  readonly container: string;
  /** Root path inside the container (no leading `/`; may be empty). */
  readonly path: string;
  /** Blob service URL, without credentials. */
  readonly endpoint: string;
  /** The SDK client for the container, for callers that need raw access. */
  readonly containerClient: ContainerClient;

  private readonly options: AzureReplicaClientOptions;
  private readonly blockSize: number;
  private readonly uploadConcurrency: number;
  private readonly listPageSize: number | undefined;
  private readonly batchDelete: boolean;

  constructor(options: AzureReplicaClientOptions) {
    if (!options?.container) throw new ConfigError('bucket required for abs replica');
    this.options = options;
    this.container = options.container;
    this.path = (options.path ?? '').replace(/^\/+/, '');
    this.blockSize = positiveInt('block size', options.blockSize, DEFAULT_BLOCK_SIZE, 4000 * 1024 * 1024);
    this.uploadConcurrency = positiveInt('upload concurrency', options.uploadConcurrency, DEFAULT_UPLOAD_CONCURRENCY, 64);
    this.listPageSize = options.listPageSize === undefined ? undefined : positiveInt('list page size', options.listPageSize, 5000, 5000);
    this.batchDelete = options.batchDelete ?? true;
    this.capabilities = {
      batchDelete: this.batchDelete,
      maxConcurrency: positiveInt('max concurrency', options.maxConcurrency, DEFAULT_MAX_CONCURRENCY),
      leases: true,
    };

    const accountName = options.accountName || undefined;
    let endpoint = options.endpoint?.trim();
    if (!endpoint) {
      if (!accountName) throw new ConfigError('account-name required for abs replica');
      endpoint = `https://${accountName}.blob.core.windows.net`;
    }
    let url: URL;
    try {
      url = new URL(endpoint);
    } catch {
      throw new ConfigError(`invalid endpoint for abs replica: ${endpoint}`);
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') {
      throw new ConfigError(`invalid endpoint for abs replica: ${endpoint} (want http:// or https://)`);
    }
    url.search = '';
    url.hash = '';
    this.endpoint = url.toString().replace(/\/+$/, '');
    const shared = (options as InternalOptions)[SHARED_CONTAINER];
    if (shared) {
      // A scoped client (see `scoped`): the parent's SDK pipeline, credential included.
      this.containerClient = shared;
      return;
    }

    let credential: StorageSharedKeyCredential | AnonymousCredential | TokenCredential;
    let serviceUrl = this.endpoint;
    if (options.accountKey) {
      if (!accountName) throw new ConfigError('account-name required for abs replica when an account key is set');
      try {
        credential = new StorageSharedKeyCredential(accountName, options.accountKey);
      } catch (err) {
        throw new ConfigError('invalid account-key for abs replica: not base64', { cause: err });
      }
    } else if (options.sasToken) {
      credential = new AnonymousCredential();
      serviceUrl = `${this.endpoint}?${options.sasToken.replace(/^\?/, '')}`;
    } else {
      // Azure AD tokens are only ever sent over https (the SDK refuses plain http with
      // "Bearer token authentication is not permitted for non-TLS protected (non-https) URLs"):
      // on an http endpoint (Azurite, a local proxy) the only way in is a key or a SAS token.
      if (url.protocol === 'http:') throw new ConfigError(missingKeyOverHttp(this.endpoint));
      credential = options.credential ?? new LazyDefaultAzureCredential();
    }

    const retry = options.retry ?? {};
    const pipelineOptions: StoragePipelineOptions = {
      ...options.pipelineOptions,
      retryOptions: {
        maxTries: positiveInt('retry maxTries', retry.maxTries, 5, 100),
        retryDelayInMs: retry.retryDelayInMs ?? 1000,
        maxRetryDelayInMs: retry.maxRetryDelayInMs ?? 30_000,
        tryTimeoutInMs: retry.tryTimeoutInMs ?? 0,
      },
    };
    const service = new BlobServiceClient(serviceUrl, credential, pipelineOptions);
    this.containerClient = service.getContainerClient(this.container);
  }

  /** Builds a write's key; on an invalid argument the unread body is destroyed before throwing. */
  private keyFor(body: Readable, build: () => string): string {
    try {
      return build();
    } catch (err) {
      body.destroy();
      throw err;
    }
  }

  private target(key: string): string {
    return `${this.container}/${key}`;
  }

  /** Lists blobs under `prefix` (flat) page by page. */
  private async *listFlat(prefix: string): AsyncGenerator<BlobItem[]> {
    const pages = this.containerClient.listBlobsFlat({ prefix }).byPage(this.listPageSize ? { maxPageSize: this.listPageSize } : {});
    try {
      for await (const page of pages) yield page.segment.blobItems;
    } catch (err) {
      throw toWalshipError(err, 'LIST', this.target(prefix));
    }
  }

  async generations(): Promise<string[]> {
    const prefix = `${layout.generations(this.path)}/`;
    const names: string[] = [];
    const pages = this.containerClient
      .listBlobsByHierarchy('/', { prefix })
      .byPage(this.listPageSize ? { maxPageSize: this.listPageSize } : {});
    try {
      for await (const page of pages) {
        for (const p of page.segment.blobPrefixes ?? []) {
          const name = p.name.slice(prefix.length).replace(/\/$/, '');
          if (isGenerationName(name)) names.push(name);
        }
      }
    } catch (err) {
      throw toWalshipError(err, 'LIST', this.target(prefix));
    }
    return names.sort();
  }

  async deleteGeneration(generation: string): Promise<void> {
    const prefix = `${layout.generation(this.path, generation)}/`;
    for await (const items of this.listFlat(prefix)) {
      await this.deleteKeys(items.map((b) => b.name));
    }
  }

  async snapshots(generation: string): Promise<SnapshotInfo[]> {
    const prefix = `${layout.snapshots(this.path, generation)}/`;
    const out: SnapshotInfo[] = [];
    for await (const items of this.listFlat(prefix)) {
      for (const item of items) {
        const name = item.name.slice(prefix.length);
        const parsed = parseSnapshotFileName(name);
        if (!parsed) continue;
        out.push({
          generation,
          index: parsed.index,
          size: item.properties.contentLength ?? 0,
          createdAt: item.properties.createdOn ?? item.properties.lastModified,
        });
      }
    }
    return out;
  }

  async writeSnapshot(generation: string, index: number, body: Readable): Promise<SnapshotInfo> {
    const key = this.keyFor(body, () => layout.snapshot(this.path, generation, index));
    const createdAt = new Date();
    const size = await this.upload(key, body);
    return { generation, index, size, createdAt };
  }

  async snapshotReader(generation: string, index: number): Promise<Readable> {
    return this.download(layout.snapshot(this.path, generation, index));
  }

  async deleteSnapshot(generation: string, index: number): Promise<void> {
    await this.deleteOne(layout.snapshot(this.path, generation, index));
  }

  async walSegments(generation: string): Promise<WALSegmentInfo[]> {
    const prefix = `${layout.wal(this.path, generation)}/`;
    const out: WALSegmentInfo[] = [];
    for await (const items of this.listFlat(prefix)) {
      for (const item of items) {
        const name = item.name.slice(prefix.length);
        const parsed = parseWalSegmentFileName(name);
        if (!parsed) continue;
        out.push({
          generation,
          index: parsed.index,
          offset: parsed.offset,
          size: item.properties.contentLength ?? 0,
          createdAt: item.properties.createdOn ?? item.properties.lastModified,
        });
      }
    }
    return out;
  }

  async writeWALSegment(pos: Pos, body: Readable): Promise<WALSegmentInfo> {
    const key = this.keyFor(body, () => layout.walSegment(this.path, pos.generation, pos.index, pos.offset));
    const createdAt = new Date();
    const size = await this.upload(key, body);
    return { generation: pos.generation, index: pos.index, offset: pos.offset, size, createdAt };
  }

  async walSegmentReader(pos: Pos): Promise<Readable> {
    return this.download(layout.walSegment(this.path, pos.generation, pos.index, pos.offset));
  }

  async deleteWALSegments(positions: readonly Pos[]): Promise<void> {
    // Validate every position before deleting anything.
    const keys = positions.map((p) => layout.walSegment(this.path, p.generation, p.index, p.offset));
    await this.deleteKeys(keys);
  }

  /** The lease blob `<path>/walship-lease.json`, versioned by its ETag. */
  async readLease(): Promise<StoredLease | undefined> {
    const key = leaseObjectKey(this.path);
    try {
      const res = await this.containerClient.getBlobClient(key).download(0, undefined, { maxRetryRequests: 5 });
      const stream = res.readableStreamBody;
      const chunks: Buffer[] = [];
      if (stream) for await (const c of stream as AsyncIterable<Buffer | string>) chunks.push(typeof c === 'string' ? Buffer.from(c) : c);
      if (!res.etag) throw new BackendError(`abs: GET ${this.target(key)}: response has no ETag`, { retryable: true });
      return { body: Buffer.concat(chunks).toString('utf8'), version: res.etag };
    } catch (err) {
      if (isBlobNotFound(err)) return undefined;
      throw toWalshipError(err, 'GET', this.target(key));
    }
  }

  /**
   * Conditional Put Blob of the lease: `If-None-Match: *` to create, `If-Match: <ETag>` to
   * replace. 412 ConditionNotMet, 409 BlobAlreadyExists and 404 (If-Match on a deleted blob)
   * resolve null.
   */
  async writeLease(body: string, ifVersion: string | null): Promise<string | null> {
    const key = leaseObjectKey(this.path);
    const data = Buffer.from(body);
    try {
      const res = await this.containerClient.getBlockBlobClient(key).upload(data, data.length, {
        blobHTTPHeaders: { blobContentType: 'application/json' },
        conditions: ifVersion === null ? { ifNoneMatch: '*' } : { ifMatch: ifVersion },
      });
      if (!res.etag) throw new BackendError(`abs: PUT ${this.target(key)}: response has no ETag`, { retryable: true });
      return res.etag;
    } catch (err) {
      const { statusCode, code } = azureErrorInfo(err);
      if (statusCode === 412 || statusCode === 409 || code === 'ConditionNotMet' || code === 'BlobAlreadyExists') return null;
      if (ifVersion !== null && isBlobNotFound(err)) return null;
      throw toWalshipError(err, 'PUT', this.target(key));
    }
  }

  /**
   * A client rooted at `<path>/<subPath>` (checked and cleaned with `normalizeSubPath`) in the
   * same container, on this client's SDK client (`containerClient`, its credential and HTTP
   * pipeline). No I/O; closing it releases nothing.
   * @throws InvalidArgumentError when `subPath` is empty, absolute, or has `.`/`..` segments
   */
  scoped(subPath: string): AzureReplicaClient {
    const options: InternalOptions = {
      ...this.options,
      path: joinKey(this.path, normalizeSubPath(subPath)),
      [SHARED_CONTAINER]: this.containerClient,
    };
    return new AzureReplicaClient(options);
  }

  /**
   * Relative paths `P` whose `<path>/P/generations/` holds a valid generation, sorted: a walk
   * over hierarchical listings (blob prefixes) of the virtual folders under the root.
   */
  async databases(): Promise<string[]> {
    return findDatabases({
      listFolders: async (rel) => {
        const dir = joinKey(this.path, rel);
        const prefix = dir === '' ? '' : `${dir}/`;
        const names: string[] = [];
        const pages = this.containerClient
          .listBlobsByHierarchy('/', prefix === '' ? {} : { prefix })
          .byPage(this.listPageSize ? { maxPageSize: this.listPageSize } : {});
        try {
          for await (const page of pages) {
            for (const p of page.segment.blobPrefixes ?? []) {
              if (!p.name.startsWith(prefix)) continue;
              const name = p.name.slice(prefix.length).replace(/\/$/, '');
              if (name !== '' && !name.includes('/')) names.push(name);
            }
          }
        } catch (err) {
          throw toWalshipError(err, 'LIST', this.target(prefix));
        }
        return names;
      },
      hasGenerations: async (rel) => (await this.scoped(rel).generations()).length > 0,
      concurrency: this.capabilities.maxConcurrency ?? DEFAULT_MAX_CONCURRENCY,
    });
  }

  async close(): Promise<void> {
    // The SDK keeps no per-client resources that need releasing.
  }

  /**
   * Uploads `body` to `key` and resolves with the number of bytes stored. A body no larger than
   * `blockSize` is sent with one Put Blob; a larger one is staged block by block (at most
   * `uploadConcurrency` blocks in memory) and committed at the end.
   */
  private async upload(key: string, body: Readable): Promise<number> {
    const blob = this.containerClient.getBlockBlobClient(key);
    const headers = { blobHTTPHeaders: { blobContentType: 'application/octet-stream' } };
    const it = body[Symbol.asyncIterator]() as AsyncIterator<unknown>;
    const head: Buffer[] = [];
    let headBytes = 0;
    let done = false;
    try {
      while (headBytes <= this.blockSize) {
        const r = await it.next();
        if (r.done) {
          done = true;
          break;
        }
        const buf = bodyChunkToBuffer(r.value, 'abs');
        head.push(buf);
        headBytes += buf.length;
      }
    } catch (err) {
      body.destroy();
      throw err instanceof Error ? err : new Error(String(err));
    }

    if (done) {
      const data = head.length === 1 ? head[0]! : Buffer.concat(head, headBytes);
      try {
        await blob.upload(data, data.length, headers);
      } catch (err) {
        throw toWalshipError(err, 'PUT', this.target(key));
      }
      return data.length;
    }

    let size = 0;
    let bodyError: unknown;
    const rest = Readable.from(
      (async function* () {
        try {
          for (const b of head.splice(0)) {
            size += b.length;
            yield b;
          }
          for (;;) {
            const r = await it.next();
            if (r.done) return;
            const buf = bodyChunkToBuffer(r.value, 'abs');
            size += buf.length;
            yield buf;
          }
        } catch (err) {
          bodyError = err;
          throw err;
        }
      })(),
      { objectMode: false, highWaterMark: this.blockSize },
    );
    try {
      await blob.uploadStream(rest, this.blockSize, this.uploadConcurrency, headers);
    } catch (err) {
      rest.destroy();
      body.destroy();
      if (bodyError !== undefined) throw bodyError instanceof Error ? bodyError : new Error(String(bodyError));
      throw toWalshipError(err, 'PUT', this.target(key));
    }
    return size;
  }

  private async download(key: string): Promise<Readable> {
    try {
      const res = await this.containerClient.getBlobClient(key).download(0, undefined, { maxRetryRequests: 5 });
      const stream = res.readableStreamBody;
      if (!stream) throw new BackendError(`abs: GET ${this.target(key)}: response has no body`);
      return stream instanceof Readable ? stream : Readable.from(stream as AsyncIterable<Buffer>);
    } catch (err) {
      throw toWalshipError(err, 'GET', this.target(key), true);
    }
  }

  private async deleteOne(key: string): Promise<void> {
    try {
      await this.containerClient.getBlobClient(key).delete();
    } catch (err) {
      if (isBlobNotFound(err)) return;
      throw toWalshipError(err, 'DELETE', this.target(key));
    }
  }

  /** Deletes blobs by name, ignoring missing ones: batches of up to 256, or one by one. */
  private async deleteKeys(keys: readonly string[]): Promise<void> {
    if (keys.length === 0) return;
    if (!this.batchDelete || keys.length === 1) return this.deleteSingly(keys);
    for (let i = 0; i < keys.length; i += MAX_BATCH_SIZE) {
      await this.deleteBatch(keys.slice(i, i + MAX_BATCH_SIZE));
    }
  }

  /** Deletes blobs one request each, `maxConcurrency` at a time. */
  private async deleteSingly(keys: readonly string[]): Promise<void> {
    const limit = this.capabilities.maxConcurrency ?? DEFAULT_MAX_CONCURRENCY;
    for (let i = 0; i < keys.length; i += limit) {
      const results = await Promise.allSettled(keys.slice(i, i + limit).map((k) => this.deleteOne(k)));
      const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) throw failed.reason;
    }
  }

  private async deleteBatch(keys: readonly string[]): Promise<void> {
    if (keys.length === 1) return this.deleteOne(keys[0]!);
    const batch = this.containerClient.getBlobBatchClient();
    let res;
    try {
      res = await batch.deleteBlobs(keys.map((k) => this.containerClient.getBlobClient(k)));
    } catch {
      // The batch request as a whole failed (after the SDK's retries): some stores and
      // credentials do not support it (e.g. Azurite with an account SAS answers 500). Deleting
      // one by one is idempotent and reports each blob's own error.
      return this.deleteSingly(keys);
    }
    const failures: { key: string; status: number; code: string; message: string }[] = [];
    res.subResponses.forEach((sub, i) => {
      if (sub.status >= 200 && sub.status < 300) return;
      if (sub.status === 404 && (sub.errorCode === undefined || sub.errorCode === 'BlobNotFound')) return;
      const key = keys[i] ?? sub._request?.url ?? '?';
      failures.push({ key, status: sub.status, code: sub.errorCode ?? '', message: sub.statusMessage ?? '' });
    });
    if (failures.length === 0) return;
    const retryable = failures.every((f) => isRetryable(f.status, f.code || undefined));
    const first = failures[0]!;
    const what = `${first.key}: ${first.status} ${first.code} - ${first.message}`.trim();
    const message =
      failures.length === 1
        ? `abs: deleting blob ${this.container}/${what}`
        : `abs: ${failures.length} errors occurred deleting blobs, ${this.container}/${what} (and ${failures.length - 1} others)`;
    throw new BackendError(message, { retryable });
  }
}
