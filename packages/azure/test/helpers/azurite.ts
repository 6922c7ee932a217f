import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { BlobServiceClient, StorageSharedKeyCredential } from '@azure/storage-blob';

/** Azurite's well-known development account (public, documented by Microsoft). */
export const DEV_ACCOUNT = 'devstoreaccount1';
export const DEV_KEY = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';

export interface AzuriteServer {
  /** Blob service URL, path-style: `http://127.0.0.1:<port>/devstoreaccount1`. */
  readonly endpoint: string;
  readonly accountName: string;
  readonly accountKey: string;
  /** Raw SDK client with the account key (the test "backdoor"). */
  readonly service: BlobServiceClient;
  /** Creates a fresh, uniquely named container and returns its name. */
  createContainer(prefix?: string): Promise<string>;
  stop(): Promise<void>;
}

const START_TIMEOUT_MS = 20_000;

function azuriteMain(): string {
  const require = createRequire(import.meta.url);
  const pkg = require.resolve('azurite/package.json');
  return join(dirname(pkg), 'dist', 'src', 'blob', 'main.js');
}

/**
 * Starts Azurite's blob service on 127.0.0.1 and a free port, with its own temp workspace.
 * Rejects when Azurite is missing or does not become ready within 20 s.
 */
export async function startAzurite(): Promise<AzuriteServer> {
  let main: string;
  try {
    main = azuriteMain();
  } catch (err) {
    throw new Error(`azurite is not installed (npm i -D azurite@3.35.0): ${(err as Error).message}`);
  }
  const dir = await mkdtemp(join(tmpdir(), 'walship-azurite-'));
  const child: ChildProcess = spawn(
    process.execPath,
    [main, '--blobHost', '127.0.0.1', '--blobPort', '0', '-l', dir, '--silent', '--skipApiVersionCheck', '--disableTelemetry'],
    { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NODE_OPTIONS: '' } },
  );
  let output = '';
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    }
    await rm(dir, { recursive: true, force: true });
  };
  let port: number;
  try {
    port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`azurite did not start within ${START_TIMEOUT_MS} ms: ${output.trim()}`)),
        START_TIMEOUT_MS,
      );
      const onData = (chunk: Buffer): void => {
        output += chunk.toString();
        const m = /successfully listens on https?:\/\/127\.0\.0\.1:(\d+)/.exec(output);
        if (m) {
          clearTimeout(timer);
          resolve(Number(m[1]));
        }
      };
      child.stdout!.on('data', onData);
      child.stderr!.on('data', (c: Buffer) => (output += c.toString()));
      child.once('error', (err) => {
        clearTimeout(timer);
        reject(new Error(`cannot run azurite: ${err.message}`));
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`azurite exited (${code ?? signal}) before listening: ${output.trim()}`));
      });
    });
  } catch (err) {
    await stop();
    throw err;
  }
  child.stdout!.resume();
  child.stderr!.resume();
  const endpoint = `http://127.0.0.1:${port}/${DEV_ACCOUNT}`;
  const service = new BlobServiceClient(endpoint, new StorageSharedKeyCredential(DEV_ACCOUNT, DEV_KEY), {
    retryOptions: { maxTries: 2, retryDelayInMs: 100, maxRetryDelayInMs: 500 },
  });
  return {
    endpoint,
    accountName: DEV_ACCOUNT,
    accountKey: DEV_KEY,
    service,
    async createContainer(prefix = 'walship') {
      const name = `${prefix}-${randomBytes(6).toString('hex')}`;
      await service.getContainerClient(name).create();
      return name;
    },
    stop,
  };
}

/**
 * Starts Azurite, or explains why it could not: returns the server, or a message to skip with.
 * Under `CI=true` a failure is thrown instead, so a CI run without Azurite fails loudly.
 */
export async function startAzuriteOrSkip(): Promise<AzuriteServer | string> {
  try {
    return await startAzurite();
  } catch (err) {
    const msg = `Azurite blob service unavailable (${(err as Error).message}); install it with \`npm i -D azurite@3.35.0\``;
    if (process.env.CI === 'true') throw new Error(msg);
    return msg;
  }
}
