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
  /**
   * SIGTERM once no upload has started or finished for 1.5 s (at most 15 s of waiting), then the
   * exit code (Litestream syncs and exits 0 on SIGTERM). Stopping between uploads avoids a race
   * of v0.3.13: a SIGTERM that lands while an upload is in flight makes its shutdown sync write
   * the same segment at once, and the file client's two writers share one `.tmp` name (seen in
   * CI: `client write: stat …wal.lz4.tmp: no such file or directory`, exit 1).
   */
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
      const uploads = () => `${out.split('msg="write wal segment"').length}/${out.split('msg="wal segment written"').length}`;
      let last = uploads();
      let quietSince = Date.now();
      const deadline = Date.now() + 15_000;
      while (child.exitCode === null && Date.now() < deadline && Date.now() - quietSince < 1500) {
        await new Promise((r) => setTimeout(r, 50));
        const now = uploads();
        const [started, done] = now.split('/');
        if (now !== last || started !== done) quietSince = Date.now();
        last = now;
      }
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
