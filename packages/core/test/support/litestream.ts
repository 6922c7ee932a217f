// The real Litestream v0.3.13 in tests: found through LITESTREAM_BIN or ../shared/bin/ beside
// the checkout; missing, its tests skip (and fail under CI=true).
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { TestContext } from 'node:test';

const execFileP = promisify(execFile);
const shared = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../../../shared/bin/litestream-v0.3.13');

/** The binary, or undefined after skipping `t` (a failure under CI=true). */
export function litestreamBin(t: TestContext): string | undefined {
  const bin = process.env['LITESTREAM_BIN'] ?? shared;
  if (fs.existsSync(bin)) return bin;
  if (process.env['CI'] === 'true') assert.fail(`the Litestream binary is required under CI=true: set LITESTREAM_BIN or provide ${shared}`);
  t.skip(`Litestream binary not found (set LITESTREAM_BIN or provide ${shared})`);
  return undefined;
}

export interface LitestreamProcess {
  readonly child: ChildProcess;
  /** stderr + stdout so far (Litestream logs to stderr). */
  output(): string;
  /** SIGTERM, then the exit code (Litestream syncs and exits 0 on SIGTERM). */
  stop(): Promise<number | null>;
}

/** `litestream replicate -config <config>` in the background. */
export function replicateWithLitestream(bin: string, config: string): LitestreamProcess {
  const child = spawn(bin, ['replicate', '-config', config], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (out += c.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    child,
    output: () => out,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
      try {
        return await exited;
      } finally {
        clearTimeout(timer);
      }
    },
  };
}

/** `litestream restore -o <out> <args…>`. */
export async function restoreWithLitestream(bin: string, out: string, args: string[]): Promise<void> {
  await execFileP(bin, ['restore', '-o', out, ...args], { timeout: 120_000 });
}
