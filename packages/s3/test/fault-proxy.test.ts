// Issue #13 §5: a fault-injecting proxy in front of the S3 server. An application embeds a
// Replicator whose S3 replica talks to s3rver through the proxy (helpers/fault-proxy.ts) and
// writes without pause while the proxy answers 503s, resets connections in the middle of request
// and response bodies, truncates responses, applies requests but cuts the connection before the
// response ("lost acknowledgements"), adds latency, and then refuses every connection (the store
// is down) for a while. Meanwhile restores run through the same faulty proxy. Then the faults
// stop, `sync()` must catch up, and a restore straight from s3rver must equal the database, with
// one generation and every transaction that `sync()` acknowledged during the faults.
//
// The outage lasts WALSHIP_FAULT_DOWN_MS (default 8 s, to keep the test well under 90 s; the
// issue's scenario is 20 s: WALSHIP_FAULT_DOWN_MS=20000). WALSHIP_FAULT_SEED replays a run's
// fault sequence (printed as a diagnostic; timing still varies).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { Replicator, restore, WalshipError, errorMessage } from '@walship/core';
import { FAULT_KINDS, FaultProxy } from './helpers/fault-proxy.js';
import { clientFor, createBucket, destroyBucket, rawClient, startS3rver, uniqueBucketName, unavailableMode } from './helpers/servers.js';

const DOWN_MS = Number(process.env['WALSHIP_FAULT_DOWN_MS'] ?? 8000);
const FAULTS_BEFORE_MS = Number(process.env['WALSHIP_FAULT_BEFORE_MS'] ?? 8000);
const FAULTS_AFTER_MS = Number(process.env['WALSHIP_FAULT_AFTER_MS'] ?? 5000);
const SEED = process.env['WALSHIP_FAULT_SEED'] !== undefined ? Number(process.env['WALSHIP_FAULT_SEED']) : undefined;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function ids(path: string): number[] {
  const db = new Database(path, { readonly: true });
  try {
    return (db.prepare('SELECT id FROM t ORDER BY id').all() as Array<{ id: number }>).map((r) => r.id);
  } finally {
    db.close();
  }
}

/** The first id that breaks 1, 2, 3, … (undefined when contiguous). */
function firstGap(list: readonly number[]): number | undefined {
  for (let i = 0; i < list.length; i++) if (list[i] !== i + 1) return i + 1;
  return undefined;
}

const title = `s3rver behind a fault proxy (503, resets, truncation, lost acks, latency, ${DOWN_MS / 1000} s down): replica identical after catch-up`;
const started = await startS3rver();
if (!started.server) {
  const m = unavailableMode(started.unavailable);
  if ('skip' in m) test(title, { skip: m.skip }, () => {});
  else test(title, () => assert.fail(m.fail));
} else {
  const server = started.server;
  after(() => server.stop());
  test(title, { timeout: 150_000 }, async (t) => {
    const raw = rawClient(server);
    const bucket = uniqueBucketName('fault');
    await createBucket(raw, bucket);
    const dir = await mkdtemp(join(tmpdir(), 'walship-s3-fault-'));
    const proxy = await FaultProxy.start({ upstream: server.endpoint, ...(SEED !== undefined ? { seed: SEED } : {}) });
    t.diagnostic(`fault seed ${proxy.seed}, proxy ${proxy.url} → ${server.endpoint}`);
    const client = clientFor(server, bucket, { endpoint: proxy.url, path: 'app.db' });
    const dbPath = join(dir, 'app.db');
    const app = new Database(dbPath);
    let rep: Replicator | undefined;
    let writing = true;
    let acking = true;
    let readersDone = false;
    const loops: Array<Promise<unknown>> = [];
    try {
      app.pragma('journal_mode = WAL');
      app.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)');
      const insert = app.prepare('INSERT INTO t (v) VALUES (?)');
      const maxId = app.prepare('SELECT coalesce(max(id), 0) AS m FROM t').pluck();
      // Small checkpoint threshold: the WAL is restarted (and lagging tails spilled) under faults.
      rep = new Replicator(dbPath, {
        replicas: [{ name: 's3', client, syncInterval: 100 }],
        monitorInterval: 50,
        minCheckpointPageCount: 100,
      });
      const replicator = rep;
      const generations: string[] = [];
      rep.on('generation', (e) => generations.push(`${e.generation} (${e.reason})`));
      const errors = { total: 0, whileDown: 0, last: '' };
      rep.on('replica-error', (e) => {
        errors.total++;
        if (proxy.isDown) errors.whileDown++;
        errors.last = errorMessage(e.error);
      });
      await rep.start();

      // The application: a transaction of 5 rows every ~15 ms, never waiting for replication.
      let writerError: unknown;
      const writer = (async () => {
        while (writing) {
          app.transaction(() => {
            for (let i = 0; i < 5; i++) insert.run(`${randomBytes(24).toString('hex')}-${'v'.repeat(150)}`);
          })();
          await sleep(15);
        }
      })().catch((err: unknown) => {
        writerError = err;
      });
      // Its acknowledgements: the highest id committed before a sync() call that resolved.
      let faulty = false;
      const acked = { before: 0, duringFaults: 0, calls: 0, timeouts: 0 };
      let ackerError: unknown;
      const acker = (async () => {
        while (acking) {
          const id = maxId.get() as number;
          const inFaults = faulty;
          try {
            await replicator.sync({ timeout: 4000 });
            acked.calls++;
            if (inFaults) acked.duringFaults = Math.max(acked.duringFaults, id);
            else acked.before = Math.max(acked.before, id);
          } catch (err) {
            if (err instanceof WalshipError && err.code === 'WALSHIP_TIMEOUT') acked.timeouts++;
            else {
              ackerError = err;
              return;
            }
          }
          await sleep(10);
        }
      })();
      // Readers: restores through the faulty proxy. Each may fail (a bounded, clean error), but
      // one that succeeds must be consistent and hold everything acknowledged before it began.
      const readerClient = clientFor(server, bucket, { endpoint: proxy.url, path: 'app.db' });
      const inFlight = { ok: 0, failed: 0, lastError: '', problems: [] as string[] };
      let reading = false;
      const readers = (async () => {
        for (let n = 0; !readersDone; n++) {
          if (!reading || proxy.isDown) {
            await sleep(100);
            continue;
          }
          const ackedAtStart = Math.max(acked.before, acked.duringFaults);
          const outputPath = join(dir, `during-${n}.db`);
          try {
            const r = await restore({ outputPath, replicas: [{ name: 's3', client: readerClient }], signal: AbortSignal.timeout(10_000) });
            if (r.status !== 'restored' || r.partial)
              inFlight.problems.push(`restore ${n}: status ${r.status}${r.partial ? ' (partial)' : ''}`);
            const got = ids(outputPath);
            const gap = firstGap(got);
            if (gap !== undefined) inFlight.problems.push(`restore ${n}: ids not contiguous at ${gap}`);
            if ((got.at(-1) ?? 0) < ackedAtStart)
              inFlight.problems.push(`restore ${n}: max id ${got.at(-1)} < acknowledged ${ackedAtStart}`);
            inFlight.ok++;
          } catch (err) {
            inFlight.failed++;
            inFlight.lastError = errorMessage(err);
          }
          await rm(outputPath, { force: true });
          await sleep(300);
        }
      })();

      loops.push(writer, acker, readers);
      // The generation's first snapshot (written at least 1.1 s after start), then an ack.
      for (const deadline = Date.now() + 30_000; acked.before === 0 && Date.now() < deadline; ) await sleep(50);
      assert.ok(acked.before > 0, 'acknowledged before the faults');

      // Faults on.
      faulty = true;
      proxy.faults = true;
      reading = true;
      await sleep(FAULTS_BEFORE_MS);
      // The store is down: every connection refused.
      await proxy.down();
      const downAt = Date.now();
      await sleep(DOWN_MS);
      await proxy.up();
      const downMs = Date.now() - downAt;
      // Back, still faulty.
      await sleep(FAULTS_AFTER_MS);
      proxy.faults = false;
      reading = false;
      readersDone = true;
      acking = false;
      await Promise.all([readers, acker]);
      if (ackerError !== undefined) throw ackerError;
      faulty = false;
      writing = false;
      await writer;
      if (writerError !== undefined) throw writerError;

      // Catch up.
      const t0 = Date.now();
      const reached = await replicator.sync({ timeout: 60_000 });
      const catchUpMs = Date.now() - t0;
      const expected = app.prepare('SELECT id, v FROM t ORDER BY id').all() as Array<{ id: number; v: string }>;
      await replicator.stop();
      rep = undefined;
      await readerClient.close();

      t.diagnostic(
        `faults injected: ${proxy.summary()} (of ${proxy.requests} requests, ${proxy.forwarded} forwarded); store down ${downMs} ms`,
      );
      t.diagnostic(
        `replica errors ${errors.total} (${errors.whileDown} while down; last: ${errors.last}); sync(): ${acked.calls} acknowledged, ${acked.timeouts} timed out; ` +
          `acknowledged id before faults ${acked.before}, during faults ${acked.duringFaults}; ${expected.length} rows; caught up in ${catchUpMs} ms at ${reached.index}/${reached.offset}`,
      );
      t.diagnostic(`restores through the faulty proxy: ${inFlight.ok} ok, ${inFlight.failed} failed (last: ${inFlight.lastError})`);

      assert.deepEqual(inFlight.problems, [], 'restores through the faulty proxy are consistent');
      assert.deepEqual(generations.length, 1, `one generation: ${generations.join(' | ')}`);

      // Restore straight from s3rver (not through the proxy).
      const direct = clientFor(server, bucket, { path: 'app.db' });
      try {
        assert.equal((await direct.generations()).length, 1, 'one generation in the bucket');
        const outputPath = join(dir, 'restored.db');
        const result = await restore({ outputPath, replicas: [{ name: 's3', client: direct }] });
        assert.equal(result.status, 'restored');
        assert.equal(result.partial, undefined);
        const restored = new Database(outputPath, { readonly: true });
        try {
          assert.equal(restored.pragma('integrity_check', { simple: true }), 'ok');
          const got = restored.prepare('SELECT id, v FROM t ORDER BY id').all() as Array<{ id: number; v: string }>;
          assert.equal(got.length, expected.length, 'restored row count');
          assert.ok(
            got.some((r) => r.id === acked.duringFaults),
            `the restore holds the last id acknowledged during the faults (${acked.duringFaults})`,
          );
          assert.equal(firstGap(got.map((r) => r.id)), undefined, 'restored ids contiguous');
          assert.deepEqual(got, expected);
        } finally {
          restored.close();
        }
      } finally {
        await direct.close();
      }

      // Every kind of fault was really injected (so the test cannot pass without faults).
      for (const k of FAULT_KINDS) assert.ok(proxy.counts[k] > 0, `fault ${k} injected at least once: ${proxy.summary()}`);
      assert.equal(proxy.outages, 1);
      assert.ok(errors.whileDown > 0, 'the replicator saw the store down');
      assert.ok(
        acked.duringFaults > acked.before,
        `sync() acknowledged transactions during the faults (${acked.before} → ${acked.duringFaults})`,
      );
    } finally {
      writing = false;
      acking = false;
      readersDone = true;
      proxy.faults = false;
      if (proxy.isDown) await proxy.up().catch(() => {});
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([Promise.allSettled(loops), new Promise((r) => (timer = setTimeout(r, 20_000)))]);
      clearTimeout(timer);
      await rep?.stop({ timeout: 5000 }).catch(() => {});
      if (app.open) app.close();
      await client.close();
      await proxy.close();
      await destroyBucket(raw, bucket).catch(() => {});
      raw.destroy();
      await rm(dir, { recursive: true, force: true });
    }
  });
}
