/**
 * Follower: a read-only copy kept current from a replica. The primary is a real Replicator on a
 * file replica (in this process or, where it must die, in a child process); readers are real
 * better-sqlite3 connections, in this process and in another one.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { Follower, type FollowerEvents, type Pos, Replicator, restore } from '@walship/core';
import { decodeObject, encodeObject } from '@walship/core/format';
import { Readable } from 'node:stream';
import { FileReplicaClient } from '@walship/file';
import { applyJournaled } from '../src/follow/rollback-journal.js';
import { FaultyClient, type Faults } from './helpers/faulty-client.js';
import { insertRows, openApp, tempDir, until } from './support/db.js';
import { exited, spawnScript } from './support/spawn.js';

const ACCOUNTS = 50;
const START_BALANCE = 1000;
const TOTAL = ACCOUNTS * START_BALANCE;

/** The primary's application: accounts whose balances always sum to TOTAL, and a log that only grows. */
function openBank(dbPath: string): Database.Database {
  const db = new Database(dbPath);
  db.pragma('journal_mode = wal');
  db.pragma('busy_timeout = 5000');
  db.pragma('wal_autocheckpoint = 0');
  db.exec(
    'CREATE TABLE IF NOT EXISTS acct (id INTEGER PRIMARY KEY, bal INTEGER NOT NULL); CREATE TABLE IF NOT EXISTS log (id INTEGER PRIMARY KEY, v TEXT)',
  );
  if ((db.prepare('SELECT COUNT(*) AS n FROM acct').get() as { n: number }).n === 0) {
    const ins = db.prepare('INSERT INTO acct (id, bal) VALUES (?, ?)');
    db.transaction(() => {
      for (let i = 1; i <= ACCOUNTS; i++) ins.run(i, START_BALANCE);
    })();
  }
  return db;
}

let seed = 7;
function rand(n: number): number {
  seed = (seed * 1103515245 + 12345) & 0x7fffffff;
  return seed % n;
}

/** `n` transactions, each moving money between two accounts and logging it (payload `size` bytes). */
function transfer(db: Database.Database, n: number, size = 300): void {
  const move = db.prepare('UPDATE acct SET bal = bal + ? WHERE id = ?');
  const log = db.prepare('INSERT INTO log (v) VALUES (?)');
  for (let i = 0; i < n; i++) {
    db.transaction(() => {
      const a = 1 + rand(ACCOUNTS);
      const b = 1 + rand(ACCOUNTS);
      const amt = 1 + rand(50);
      move.run(-amt, a);
      move.run(amt, b);
      log.run(String(i).padEnd(size, 'x'));
    })();
  }
}

function query<T>(dbPath: string, sql: string): T {
  const db = new Database(dbPath, { readonly: true, fileMustExist: true });
  try {
    return db.prepare(sql).get() as T;
  } finally {
    db.close();
  }
}

const logCount = (p: string) => query<{ n: number }>(p, 'SELECT COUNT(*) AS n FROM log').n;
const balanceSum = (p: string) => query<{ s: number }>(p, 'SELECT SUM(bal) AS s FROM acct').s;

function integrity(p: string): string {
  const db = new Database(p, { readonly: true, fileMustExist: true });
  try {
    return String(db.pragma('integrity_check', { simple: true }));
  } finally {
    db.close();
  }
}

function events<K extends keyof FollowerEvents>(f: Follower, name: K): FollowerEvents[K][0][] {
  const seen: FollowerEvents[K][0][] = [];
  (f as unknown as { on(n: string, l: (e: unknown) => void): void }).on(name, (e) => seen.push(e as FollowerEvents[K][0]));
  return seen;
}

interface PrimaryOptions {
  bank?: boolean;
  intervalMs?: number;
  minCheckpointPageCount?: number;
  snapshotInterval?: string;
}

/** A primary in this process: the application's connection and a Replicator to a file replica under `dir`. */
function primaryIn(dir: string, opts: PrimaryOptions = {}) {
  const dbPath = path.join(dir, 'app.db');
  const replicaDir = path.join(dir, 'replica');
  const client = new FileReplicaClient({ path: replicaDir });
  const replicator = () =>
    new Replicator(dbPath, {
      monitorInterval: opts.intervalMs ?? 25,
      ...(opts.minCheckpointPageCount ? { minCheckpointPageCount: opts.minCheckpointPageCount } : {}),
      replicas: [
        {
          name: 'file',
          client,
          syncInterval: opts.intervalMs ?? 25,
          ...(opts.snapshotInterval ? { snapshotInterval: opts.snapshotInterval } : {}),
        },
      ],
    });
  const app = opts.bank ? openBank(dbPath) : openApp(dbPath);
  return { dbPath, replicaDir, client, app, rep: replicator(), replicator, out: path.join(dir, 'follower.db') };
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await tempDir('walship-follow-');
  try {
    await fn(dir);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

test('follows a replica: commits appear in the output; a reader connection kept open sees each new state', () =>
  withDir(async (dir) => {
    const { client, app, rep, out } = primaryIn(dir, { intervalMs: 50 });
    const follower = new Follower(out, { replicas: [{ name: 'file', client }], intervalMs: 100 });
    const applied = events(follower, 'applied');
    try {
      insertRows(app, 10);
      await rep.start();
      await rep.sync({ timeout: 10_000 });
      await follower.start();
      assert.equal(query<{ n: number }>(out, 'SELECT COUNT(*) AS n FROM t').n, 10);
      const reader = new Database(out, { readonly: true, fileMustExist: true });
      const count = reader.prepare('SELECT COUNT(*) AS n FROM t');
      for (let round = 1; round <= 5; round++) {
        insertRows(app, 100);
        const pos = await rep.sync({ timeout: 10_000 });
        await follower.waitFor(pos, { timeoutMs: 10_000 });
        assert.equal((count.get() as { n: number }).n, 10 + 100 * round);
        const s = follower.status();
        assert.equal(s.generation, pos.generation);
        assert.ok(s.pos!.index > pos.index || (s.pos!.index === pos.index && s.pos!.offset >= pos.offset));
      }
      // Transactions that change pages but not the database's size: the reader must still drop
      // its page cache (the follower bumps the file change counter on every batch).
      const value = reader.prepare('SELECT v FROM t WHERE id = 1');
      value.get();
      for (const v of ['first update', 'second update']) {
        app.prepare('UPDATE t SET v = ? WHERE id = 1').run(v);
        const pos = await rep.sync({ timeout: 10_000 });
        await follower.waitFor(pos, { timeoutMs: 10_000 });
        assert.equal((value.get() as { v: string }).v, v);
      }
      reader.close();
      const s = follower.status();
      assert.equal(s.state, 'following');
      assert.ok(s.lastAppliedAt instanceof Date);
      assert.ok(applied.length >= 1 && applied.every((a) => a.commits >= 1 && a.pages >= 1));
      assert.equal(fs.existsSync(`${out}-journal`), false);
      assert.equal(integrity(out), 'ok');
      const db = new Database(out, { readonly: true });
      assert.equal(db.pragma('journal_mode', { simple: true }), 'delete');
      db.close();
    } finally {
      await follower.stop();
      await rep.stop();
      app.close();
    }
  }));

test('a reader in another process sees only whole transactions while the follower crosses WAL restarts and snapshots', () =>
  withDir(async (dir) => {
    // Small checkpoints: the primary's WAL restarts every few hundred transactions; a snapshot every second.
    const { client, app, rep, out } = primaryIn(dir, { bank: true, minCheckpointPageCount: 40, snapshotInterval: '1s' });
    const follower = new Follower(out, { replicas: [{ name: 'file', client }], intervalMs: 50 });
    try {
      transfer(app, 20);
      await rep.start();
      await rep.sync({ timeout: 10_000 });
      await follower.start();
      const firstIndex = follower.status().pos!.index;
      const reader = spawnScript('follow-reader-child.ts', [out, '4000', String(TOTAL)]);
      const deadline = Date.now() + 3800;
      while (Date.now() < deadline) {
        transfer(app, 5);
        await new Promise((r) => setTimeout(r, 5));
      }
      const pos = await rep.sync({ timeout: 10_000 });
      await follower.waitFor(pos, { timeoutMs: 20_000 });
      await reader.waitFor(/^\{/, 30_000);
      const r = JSON.parse(reader.lines.find((l) => l.startsWith('{'))!) as {
        reads: number;
        errors: number;
        badSums: number;
        wentBack: number;
        maxLog: number;
        firstError?: string;
      };
      await exited(reader);
      assert.equal(r.errors, 0, `reader errors: ${r.firstError}`);
      assert.equal(r.badSums, 0);
      assert.equal(r.wentBack, 0);
      assert.ok(r.reads > 50, `only ${r.reads} reads`);
      assert.ok(r.maxLog > 20, 'the reader saw the follower advance');
      const gen = pos.generation;
      assert.ok(
        follower.status().pos!.index >= firstIndex + 2,
        `the follower crossed WAL restarts (index ${firstIndex} → ${follower.status().pos!.index})`,
      );
      assert.ok((await client.snapshots(gen)).length >= 2, 'snapshots were taken while following');
      assert.equal(logCount(out), (app.prepare('SELECT COUNT(*) AS n FROM log').get() as { n: number }).n);
      assert.equal(balanceSum(out), TOTAL);
      assert.equal(integrity(out), 'ok');
    } finally {
      await follower.stop();
      await rep.stop();
      app.close();
    }
  }));

test('a damaged segment stops the follower before it (reported once, nothing of it applied); a repaired object resumes it', () =>
  withDir(async (dir) => {
    const { client, app, rep, out } = primaryIn(dir, { bank: true });
    const faults: Faults = {};
    const faulty = new FaultyClient(client, faults);
    const follower = new Follower(out, { replicas: [{ name: 'file', client: faulty }], intervalMs: 50 });
    const damage = events(follower, 'damage');
    try {
      transfer(app, 20);
      await rep.start();
      await rep.sync({ timeout: 10_000 });
      await follower.start();
      const before = follower.status().pos!;
      const rowsBefore = logCount(out);
      // From now on every segment after the follower's position is served damaged.
      faults.corruptWal = (p: Pos) => p.index > before.index || p.offset >= before.offset;
      transfer(app, 50);
      const pos = await rep.sync({ timeout: 10_000 });
      await until(() => follower.status().state === 'stalled', 10_000, 'the follower to stall');
      await new Promise((r) => setTimeout(r, 300)); // several more polls of the damaged object
      const s = follower.status();
      // The flipped byte is caught by the WAL checksum chain or by the LZ4 checks, whichever reads it first.
      assert.ok(s.damage && ['invalid-wal', 'corrupt-segment'].includes(s.damage.kind), `damage: ${JSON.stringify(s.damage)}`);
      assert.match(s.damage!.object!, /^wal\/[0-9a-f]{8}_[0-9a-f]{8}\.wal\.lz4$/);
      assert.deepEqual(s.pos, before, 'the follower did not advance');
      assert.equal(logCount(out), rowsBefore);
      assert.equal(balanceSum(out), TOTAL);
      assert.equal(damage.length, 1, 'reported once');
      assert.ok(s.lagMs > 0, 'lag shows the follower is behind');
      delete faults.corruptWal;
      await follower.waitFor(pos, { timeoutMs: 10_000 });
      assert.equal(follower.status().state, 'following');
      assert.equal(follower.status().damage, undefined);
      assert.equal(logCount(out), rowsBefore + 50);
      assert.equal(integrity(out), 'ok');
    } finally {
      await follower.stop();
      await rep.stop();
      app.close();
    }
  }));

test('a new generation is restored into place as one transaction; an open reader sees it without reopening', () =>
  withDir(async (dir) => {
    const primary = primaryIn(dir, { bank: true });
    const { dbPath, client, out } = primary;
    let { app, rep } = primary;
    const follower = new Follower(out, { replicas: [{ name: 'file', client }], intervalMs: 30 });
    const restored = events(follower, 'restored');
    try {
      transfer(app, 30);
      await rep.start();
      const first = await rep.sync({ timeout: 10_000 });
      await follower.start();
      const reader = new Database(out, { readonly: true, fileMustExist: true, timeout: 5000 });
      const logs = reader.prepare('SELECT COUNT(*) AS n FROM log');
      assert.equal((logs.get() as { n: number }).n, 30);
      // Continuity lost: the application truncates the WAL while walship is not running.
      await rep.stop();
      transfer(app, 40);
      app.pragma('wal_checkpoint(TRUNCATE)');
      app.close();
      app = openBank(dbPath);
      rep = primary.replicator();
      await rep.start();
      transfer(app, 5);
      const second = await rep.sync({ timeout: 10_000 });
      assert.notEqual(second.generation, first.generation, 'the primary started a new generation');
      await follower.waitFor(second, { timeoutMs: 20_000 });
      assert.deepEqual(
        restored.map((r) => r.reason),
        ['start', 'new-generation'],
      );
      assert.equal(follower.status().generation, second.generation);
      assert.equal((logs.get() as { n: number }).n, 75, 'the open reader sees the new generation');
      reader.close();
      assert.equal(balanceSum(out), TOTAL);
      assert.equal(integrity(out), 'ok');
    } finally {
      await follower.stop();
      await rep.stop();
      app.close();
    }
  }));

test('kill -9 of a follower mid-write leaves a consistent database; a new follower takes it over in place and catches up', () =>
  withDir(async (dir) => {
    const { replicaDir, client, app, rep, out } = primaryIn(dir, { bank: true, intervalMs: 20, minCheckpointPageCount: 100 });
    try {
      transfer(app, 20);
      await rep.start();
      await rep.sync({ timeout: 10_000 });
      let hotJournals = 0;
      const mark = path.join(dir, 'inside-a-batch');
      for (let round = 0; round < 6; round++) {
        // Each batch pauses 150 ms between writing its pages and its commit, with `mark` present
        // meanwhile. Rounds 0–2 kill inside a batch (once `mark` appears), rounds 3–5 at a moment
        // that moves each round (inside a batch or between two).
        const child = spawnScript('follow-child.ts', [out, replicaDir], {
          WALSHIP_TEST_APPLY_DELAY_MS: '150',
          WALSHIP_TEST_APPLY_MARK: mark,
        });
        await child.waitFor(/^following$/, 30_000);
        const inside = round < 3;
        const until = Date.now() + (inside ? 20_000 : 150 + round * 70);
        while (Date.now() < until && !(inside && fs.existsSync(mark))) {
          transfer(app, 3, 3000);
          await new Promise((r) => setTimeout(r, 2));
        }
        if (inside) assert.ok(fs.existsSync(mark), `round ${round}: no batch was written within 20 s`);
        child.kill('SIGKILL');
        await exited(child);
        fs.rmSync(mark, { force: true });
        if (fs.existsSync(`${out}-journal`)) {
          hotJournals++;
          // Documented: a read-only reader cannot play the journal back until a read-write opener does.
          const ro = new Database(out, { readonly: true, fileMustExist: true });
          assert.throws(() => ro.prepare('SELECT COUNT(*) FROM acct').get(), { code: 'SQLITE_READONLY_ROLLBACK' });
          ro.close();
        } else {
          assert.ok(!inside, `round ${round}: killed inside a batch, but no journal was left`);
        }
        // What any reader sees once the journal is played back: a whole state.
        const db = new Database(out, { fileMustExist: true });
        assert.equal((db.prepare('SELECT SUM(bal) AS s FROM acct').get() as { s: number }).s, TOTAL, `round ${round}`);
        assert.equal(db.pragma('integrity_check', { simple: true }), 'ok', `round ${round}`);
        db.close();
        assert.equal(fs.existsSync(`${out}-journal`), false);
      }
      const follower = new Follower(out, { replicas: [{ name: 'file', client }], intervalMs: 30 });
      const restored = events(follower, 'restored');
      try {
        await follower.start();
        const pos = await rep.sync({ timeout: 10_000 });
        await follower.waitFor(pos, { timeoutMs: 20_000 });
        assert.equal(restored[0]?.reason, 'start');
        assert.deepEqual(
          fs.readdirSync(dir).filter((n) => n.includes('walship-follow-') && !n.includes(String(process.pid))),
          [],
          "the killed followers' temporary files are gone",
        );
        assert.equal(logCount(out), (app.prepare('SELECT COUNT(*) AS n FROM log').get() as { n: number }).n);
        assert.equal(integrity(out), 'ok');
      } finally {
        await follower.stop();
      }
      assert.ok(hotJournals >= 3, `only ${hotJournals} of 6 kills left a hot journal`);
    } finally {
      await rep.stop();
      app.close();
    }
  }));

test('rollback journal: a write interrupted before its commit is rolled back by SQLite (growth and shrink)', () =>
  withDir(async (dir) => {
    const p = path.join(dir, 'db.sqlite');
    const db = new Database(p);
    db.pragma('page_size = 4096');
    db.pragma('journal_mode = delete');
    db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)');
    db.prepare('INSERT INTO t (v) VALUES (randomblob(3000))').run();
    for (let i = 0; i < 6; i++) db.prepare('INSERT INTO t (v) SELECT randomblob(3000) FROM t').run();
    db.close();
    const original = fs.readFileSync(p);
    const pages = original.length / 4096;
    const fd = fs.openSync(p, 'r+');
    try {
      for (const newCount of [pages + 10, pages - 20]) {
        const junk = Buffer.alloc(4096, 0xab);
        const pgnos = [1, 2, 3, 5, pages - 1, ...(newCount > pages ? [pages + 1, pages + 5] : [])].filter((n) => n <= newCount);
        assert.throws(
          () =>
            applyJournaled(fd, p, 4096, newCount, { pgnos, read: (_pgno, buf) => junk.copy(buf) }, () => {
              throw new Error('crash');
            }),
          /crash/,
        );
        assert.ok(fs.existsSync(`${p}-journal`), 'a hot journal is left');
        assert.notDeepEqual(fs.readFileSync(p), original, 'the database was written');
        // The next SQLite connection plays it back.
        const check = new Database(p);
        assert.equal(check.pragma('integrity_check', { simple: true }), 'ok');
        assert.equal((check.prepare('SELECT COUNT(*) AS n FROM t').get() as { n: number }).n, 64);
        check.close();
        assert.equal(fs.existsSync(`${p}-journal`), false);
        assert.deepEqual(fs.readFileSync(p), original, 'byte for byte the old database');
      }
    } finally {
      fs.closeSync(fd);
    }
  }));

test('output checks: an existing database is not replaced without overwrite; bad options are one-line errors', () =>
  withDir(async (dir) => {
    const { client, app, rep } = primaryIn(dir, { intervalMs: 50 });
    const out = path.join(dir, 'existing.db');
    try {
      insertRows(app, 3);
      await rep.start();
      await rep.sync({ timeout: 10_000 });
      const other = new Database(out);
      other.exec('CREATE TABLE mine (x)');
      other.close();
      await assert.rejects(new Follower(out, { replicas: [{ name: 'file', client }] }).start(), {
        code: 'WALSHIP_FOLLOW_OUTPUT_EXISTS',
        message: `cannot follow into ${out}: it exists and is not a follower's database (use overwrite to replace it)`,
      });
      assert.ok(query<{ n: number }>(out, "SELECT COUNT(*) AS n FROM sqlite_master WHERE name = 'mine'").n === 1, 'left alone');
      const f = new Follower(out, { replicas: [{ name: 'file', client }], overwrite: true });
      await f.start();
      await assert.rejects(f.start(), { code: 'WALSHIP_FOLLOW_STATE' });
      await f.stop();
      assert.equal(query<{ n: number }>(out, 'SELECT COUNT(*) AS n FROM t').n, 3);
      await assert.rejects(f.waitFor({ generation: 'ffffffffffffffff', index: 0, offset: 0 }), { code: 'WALSHIP_FOLLOW_STOPPED' });
      assert.throws(() => new Follower(out, { replicas: [] }), {
        code: 'WALSHIP_FOLLOW_INVALID',
        message: 'at least one replica is required to follow',
      });
      assert.throws(() => new Follower(out, { replicas: [{ name: 'file', client }], intervalMs: 0 }), {
        code: 'WALSHIP_FOLLOW_INVALID',
        message: 'invalid intervalMs 0: expected a positive number of milliseconds',
      });
      assert.throws(() => new Follower('', { replicas: [{ name: 'file', client }] }), {
        code: 'WALSHIP_FOLLOW_INVALID',
        message: 'output path required',
      });
      const g = new Follower(out, { replicas: [{ name: 'file', client }], intervalMs: 20 });
      await g.start();
      await assert.rejects(g.waitFor({ generation: 'ffffffffffffffff', index: 0, offset: 0 }, { timeoutMs: 50 }), {
        code: 'WALSHIP_FOLLOW_TIMEOUT',
      });
      await g.stop();
    } finally {
      await rep.stop();
      app.close();
    }
  }));

test('promotion: the primary dies, the standby is promoted and continues the replica in a new generation; the returning primary is fenced by the lease', () =>
  withDir(async (dir) => {
    const dbPath = path.join(dir, 'primary.db');
    const out = path.join(dir, 'standby.db');
    const replicaDir = path.join(dir, 'replica');
    const client = new FileReplicaClient({ path: replicaDir });
    const app = openBank(dbPath);
    transfer(app, 10);
    // A short lease: the promoted standby waits out the dead primary's lease (2 s) instead of forcing it.
    const primary = spawnScript('replicate-child.ts', [dbPath, replicaDir, '50', '2s']);
    const follower = new Follower(out, { replicas: [{ name: 'file', client }], intervalMs: 30 });
    let promoted: Replicator | undefined;
    let returning: Replicator | undefined;
    let standbyApp: Database.Database | undefined;
    try {
      await primary.waitFor(/^ready$/);
      await until(async () => (await client.generations()).length > 0, 10_000, 'the first generation');
      transfer(app, 100);
      // The last position the primary acknowledged as replicated (sync() resolved).
      await new Promise((r) => setTimeout(r, 300)); // lines printed so far may be of syncs that began before the writes
      const line = await (async () => {
        const n = primary.lines.length;
        await until(() => primary.lines.slice(n).some((l) => l.startsWith('synced ')), 10_000, 'a sync after the writes');
        return primary.lines.slice(n).find((l) => l.startsWith('synced '))!;
      })();
      const [, generation, index, offset] = line.split(' ');
      const acked: Pos = { generation: generation!, index: Number(index), offset: Number(offset) };
      await follower.start();
      await follower.waitFor(acked, { timeoutMs: 10_000 });
      const ackedRows = logCount(out);
      assert.ok(ackedRows >= 110);
      primary.kill('SIGKILL');
      await exited(primary);

      // Promote: stop following, replicate the standby. The replica's lease is the dead primary's
      // until its TTL runs out; the first upload waits for that (`takeover` would skip the wait
      // when the old primary is known to be dead).
      await follower.stop();
      standbyApp = openBank(out);
      promoted = new Replicator(out, { monitorInterval: 25, replicas: [{ name: 'file', client, syncInterval: 25, leaseTtl: '2s' }] });
      await promoted.start();
      transfer(standbyApp, 25);
      const after = await promoted.sync({ timeout: 20_000 });
      assert.notEqual(after.generation, acked.generation, 'the promoted standby writes a new generation');

      // The old primary comes back: it must not write to the replica.
      returning = new Replicator(dbPath, { monitorInterval: 25, replicas: [{ name: 'file', client, syncInterval: 25 }] });
      const errors: string[] = [];
      returning.on('replica-error', (e) => errors.push((e.error as { code?: string }).code ?? ''));
      await returning.start();
      transfer(app, 10);
      await until(() => errors.includes('WALSHIP_LEASE_HELD'), 10_000, 'the returning primary to be refused');
      const gens = await client.generations();
      assert.equal(gens.length, 2, `generations: ${gens.join(', ')}`);

      const restoredPath = path.join(dir, 'restored.db');
      await restore({ outputPath: restoredPath, replicas: [{ name: 'file', client }] });
      assert.equal(logCount(restoredPath), ackedRows + 25, 'every acknowledged transaction, then the promoted ones');
      assert.equal(balanceSum(restoredPath), TOTAL);
    } finally {
      primary.kill('SIGKILL');
      await follower.stop();
      await returning?.stop().catch(() => {});
      await promoted?.stop().catch(() => {});
      standbyApp?.close();
      app.close();
    }
  }));

test('an idle follower backs off to idleIntervalMs after 30 quiet polls and comes back at the first news', () =>
  withDir(async (dir) => {
    const { client, app, rep, out } = primaryIn(dir, { intervalMs: 20 });
    const follower = new Follower(out, { replicas: [{ name: 'file', client }], intervalMs: 20, idleIntervalMs: 400 });
    try {
      insertRows(app, 5);
      await rep.start();
      await rep.sync({ timeout: 10_000 });
      await follower.start();
      // 30 quiet polls at 20 ms take ~0.6 s (plus the polls' own time): well idle after 2 s.
      await new Promise((r) => setTimeout(r, 2000));
      const r0 = follower.status().requests;
      await new Promise((r) => setTimeout(r, 2000));
      const idle = follower.status().requests - r0;
      assert.ok(idle >= 3 && idle <= 7, `${idle} requests in 2 s at idle (400 ms apart: ~5; without backoff ~100)`);
      insertRows(app, 5);
      const pos = await rep.sync({ timeout: 10_000 });
      await follower.waitFor(pos, { timeoutMs: 5000 });
      const r1 = follower.status().requests;
      await new Promise((r) => setTimeout(r, 300));
      const busy = follower.status().requests - r1;
      assert.ok(busy >= 5, `${busy} requests in 300 ms after news (back to 20 ms apart)`);
      assert.equal(query<{ n: number }>(out, 'SELECT COUNT(*) AS n FROM t').n, 10);
    } finally {
      await follower.stop();
      await rep.stop();
      app.close();
    }
  }));

test('one follower per output: a second follower and a replicator of the output are refused; stop() during start() stops cleanly', () =>
  withDir(async (dir) => {
    const { client, app, rep, out } = primaryIn(dir, { intervalMs: 20 });
    const first = new Follower(out, { replicas: [{ name: 'file', client }], intervalMs: 20 });
    try {
      insertRows(app, 200);
      await rep.start();
      await rep.sync({ timeout: 10_000 });
      await first.start();
      const second = new Follower(out, { replicas: [{ name: 'file', client }] });
      await assert.rejects(second.start(), (err: Error & { code?: string }) => {
        assert.equal(err.code, 'WALSHIP_LOCKED');
        assert.match(
          err.message,
          new RegExp(
            `^cannot follow into ${out.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: another walship is following or replicating it \\(pid ${process.pid} on `,
          ),
        );
        return true;
      });
      const promoting = new Replicator(out, { replicas: [{ name: 'file', client }] });
      await assert.rejects(promoting.start(), { code: 'WALSHIP_LOCKED' });
      await promoting.stop().catch(() => {});
      await first.stop();

      // stop() while start() restores: start() rejects, the lock is free, nothing is left behind.
      const third = new Follower(out, { replicas: [{ name: 'file', client }] });
      const starting = third.start();
      await third.stop();
      await assert.rejects(starting, { code: 'WALSHIP_FOLLOW_STOPPED' });
      assert.equal(third.status().state, 'stopped');
      assert.deepEqual(
        fs.readdirSync(dir).filter((n) => n.includes('walship-follow-') || n.includes('walship-restore-')),
        [],
      );
      const fourth = new Follower(out, { replicas: [{ name: 'file', client }] });
      await fourth.start();
      await fourth.stop();
      assert.equal(query<{ n: number }>(out, 'SELECT COUNT(*) AS n FROM t').n, 200);
    } finally {
      await first.stop();
      await rep.stop();
      app.close();
    }
  }));

test('a segment re-shipped with other bounds below the position is read past the position, not skipped', () =>
  withDir(async (dir) => {
    const { client, app, rep, out } = primaryIn(dir, { intervalMs: 20 });
    const faults: Faults = {};
    const follower = new Follower(out, { replicas: [{ name: 'file', client: new FaultyClient(client, faults) }], intervalMs: 30 });
    try {
      insertRows(app, 20);
      await rep.start();
      const a = await rep.sync({ timeout: 10_000 });
      await follower.start();
      assert.deepEqual(follower.status().pos, a);
      // The next upload stays out of the follower's listings for now…
      faults.hideWal = (sg) => sg.index === a.index && sg.offset >= a.offset;
      insertRows(app, 30);
      const b = await rep.sync({ timeout: 10_000 });
      await rep.stop();
      assert.equal(b.index, a.index, 'one WAL index');
      // …then the replica holds it only inside a longer segment that starts where the follower's
      // last one did (what a replicator that crashed between upload and state write re-ships).
      const segs = (await client.walSegments(a.generation)).filter((sg) => sg.index === a.index).sort((x, y) => x.offset - y.offset);
      const last = segs.filter((sg) => sg.offset < a.offset).pop()!;
      const later = segs.filter((sg) => sg.offset >= a.offset);
      assert.ok(later.length >= 1);
      const decoded: Buffer[] = [];
      for (const sg of [last, ...later]) {
        for await (const c of decodeObject(await client.walSegmentReader({ generation: a.generation, index: sg.index, offset: sg.offset })))
          decoded.push(c as Buffer);
      }
      await client.deleteWALSegments(later.map((sg) => ({ generation: a.generation, index: sg.index, offset: sg.offset })));
      await client.writeWALSegment(
        { generation: a.generation, index: last.index, offset: last.offset },
        encodeObject(Readable.from([Buffer.concat(decoded)])),
      );
      delete faults.hideWal;
      await follower.waitFor(b, { timeoutMs: 10_000 });
      assert.equal(query<{ n: number }>(out, 'SELECT COUNT(*) AS n FROM t').n, 50);
      assert.equal(integrity(out), 'ok');
    } finally {
      await follower.stop();
      await rep.stop();
      app.close();
    }
  }));
