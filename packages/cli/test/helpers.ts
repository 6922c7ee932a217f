import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

/** packages/cli */
export const PACKAGE_DIR = fileURLToPath(new URL('..', import.meta.url));

/**
 * The command that runs the CLI: the built `dist/bin.js` when WALSHIP_CLI_DIST=1, else the
 * TypeScript source through tsx with the `walship-source` condition (no build needed).
 */
export function cliCommand(): { command: string; args: string[] } {
  if (process.env.WALSHIP_CLI_DIST === '1') return { command: process.execPath, args: [join(PACKAGE_DIR, 'dist', 'bin.js')] };
  const tsx = import.meta.resolve('tsx');
  return {
    command: process.execPath,
    args: ['--conditions=walship-source', '--import', tsx, join(PACKAGE_DIR, 'src', 'bin.ts')],
  };
}

export interface RunOptions {
  /** Extra environment (merged over a clean copy of process.env; `undefined` removes a variable). */
  env?: Record<string, string | undefined>;
  cwd?: string;
  /** Kill the CLI after this long (default 60 s). */
  timeoutMs?: number;
}

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Environment for a CLI subprocess: no config or credentials leak in from the test runner. */
export function cliEnv(extra: Record<string, string | undefined> = {}): Record<string, string> {
  const env: Record<string, string | undefined> = { ...process.env };
  for (const k of [
    'WALSHIP_CONFIG',
    'LITESTREAM_CONFIG',
    'WALSHIP_DEBUG',
    'LITESTREAM_ACCESS_KEY_ID',
    'LITESTREAM_SECRET_ACCESS_KEY',
    'NODE_OPTIONS',
    'NODE_TEST_CONTEXT',
  ]) {
    delete env[k];
  }
  Object.assign(env, extra);
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (v !== undefined) out[k] = v;
  return out;
}

/** Spawns the CLI with `args` and resolves when it exits. */
export function runCli(args: readonly string[], opts: RunOptions = {}): Promise<CliResult> {
  const cli = spawnCli(args, opts);
  return cli.exited;
}

export interface SpawnedCli {
  readonly child: ChildProcess;
  readonly exited: Promise<CliResult>;
  /** Everything written so far. */
  output(): { stdout: string; stderr: string };
  /** Resolves with the first match of `re` in stdout+stderr (polls), rejects on exit or timeout. */
  waitFor(re: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  kill(signal?: NodeJS.Signals): void;
}

/** Starts the CLI (for long-running commands such as replicate). */
export function spawnCli(args: readonly string[], opts: RunOptions = {}): SpawnedCli {
  const { command, args: base } = cliCommand();
  const child = spawn(command, [...base, ...args], {
    cwd: opts.cwd ?? PACKAGE_DIR,
    env: cliEnv(opts.env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  let done = false;
  const timer = setTimeout(() => {
    if (!done) child.kill('SIGKILL');
  }, opts.timeoutMs ?? 60_000);
  const exited = new Promise<CliResult>((resolve) => {
    child.on('close', (code, signal) => {
      done = true;
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
  return {
    child,
    exited,
    output: () => ({ stdout, stderr }),
    kill: (signal = 'SIGTERM') => {
      child.kill(signal);
    },
    waitFor: async (re, timeoutMs = 30_000) => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const m = (stdout + stderr).match(re);
        if (m) return m;
        if (done) throw new Error(`CLI exited before ${re} appeared:\n${stdout}\n${stderr}`);
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${re}:\n${stdout}\n${stderr}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
  };
}

/** A fresh temporary directory, removed by the returned cleanup. */
export function tempDir(prefix = 'walship-cli-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Writes `text` to `<dir>/<name>` and returns the path. */
export function writeConfig(dir: string, text: string, name = 'walship.yml'): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

/** True when `pkg` exports `name` (a backend or a core function that may still be in progress). */
export async function hasExport(pkg: string, name: string): Promise<boolean> {
  try {
    const mod = (await import(pkg)) as Record<string, unknown>;
    return name.split('|').some((n) => mod[n] !== undefined);
  } catch {
    return false;
  }
}

/**
 * `skip` option for tests that need a part of walship built elsewhere: false when present;
 * when absent, a reason (or, under CI=true, false so the test runs and fails loudly).
 */
export async function requires(parts: readonly [pkg: string, name: string][]): Promise<string | false> {
  const missing: string[] = [];
  for (const [pkg, name] of parts) if (!(await hasExport(pkg, name))) missing.push(`${name} from ${pkg}`);
  if (missing.length === 0) return false;
  if (process.env.CI === 'true') return false;
  return `needs ${missing.join(', ')} (not built yet)`;
}

export const FILE_BACKEND: [string, string] = ['@walship/file', 'fileBackend'];
export const S3_BACKEND: [string, string] = ['@walship/s3', 's3Backend'];
export const GCS_BACKEND: [string, string] = ['@walship/gcs', 'gcsBackend'];
export const ABS_BACKEND: [string, string] = ['@walship/azure', 'absBackend|azureBackend'];
export const SFTP_BACKEND: [string, string] = ['@walship/sftp', 'sftpBackend'];
export const REPLICATOR: [string, string] = ['@walship/core', 'Replicator'];
export const RESTORE: [string, string] = ['@walship/core', 'restore'];
export const LISTINGS: [string, string][] = [
  ['@walship/core', 'listGenerations'],
  ['@walship/core', 'listSnapshots'],
  ['@walship/core', 'listWalSegments'],
];

export function fileUrl(p: string): string {
  return pathToFileURL(p).href;
}

/** Fetches a URL (for the metrics server). */
export async function httpGet(url: string): Promise<{ status: number; body: string; contentType: string | null }> {
  const res = await fetch(url);
  return { status: res.status, body: await res.text(), contentType: res.headers.get('content-type') };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

// ---------------------------------------------------------------------------------------------
// SQLite fixtures (the writer runs in the test process; walship runs in its own process).

export interface Writer {
  readonly db: Database.Database;
  /** Inserts one row per call in its own transaction; returns its id. */
  insert(payload?: string): number;
  count(): number;
  maxId(): number;
  close(): void;
}

/** Opens (creating) a WAL-mode database with table `t(id INTEGER PRIMARY KEY, v TEXT)`. */
export function openWriter(path: string): Writer {
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.pragma('busy_timeout = 5000');
  db.exec('CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)');
  const ins = db.prepare('INSERT INTO t (v) VALUES (?)');
  return {
    db,
    insert: (payload = 'x'.repeat(100)) => Number(ins.run(payload).lastInsertRowid),
    count: () => (db.prepare('SELECT count(*) AS n FROM t').get() as { n: number }).n,
    maxId: () => (db.prepare('SELECT coalesce(max(id), 0) AS n FROM t').get() as { n: number }).n,
    close: () => db.close(),
  };
}

/** Ids present in table `t` of a (restored) database, opened read-only. */
export function readIds(path: string): number[] {
  const db = new Database(path, { readonly: true });
  try {
    return (db.prepare('SELECT id FROM t ORDER BY id').all() as { id: number }[]).map((r) => r.id);
  } finally {
    db.close();
  }
}

/** `PRAGMA integrity_check` of a database file. */
export function integrity(path: string): string {
  const db = new Database(path, { readonly: true });
  try {
    return (db.prepare('PRAGMA integrity_check').get() as { integrity_check: string }).integrity_check;
  } finally {
    db.close();
  }
}

/**
 * Creates `<dir>/app.db` with `rows` rows and replicates it to `<dir>/replica` with the CLI
 * (start, then SIGTERM: the final sync ships everything). Returns the paths.
 */
export async function makeReplica(dir: string, rows = 50): Promise<{ db: string; replica: string; ids: number[] }> {
  const db = join(dir, 'app.db');
  const replica = join(dir, 'replica');
  const w = openWriter(db);
  for (let i = 0; i < rows; i++) w.insert();
  const ids = Array.from({ length: w.maxId() }, (_, i) => i + 1);
  w.close();
  const cli = spawnCli(['replicate', db, replica]);
  await cli.waitFor(/msg="replicating to"/);
  cli.kill('SIGTERM');
  const r = await cli.exited;
  if (r.code !== 0) throw new Error(`replicate failed (${r.code}):\n${r.stdout}\n${r.stderr}`);
  return { db, replica, ids };
}

/**
 * A `.dump`-like text of a database, for comparing a restore with the live database at a
 * point: every schema object (sqlite_master, by type and name), then every table's rows in
 * rowid order as JSON (blobs as hex). Takes a path (opened read-only) or an open connection —
 * use the writer's own connection for a database that walship replicates in this process, so
 * no extra file descriptor of the live database is opened and closed.
 */
export function dumpDb(source: string | Database.Database): string {
  const db = typeof source === 'string' ? new Database(source, { readonly: true }) : source;
  try {
    const objects = db
      .prepare("SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name")
      .all() as { type: string; name: string; sql: string | null }[];
    const lines: string[] = [];
    for (const o of objects) lines.push(`${o.type} ${o.name}: ${o.sql ?? ''}`);
    for (const o of objects) {
      if (o.type !== 'table') continue;
      const quoted = `"${o.name.replace(/"/g, '""')}"`;
      for (const row of db.prepare(`SELECT * FROM ${quoted} ORDER BY rowid`).raw().all() as unknown[][]) {
        const cells = row.map((v) => (Buffer.isBuffer(v) ? `x'${v.toString('hex')}'` : typeof v === 'bigint' ? v.toString() : v));
        lines.push(`${o.name} ${JSON.stringify(cells)}`);
      }
    }
    return `${lines.join('\n')}\n`;
  } finally {
    if (typeof source === 'string') db.close();
  }
}

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses the Prometheus text format (the subset prom-client writes). */
export function parseMetrics(body: string): Sample[] {
  const out: Sample[] = [];
  for (const line of body.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `unparsable metrics line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g))
      labels[l[1]!] = l[2]!.replace(/\\(.)/g, (_s, c: string) => (c === 'n' ? '\n' : c));
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

/** Values of `name` whose labels include `labels`. */
export function values(samples: Sample[], name: string, labels: Record<string, string> = {}): number[] {
  return samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)).map((s) => s.value);
}

/** The single value of `name` with `labels` (undefined when absent). */
export function value(samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  const v = values(samples, name, labels);
  assert.ok(v.length <= 1, `${name} ${JSON.stringify(labels)} has ${v.length} series`);
  return v[0];
}

/** The real Litestream v0.3.13: `LITESTREAM_BIN`, or `../shared/bin/` beside the checkout (undefined when neither exists). */
export function litestreamBin(): string | undefined {
  const candidates = [process.env['LITESTREAM_BIN'], resolve(PACKAGE_DIR, '..', '..', '..', 'shared', 'bin', 'litestream-v0.3.13')];
  return candidates.find((p): p is string => !!p && existsSync(p));
}
