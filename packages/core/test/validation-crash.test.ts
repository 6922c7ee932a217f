/**
 * A replicator killed with SIGKILL in the middle of a validation leaves its temp files in the
 * meta directory; the next start removes every one of them. The child replicator is this file
 * run with WALSHIP_VALIDATION_CHILD=<db> <replicaDir>.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Replicator } from '@walship/core';
import { FileReplicaClient } from '@walship/file';
import { insertRows, openApp, tempDir, until } from './support/db.js';

/** Pids of restore janitors (`node -e <script> <dir> <prefix>`) working in `dir`. */
function janitorPids(dir: string): number[] {
  const pids: number[] = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    let argv: string[];
    try {
      argv = fs.readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0');
    } catch {
      continue;
    }
    if (argv[1] === '-e' && argv[3] === dir && argv[4]?.startsWith('.validation-')) pids.push(Number(d));
  }
  return pids;
}

const child = process.env.WALSHIP_VALIDATION_CHILD;
if (child) {
  const [dbPath, replicaDir] = JSON.parse(child) as [string, string];
  const rep = new Replicator(dbPath, {
    monitorInterval: 50,
    replicas: [{ client: new FileReplicaClient({ path: replicaDir }), syncInterval: 50, validationInterval: 1 }],
  });
  rep.on('validation', (e) => process.stdout.write(`validation ${e.result} ${e.reason ?? ''}\n`));
  await rep.start();
  await rep.sync();
  process.stdout.write('ready\n');
  await new Promise(() => {});
} else {
  test('validation temp files left by kill -9 are removed at the next start', { timeout: 60_000 }, async () => {
    const dir = await tempDir('walship-validation-crash-');
    const dbPath = path.join(dir, 'app.db');
    const replicaDir = path.join(dir, 'replica');
    const metaPath = path.join(dir, '.app.db-walship');
    const app = openApp(dbPath);
    try {
      insertRows(app, 20_000, 1000); // ~25 MB: a validation takes a while
      app.pragma('wal_checkpoint(TRUNCATE)');
      const proc = spawn(process.execPath, ['--conditions=walship-source', '--import', 'tsx', fileURLToPath(import.meta.url)], {
        env: { ...process.env, WALSHIP_VALIDATION_CHILD: JSON.stringify([dbPath, replicaDir]), NODE_TEST_CONTEXT: undefined },
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      let out = '';
      proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      await until(() => out.includes('validation ok'), 40_000, 'a first validation in the child');
      // Kill it while the files of a validation exist (the restored database is being written),
      // and first the restore's janitor (it would delete the restore's files when the child
      // dies; a whole container killed at once takes it down too). The janitor is the child's
      // own child `node -e … <metaPath> .validation-…`: found by its command line.
      const files = () => fs.readdirSync(metaPath).filter((n) => /validation/.test(n));
      let janitors: number[] = [];
      await until(
        () => {
          if (!files().some((n) => n.includes('walship-restore'))) return false;
          janitors = janitorPids(metaPath);
          return janitors.length > 0;
        },
        20_000,
        'a validation restoring',
      );
      for (const pid of janitors) process.kill(pid, 'SIGKILL');
      proc.kill('SIGKILL');
      await new Promise((r) => proc.once('exit', r));
      const left = files();
      assert.ok(
        left.some((n) => n.startsWith('.validation-') && n.includes('walship-restore')),
        `the kill left the restore's files behind: ${left.join(', ')}`,
      );
      assert.ok(!out.includes('mismatch'), out);

      const rep = new Replicator(dbPath, {
        monitorInterval: 50,
        replicas: [{ client: new FileReplicaClient({ path: replicaDir }), syncInterval: 50 }],
      });
      await rep.start();
      try {
        assert.deepEqual(files(), [], `left after the kill: ${left.join(', ')}`);
      } finally {
        await rep.stop();
      }
    } finally {
      app.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
}
