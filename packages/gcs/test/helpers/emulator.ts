import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Storage } from '@google-cloud/storage';

const here = dirname(fileURLToPath(import.meta.url));
const LAUNCHER = join(here, 'gcs-emulator.cjs');
const START_TIMEOUT_MS = 20_000;

export const INSTALL_HINT = 'GCS emulator unavailable: install firebase-tools 15.34.2 (npm i -D firebase-tools@15.34.2; no Java needed)';

/** A running Firebase Storage emulator (GCS JSON API) on 127.0.0.1. */
export interface GcsEmulator {
  readonly endpoint: string;
  readonly port: number;
  /** Per-instance TMPDIR; blobs live in `<dir>/firebase/storage/blobs`. */
  readonly dir: string;
  /** A raw SDK client for the emulator (the tests' backdoor). */
  storage(): Storage;
  /** Kills the emulator and deletes its data dir. Idempotent. */
  stop(): Promise<void>;
}

/** Starts one emulator instance; rejects with a one-line reason when it cannot start. */
export async function startGcsEmulator(): Promise<GcsEmulator> {
  const require = createRequire(import.meta.url);
  try {
    require.resolve('firebase-tools/lib/emulator/storage');
  } catch {
    throw new Error(`${INSTALL_HINT} (firebase-tools/lib/emulator/storage not found)`);
  }
  const dir = await mkdtemp(join(tmpdir(), 'walship-gcs-emu-'));
  const env: NodeJS.ProcessEnv = { ...process.env, TMPDIR: dir };
  delete env['STORAGE_EMULATOR_HOST'];
  const child = spawn(process.execPath, [LAUNCHER, '0'], {
    cwd: dir,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });
  let port: number;
  try {
    port = await new Promise<number>((resolve, reject) => {
      let out = '';
      const timer = setTimeout(
        () => reject(new Error(`GCS emulator did not start within ${START_TIMEOUT_MS} ms: ${stderr.trim()}`)),
        START_TIMEOUT_MS,
      );
      child.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        const m = /listening on 127\.0\.0\.1:(\d+)/.exec(out);
        if (m) {
          clearTimeout(timer);
          resolve(Number(m[1]));
        }
      });
      child.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`GCS emulator exited (${code ?? signal}): ${stderr.trim().split('\n')[0] ?? ''}`));
      });
    });
  } catch (err) {
    await kill(child);
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  child.stdout!.resume();
  const endpoint = `http://127.0.0.1:${port}`;
  let stopped = false;
  return {
    endpoint,
    port,
    dir,
    storage: () => new Storage({ apiEndpoint: endpoint, projectId: 'demo-test' }),
    async stop() {
      if (stopped) return;
      stopped = true;
      await kill(child);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

async function kill(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

/**
 * Starts the emulator for a test file. When it cannot start: under `CI=true` returns a reason
 * the caller must turn into a failing test; otherwise a reason to skip with.
 */
export async function emulatorForTests(): Promise<{ ok: true; emulator: GcsEmulator } | { ok: false; fail: boolean; message: string }> {
  try {
    return { ok: true, emulator: await startGcsEmulator() };
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    const message = reason.startsWith('GCS emulator unavailable') ? reason : `${INSTALL_HINT}: ${reason}`;
    return { ok: false, fail: process.env['CI'] === 'true', message };
  }
}

/** Unique bucket per test file (buckets spring into existence on the emulator). */
export function uniqueBucket(prefix: string): string {
  return `${prefix}-${process.pid}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
}
