import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import {
  CreateBucketCommand,
  DeleteBucketCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { S3ReplicaClient, type S3ReplicaClientOptions } from '../../src/index.js';

/** A running S3-compatible server the tests talk to. */
export interface S3TestServer {
  readonly kind: 's3rver' | 'radosgw';
  readonly endpoint: string;
  readonly region: string;
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  stop(): Promise<void>;
}

/** Either a server, or why there is none (the tests then skip, or fail under CI=true). */
export type ServerResult = { server: S3TestServer; unavailable?: undefined } | { server?: undefined; unavailable: string };

export const IS_CI = process.env['CI'] === 'true';

/**
 * Starts s3rver 3.7.1 on 127.0.0.1 with a free port and its own temp dir (removed on stop).
 * Runs under `--openssl-legacy-provider`: s3rver encrypts ListObjectsV2 continuation tokens
 * with DES, which OpenSSL 3 otherwise rejects (every truncated listing would 500).
 */
export async function startS3rver(): Promise<ServerResult> {
  let bin: string;
  try {
    const require = createRequire(import.meta.url);
    bin = join(dirname(require.resolve('s3rver/package.json')), 'bin', 's3rver.js');
  } catch {
    return { unavailable: 's3rver is not installed (npm i -D s3rver@3.7.1 in packages/s3)' };
  }
  const dir = await mkdtemp(join(tmpdir(), 'walship-s3rver-'));
  const child = spawn(process.execPath, ['--openssl-legacy-provider', bin, '-d', dir, '-a', '127.0.0.1', '-p', '0', '--silent'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  // Never leave the server behind if the test process dies without running `after` hooks.
  const killOnExit = (): void => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', killOnExit);
  child.once('exit', () => process.removeListener('exit', killOnExit));
  let output = '';
  try {
    const port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`s3rver did not start within 15 s: ${output}`)), 15_000);
      const onData = (chunk: Buffer): void => {
        output += chunk.toString();
        const m = /listening on 127\.0\.0\.1:(\d+)/.exec(output);
        if (m) {
          clearTimeout(timer);
          resolve(Number(m[1]));
        }
      };
      child.stdout!.on('data', onData);
      child.stderr!.on('data', (c: Buffer) => (output += c.toString()));
      child.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`s3rver exited with code ${code}: ${output}`));
      });
    });
    child.stdout!.resume();
    child.stderr!.resume();
    return {
      server: {
        kind: 's3rver',
        endpoint: `http://127.0.0.1:${port}`,
        region: 'us-east-1',
        accessKeyId: 'S3RVER',
        secretAccessKey: 'S3RVER',
        stop: () => stopChild(child, dir),
      },
    };
  } catch (err) {
    await stopChild(child, dir);
    return { unavailable: `s3rver could not start: ${(err as Error).message}` };
  }
}

async function stopChild(child: ChildProcess, dir: string): Promise<void> {
  if (child.exitCode === null && child.signalCode === null) {
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
  await rm(dir, { recursive: true, force: true });
}

/**
 * The radosgw started by `test/servers/radosgw.sh start <dir>`, from `WALSHIP_RADOSGW_ENDPOINT`,
 * `WALSHIP_RADOSGW_ACCESS_KEY` and `WALSHIP_RADOSGW_SECRET_KEY`. Its lifetime belongs to whoever
 * started it (CI), so `stop` does nothing.
 */
export function radosgwFromEnv(): ServerResult {
  const endpoint = process.env['WALSHIP_RADOSGW_ENDPOINT'];
  const accessKeyId = process.env['WALSHIP_RADOSGW_ACCESS_KEY'];
  const secretAccessKey = process.env['WALSHIP_RADOSGW_SECRET_KEY'];
  if (!endpoint || !accessKeyId || !secretAccessKey) {
    return {
      unavailable:
        'radosgw not configured: install it (apt-get install -y --no-install-recommends radosgw ceph-mon ceph-osd), ' +
        'run eval "$(packages/s3/test/servers/radosgw.sh start /tmp/walship-rgw)" and set WALSHIP_RADOSGW_ENDPOINT, ' +
        'WALSHIP_RADOSGW_ACCESS_KEY, WALSHIP_RADOSGW_SECRET_KEY',
    };
  }
  return {
    server: { kind: 'radosgw', endpoint, region: 'us-east-1', accessKeyId, secretAccessKey, stop: async () => {} },
  };
}

/** The raw SDK client for a server (the "backdoor": never goes through S3ReplicaClient). */
export function rawClient(server: S3TestServer): S3Client {
  return new S3Client({
    endpoint: server.endpoint,
    region: server.region,
    forcePathStyle: true,
    credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}

export function uniqueBucketName(tag = 't'): string {
  return `walship-${tag}-${randomBytes(5).toString('hex')}`;
}

export async function createBucket(raw: S3Client, bucket: string): Promise<void> {
  await raw.send(new CreateBucketCommand({ Bucket: bucket }));
}

/** Every key in the bucket (optionally under a prefix), following pagination. */
export async function listAllKeys(raw: S3Client, bucket: string, prefix?: string): Promise<string[]> {
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const out = await raw.send(
      new ListObjectsV2Command({
        Bucket: bucket,
        ...(prefix ? { Prefix: prefix } : {}),
        ...(token ? { ContinuationToken: token } : {}),
      }),
    );
    for (const o of out.Contents ?? []) if (o.Key) keys.push(o.Key);
    token = out.IsTruncated ? out.NextContinuationToken : undefined;
  } while (token);
  return keys;
}

export async function readObject(raw: S3Client, bucket: string, key: string): Promise<Buffer | undefined> {
  try {
    const out = await raw.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    return Buffer.from(await out.Body!.transformToByteArray());
  } catch (err) {
    const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
    if (e.name === 'NoSuchKey' || e.$metadata?.httpStatusCode === 404) return undefined;
    throw err;
  }
}

export async function writeObject(raw: S3Client, bucket: string, key: string, body: Buffer): Promise<void> {
  await raw.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body, ContentLength: body.length }));
}

/** Deletes every object, then the bucket itself. */
export async function destroyBucket(raw: S3Client, bucket: string): Promise<void> {
  for (;;) {
    const keys = await listAllKeys(raw, bucket).catch(() => []);
    if (keys.length === 0) break;
    for (let i = 0; i < keys.length; i += 1000) {
      await raw.send(
        new DeleteObjectsCommand({
          Bucket: bucket,
          Delete: { Objects: keys.slice(i, i + 1000).map((Key) => ({ Key })), Quiet: true },
        }),
      );
    }
  }
  await raw.send(new DeleteBucketCommand({ Bucket: bucket })).catch(() => {});
}

/** An S3ReplicaClient for the server, with overrides. */
export function clientFor(server: S3TestServer, bucket: string, overrides: Partial<S3ReplicaClientOptions> = {}): S3ReplicaClient {
  return new S3ReplicaClient({
    bucket,
    endpoint: server.endpoint,
    region: server.region,
    accessKeyId: server.accessKeyId,
    secretAccessKey: server.secretAccessKey,
    maxAttempts: 3,
    ...overrides,
  });
}

/** The servers to run against: s3rver always, radosgw when configured (required under CI). */
export async function availableServers(): Promise<Array<{ name: string } & ServerResult>> {
  const s3rver = await startS3rver();
  const rgw = radosgwFromEnv();
  return [
    { name: 's3rver', ...s3rver },
    { name: 'radosgw', ...rgw },
  ];
}

/**
 * How a test should treat an unavailable server: `skip` message locally, or a failing test under
 * CI=true.
 */
export function unavailableMode(reason: string): { skip: string } | { fail: string } {
  return IS_CI ? { fail: `server required under CI=true but unavailable: ${reason}` } : { skip: reason };
}
