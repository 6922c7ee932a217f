// The replica lease (replica/lease.ts): a second walship writing to the same replica from
// another database (another host) is detected before it writes anything, a takeover is
// conditional and fenced, and the lease costs no requests at idle.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { test } from 'node:test';
import {
  ConfigError,
  LeaseError,
  type Logger,
  parseLeaseRecord,
  type ReplicaClient,
  Replicator,
  type ReplicatorOptions,
  type StoredLease,
} from '@walship/core';
import { FileReplicaClient } from '@walship/file';
import type Database from 'better-sqlite3';
import { insertRows, openApp, tempDir, until } from './support/db.js';
import { spawnScript } from './support/spawn.js';
import { rows } from './support/replica-check.js';
import { litestreamBin } from './support/litestream.js';

interface Line {
  level: string;
  message: string;
  fields?: Record<string, unknown>;
}

function recordingLogger(): Logger & { lines: Line[]; has(level: string, re: RegExp): boolean } {
  const lines: Line[] = [];
  const at = (level: string) => (message: string, fields?: Record<string, unknown>) => {
    lines.push({ level, message, ...(fields ? { fields } : {}) });
  };
  return {
    lines,
    debug: at('debug'),
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
    has: (level, re) => lines.some((l) => l.level === level && re.test(l.message)),
  };
}

interface Writer {
  dir: string;
  dbPath: string;
  app: Database.Database;
  rep: Replicator;
  log: ReturnType<typeof recordingLogger>;
  errors: Array<{ code?: string; message: string; error: Error }>;
}

/** One database (its own directory, so its own meta directory: "another host") replicating to `replica`. */
async function writer(
  client: ReplicaClient,
  replicaOptions: Record<string, unknown> = {},
  options: Partial<ReplicatorOptions> = {},
): Promise<Writer> {
  const dir = await tempDir('walship-lease-');
  const dbPath = path.join(dir, 'app.db');
  const app = openApp(dbPath);
  const log = recordingLogger();
  const rep = new Replicator(dbPath, {
    monitorInterval: 25,
    logger: log,
    replicas: [{ client, syncInterval: 25, ...replicaOptions }],
    ...options,
  });
  const errors: Writer['errors'] = [];
  rep.on('replica-error', (e) => errors.push({ code: (e.error as { code?: string }).code, message: e.error.message, error: e.error }));
  return { dir, dbPath, app, rep, log, errors };
}

async function close(...ws: Writer[]): Promise<void> {
  for (const w of ws) {
    await w.rep.stop({ timeout: 1000 }).catch(() => {});
    w.app.close();
  }
}

/** Every object file under the replica's generations/, with its mtime. */
function objects(replicaDir: string): Map<string, number> {
  const out = new Map<string, number>();
  const root = path.join(replicaDir, 'generations');
  if (!fs.existsSync(root)) return out;
  for (const f of fs.readdirSync(root, { recursive: true }) as string[]) {
    const p = path.join(root, f);
    const st = fs.statSync(p);
    if (st.isFile()) out.set(f, st.mtimeMs);
  }
  return out;
}

function generationsOf(replicaDir: string): string[] {
  const root = path.join(replicaDir, 'generations');
  return fs.existsSync(root) ? fs.readdirSync(root).sort() : [];
}

async function leaseRecord(client: FileReplicaClient) {
  const stored = await client.readLease();
  assert.ok(stored, 'the replica holds a lease');
  const r = parseLeaseRecord(stored.body);
  assert.ok(r, `the lease parses: ${stored.body}`);
  return r;
}

test('a second walship on the same replica (another database) is refused, writes nothing, and takes over after a clean stop', async () => {
  const base = await tempDir('walship-lease-replica-');
  const replicaDir = path.join(base, 'replica');
  const client = new FileReplicaClient({ path: replicaDir });
  const a = await writer(client);
  const b = await writer(client);
  try {
    await a.rep.start();
    insertRows(a.app, 10);
    const posA = await a.rep.sync({ timeout: 10_000 });
    assert.equal((await leaseRecord(client)).db, a.dbPath);

    await b.rep.start();
    insertRows(b.app, 10);
    await until(() => b.errors.some((e) => e.code === 'WALSHIP_LEASE_HELD'), 5000, 'WALSHIP_LEASE_HELD on the second writer');
    const err = b.errors.find((e) => e.code === 'WALSHIP_LEASE_HELD')!;
    assert.ok(err.error instanceof LeaseError, 'the error crosses the engine worker as a LeaseError');
    assert.match(err.message, /is written by another walship on host .* \(pid \d+, db .*app\.db\)/);
    assert.match(err.message, /takeover: true, walship replicate -force/);
    const st = b.rep.status().replicas[0]!;
    assert.equal(st.healthy, false, 'the refused replica reports unhealthy');
    assert.match(st.lastError ?? '', /written by another walship/);
    await assert.rejects(b.rep.sync({ timeout: 300 }), (e: { code?: string }) => e.code === 'WALSHIP_TIMEOUT');
    assert.deepEqual(generationsOf(replicaDir), [posA.generation], 'the refused writer wrote nothing');

    // A clean stop releases the lease: the second writer takes it at its next retry, no TTL wait.
    const stoppedAt = Date.now();
    await a.rep.stop();
    assert.ok(a.log.has('info', /lease released/));
    const posB = await b.rep.sync({ timeout: 15_000 });
    assert.ok(Date.now() - stoppedAt < 15_000);
    assert.deepEqual(generationsOf(replicaDir), [posA.generation, posB.generation].sort());
    const rec = await leaseRecord(client);
    assert.equal(rec.db, b.dbPath);
    assert.equal(rec.released, undefined);
    assert.ok(b.log.has('info', /lease acquired \(previous lease released\)/), 'the takeover of a released lease is logged');
  } finally {
    await close(a, b);
  }
});

test('a lease left to expire is taken over; the old writer notices at its next write and writes nothing more', async () => {
  const base = await tempDir('walship-lease-replica-');
  const replicaDir = path.join(base, 'replica');
  const client = new FileReplicaClient({ path: replicaDir });
  const a = await writer(client, { leaseTtl: 1000 }, { thread: 'inline' });
  const b = await writer(client, { leaseTtl: 1000 });
  try {
    await a.rep.start();
    insertRows(a.app, 10);
    const posA = await a.rep.sync({ timeout: 10_000 });
    // A goes idle (an idle writer sends no renewals), its lease expires.
    await new Promise((r) => setTimeout(r, 1200));
    await b.rep.start();
    insertRows(b.app, 10);
    await b.rep.sync({ timeout: 10_000 });
    assert.ok(b.log.has('info', /lease acquired \(previous lease expired\)/));
    const before = objects(replicaDir);
    const ofA = [...before.keys()].filter((k) => k.startsWith(posA.generation));

    insertRows(a.app, 10);
    await until(() => a.errors.some((e) => e.code === 'WALSHIP_LEASE_LOST'), 5000, 'WALSHIP_LEASE_LOST on the old writer');
    assert.match(a.errors.find((e) => e.code === 'WALSHIP_LEASE_LOST')!.message, /was taken over by another walship on host/);
    assert.ok(a.log.has('error', /lease lost/));
    assert.equal(a.rep.status().replicas[0]!.healthy, false);
    // sync() says why instead of waiting for a replica that will never catch up.
    await assert.rejects(a.rep.sync({ timeout: 5000 }), (e: { code?: string }) => e.code === 'WALSHIP_LEASE_LOST');
    insertRows(a.app, 10);
    await new Promise((r) => setTimeout(r, 600));
    const after = [...objects(replicaDir).keys()].filter((k) => k.startsWith(posA.generation));
    assert.deepEqual(after, ofA, 'the fenced writer wrote no object after losing the lease');
    assert.equal((await leaseRecord(client)).db, b.dbPath, 'and did not write the lease back');
  } finally {
    await close(a, b);
  }
});

test('takeover: true replaces a live lease, holds its first upload back, and fences the old writer', async () => {
  const base = await tempDir('walship-lease-replica-');
  const replicaDir = path.join(base, 'replica');
  const client = new FileReplicaClient({ path: replicaDir });
  const ttl = 2000;
  const a = await writer(client, { leaseTtl: ttl });
  const b = await writer(client, { leaseTtl: ttl, takeover: true });
  let writing = true;
  try {
    await a.rep.start();
    insertRows(a.app, 10);
    const posA = await a.rep.sync({ timeout: 10_000 });
    // A keeps writing, so its lease stays live.
    const load = (async () => {
      while (writing) {
        insertRows(a.app, 2);
        await new Promise((r) => setTimeout(r, 40));
      }
    })();
    await new Promise((r) => setTimeout(r, 300));
    const t0 = Date.now();
    await b.rep.start();
    insertRows(b.app, 10);
    const posB = await b.rep.sync({ timeout: 15_000 });
    const elapsed = Date.now() - t0;
    assert.ok(elapsed >= (ttl * 3) / 4 - 100, `the first upload after a forced takeover waits ¾ TTL (took ${elapsed} ms)`);
    assert.ok(b.log.has('warn', /lease taken over from a live writer \(takeover\)/));
    await until(() => a.errors.some((e) => e.code === 'WALSHIP_LEASE_LOST'), 5000, 'the old writer is fenced');
    writing = false;
    await load;
    const all = objects(replicaDir);
    const lastOfA = Math.max(...[...all].filter(([k]) => k.startsWith(posA.generation)).map(([, t]) => t));
    const firstOfB = Math.min(...[...all].filter(([k]) => k.startsWith(posB.generation)).map(([, t]) => t));
    assert.ok(lastOfA < firstOfB, `every object of the old writer predates the new writer's first (${lastOfA} < ${firstOfB})`);
    const rec = await leaseRecord(client);
    assert.equal(rec.db, b.dbPath);
    assert.ok(rec.tookOverFrom, 'the record names the owner it replaced');
  } finally {
    writing = false;
    await close(a, b);
  }
});

test('a restarted walship of the same database (killed with -9) takes its own live lease back at once', async () => {
  const dir = await tempDir('walship-lease-');
  const dbPath = path.join(dir, 'app.db');
  const replicaDir = path.join(dir, 'replica');
  const app = openApp(dbPath);
  insertRows(app, 10);
  const child = spawnScript('replicate-child.ts', [dbPath, replicaDir]);
  await child.waitFor(/^synced /);
  child.kill('SIGKILL');
  await new Promise((r) => child.once('exit', r));
  const client = new FileReplicaClient({ path: replicaDir });
  const killed = await leaseRecord(client);
  assert.ok(Date.parse(killed.expiresAt) > Date.now() + 30_000, 'the dead run left a live lease (default TTL 1m)');
  const log = recordingLogger();
  const rep = new Replicator(dbPath, { monitorInterval: 25, logger: log, replicas: [{ client, syncInterval: 25 }] });
  try {
    await rep.start();
    insertRows(app, 10);
    const t0 = Date.now();
    await rep.sync({ timeout: 10_000 });
    assert.ok(Date.now() - t0 < 5000, 'no wait for the TTL');
    assert.ok(log.has('info', /lease acquired \(previous lease was left by an earlier run of this database\)/));
    const rec = await leaseRecord(client);
    assert.equal(rec.instance, killed.instance, 'same meta directory, same instance');
    assert.notEqual(rec.owner, killed.owner, 'a new owner per start');
  } finally {
    await rep.stop({ timeout: 1000 }).catch(() => {});
    app.close();
  }
});

/** A FileReplicaClient whose lease calls are counted (and, optionally, whose store ignores preconditions). */
function countingClient(inner: FileReplicaClient, opts: { ignorePreconditions?: boolean; slowWritesMs?: () => number } = {}) {
  const slow = async () => {
    const ms = opts.slowWritesMs?.() ?? 0;
    if (ms > 0) await new Promise((r) => setTimeout(r, ms));
  };
  const counts = { read: 0, write: 0 };
  let stored: { body: string; version: number } | undefined;
  const client: ReplicaClient = {
    type: inner.type,
    capabilities: inner.capabilities,
    generations: () => inner.generations(),
    deleteGeneration: (g) => inner.deleteGeneration(g),
    snapshots: (g) => inner.snapshots(g),
    writeSnapshot: async (g, i, b) => {
      await slow();
      return inner.writeSnapshot(g, i, b);
    },
    snapshotReader: (g, i) => inner.snapshotReader(g, i),
    deleteSnapshot: (g, i) => inner.deleteSnapshot(g, i),
    walSegments: (g) => inner.walSegments(g),
    writeWALSegment: async (p, b) => {
      await slow();
      return inner.writeWALSegment(p, b);
    },
    walSegmentReader: (p) => inner.walSegmentReader(p),
    deleteWALSegments: (ps) => inner.deleteWALSegments(ps),
    readLease: async (): Promise<StoredLease | undefined> => {
      counts.read++;
      if (!opts.ignorePreconditions) return inner.readLease();
      return stored ? { body: stored.body, version: String(stored.version) } : undefined;
    },
    writeLease: async (body, ifVersion) => {
      counts.write++;
      if (!opts.ignorePreconditions) return inner.writeLease(body, ifVersion);
      stored = { body, version: (stored?.version ?? 0) + 1 }; // as s3rver does: the precondition is ignored
      return String(stored.version);
    },
  };
  return { client, counts, plant: (body: string) => (stored = { body, version: (stored?.version ?? 0) + 1 }) };
}

test('lease requests: none at idle, one conditional write per TTL/2 under constant writes', async () => {
  const base = await tempDir('walship-lease-replica-');
  const { client, counts } = countingClient(new FileReplicaClient({ path: path.join(base, 'replica') }));
  const w = await writer(client, { leaseTtl: 1000 });
  try {
    await w.rep.start();
    insertRows(w.app, 5);
    await w.rep.sync({ timeout: 10_000 });
    // Start: read, create, the one-time precondition probe — and, with this short TTL, one
    // renewal before the first snapshot (which waits 1.1 s after the replica's creation).
    assert.equal(counts.read, 1);
    assert.ok(counts.write >= 2 && counts.write <= 3, `lease writes at start: ${counts.write}`);
    assert.ok(
      w.log.lines.every((l) => !/ignores conditional writes/.test(l.message)),
      'the file store enforces the precondition',
    );
    const started = { ...counts };

    await new Promise((r) => setTimeout(r, 1600)); // 1.6 TTL of idle
    assert.deepEqual(counts, started, 'an idle database sends no lease request');

    const t0 = Date.now();
    while (Date.now() - t0 < 2000) {
      insertRows(w.app, 1);
      await new Promise((r) => setTimeout(r, 30));
    }
    await w.rep.sync({ timeout: 10_000 });
    const renewals = counts.write - started.write;
    // The first write after the idle period renews at once, then one per TTL/2 = 500 ms.
    assert.ok(renewals >= 3 && renewals <= 2000 / 500 + 2, `renewals under 2 s of constant writes: ${renewals}`);
    assert.equal(counts.read, 1, 'renewals are blind conditional writes (no read) on a store that enforces them');
  } finally {
    await close(w);
  }
});

test('an upload that lasts longer than half the TTL renews the lease meanwhile', async () => {
  const base = await tempDir('walship-lease-replica-');
  const replicaDir = path.join(base, 'replica');
  let slowMs = 0;
  const { client, counts } = countingClient(new FileReplicaClient({ path: replicaDir }), { slowWritesMs: () => slowMs });
  const w = await writer(client, { leaseTtl: 1000 });
  try {
    await w.rep.start();
    insertRows(w.app, 5);
    await w.rep.sync({ timeout: 10_000 });
    const before = counts.write;
    slowMs = 2500; // one upload of 2.5 TTL
    insertRows(w.app, 5);
    const t0 = Date.now();
    await w.rep.sync({ timeout: 10_000 });
    assert.ok(Date.now() - t0 >= 2400);
    // Renewed at the start (the lease was > TTL/2 old) and about every TTL/2 while the upload ran.
    assert.ok(counts.write - before >= 4, `lease writes during a 2.5 s upload with a 1 s TTL: ${counts.write - before}`);
    const stored = await new FileReplicaClient({ path: replicaDir }).readLease();
    assert.ok(Date.parse(parseLeaseRecord(stored!.body)!.expiresAt) > Date.now(), 'the lease never ran out under the upload');
  } finally {
    slowMs = 0;
    await close(w);
  }
});

test('a store that ignores preconditions is noticed at start; a takeover is still caught by reading before each renewal', async () => {
  const base = await tempDir('walship-lease-replica-');
  const { client, counts, plant } = countingClient(new FileReplicaClient({ path: path.join(base, 'replica') }), {
    ignorePreconditions: true,
  });
  const w = await writer(client, { leaseTtl: 1000 });
  try {
    await w.rep.start();
    insertRows(w.app, 5);
    await w.rep.sync({ timeout: 10_000 });
    assert.ok(w.log.has('warn', /the store ignores conditional writes/), 'the probe finds the store ignores preconditions');
    const reads = counts.read;
    await new Promise((r) => setTimeout(r, 600)); // past TTL/2: the next write renews
    insertRows(w.app, 5);
    await w.rep.sync({ timeout: 10_000 });
    assert.equal(counts.read, reads + 1, 'each renewal reads the lease first');
    // Another host takes the lease over (on this store, nothing stops its write).
    const now = Date.now();
    plant(
      JSON.stringify({
        walship: 'lease',
        format: 1,
        owner: 'ffffffffffffffff',
        instance: 'eeeeeeeeeeeeeeee',
        host: 'other-host',
        pid: 1,
        db: '/elsewhere/app.db',
        replica: 'file',
        generation: '',
        acquiredAt: new Date(now).toISOString(),
        renewedAt: new Date(now).toISOString(),
        expiresAt: new Date(now + 60_000).toISOString(),
        ttlMs: 60_000,
      }),
    );
    await new Promise((r) => setTimeout(r, 600));
    insertRows(w.app, 5);
    await until(() => w.errors.some((e) => e.code === 'WALSHIP_LEASE_LOST'), 5000, 'WALSHIP_LEASE_LOST');
    assert.match(w.errors.find((e) => e.code === 'WALSHIP_LEASE_LOST')!.message, /other-host/);
  } finally {
    await close(w);
  }
});

test('a client without lease support still replicates, with a warning', async () => {
  const base = await tempDir('walship-lease-replica-');
  const replicaDir = path.join(base, 'replica');
  const inner = new FileReplicaClient({ path: replicaDir });
  const { client } = countingClient(inner);
  const plain: ReplicaClient = { ...client, capabilities: { maxConcurrency: 4 } };
  delete (plain as { readLease?: unknown }).readLease;
  delete (plain as { writeLease?: unknown }).writeLease;
  const w = await writer(plain);
  try {
    await w.rep.start();
    insertRows(w.app, 5);
    await w.rep.sync({ timeout: 10_000 });
    assert.ok(w.log.has('warn', /no lease support: a second walship writing to this replica would not be detected/));
    assert.equal(w.log.lines.filter((l) => /no lease support/.test(l.message)).length, 1, 'warned once');
    assert.equal(fs.existsSync(path.join(replicaDir, 'walship-lease')), false);
    assert.equal(generationsOf(replicaDir).length, 1);
  } finally {
    await close(w);
  }
});

test('leaseTtl 0 turns the lease off; bad leaseTtl and takeover values are configuration errors', async () => {
  const dir = await tempDir('walship-lease-');
  const client = new FileReplicaClient({ path: path.join(dir, 'replica') });
  const db = path.join(dir, 'app.db');
  assert.throws(() => new Replicator(db, { replicas: [{ client, leaseTtl: 500 }] }), ConfigError);
  assert.throws(() => new Replicator(db, { replicas: [{ client, leaseTtl: 'soon' as never }] }), ConfigError);
  assert.throws(() => new Replicator(db, { replicas: [{ client, takeover: 'yes' as never }] }), ConfigError);
  const w = await writer(client, { 'lease-ttl': 0 });
  try {
    await w.rep.start();
    insertRows(w.app, 5);
    await w.rep.sync({ timeout: 10_000 });
    assert.equal(await client.readLease(), undefined, 'no lease written');
  } finally {
    await close(w);
  }
});

const execFileP = promisify(execFile);

test('Litestream v0.3.13 restores a replica that holds a walship lease (it never looks outside generations/)', async (t) => {
  const bin = litestreamBin(t);
  if (!bin) return;
  const base = await tempDir('walship-lease-replica-');
  const replicaDir = path.join(base, 'replica');
  const client = new FileReplicaClient({ path: replicaDir });
  const w = await writer(client);
  try {
    await w.rep.start();
    insertRows(w.app, 50);
    await w.rep.sync({ timeout: 10_000 });
    insertRows(w.app, 50);
    await w.rep.sync({ timeout: 10_000 });
    assert.ok(await client.readLease(), 'the replica holds a lease');
    // While walship runs (the lease held), and after its clean stop (the lease rewritten as released).
    const live = path.join(base, 'litestream-live.db');
    await execFileP(bin, ['restore', '-o', live, `file://${replicaDir}`], { timeout: 30_000 });
    assert.equal(rows(live).length, 100);
    insertRows(w.app, 50);
    await w.rep.stop();
    assert.equal(parseLeaseRecord((await client.readLease())!.body)?.released, true);
    const stopped = path.join(base, 'litestream-stopped.db');
    await execFileP(bin, ['restore', '-o', stopped, `file://${replicaDir}`], { timeout: 30_000 });
    assert.equal(rows(stopped).length, 150);
  } finally {
    await close(w);
  }
});
