// Two `walship replicate` on two databases (two hosts) and one replica: the second is refused
// (clear log line, /healthz 503, walship_replica_lease_errors_total{reason="held"}), and with
// -force it takes the replica over; the first then counts reason="lost" and writes nothing more.
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { parseConfigText } from '../src/config.js';
import { BackendRegistry } from '../src/registry.js';
import {
  FILE_BACKEND,
  REPLICATOR,
  httpGet,
  openWriter,
  requires,
  sleep,
  spawnCli,
  tempDir,
  writeConfig,
  type SpawnedCli,
} from './helpers.js';

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}

function config(dir: string, name: string, db: string, replica: string): string {
  return writeConfig(
    dir,
    `addr: "127.0.0.1:0"\n` +
      `dbs:\n  - path: ${db}\n    monitor-interval: 50ms\n    replicas:\n` +
      `      - name: backup\n        path: ${replica}\n        sync-interval: 50ms\n        lease-ttl: 2s\n`,
    name,
  );
}

async function metricsUrl(cli: SpawnedCli): Promise<string> {
  const [, url] = await cli.waitFor(/msg="serving metrics on" url=(http:\/\/127\.0\.0\.1:\d+\/metrics)/, 60_000);
  return url!;
}

async function waitForMetric(url: string, re: RegExp, timeoutMs = 20_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const body = (await httpGet(url)).body;
    if (re.test(body)) return body;
    if (Date.now() > deadline)
      assert.fail(
        `metric ${re} never appeared; last:\n${body
          .split('\n')
          .filter((l) => l.startsWith('walship_replica'))
          .join('\n')}`,
      );
    await sleep(100);
  }
}

function generations(replica: string): string[] {
  try {
    return readdirSync(join(replica, 'generations')).sort();
  } catch {
    return [];
  }
}

test('config: lease-ttl and takeover are replica keys; lease-ttl below 1s is an error naming the line', async () => {
  const opts = { registry: new BackendRegistry(), env: {}, cwd: '/' };
  const cfg = await parseConfigText(
    'dbs:\n  - path: /data/app.db\n    replicas:\n      - path: /backup/a\n        lease-ttl: 5m\n        takeover: true\n      - name: b\n        path: /backup/b\n        lease-ttl: 0s\n      - name: c\n        path: /backup/c\n',
    '/etc/walship.yml',
    opts,
  );
  const [a, b, c] = cfg.dbs[0]!.replicas;
  assert.deepEqual([a!.leaseTtlMs, a!.takeover], [300_000, true]);
  assert.deepEqual([b!.leaseTtlMs, b!.takeover], [0, false]);
  assert.deepEqual([c!.leaseTtlMs, c!.takeover], [undefined, false]);
  await assert.rejects(
    parseConfigText(
      'dbs:\n  - path: /data/app.db\n    replicas:\n      - path: /backup/a\n        lease-ttl: 500ms\n',
      '/etc/walship.yml',
      opts,
    ),
    /walship\.yml:5: .*lease-ttl must be at least 1s, or 0 to turn the lease off/,
  );
  await assert.rejects(
    parseConfigText(
      'dbs:\n  - path: /data/app.db\n    replicas:\n      - path: /backup/a\n        takeover: yes please\n',
      '/etc/walship.yml',
      opts,
    ),
    /walship\.yml:5: .*expected true or false/,
  );
});

test('a second walship replicate on the same replica is refused; -force takes it over and fences the first', async (t) => {
  const missing = await requires([FILE_BACKEND, REPLICATOR]);
  if (missing) return t.skip(missing);
  const { dir, cleanup } = tempDir('walship-cli-lease-');
  t.after(cleanup);
  const replica = join(dir, 'replica');
  const dbA = join(dir, 'a', 'app.db');
  const dbB = join(dir, 'b', 'app.db');
  const { mkdirSync } = await import('node:fs');
  mkdirSync(join(dir, 'a'));
  mkdirSync(join(dir, 'b'));
  const wa = openWriter(dbA);
  const wb = openWriter(dbB);
  t.after(() => {
    wa.close();
    wb.close();
  });
  for (let i = 0; i < 20; i++) wa.insert();
  for (let i = 0; i < 20; i++) wb.insert();

  const a = spawnCli(['replicate', '-config', config(dir, 'a.yml', dbA, replica), '-shutdown-sync-timeout', '1s'], { timeoutMs: 120_000 });
  t.after(() => a.kill('SIGKILL'));
  const urlA = await metricsUrl(a);
  await waitForMetric(urlA, new RegExp(`^walship_replica_sync_total\\{db="${escapeRe(dbA)}",replica="backup"\\} [1-9]`, 'm'));
  assert.equal(generations(replica).length, 1);
  const [genA] = generations(replica);
  // A keeps writing, so its lease (TTL 2s) stays live: an idle writer's lease would expire and
  // be taken over without -force.
  const load = setInterval(() => wa.insert(), 50);
  t.after(() => clearInterval(load));

  // B without -force: refused, unhealthy, counted, nothing written.
  const b1 = spawnCli(['replicate', '-config', config(dir, 'b.yml', dbB, replica), '-shutdown-sync-timeout', '1s'], { timeoutMs: 120_000 });
  t.after(() => b1.kill('SIGKILL'));
  const urlB1 = await metricsUrl(b1);
  await waitForMetric(
    urlB1,
    new RegExp(`^walship_replica_lease_errors_total\\{db="${escapeRe(dbB)}",replica="backup",reason="held"\\} [1-9]`, 'm'),
  );
  await b1.waitFor(/is written by another walship on host \S+ \(pid \d+, db [^)]*a\/app\.db\)/, 10_000);
  const health = await httpGet(urlB1.replace(/\/metrics$/, '/healthz'));
  assert.equal(health.status, 503);
  assert.deepEqual(generations(replica), [genA], 'the refused writer wrote nothing');
  b1.kill('SIGTERM');
  assert.equal((await b1.exited).code, 0);

  // B with -force: takes the lease, its first upload waits ¾ TTL; A is fenced.
  const b2 = spawnCli(['replicate', '-force', '-config', config(dir, 'b.yml', dbB, replica), '-shutdown-sync-timeout', '1s'], {
    timeoutMs: 120_000,
  });
  t.after(() => b2.kill('SIGKILL'));
  const urlB2 = await metricsUrl(b2);
  await b2.waitFor(/msg="lease taken over from a live writer \(takeover\)"/, 10_000);
  await waitForMetric(urlB2, new RegExp(`^walship_replica_sync_total\\{db="${escapeRe(dbB)}",replica="backup"\\} [1-9]`, 'm'));
  await waitForMetric(
    urlA,
    new RegExp(`^walship_replica_lease_errors_total\\{db="${escapeRe(dbA)}",replica="backup",reason="lost"\\} [1-9]`, 'm'),
  );
  await a.waitFor(/level=ERROR msg="lease lost: another walship took over the replica; no more writes to it"/, 10_000);
  assert.equal(generations(replica).length, 2);

  for (const c of [a, b2]) {
    c.kill('SIGTERM');
    assert.equal((await c.exited).code, 0);
  }
});
