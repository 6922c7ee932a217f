/**
 * Litestream's `validation-interval` replica key: `replicate` starts with it, validates the
 * replica (restore to a position walship holds, compared page by page with the local database)
 * and reports each result in the log and in `walship_replica_validation_*` metrics.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { FILE_BACKEND, REPLICATOR, httpGet, openWriter, parseMetrics, requires, spawnCli, tempDir, value, writeConfig } from './helpers.js';

const skip = await requires([FILE_BACKEND, REPLICATOR]);

test('validation-interval in litestream.yml: replicate starts, logs validation ok and counts it on /metrics', {
  timeout: 90_000,
}, async (t) => {
  if (skip) return t.skip(skip);
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const db = join(dir, 'app.db');
  const replica = join(dir, 'replica');
  const cfg = writeConfig(
    dir,
    `addr: "127.0.0.1:0"\ndbs:\n  - path: ${db}\n    monitor-interval: 100ms\n` +
      `    replicas:\n      - name: backup\n        path: ${replica}\n        sync-interval: 100ms\n        validation-interval: 500ms\n`,
    'litestream.yml',
  );
  const w = openWriter(db);
  t.after(() => w.close());
  for (let i = 0; i < 50; i++) w.insert();
  const cli = spawnCli(['replicate', '-config', cfg], { timeoutMs: 80_000 });
  t.after(() => cli.kill('SIGKILL'));
  const [, url] = await cli.waitFor(/msg="serving metrics on" url=(http:\/\/127\.0\.0\.1:\d+\/metrics)/);
  // Commits while it runs: the validated position moves on.
  for (let i = 0; i < 50; i++) w.insert();
  const [line] = await cli.waitFor(/^.*msg="validation ok".*$/m, 40_000);
  assert.match(line, /replica=backup/);
  assert.match(line, /pages=\d+/);

  let body = '';
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    body = (await httpGet(url!)).body;
    if ((value(parseMetrics(body), 'walship_replica_validation_total', { db, replica: 'backup', result: 'ok' }) ?? 0) >= 1) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const samples = parseMetrics(body);
  assert.ok((value(samples, 'walship_replica_validation_total', { db, replica: 'backup', result: 'ok' }) ?? 0) >= 1, body);
  assert.equal(value(samples, 'walship_replica_validation_total', { db, replica: 'backup', result: 'mismatch' }) ?? 0, 0);
  assert.equal(value(samples, 'walship_replica_validation_failing', { db, replica: 'backup' }), 0);
  const okAt = value(samples, 'walship_replica_validation_ok_timestamp_seconds', { db, replica: 'backup' });
  assert.ok(okAt !== undefined && Math.abs(okAt - Date.now() / 1000) < 60, `ok timestamp ${okAt}`);

  cli.kill('SIGTERM');
  const r = await cli.exited;
  assert.equal(r.code, 0, r.stderr);
  assert.doesNotMatch(r.stdout + r.stderr, /validation mismatch|level=ERROR/);
});
