import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Replicator } from '@walship/core';
import { FileReplicaClient } from '@walship/file';
import {
  FILE_BACKEND,
  REPLICATOR,
  RESTORE,
  dumpDb,
  fileUrl,
  integrity,
  makeReplica,
  openWriter,
  readIds,
  requires,
  runCli,
  sleep,
  tempDir,
  writeConfig,
} from './helpers.js';

describe('restore', () => {
  const { dir, cleanup } = tempDir();
  after(cleanup);
  let skip: string | false = false;
  let fx: { db: string; replica: string; ids: number[] } | undefined;
  let cfg = '';

  before(async () => {
    skip = await requires([FILE_BACKEND, REPLICATOR, RESTORE]);
    if (skip) return;
    fx = await makeReplica(dir, 40);
    cfg = writeConfig(dir, `dbs:\n  - path: ${fx.db}\n    replicas:\n      - name: local\n        path: ${fx.replica}\n`);
  });

  test('restore -o OUT URL (Go and GNU spellings)', async (t) => {
    if (skip) return t.skip(skip);
    for (const args of [['-o', 'a.db'], ['--output', 'b.db'], ['-o=c.db'], ['--output=d.db'], ['-output', 'e.db']]) {
      const r = await runCli(['restore', ...args, fileUrl(fx!.replica)], { cwd: dir });
      assert.equal(r.code, 0, r.stderr);
      const out = join(dir, args.length === 2 ? args[1]! : args[0]!.split('=')[1]!);
      assert.equal(integrity(out), 'ok');
      assert.deepEqual(readIds(out), fx!.ids);
    }
  });

  test('a URL needs -o', async (t) => {
    if (skip) return t.skip(skip);
    const r = await runCli(['restore', fileUrl(fx!.replica)]);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, 'walship: output path required\n');
  });

  test('config mode: DB_PATH, -replica, output defaults to the DB path', async (t) => {
    if (skip) return t.skip(skip);
    const out = join(dir, 'cfg-out.db');
    let r = await runCli(['restore', '-config', cfg, '-replica', 'local', '-o', out, fx!.db]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(readIds(out), fx!.ids);
    // Without -o the database path itself is the target, which exists.
    r = await runCli(['restore', '-config', cfg, fx!.db]);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /^walship: .*already exists.*\n$/);
    r = await runCli(['restore', '-config', cfg, '-replica', 'nope', '-o', out, fx!.db]);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, `walship: replica "nope" not found for database "${fx!.db}"\n`);
  });

  test('existing output: error and untouched; -if-db-not-exists skips; --overwrite replaces', async (t) => {
    if (skip) return t.skip(skip);
    const out = join(dir, 'exists.db');
    writeFileSync(out, 'precious');
    let r = await runCli(['restore', '-o', out, fileUrl(fx!.replica)]);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, '');
    assert.equal(r.stderr.split('\n').length, 2, 'one line');
    assert.equal(
      r.stderr,
      `walship: cannot restore, output path already exists: ${out} (use --overwrite to replace it or -if-db-not-exists to skip)\n`,
    );
    assert.equal(readFileSync(out, 'utf8'), 'precious');

    for (const flag of ['-if-db-not-exists', '--if-db-not-exists']) {
      r = await runCli(['restore', flag, '-o', out, fileUrl(fx!.replica)]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.match(/level=INFO msg="database already exists, skipping"/g)?.length, 1, r.stdout);
      assert.equal(readFileSync(out, 'utf8'), 'precious');
    }

    r = await runCli(['restore', '--overwrite', '-o', out, fileUrl(fx!.replica)]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(readIds(out), fx!.ids);
  });

  test('no backups: error, or exit 0 with -if-replica-exists', async (t) => {
    if (skip) return t.skip(skip);
    const empty = join(dir, 'empty-replica');
    mkdirSync(empty);
    const out = join(dir, 'none.db');
    let r = await runCli(['restore', '-o', out, fileUrl(empty)]);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, '');
    assert.equal(r.stderr, 'walship: no matching backups found\n');
    assert.ok(!existsSync(out));
    for (const flag of ['-if-replica-exists', '--if-replica-exists=true']) {
      r = await runCli(['restore', flag, '-o', out, fileUrl(empty)]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.match(/level=INFO msg="no matching backups found"/g)?.length, 1, r.stdout);
      assert.ok(!existsSync(out));
    }
    assert.deepEqual(readdirSync(empty), [], 'nothing written to the replica');
  });

  test('--progress off a terminal prints plain lines with bytes and percent on stderr; quiet by default', async (t) => {
    if (skip) return t.skip(skip);
    let r = await runCli(['restore', '--progress', '-o', join(dir, 'p1.db'), fileUrl(fx!.replica)]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /^restore progress: (snapshot|wal|verify) {2}\d+(\.\d)? (B|KiB|MiB)( \/ \d+(\.\d)? (B|KiB|MiB))? {2}\d+%/m);
    r = await runCli(['restore', '-o', join(dir, 'p2.db'), fileUrl(fx!.replica)]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '');
  });

  test('restore creates missing parent directories of the output', async (t) => {
    if (skip) return t.skip(skip);
    const out = join(dir, 'sub', 'dir', 'deep.db');
    const r = await runCli(['restore', '-o', out, fileUrl(fx!.replica)]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(statSync(out).isFile());
    assert.deepEqual(readIds(out), fx!.ids);
  });
});

/**
 * A replica with a history to restore points of: generation A with three WAL indexes (the
 * middle one in three segments, with a timestamp taken between its first and second), then
 * generation B (the WAL restarted behind walship's back while it was stopped). The database
 * is written in this process and replicated by core's Replicator, so every point's expected
 * content is dumped from the live database at that point.
 */
interface History {
  db: string;
  replica: string;
  genA: string;
  genB: string;
  /** WAL indexes of generation A: after A (i0), the middle index (i1), the last one (i2). */
  i0: number;
  i1: number;
  /** Dumps: end of index i0; after the first segment of i1 (= at `t1`); end of i1; end of gen A; end of gen B. */
  dumpI0: string;
  dumpT1: string;
  dumpI1: string;
  dumpGenA: string;
  dumpGenB: string;
  t1: Date;
  /** WAL segment files (relative to the replica root) holding only the second transaction of i1. */
  middleSegments: string[];
}

function walFiles(replica: string): string[] {
  const out: string[] = [];
  const gens = join(replica, 'generations');
  if (!existsSync(gens)) return out;
  for (const g of readdirSync(gens)) {
    const wal = join(gens, g, 'wal');
    if (existsSync(wal)) for (const f of readdirSync(wal)) out.push(join('generations', g, 'wal', f));
  }
  return out.sort();
}

/** The latest createdAt (mtime) among a generation's snapshots and WAL segments. */
function lastUpload(replica: string, generation: string): Date {
  let max = 0;
  for (const sub of ['snapshots', 'wal']) {
    const d = join(replica, 'generations', generation, sub);
    for (const f of readdirSync(d)) max = Math.max(max, statSync(join(d, f)).mtime.getTime());
  }
  return new Date(max);
}

async function makeHistory(dir: string): Promise<History> {
  const db = join(dir, 'hist.db');
  const replica = join(dir, 'hist-replica');
  const w = openWriter(db);
  const rows = (n: number) =>
    w.db.transaction(() => {
      for (let i = 0; i < n; i++) w.insert(`row ${w.maxId() + 1} ${'y'.repeat(200)}`);
    })();
  const replicator = () =>
    new Replicator(db, {
      replicas: [{ name: 'local', client: new FileReplicaClient({ path: replica }) }],
      // Only the explicit checkpoints below may start a new WAL index.
      checkpointInterval: 3_600_000,
      minCheckpointPageCount: 100_000,
      maxCheckpointPageCount: 200_000,
    });
  try {
    rows(10);
    let rep = replicator();
    await rep.start();
    const p0 = await rep.sync();
    const dumpI0 = dumpDb(w.db);
    assert.ok(await rep.checkpoint(), 'checkpoint after index 0');
    rows(5);
    const pB1 = await rep.sync();
    assert.equal(pB1.index, p0.index + 1, 'the checkpoint started a new WAL index');
    const dumpT1 = dumpDb(w.db);
    const t1 = new Date();
    // Everything written from here on gets a later mtime (createdAt) than t1, even with a
    // coarse file-system clock.
    while (Date.now() < t1.getTime() + 50) await sleep(10);
    const before = new Set(walFiles(replica));
    rows(5);
    await rep.sync();
    const middleSegments = walFiles(replica).filter((f) => !before.has(f));
    assert.ok(middleSegments.length > 0, 'the second transaction of index 1 was shipped');
    for (const f of middleSegments) assert.ok(statSync(join(replica, f)).mtime.getTime() > t1.getTime(), `${f} is newer than t1`);
    rows(5);
    const pB3 = await rep.sync();
    assert.equal(pB3.index, pB1.index);
    const dumpI1 = dumpDb(w.db);
    assert.ok(await rep.checkpoint(), 'checkpoint after index 1');
    rows(5);
    const pC = await rep.sync();
    assert.equal(pC.index, pB1.index + 1);
    const dumpGenA = dumpDb(w.db);
    const genA = rep.status().generation;
    await rep.stop();

    // While walship is stopped, write and checkpoint the writes into the database file
    // (changing it behind walship's back), then write more: the next start cannot continue.
    rows(5);
    w.db.pragma('wal_checkpoint(TRUNCATE)');
    rows(5);
    rep = replicator();
    await rep.start();
    await rep.sync();
    const dumpGenB = dumpDb(w.db);
    const genB = rep.status().generation;
    await rep.stop();
    assert.notEqual(genB, genA, 'a WAL restarted behind walship starts a new generation');
    return { db, replica, genA, genB, i0: p0.index, i1: pB1.index, dumpI0, dumpT1, dumpI1, dumpGenA, dumpGenB, t1, middleSegments };
  } finally {
    w.close();
  }
}

describe('restore to a point: -generation, -index, -timestamp, --partial', () => {
  const { dir, cleanup } = tempDir();
  after(cleanup);
  let h: History;
  let n = 0;
  const hex = (i: number) => i.toString(16);
  /** Restores with `args` into a fresh output; returns the result and the output path. */
  const run = async (args: string[], replica = h.replica) => {
    const out = join(dir, `point-${n++}.db`);
    const r = await runCli(['restore', ...args, '-o', out, fileUrl(replica)]);
    return { ...r, out };
  };
  const restored = async (args: string[], expected: string, replica?: string) => {
    const r = await run(args, replica);
    assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    assert.equal(integrity(r.out), 'ok');
    assert.equal(dumpDb(r.out), expected, args.join(' '));
    return r;
  };

  before(async () => {
    h = await makeHistory(dir);
    // The points really differ, so restoring the wrong one cannot pass.
    const dumps = [h.dumpI0, h.dumpT1, h.dumpI1, h.dumpGenA, h.dumpGenB];
    assert.equal(new Set(dumps).size, dumps.length, 'every point has a distinct content');
  });

  test('no flags: the latest generation; -parallelism and -verify do not change the result', async () => {
    for (const args of [
      [],
      ['-parallelism', '1'],
      ['--parallelism=3', '--verify', 'quick'],
      ['--verify=none'],
      ['--verify', 'integrity'],
    ]) {
      await restored(args, h.dumpGenB);
    }
  });

  test('-generation restores the latest state of that generation', async () => {
    await restored(['-generation', h.genA], h.dumpGenA);
    await restored(['--generation', h.genB], h.dumpGenB);
    const r = await run(['-generation', 'ffffffffffffffff']);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, 'walship: no matching backups found\n');
    assert.ok(!existsSync(r.out));
  });

  test('-index restores through the end of that WAL index (hex), inclusive', async () => {
    await restored(['-generation', h.genA, '-index', hex(h.i0)], h.dumpI0);
    await restored(['--generation', h.genA, '-index', hex(h.i1)], h.dumpI1);
    await restored(['-generation', h.genA, `--index=${hex(h.i1 + 1)}`], h.dumpGenA);
  });

  test('-timestamp restores the state at that time, mid-index, in the generation it falls in', async () => {
    // t1 is after the first transaction of index i1 and before the second.
    await restored(['-timestamp', h.t1.toISOString()], h.dumpT1);
    // The last upload of generation B: its latest state.
    await restored(['-timestamp', lastUpload(h.replica, h.genB).toISOString()], h.dumpGenB);
    // After every generation's last upload nothing matches (as in Litestream v0.3, a timestamp
    // must fall within a generation's time span).
    const late = new Date(lastUpload(h.replica, h.genB).getTime() + 1000).toISOString();
    let r = await run(['-timestamp', late]);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, 'walship: no matching backups found\n');
    assert.ok(!existsSync(r.out));
    r = await run(['-timestamp', late, '-if-replica-exists']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.match(/level=INFO msg="no matching backups found"/g)?.length, 1, r.stdout);
    assert.ok(!existsSync(r.out), 'nothing restored');
  });

  test('-timestamp with -if-replica-exists: restores when a backup matches, else exits 0 writing nothing', async () => {
    const r = await restored(['-timestamp', h.t1.toISOString(), '-if-replica-exists'], h.dumpT1);
    assert.doesNotMatch(r.stdout, /no matching backups found/);
    assert.match(r.stdout, /level=INFO msg="restore finished"/);
    // Before any backup: an error without the flag, a logged no-op with it.
    const early = '2000-01-01T00:00:00Z';
    let e = await run(['-timestamp', early]);
    assert.equal(e.code, 1);
    assert.equal(e.stderr, 'walship: no matching backups found\n');
    assert.ok(!existsSync(e.out));
    e = await run(['-timestamp', early, '-if-replica-exists']);
    assert.equal(e.code, 0, e.stderr);
    assert.equal(e.stdout.match(/level=INFO msg="no matching backups found"/g)?.length, 1, e.stdout);
    assert.doesNotMatch(e.stdout, /restore finished/);
    assert.ok(!existsSync(e.out), 'nothing restored');
  });

  test('--partial on a replica missing a WAL segment in the middle restores up to the damage', async () => {
    const damaged = join(dir, 'damaged-replica');
    // Keep the mtimes: they are the objects' createdAt, which picks the latest generation.
    cpSync(h.replica, damaged, { recursive: true, preserveTimestamps: true });
    for (const f of h.middleSegments) rmSync(join(damaged, f));
    // Without --partial: a one-line error naming the damage, nothing written.
    const r = await run(['-generation', h.genA], damaged);
    assert.equal(r.code, 1);
    assert.equal(r.stderr.split('\n').length, 2, `one line: ${r.stderr}`);
    assert.match(
      r.stderr,
      new RegExp(
        `^walship: replica "[^"]+" is damaged: missing-segment at ${h.genA}/${hex(h.i1).padStart(8, '0')}:\\d+ .*latest restorable point is ${h.genA}/${hex(h.i1).padStart(8, '0')}:\\d+`,
      ),
    );
    assert.ok(!existsSync(r.out));
    // With --partial: the state just before the missing segment (the end of its first transaction).
    for (const args of [
      ['-generation', h.genA, '--partial'],
      ['-generation', h.genA, '--verify', 'integrity', '-partial'],
    ]) {
      const p = await restored(args, h.dumpT1, damaged);
      assert.match(p.stdout, /level=WARN msg="restoring up to the latest restorable point"/);
    }
    // The damage is in generation A only: the latest generation still restores whole.
    await restored([], h.dumpGenB, damaged);
  });
});
