// Shared helpers for the walship benchmarks (bench/run.ts and its child processes).
import { execFileSync, fork, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const BENCH_DIR = join(dirname(fileURLToPath(import.meta.url)), '..');
export const ROOT_DIR = join(BENCH_DIR, '..');

/** Child processes run the TypeScript sources of @walship/* through tsx, like the tests. */
export const CHILD_EXEC_ARGV = ['--conditions=walship-source', '--import', 'tsx'];

export function now(): number {
  return performance.timeOrigin + performance.now();
}

function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

function sortedCopy(xs: ArrayLike<number>): Float64Array {
  const a = Float64Array.from(xs as ArrayLike<number>);
  a.sort();
  return a;
}

/** Median; for an even count, the mean of the two middle values. */
export function median(xs: number[]): number {
  const s = sortedCopy(xs);
  if (s.length === 0) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export interface Spread {
  n: number;
  median: number;
  min: number;
  max: number;
  /** (max - min) / median, in percent */
  rangePct: number;
  values: number[];
}

export function spread(values: number[]): Spread {
  const s = sortedCopy(values);
  const med = median(values); // for an even count the mean of the two middle values (4 overhead rounds, 2 restore rounds)
  return {
    n: values.length,
    median: med,
    min: s[0] ?? NaN,
    max: s[s.length - 1] ?? NaN,
    rangePct: med ? ((s[s.length - 1]! - s[0]!) / med) * 100 : NaN,
    values,
  };
}

export interface Dist {
  n: number;
  p50: number;
  p99: number;
  max: number;
  mean: number;
}

export function dist(values: ArrayLike<number>): Dist {
  const s = sortedCopy(values);
  let sum = 0;
  for (let i = 0; i < s.length; i++) sum += s[i]!;
  return {
    n: s.length,
    p50: percentile(s, 50),
    p99: percentile(s, 99),
    max: s[s.length - 1] ?? NaN,
    mean: s.length ? sum / s.length : NaN,
  };
}

/** Peak and current resident set size of a process, from /proc/<pid>/status (kB → bytes). */
export function procMem(pid: number | 'self' = 'self'): { hwmBytes: number; rssBytes: number } {
  try {
    const s = readFileSync(`/proc/${pid}/status`, 'utf8');
    const hwm = /VmHWM:\s+(\d+) kB/.exec(s);
    const rss = /VmRSS:\s+(\d+) kB/.exec(s);
    return { hwmBytes: hwm ? Number(hwm[1]) * 1024 : NaN, rssBytes: rss ? Number(rss[1]) * 1024 : NaN };
  } catch {
    return { hwmBytes: NaN, rssBytes: NaN };
  }
}

let clkTck: number | undefined;
/** Clock ticks per second of /proc/<pid>/stat's utime and stime (`getconf CLK_TCK`, usually 100). */
export function clockTicksPerSecond(): number {
  if (clkTck === undefined) {
    try {
      clkTck = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clkTck = 100;
    }
  }
  return clkTck;
}

/** CPU time (user + system, all threads) a process has used so far, from /proc/<pid>/stat, in ms; NaN when gone. */
export function procCpuMs(pid: number): number {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // the command name (field 2) is in parentheses and may contain spaces: split after its ')'
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    // fields 14 (utime) and 15 (stime) of the full line are 12 and 13 after the name
    return ((Number(f[11]) + Number(f[12])) / clockTicksPerSecond()) * 1000;
  } catch {
    return NaN;
  }
}

/** Samples a process's VmHWM every `everyMs` (the last value read before it exits is its peak, to within one interval). */
export function hwmSampler(pid: number, everyMs = 20): { stop(): number; readonly maxBytes: number } {
  let max = NaN;
  const read = (): void => {
    const m = procMem(pid).hwmBytes;
    if (Number.isFinite(m) && !(m <= max)) max = m;
  };
  read();
  const t = setInterval(read, everyMs);
  return {
    stop() {
      read();
      clearInterval(t);
      return max;
    },
    get maxBytes() {
      return max;
    },
  };
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Reads the JSON config a child was started with. */
export function childConfig<T>(): T {
  return JSON.parse(process.argv[2] ?? '{}') as T;
}

/** Sends a message to the parent and resolves once it is flushed. */
export function send(msg: unknown): Promise<void> {
  return new Promise((resolve) => {
    if (!process.send) return resolve();
    process.send(msg, undefined, {}, () => resolve());
  });
}

/** In a child: resolves when the parent sends {type: 'go'} (so a child can start up while the parent prepares the other arm). */
export function waitForGo(): Promise<void> {
  return new Promise((resolve) => {
    const on = (m: any): void => {
      if (m?.type !== 'go') return;
      process.off('message', on);
      resolve();
    };
    process.on('message', on);
  });
}

/** Exits the child by itself after `ms`, whatever happens (every workload is bounded). */
export function hardDeadline(ms: number, what: string): void {
  const t = setTimeout(() => {
    process.stderr.write(`bench child ${what}: hard deadline of ${ms} ms reached, exiting\n`);
    process.exit(3);
  }, ms);
  t.unref();
}

const live = new Set<ChildProcess>();

/** Registers a process started some other way (spawn) so killAllChildren() ends it too. */
export function trackChild(p: ChildProcess): void {
  live.add(p);
  p.once('exit', () => live.delete(p));
}

export function killAllChildren(): void {
  for (const c of live) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
}

/** A forked child process (TypeScript via tsx) with a message queue. */
export class Child {
  readonly proc: ChildProcess;
  readonly #queue: any[] = [];
  readonly #waiters: Array<(m: any) => void> = [];
  readonly exited: Promise<number | null>;
  stderr = '';

  constructor(script: string, config: unknown, opts: { quietStderr?: boolean } = {}) {
    this.proc = fork(join(BENCH_DIR, 'proc', script), [JSON.stringify(config)], {
      cwd: ROOT_DIR,
      execArgv: CHILD_EXEC_ARGV,
      env: { ...process.env, NODE_NO_WARNINGS: '1' },
      stdio: ['ignore', 'inherit', 'pipe', 'ipc'],
    });
    live.add(this.proc);
    this.proc.stderr!.on('data', (d: Buffer) => {
      this.stderr += d.toString();
      if (this.stderr.length > 20000) this.stderr = this.stderr.slice(-20000);
      if (!opts.quietStderr) process.stderr.write(d);
    });
    this.proc.on('message', (m) => {
      const w = this.#waiters.shift();
      if (w) w(m);
      else this.#queue.push(m);
    });
    this.exited = new Promise((resolve) =>
      this.proc.once('exit', (code) => {
        live.delete(this.proc);
        resolve(code);
        for (const w of this.#waiters.splice(0)) w({ type: 'exit', code });
      }),
    );
  }

  get pid(): number {
    return this.proc.pid!;
  }

  /** Next message of the given type (other messages before it are dropped); rejects on exit/timeout. */
  async next<T = any>(type: string, timeoutMs = 600_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = this.#queue.length
        ? this.#queue.shift()
        : await new Promise<any>((resolve, reject) => {
            if (this.proc.exitCode !== null || this.proc.signalCode !== null) return resolve({ type: 'exit', code: this.proc.exitCode });
            const t = setTimeout(
              () => reject(new Error(`timeout waiting for "${type}" from ${this.proc.spawnargs.join(' ').slice(0, 120)}`)),
              Math.max(0, deadline - Date.now()),
            );
            this.#waiters.push((msg) => {
              clearTimeout(t);
              resolve(msg);
            });
          });
      if (m?.type === type) return m as T;
      if (m?.type === 'error') throw new Error(`child error: ${m.message}\n${this.stderr.slice(-2000)}`);
      if (m?.type === 'exit') throw new Error(`child exited (code ${m.code}) before "${type}"\n${this.stderr.slice(-2000)}`);
    }
  }

  send(msg: unknown): void {
    if (this.proc.connected) this.proc.send(msg as any);
  }

  kill(): void {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill('SIGKILL');
  }
}

/** Runs a child that sends one `result` message, and returns it. */
export async function runChild<T = any>(script: string, config: unknown, timeoutMs: number): Promise<T> {
  const c = new Child(script, config);
  try {
    const r = await c.next<T>('result', timeoutMs);
    await Promise.race([c.exited, sleep(5000)]);
    return r;
  } finally {
    c.kill();
  }
}

/** Reports uncaught failures of a child to the parent, then exits. */
export function installChildErrorHandlers(): void {
  const fail = (err: unknown): void => {
    const message = err instanceof Error ? `${err.stack ?? err.message}` : String(err);
    process.stderr.write(`bench child failed: ${message}\n`);
    void send({ type: 'error', message }).finally(() => process.exit(2));
  };
  process.on('uncaughtException', fail);
  process.on('unhandledRejection', fail);
  process.on('disconnect', () => process.exit(4)); // parent gone: never linger
}

/** A checkpoint as a bench child records it from the replicator's `checkpoint` event. */
export interface CheckpointRecord {
  t: number;
  mode: string;
  durationMs: number;
  lockHeldMs?: number;
  restarted?: boolean;
}

/** Appends each `checkpoint` event of `rep` to `log` (at most 100,000); `onEach` runs for every one. */
export function recordCheckpoints(
  rep: { on(event: 'checkpoint', fn: (e: Omit<CheckpointRecord, 't'>) => void): unknown },
  log: CheckpointRecord[],
  onEach?: () => void,
): void {
  rep.on('checkpoint', (e) => {
    onEach?.();
    if (log.length >= 100_000) return;
    log.push({
      t: now(),
      mode: e.mode,
      durationMs: e.durationMs,
      ...(typeof e.lockHeldMs === 'number' ? { lockHeldMs: e.lockHeldMs } : {}),
      ...(typeof e.restarted === 'boolean' ? { restarted: e.restarted } : {}),
    });
  });
}
