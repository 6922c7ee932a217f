// Child of snapshot-memory.test.ts: `support/snapshot-memory-child.ts <db> <replicaDir> <inline|worker>`.
// Replicates <db> to a file replica until the first snapshot is stored, then prints one JSON
// line with its RSS (from /proc/self/status) before starting and its peak (VmHWM) after.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { Replicator } from '@walship/core';
import { FileReplicaClient } from '@walship/file';

function status(): { rss: number; hwm: number } {
  const s = readFileSync('/proc/self/status', 'utf8');
  const kib = (key: string): number => Number(new RegExp(`${key}:\\s+(\\d+) kB`).exec(s)?.[1] ?? NaN) * 1024;
  return { rss: kib('VmRSS'), hwm: kib('VmHWM') };
}

const [dbPath, replicaDir, thread] = process.argv.slice(2);
if (thread === 'worker') {
  // Boot the engine worker first (a tiny database), so the baseline includes its isolate and
  // the growth measured below is the snapshot's alone.
  const dir = mkdtempSync(path.join(os.tmpdir(), 'walship-warm-'));
  const db = new Database(path.join(dir, 'warm.db'));
  db.pragma('journal_mode = wal');
  db.exec('CREATE TABLE t (x)');
  const warm = new Replicator(path.join(dir, 'warm.db'), { replicas: [{ client: new FileReplicaClient({ path: path.join(dir, 'r') }) }] });
  await warm.start();
  await warm.sync();
  await warm.stop();
  db.close();
  rmSync(dir, { recursive: true, force: true });
}
const rep = new Replicator(dbPath!, {
  thread: thread === 'worker' ? 'worker' : 'inline',
  replicas: [{ client: new FileReplicaClient({ path: replicaDir! }) }],
});
const before = status();
const t0 = performance.now();
let snapshotBytes = 0;
rep.on('snapshot', (e: { sizeBytes: number }) => {
  snapshotBytes = e.sizeBytes;
});
await rep.start();
await rep.sync(); // the generation's first snapshot, then the WAL after it
const after = status();
const ms = performance.now() - t0;
await rep.stop();
process.stdout.write(`${JSON.stringify({ rssBefore: before.rss, hwmBefore: before.hwm, hwmAfter: after.hwm, snapshotBytes, ms })}\n`);
