import { createHash } from 'node:crypto';
import { Agent as HttpsAgent } from 'node:https';
import { Readable, Transform, pipeline } from 'node:stream';
import {
  DeleteObjectsCommand,
  GetBucketLocationCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  type S3ClientConfig,
  type ListObjectsV2CommandOutput,
  type _Error as S3DeleteError,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import {
  BackendError,
  ConfigError,
  type Pos,
  type ReplicaClient,
  type ReplicaClientCapabilities,
  type SnapshotInfo,
  type StoredLease,
  type WALSegmentInfo,
  type WalSegmentsOptions,
} from '@walship/core';
import {
  findDatabases,
  isGenerationName,
  joinKey,
  layout,
  leaseObjectKey,
  normalizeSubPath,
  parseSnapshotFileName,
  parseWalSegmentFileName,
} from '@walship/core/backend';
import { DEFAULT_REGION, type ChecksumMode } from './config.js';
import { errorCode, httpStatus, isNoSuchKey, isRetryable, toWalshipError } from './errors.js';

/** Litestream's `MaxKeys`: the most keys one DeleteObjects request may carry. */
export const MAX_DELETE_KEYS = 1000;

/** Static credentials, or an AWS SDK credential provider (a function returning credentials). */
export type S3Credentials = NonNullable<S3ClientConfig['credentials']>;

/** Options of {@link S3ReplicaClient}. Every field maps to a litestream.yml key where one exists. */
export interface S3ReplicaClientOptions {
  /** Bucket name (`bucket`). Required. */
  readonly bucket: string;
  /** Key prefix under which `generations/` lives (`path`). Default: bucket root. */
  readonly path?: string;
  /**
   * Region (`region`). Default: `us-east-1` when `endpoint` is set; otherwise looked up once with
   * GetBucketLocation (against us-east-1) on the first request, as Litestream does.
   */
  readonly region?: string;
  /** Custom endpoint URL for S3-compatible stores (`endpoint`), e.g. `http://127.0.0.1:9000`. */
  readonly endpoint?: string;
  /** Path-style requests (`force-path-style`). Default: true when `endpoint` is set, else false. */
  readonly forcePathStyle?: boolean;
  /** Disable TLS certificate verification (`skip-verify`). Default false. */
  readonly skipVerify?: boolean;
  /** Static access key id (`access-key-id`). Without keys the AWS default credential chain is used. */
  readonly accessKeyId?: string;
  /** Static secret access key (`secret-access-key`). */
  readonly secretAccessKey?: string;
  /** Session token for temporary static credentials. */
  readonly sessionToken?: string;
  /** Credentials or a credential provider; overrides the key fields above. */
  readonly credentials?: S3Credentials;
  /**
   * When to compute request checksums (`request-checksum-calculation`). Default: `WHEN_REQUIRED`
   * when `endpoint` is set (most S3-compatible stores reject or mis-store the SDK's aws-chunked
   * CRC32 uploads), otherwise the SDK default (`WHEN_SUPPORTED`, or `AWS_REQUEST_CHECKSUM_CALCULATION`).
   */
  readonly requestChecksumCalculation?: ChecksumMode;
  /** When to validate response checksums (`response-checksum-validation`). Same defaults. */
  readonly responseChecksumValidation?: ChecksumMode;
  /** Attempts per request, including the first, with the SDK's standard backoff. Default 5. */
  readonly maxAttempts?: number;
  /** Multipart part size in bytes for large uploads (min 5 MiB). Default 5 MiB. */
  readonly partSize?: number;
  /** Parts uploaded concurrently per multipart upload. Default 5 (memory ≈ partSize × queueSize). */
  readonly queueSize?: number;
  /** Extra `S3Client` configuration merged last (logger, requestHandler, …). */
  readonly clientConfig?: Partial<S3ClientConfig>;
}

const DEFAULT_PART_SIZE = 5 * 1024 * 1024;
const DEFAULT_QUEUE_SIZE = 5;
const DEFAULT_MAX_ATTEMPTS = 5;

/** What a client shares with the clients scoped from it (see {@link S3ReplicaClient.scoped}). */
interface S3Shared {
  /** The SDK client, created on the first request. */
  s3: Promise<S3Client> | undefined;
  /** The owning (unscoped) client was closed: the SDK client is destroyed. */
  closed: boolean;
  /** The store wants If-Match ETags without their quotes (Ceph radosgw, DigitalOcean Spaces). */
  unquotedIfMatch: boolean;
}

interface Listed {
  readonly key: string;
  readonly size: number;
  readonly lastModified: Date;
}

/**
 * A walship {@link ReplicaClient} for Amazon S3 and S3-compatible stores (Ceph radosgw, MinIO,
 * Cloudflare R2, Backblaze B2, DigitalOcean Spaces, …), storing objects in Litestream v0.3's
 * layout under `s3://<bucket>/<path>/generations/…`.
 *
 * The constructor does no network I/O; the SDK client (and the region lookup, when needed) is
 * created on the first request. The client never sends requests on its own.
 */
export class S3ReplicaClient implements ReplicaClient {
  readonly type = 's3';
  readonly capabilities: ReplicaClientCapabilities = { batchDelete: true, maxConcurrency: 16, leases: true };

  /** Bucket name. */
  readonly bucket: string;
  /** Key prefix (root) as configured; joined with `/` and cleaned like Litestream. */
  readonly path: string;
  readonly endpoint: string | undefined;
  readonly forcePathStyle: boolean;

  private readonly options: S3ReplicaClientOptions;
  private readonly partSize: number;
  private readonly queueSize: number;
  /** The SDK client and what was learnt about the store; the same object in scoped clients. */
  private shared: S3Shared = { s3: undefined, closed: false, unquotedIfMatch: false };
  /** False for a scoped client: its close() leaves the shared SDK client alone. */
  private owner = true;
  private closed = false;

  constructor(options: S3ReplicaClientOptions) {
    if (!options || typeof options.bucket !== 'string' || options.bucket === '') {
      throw new ConfigError('bucket required for s3 replica');
    }
    if (options.endpoint !== undefined && options.endpoint !== '') {
      try {
        const u = new URL(options.endpoint);
        if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('scheme');
      } catch {
        throw new ConfigError(
          `invalid endpoint for s3 replica: ${JSON.stringify(options.endpoint)} (use a URL such as https://s3.example.com or http://127.0.0.1:9000)`,
        );
      }
    }
    const partSize = options.partSize ?? DEFAULT_PART_SIZE;
    if (!Number.isSafeInteger(partSize) || partSize < 5 * 1024 * 1024) {
      throw new ConfigError(`invalid partSize for s3 replica: ${partSize} (minimum 5242880 bytes)`);
    }
    const queueSize = options.queueSize ?? DEFAULT_QUEUE_SIZE;
    if (!Number.isSafeInteger(queueSize) || queueSize < 1) {
      throw new ConfigError(`invalid queueSize for s3 replica: ${queueSize} (must be at least 1)`);
    }
    const maxAttempts = options.maxAttempts ?? DEFAULT_MAX_ATTEMPTS;
    if (!Number.isSafeInteger(maxAttempts) || maxAttempts < 1) {
      throw new ConfigError(`invalid maxAttempts for s3 replica: ${maxAttempts} (must be at least 1)`);
    }
    this.options = { ...options, maxAttempts };
    this.bucket = options.bucket;
    this.path = options.path ?? '';
    this.endpoint = options.endpoint === '' ? undefined : options.endpoint;
    this.forcePathStyle = options.forcePathStyle ?? this.endpoint !== undefined;
    this.partSize = partSize;
    this.queueSize = queueSize;
  }

  // -------------------------------------------------------------------------------------------
  // SDK client, created lazily.

  private sdkConfig(region: string): S3ClientConfig {
    const o = this.options;
    const custom = this.endpoint !== undefined;
    let credentials: S3Credentials | undefined = o.credentials;
    if (credentials === undefined && (o.accessKeyId || o.secretAccessKey)) {
      credentials = {
        accessKeyId: o.accessKeyId ?? '',
        secretAccessKey: o.secretAccessKey ?? '',
        ...(o.sessionToken ? { sessionToken: o.sessionToken } : {}),
      };
    }
    const config: S3ClientConfig = {
      region,
      forcePathStyle: this.forcePathStyle,
      maxAttempts: o.maxAttempts,
      retryMode: 'standard',
    };
    if (this.endpoint !== undefined) config.endpoint = this.endpoint;
    if (credentials !== undefined) config.credentials = credentials;
    const req = o.requestChecksumCalculation ?? (custom ? 'WHEN_REQUIRED' : undefined);
    const res = o.responseChecksumValidation ?? (custom ? 'WHEN_REQUIRED' : undefined);
    if (req !== undefined) config.requestChecksumCalculation = req;
    if (res !== undefined) config.responseChecksumValidation = res;
    if (o.skipVerify) {
      config.requestHandler = { httpsAgent: new HttpsAgent({ keepAlive: true, rejectUnauthorized: false }) };
    }
    return { ...config, ...o.clientConfig };
  }

  private newSdkClient(region: string): S3Client {
    const client = new S3Client(this.sdkConfig(region));
    // DeleteObjects requires Content-MD5 on many S3-compatible stores (older MinIO, Ceph, B2, …);
    // the SDK now only sends a CRC32 checksum. AWS accepts both.
    client.middlewareStack.add(
      (next, context) => async (args) => {
        const request = (args as { request?: { headers?: Record<string, string>; body?: unknown } }).request;
        if (context.commandName === 'DeleteObjectsCommand' && request?.headers && request.body !== undefined) {
          const body = request.body;
          if (typeof body === 'string' || body instanceof Uint8Array) {
            const has = Object.keys(request.headers).some((h) => h.toLowerCase() === 'content-md5');
            if (!has) request.headers['Content-MD5'] = createHash('md5').update(body).digest('base64');
          }
        }
        return next(args);
      },
      { step: 'build', name: 'walshipDeleteObjectsContentMd5' },
    );
    return client;
  }

  /** Litestream's `findBucketRegion`: GetBucketLocation against us-east-1. */
  private async lookupRegion(): Promise<string> {
    const probe = this.newSdkClient(DEFAULT_REGION);
    try {
      const out = await probe.send(new GetBucketLocationCommand({ Bucket: this.bucket }));
      const c = out.LocationConstraint as string | undefined;
      if (c === undefined || c === null || c === '') return DEFAULT_REGION;
      if (c === 'EU') return 'eu-west-1';
      return c;
    } catch (err) {
      const inner = toWalshipError(err, `GetBucketLocation ${this.bucket}`);
      throw new BackendError(`cannot lookup bucket region: ${inner.message}`, {
        cause: err,
        retryable: isRetryable(err),
      });
    } finally {
      probe.destroy();
    }
  }

  private client(): Promise<S3Client> {
    const shared = this.shared;
    if (this.closed || shared.closed) {
      return Promise.reject(new BackendError('s3: client is closed', { retryable: false }));
    }
    if (shared.s3 === undefined) {
      const p = (async () => {
        const region = this.options.region || (this.endpoint !== undefined ? DEFAULT_REGION : await this.lookupRegion());
        return this.newSdkClient(region);
      })();
      shared.s3 = p;
      // A failed lookup is retried on the next call.
      p.catch(() => {
        if (shared.s3 === p) shared.s3 = undefined;
      });
    }
    return shared.s3;
  }

  /** The underlying SDK client (creating it, and looking up the region, if needed). */
  async sdkClient(): Promise<S3Client> {
    return this.client();
  }

  // -------------------------------------------------------------------------------------------
  // Primitives.

  private async *listPages(prefix: string, delimiter: string | undefined, startAfter?: string): AsyncGenerator<ListObjectsV2CommandOutput> {
    const s3 = await this.client();
    let token: string | undefined;
    do {
      let out: ListObjectsV2CommandOutput;
      try {
        out = await s3.send(
          new ListObjectsV2Command({
            Bucket: this.bucket,
            Prefix: prefix,
            ...(delimiter !== undefined ? { Delimiter: delimiter } : {}),
            ...(token !== undefined ? { ContinuationToken: token } : startAfter !== undefined ? { StartAfter: startAfter } : {}),
          }),
        );
      } catch (err) {
        throw toWalshipError(err, `LIST ${this.bucket}/${prefix}`);
      }
      yield out;
      token = out.IsTruncated ? out.NextContinuationToken : undefined;
    } while (token);
  }

  /** Objects directly inside `dir` (delimiter `/`), with their base name; from the first name after `startAfter`, if given. */
  private async listDir(dir: string, startAfter?: string): Promise<Array<Listed & { name: string }>> {
    const prefix = `${dir}/`;
    const out: Array<Listed & { name: string }> = [];
    for await (const page of this.listPages(prefix, '/', startAfter !== undefined ? prefix + startAfter : undefined)) {
      for (const obj of page.Contents ?? []) {
        const key = obj.Key;
        if (!key?.startsWith(prefix)) continue;
        out.push({
          key,
          name: key.slice(prefix.length),
          size: obj.Size ?? 0,
          lastModified: obj.LastModified ?? new Date(0),
        });
      }
    }
    return out;
  }

  private async upload(key: string, body: Readable): Promise<{ size: number; createdAt: Date }> {
    const s3 = await this.client().catch((err: unknown) => {
      body.destroy();
      throw err;
    });
    const createdAt = new Date();
    let size = 0;
    const counter = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        size += chunk.length;
        cb(null, chunk);
      },
    });
    pipeline(body, counter, () => {
      /* errors surface through the upload reading `counter` */
    });
    const upload = new Upload({
      client: s3,
      params: { Bucket: this.bucket, Key: key, Body: counter },
      partSize: this.partSize,
      queueSize: this.queueSize,
      leavePartsOnError: false,
    });
    try {
      await upload.done();
    } catch (err) {
      counter.destroy();
      throw toWalshipError(err, `PUT ${this.bucket}/${key}`);
    }
    return { size, createdAt };
  }

  private async reader(key: string): Promise<Readable> {
    const s3 = await this.client();
    try {
      const out = await s3.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
      const body = out.Body;
      if (body === undefined || body === null) {
        throw new BackendError(`s3: GET ${this.bucket}/${key}: response has no body`);
      }
      if (body instanceof Readable) return body;
      return Readable.from(body as AsyncIterable<Uint8Array>);
    } catch (err) {
      throw toWalshipError(err, `GET ${this.bucket}/${key}`, { notFound: true });
    }
  }

  /**
   * Deletes keys with DeleteObjects, up to 1000 per request. Keys the store reports as missing
   * are ignored; any other per-key error is thrown with Litestream's message format.
   */
  private async deleteKeys(keys: readonly string[]): Promise<void> {
    if (keys.length === 0) return;
    const s3 = await this.client();
    for (let i = 0; i < keys.length; i += MAX_DELETE_KEYS) {
      const batch = keys.slice(i, i + MAX_DELETE_KEYS);
      let errors: S3DeleteError[];
      try {
        const out = await s3.send(
          new DeleteObjectsCommand({
            Bucket: this.bucket,
            Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true },
          }),
        );
        errors = (out.Errors ?? []).filter((e) => e.Code !== 'NoSuchKey');
      } catch (err) {
        throw toWalshipError(err, `DELETE ${this.bucket}/${batch[0]}${batch.length > 1 ? ` (+${batch.length - 1} keys)` : ''}`);
      }
      if (errors.length > 0) throw deleteOutputError(errors);
    }
  }

  // -------------------------------------------------------------------------------------------
  // ReplicaClient.

  async generations(): Promise<string[]> {
    const prefix = `${layout.generations(this.path)}/`;
    const names: string[] = [];
    for await (const page of this.listPages(prefix, '/')) {
      for (const cp of page.CommonPrefixes ?? []) {
        const p = cp.Prefix;
        if (!p?.startsWith(prefix)) continue;
        const name = p.slice(prefix.length).replace(/\/$/, '');
        if (isGenerationName(name)) names.push(name);
      }
    }
    if (names.length === 0) {
      // No generation "folders". On S3 that means no generations, and this plain listing returns
      // only the (normally zero) foreign objects under generations/ — one small request.
      // Some S3-compatible servers (s3rver 3.7.1) omit CommonPrefixes whose "folder" holds only
      // sub-folders, so the delimited listing came back empty although generations exist; the
      // plain listing finds them.
      const seen = new Set<string>();
      for await (const page of this.listPages(prefix, undefined)) {
        for (const obj of page.Contents ?? []) {
          const key = obj.Key;
          if (!key?.startsWith(prefix)) continue;
          const slash = key.indexOf('/', prefix.length);
          if (slash < 0) continue;
          const name = key.slice(prefix.length, slash);
          if (isGenerationName(name)) seen.add(name);
        }
      }
      names.push(...seen);
    }
    return names.sort();
  }

  async deleteGeneration(generation: string): Promise<void> {
    const prefix = `${layout.generation(this.path, generation)}/`;
    // Delete page by page: memory stays bounded for generations with many segments.
    for await (const page of this.listPages(prefix, undefined)) {
      const keys = (page.Contents ?? []).map((o) => o.Key).filter((k): k is string => !!k);
      await this.deleteKeys(keys);
    }
  }

  async snapshots(generation: string): Promise<SnapshotInfo[]> {
    const dir = layout.snapshots(this.path, generation);
    const out: SnapshotInfo[] = [];
    for (const obj of await this.listDir(dir)) {
      const parsed = parseSnapshotFileName(obj.name);
      if (!parsed) continue;
      out.push({ generation, index: parsed.index, size: obj.size, createdAt: obj.lastModified });
    }
    return out.sort((a, b) => a.index - b.index);
  }

  async writeSnapshot(generation: string, index: number, body: Readable): Promise<SnapshotInfo> {
    let key: string;
    try {
      key = layout.snapshot(this.path, generation, index);
    } catch (err) {
      body.destroy();
      throw err;
    }
    const { size, createdAt } = await this.upload(key, body);
    return { generation, index, size, createdAt };
  }

  async snapshotReader(generation: string, index: number): Promise<Readable> {
    return this.reader(layout.snapshot(this.path, generation, index));
  }

  async deleteSnapshot(generation: string, index: number): Promise<void> {
    await this.deleteKeys([layout.snapshot(this.path, generation, index)]);
  }

  async walSegments(generation: string, options?: WalSegmentsOptions): Promise<WALSegmentInfo[]> {
    const dir = layout.wal(this.path, generation);
    const out: WALSegmentInfo[] = [];
    // Segment names are `%08x_%08x.wal.lz4`: every name of index ≥ k sorts after the bare `%08x` of k.
    const from = options?.fromIndex;
    const startAfter = from !== undefined && Number.isInteger(from) && from > 0 ? from.toString(16).padStart(8, '0') : undefined;
    for (const obj of await this.listDir(dir, startAfter)) {
      const parsed = parseWalSegmentFileName(obj.name);
      if (!parsed) continue;
      out.push({
        generation,
        index: parsed.index,
        offset: parsed.offset,
        size: obj.size,
        createdAt: obj.lastModified,
      });
    }
    return out.sort((a, b) => a.index - b.index || a.offset - b.offset);
  }

  async writeWALSegment(pos: Pos, body: Readable): Promise<WALSegmentInfo> {
    let key: string;
    try {
      key = layout.walSegment(this.path, pos.generation, pos.index, pos.offset);
    } catch (err) {
      body.destroy();
      throw err;
    }
    const { size, createdAt } = await this.upload(key, body);
    return { generation: pos.generation, index: pos.index, offset: pos.offset, size, createdAt };
  }

  async walSegmentReader(pos: Pos): Promise<Readable> {
    return this.reader(layout.walSegment(this.path, pos.generation, pos.index, pos.offset));
  }

  async deleteWALSegments(positions: readonly Pos[]): Promise<void> {
    // Validate every position before deleting anything.
    const keys = positions.map((p) => layout.walSegment(this.path, p.generation, p.index, p.offset));
    await this.deleteKeys(keys);
  }

  /** The lease object `<path>/walship-lease.json`, versioned by its ETag. */
  async readLease(): Promise<StoredLease | undefined> {
    const s3 = await this.client();
    const key = leaseObjectKey(this.path);
    try {
      const out = await s3.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
      const body = out.Body ? await out.Body.transformToString('utf8') : '';
      if (!out.ETag) throw new BackendError(`s3: GET ${this.bucket}/${key}: response has no ETag`, { retryable: true });
      return { body, version: out.ETag };
    } catch (err) {
      if (isNoSuchKey(err)) return undefined;
      throw toWalshipError(err, `GET ${this.bucket}/${key}`);
    }
  }

  /**
   * Conditional PUT of the lease object: `If-None-Match: *` to create, `If-Match: <ETag>` to
   * replace. 412 PreconditionFailed, 409 ConditionalRequestConflict (a concurrent conditional
   * write) and 404 (If-Match on a deleted object) resolve null. Stores that ignore these
   * headers (s3rver, some S3-compatible services) write anyway; walship notices that at start.
   */
  async writeLease(body: string, ifVersion: string | null): Promise<string | null> {
    const s3 = await this.client();
    const key = leaseObjectKey(this.path);
    const put = async (condition: { IfNoneMatch: string } | { IfMatch: string }): Promise<string | 'failed'> => {
      try {
        const out = await s3.send(
          new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: body, ContentType: 'application/json', ...condition }),
        );
        if (!out.ETag) throw new BackendError(`s3: PUT ${this.bucket}/${key}: response has no ETag`, { retryable: true });
        return out.ETag;
      } catch (err) {
        const status = httpStatus(err);
        const code = errorCode(err);
        if (status === 412 || code === 'PreconditionFailed' || status === 409 || code === 'ConditionalRequestConflict') return 'failed';
        if ('IfMatch' in condition && isNoSuchKey(err)) return 'failed';
        throw toWalshipError(err, `PUT ${this.bucket}/${key}`);
      }
    };
    if (ifVersion === null) {
      const v = await put({ IfNoneMatch: '*' });
      return v === 'failed' ? null : v;
    }
    const bare = ifVersion.replace(/^"(.*)"$/, '$1');
    const v = await put({ IfMatch: this.shared.unquotedIfMatch ? bare : ifVersion });
    if (v !== 'failed') return v;
    if (this.shared.unquotedIfMatch || bare === ifVersion) return null;
    // Some stores (Ceph radosgw, DigitalOcean Spaces) compare If-Match without the quotes the
    // ETag is returned with. If the object still has the ETag we sent, that was the reason:
    // send it bare, now and from now on.
    let current: string | undefined;
    try {
      current = (await s3.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }))).ETag;
    } catch (err) {
      if (isNoSuchKey(err)) return null;
      throw toWalshipError(err, `HEAD ${this.bucket}/${key}`);
    }
    if (current !== ifVersion) return null;
    this.shared.unquotedIfMatch = true;
    const again = await put({ IfMatch: bare });
    return again === 'failed' ? null : again;
  }

  /**
   * A client rooted at `<path>/<subPath>` (checked and cleaned with `normalizeSubPath`) in the
   * same bucket, sharing this client's SDK client (created once, on the first request of
   * either). No I/O. Its `close()` releases nothing; this client's `close()` ends it too.
   * @throws InvalidArgumentError when `subPath` is empty, absolute, or has `.`/`..` segments
   */
  scoped(subPath: string): S3ReplicaClient {
    const client = new S3ReplicaClient({ ...this.options, path: joinKey(this.path, normalizeSubPath(subPath)) });
    client.shared = this.shared;
    client.owner = false;
    return client;
  }

  /**
   * Relative paths `P` whose `<path>/P/generations/` holds a valid generation, sorted: a walk
   * over delimited listings (CommonPrefixes) of the "folders" under the root.
   */
  async databases(): Promise<string[]> {
    return findDatabases({
      listFolders: (rel) => this.listFolders(joinKey(this.path, rel)),
      hasGenerations: async (rel) => (await this.scoped(rel).generations()).length > 0,
      concurrency: this.capabilities.maxConcurrency ?? 8,
    });
  }

  /** Names of the "folders" directly inside `dir` ('' = bucket root): the CommonPrefixes of a delimited listing. */
  private async listFolders(dir: string): Promise<string[]> {
    const prefix = dir === '' || dir.endsWith('/') ? dir : `${dir}/`;
    const names: string[] = [];
    for await (const page of this.listPages(prefix, '/')) {
      for (const cp of page.CommonPrefixes ?? []) {
        const p = cp.Prefix;
        if (!p?.startsWith(prefix)) continue;
        const name = p.slice(prefix.length).replace(/\/$/, '');
        if (name !== '' && !name.includes('/')) names.push(name);
      }
    }
    return names;
  }

  /** Destroys the SDK client (a scoped client only stops using it). Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (!this.owner) return;
    this.shared.closed = true;
    const p = this.shared.s3;
    this.shared.s3 = undefined;
    if (p) {
      try {
        (await p).destroy();
      } catch {
        /* the lookup failed; nothing to release */
      }
    }
  }

  /** `s3://bucket/path`, for logs. */
  toString(): string {
    return `s3://${this.bucket}/${joinKey(this.path)}`;
  }
}

/** Litestream's `deleteOutputError`: per-key DeleteObjects errors as one BackendError. */
export function deleteOutputError(errors: readonly S3DeleteError[]): BackendError {
  const first = errors[0]!;
  const retryable = errors.every((e) => isRetryable({ Code: e.Code ?? '' }));
  const key = first.Key ?? '';
  const code = first.Code ?? '';
  const msg = first.Message ?? '';
  const message =
    errors.length === 1
      ? `deleting object ${key}: ${code} - ${msg}`
      : `${errors.length} errors occurred deleting objects, ${key}: ${code} - (${msg} (and ${errors.length - 1} others)`;
  return new BackendError(message, { retryable, cause: errors });
}
