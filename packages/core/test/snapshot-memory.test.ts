import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import Database from 'better-sqlite3';

// Issue #12 §3: a snapshot's memory must not grow with the database. A 256 MiB database of
// random 4 KiB rows (incompressible: the worst case, every block stored) is snapshotted by a
// fresh child process, which reports its RSS before starting and its peak (VmHWM) after.
// Measured on the 2-core dev machine: before the fix the peak grew by ~320 MiB here (~900 MiB
// for 1 GiB: lz4-napi's compress outputs stayed resident in its allocator); with the fix but a
// fresh Buffer per block (no chunk recycling between the encoder and the file client) by
// 52-61 MiB, the spent blocks the garbage collector lets pile up; with recycling by ~18 MiB.

const MiB = 1024 * 1024;
const DB_BYTES = 256 * MiB;
/** Peak growth allowed over the child's RSS before start: twice what it takes, below both failures. */
const BOUND = 40 * MiB;
const here = path.dirname(fileURLToPath(import.meta.url));

let dir: string;
let db: string;

before(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'walship-snapmem-'));
  db = path.join(dir, 'big.db');
  const d = new Database(db);
  d.pragma('journal_mode = WAL');
  d.pragma('synchronous = OFF');
  d.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, b BLOB)');
  const insert = d.prepare('INSERT INTO t (b) VALUES (?)');
  const rows = d.transaction((n: number) => {
    for (let i = 0; i < n; i++) insert.run(randomBytes(3900)); // one row per 4 KiB page
  });
  for (let done = 0; done < DB_BYTES / 4096; done += 8192) rows(8192);
  d.pragma('wal_checkpoint(TRUNCATE)');
  d.close();
});

after(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

interface ChildResult {
  rssBefore: number;
  hwmBefore: number;
  hwmAfter: number;
  snapshotBytes: number;
  ms: number;
}

function snapshotInChild(thread: 'inline' | 'worker', replicaDir: string): Promise<ChildResult> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      ['--conditions=walship-source', '--import', 'tsx', path.join(here, 'support', 'snapshot-memory-child.ts'), db, replicaDir, thread],
      { timeout: 120_000, maxBuffer: 1024 * 1024 },
      (err, stdout, stderr) => {
        if (err) return reject(new Error(`${err.message}\n${stderr}`));
        try {
          resolve(JSON.parse(stdout.trim().split('\n').pop()!) as ChildResult);
        } catch {
          reject(new Error(`unexpected child output: ${stdout}\n${stderr}`));
        }
      },
    );
  });
}

const mib = (n: number): string => `${(n / MiB).toFixed(1)} MiB`;

describe('snapshot memory', { skip: process.platform !== 'linux' ? 'reads /proc/self/status' : false }, () => {
  for (const thread of ['inline', 'worker'] as const) {
    test(`peak RSS of a 256 MiB snapshot grows by less than 40 MiB (engine ${thread === 'inline' ? 'on the calling thread' : 'in the worker'})`, async (t) => {
      const r = await snapshotInChild(thread, path.join(dir, `replica-${thread}`));
      const growth = r.hwmAfter - r.rssBefore;
      t.diagnostic(
        `RSS before ${mib(r.rssBefore)}, peak after ${mib(r.hwmAfter)} (+${mib(growth)}); snapshot ${mib(r.snapshotBytes)} in ${(r.ms / 1000).toFixed(1)} s`,
      );
      assert.ok(r.snapshotBytes > DB_BYTES * 0.9, `a snapshot of the whole database was stored (${r.snapshotBytes} bytes)`);
      assert.ok(growth < BOUND, `peak RSS grew by ${mib(growth)} while snapshotting ${mib(DB_BYTES)} (bound ${mib(BOUND)})`);
    });
  }
});
