// Sidecar replicators for the side-by-side arms: the real Litestream v0.3.13 (`litestream replicate
// -config <yml>`) and walship's own CLI (`walship replicate -config <yml>`, run from the TypeScript
// sources like every other benchmark child), both configured with the same litestream.yml.
// Litestream is found at $LITESTREAM_BIN or ../shared/bin/litestream-v0.3.13 (beside the checkout);
// without it (or when it does not run, e.g. the `sqlite3` package's libsqlite3 is missing) the
// Litestream arms are skipped with a message.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CHILD_EXEC_ARGV, ROOT_DIR, hwmSampler, now, procCpuMs, procMem, sleep, trackChild } from './common.js';

export interface LitestreamInfo {
  available: boolean;
  bin?: string;
  version?: string;
  /** why the Litestream arms are skipped */
  reason?: string;
}

let cached: LitestreamInfo | undefined;

/** Finds and checks the Litestream binary once (`litestream version` must print v0.3.x). */
export function litestreamInfo(disabled = false): LitestreamInfo {
  if (cached) return cached;
  if (disabled) return (cached = { available: false, reason: 'disabled with --no-litestream' });
  const candidates = [process.env['LITESTREAM_BIN'], join(ROOT_DIR, '..', 'shared', 'bin', 'litestream-v0.3.13')].filter(
    (p): p is string => !!p,
  );
  const bin = candidates.find((p) => existsSync(p));
  if (!bin) return (cached = { available: false, reason: `no Litestream binary (looked at ${candidates.join(', ')}; set LITESTREAM_BIN)` });
  try {
    const version = execFileSync(bin, ['version'], { encoding: 'utf8', timeout: 10_000, stdio: ['ignore', 'pipe', 'pipe'] }).trim();
    if (!/^v0\.3\./.test(version))
      return (cached = { available: false, bin, version, reason: `${bin} is ${version}, not Litestream v0.3.x` });
    return (cached = { available: true, bin, version });
  } catch (err) {
    const e = err as { stderr?: Buffer | string; message: string };
    const msg =
      String(e.stderr ?? '')
        .trim()
        .split('\n')[0] || e.message;
    return (cached = {
      available: false,
      bin,
      reason: `${bin} does not run (${msg}); it needs the sqlite3 package's libsqlite3 (Debian: apt-get install sqlite3)`,
    });
  }
}

type YamlReplica = { type: 'file'; path: string } | { type: 's3'; bucket: string; path: string; endpoint: string };

export interface YamlDb {
  path: string;
  replica: YamlReplica;
  /** extra per-database keys (monitor-interval, min-checkpoint-page-count, …) */
  db?: Record<string, string | number>;
  /** extra per-replica keys (retention, …) */
  rep?: Record<string, string | number>;
  /** age encryption (the replica's `age:` block, as litestream.yml v0.3 has it) */
  age?: { identities?: string[]; recipients?: string[] };
}

const q = (v: string | number | boolean): string => (typeof v === 'string' ? JSON.stringify(v) : String(v));

/**
 * Writes a litestream.yml. Litestream's defaults are kept (monitor-interval 1s, checkpoint-interval
 * 1m, min/max checkpoint page count 1000/10000) except sync-interval, which is set to 1s explicitly
 * (also its default), so both tools run with the same intervals as the walship library arms.
 */
export function writeYaml(file: string, dbs: YamlDb[]): void {
  const lines: string[] = ['dbs:'];
  for (const d of dbs) {
    lines.push(`  - path: ${q(d.path)}`);
    for (const [k, v] of Object.entries(d.db ?? {})) lines.push(`    ${k}: ${q(v)}`);
    lines.push('    replicas:');
    const r = d.replica;
    if (r.type === 'file') {
      lines.push('      - type: file', `        path: ${q(r.path)}`);
    } else {
      lines.push(
        '      - type: s3',
        `        bucket: ${q(r.bucket)}`,
        `        path: ${q(r.path)}`,
        `        endpoint: ${q(r.endpoint)}`,
        '        region: us-east-1',
        '        force-path-style: true',
        '        access-key-id: S3RVER',
        '        secret-access-key: S3RVER',
        // walship's S3 client sends no optional checksums to s3rver (Litestream ignores these keys)
        '        request-checksum-calculation: WHEN_REQUIRED',
        '        response-checksum-validation: WHEN_REQUIRED',
      );
    }
    lines.push('        sync-interval: 1s');
    for (const [k, v] of Object.entries(d.rep ?? {})) lines.push(`        ${k}: ${q(v)}`);
    if (d.age) {
      lines.push('        age:');
      for (const k of ['identities', 'recipients'] as const) {
        if (d.age[k]?.length) lines.push(`          ${k}:`, ...d.age[k]!.map((v) => `            - ${q(v)}`));
      }
    }
  }
  writeFileSync(file, `${lines.join('\n')}\n`);
}

/** An external process (Litestream, the walship CLI) with its output kept for waiting on log lines. */
export class ExtProc {
  readonly proc: ChildProcess;
  readonly startedAt = now();
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  #log = '';
  #dropped = 0;

  constructor(
    readonly name: string,
    command: string,
    args: string[],
    opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {},
  ) {
    this.proc = spawn(command, args, { cwd: opts.cwd ?? ROOT_DIR, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    trackChild(this.proc);
    const onData = (d: Buffer): void => {
      this.#log += d.toString();
      if (this.#log.length > 400_000) {
        const cut = this.#log.length - 200_000;
        this.#dropped += cut;
        this.#log = this.#log.slice(cut);
      }
    };
    this.proc.stdout!.on('data', onData);
    this.proc.stderr!.on('data', onData);
    this.exited = new Promise((resolve) => this.proc.once('exit', (code, signal) => resolve({ code, signal })));
  }

  get pid(): number {
    return this.proc.pid!;
  }

  get running(): boolean {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }

  /** Absolute offset of the end of the output so far (for waitLog's `from`). */
  get logEnd(): number {
    return this.#dropped + this.#log.length;
  }

  logTail(n = 3000): string {
    return this.#log.slice(-n);
  }

  /** Count of lines matching `re` in the kept output. */
  countLog(re: RegExp): number {
    return this.#log.split('\n').filter((l) => re.test(l)).length;
  }

  /** Resolves when the output after absolute offset `from` matches `re`; rejects on exit or timeout. */
  async waitLog(re: RegExp, timeoutMs: number, from = 0): Promise<RegExpMatchArray> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = this.#log.slice(Math.max(0, from - this.#dropped)).match(re);
      if (m) return m;
      if (!this.running)
        throw new Error(`${this.name} exited (${this.proc.exitCode ?? this.proc.signalCode}) before ${re}:\n${this.logTail()}`);
      if (Date.now() > deadline) throw new Error(`${this.name}: timeout waiting for ${re}:\n${this.logTail()}`);
      await sleep(20);
    }
  }

  cpuMs(): number {
    return procCpuMs(this.pid);
  }

  mem(): { hwmBytes: number; rssBytes: number } {
    return procMem(this.pid);
  }

  /** Sends `signal`, waits for the exit (SIGKILL after `timeoutMs`). */
  async stop(
    signal: NodeJS.Signals = 'SIGTERM',
    timeoutMs = 30_000,
  ): Promise<{ code: number | null; signal: NodeJS.Signals | null; timedOut: boolean }> {
    if (!this.running) return { ...(await this.exited), timedOut: false };
    this.proc.kill(signal);
    let timedOut = false;
    const t = setTimeout(() => {
      timedOut = true;
      this.kill();
    }, timeoutMs);
    const r = await this.exited;
    clearTimeout(t);
    return { ...r, timedOut };
  }

  kill(): void {
    if (this.running) this.proc.kill('SIGKILL');
  }
}

export function startLitestream(yml: string): ExtProc {
  const info = litestreamInfo();
  if (!info.available) throw new Error(`Litestream not available: ${info.reason}`);
  return new ExtProc('litestream', info.bin!, ['replicate', '-config', yml]);
}

/** `walship replicate -config <yml>` from the TypeScript sources (as the CLI tests run it). */
export function startWalshipCli(yml: string): ExtProc {
  const env: NodeJS.ProcessEnv = { ...process.env, NODE_NO_WARNINGS: '1' };
  for (const k of ['WALSHIP_CONFIG', 'LITESTREAM_CONFIG', 'NODE_OPTIONS']) delete env[k];
  return new ExtProc(
    'walship replicate',
    process.execPath,
    [...CHILD_EXEC_ARGV, join(ROOT_DIR, 'packages', 'cli', 'src', 'bin.ts'), 'replicate', '-config', yml],
    { env },
  );
}

/** `litestream restore -o <out> file://<replicaDir>`: wall time and peak RSS (VmHWM sampled every 20 ms). */
export async function litestreamRestore(
  replicaDir: string,
  outputPath: string,
  timeoutMs = 900_000,
): Promise<{ ms: number; peakRssBytes: number }> {
  const info = litestreamInfo();
  const t0 = now();
  return timedRestore(
    'litestream',
    new ExtProc('litestream restore', info.bin!, ['restore', '-o', outputPath, `file://${replicaDir}`]),
    t0,
    timeoutMs,
  );
}

/** Waits for a restore process: wall time since `t0` and peak RSS (VmHWM sampled every 20 ms); throws on a non-zero exit. */
async function timedRestore(tool: string, p: ExtProc, t0: number, timeoutMs: number): Promise<{ ms: number; peakRssBytes: number }> {
  const hwm = hwmSampler(p.pid, 20);
  const timer = setTimeout(() => p.kill(), timeoutMs);
  const r = await p.exited;
  const ms = now() - t0;
  clearTimeout(timer);
  const peak = hwm.stop();
  if (r.code !== 0) throw new Error(`${tool} restore exited ${r.code ?? r.signal}:\n${p.logTail()}`);
  return { ms, peakRssBytes: peak };
}

/**
 * `walship restore -config <yml> -o <out> <db>` (the CLI from the TypeScript sources) or
 * `litestream restore -config …`: wall time and peak RSS. With a config, so its `age:` block applies.
 */
export async function cliRestore(
  tool: 'walship' | 'litestream',
  yml: string,
  db: string,
  outputPath: string,
  timeoutMs = 900_000,
): Promise<{ ms: number; peakRssBytes: number }> {
  const t0 = now();
  const args = ['restore', '-config', yml, '-o', outputPath, db];
  let p: ExtProc;
  if (tool === 'litestream') p = new ExtProc('litestream restore', litestreamInfo().bin!, args);
  else {
    const env: NodeJS.ProcessEnv = { ...process.env, NODE_NO_WARNINGS: '1' };
    for (const k of ['WALSHIP_CONFIG', 'LITESTREAM_CONFIG', 'NODE_OPTIONS']) delete env[k];
    p = new ExtProc(
      'walship restore',
      process.execPath,
      [...CHILD_EXEC_ARGV, join(ROOT_DIR, 'packages', 'cli', 'src', 'bin.ts'), ...args],
      { env },
    );
  }
  return timedRestore(tool, p, t0, timeoutMs);
}

// ---- file replica layout: generations/<gen>/{snapshots,wal}/ ---------------------------------

function listDir(d: string): string[] {
  try {
    return readdirSync(d);
  } catch {
    return [];
  }
}

/** Snapshot files present in a file replica (full paths). */
export function replicaSnapshots(replicaDir: string): string[] {
  const out: string[] = [];
  for (const g of listDir(join(replicaDir, 'generations'))) {
    for (const f of listDir(join(replicaDir, 'generations', g, 'snapshots')))
      if (f.endsWith('.snapshot.lz4')) out.push(join(replicaDir, 'generations', g, 'snapshots', f));
  }
  return out;
}

function replicaWalSegmentCount(replicaDir: string): number {
  let n = 0;
  for (const g of listDir(join(replicaDir, 'generations')))
    n += listDir(join(replicaDir, 'generations', g, 'wal')).filter((f) => f.endsWith('.wal.lz4')).length;
  return n;
}

/**
 * Resolves when a file replica has a snapshot (written to a temporary name and renamed by both
 * tools, so its presence means it is complete) and, with `walSegment`, at least one WAL segment.
 * Returns the time it was first seen.
 */
export async function waitReplicaReady(
  replicaDir: string,
  p: ExtProc | undefined,
  timeoutMs: number,
  walSegment = true,
  pollMs = 20,
): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (replicaSnapshots(replicaDir).length && (!walSegment || replicaWalSegmentCount(replicaDir) > 0)) return now();
    if (p && !p.running) throw new Error(`${p.name} exited before its replica was ready:\n${p.logTail()}`);
    if (Date.now() > deadline) throw new Error(`replica ${replicaDir} not ready after ${timeoutMs} ms${p ? `:\n${p.logTail()}` : ''}`);
    await sleep(pollMs);
  }
}
