/**
 * `validationInterval`: the replica restored to a position walship holds, compared page by page
 * with the local database at that same position (replica/validator.ts). Real file replicas.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { after, test } from 'node:test';
import {
  comparePos,
  type LogFields,
  type Logger,
  type Pos,
  Replicator,
  type ReplicatorOptions,
  restore,
  type ValidationEvent,
} from '@walship/core';
import { createLz4FrameEncoder, walChecksum, WAL_FRAME_HEADER_SIZE, WAL_HEADER_SIZE } from '@walship/core/format';
import { FileReplicaClient } from '@walship/file';
import type Database from 'better-sqlite3';
import { insertRows, openApp, tempDir, until } from './support/db.js';
import { integrityOk, readObject, rows, walByIndex } from './support/replica-check.js';
import { exited, spawnScript } from './support/spawn.js';

interface Line {
  level: keyof Logger;
  message: string;
  fields: LogFields | undefined;
}

interface Fixture {
  dir: string;
  dbPath: string;
  metaPath: string;
  replicaDir: string;
  client: FileReplicaClient;
  lines: Line[];
  events: ValidationEvent[];
  rep: Replicator;
}

const cleanups: Array<() => Promise<void> | void> = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

async function fixture(replicaExtra: Record<string, unknown>, extra: Partial<ReplicatorOptions> = {}): Promise<Fixture> {
  const dir = await tempDir('walship-validation-');
  const dbPath = path.join(dir, 'app.db');
  const replicaDir = path.join(dir, 'replica');
  const client = new FileReplicaClient({ path: replicaDir });
  const lines: Line[] = [];
  const log = (level: keyof Logger) => (message: string, fields?: LogFields) => lines.push({ level, message, fields });
  const rep = new Replicator(dbPath, {
    monitorInterval: 50,
    logger: { debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error') },
    replicas: [{ name: 'file', client, syncInterval: 50, ...replicaExtra }],
    ...extra,
  });
  const events: ValidationEvent[] = [];
  rep.on('validation', (e) => events.push(e));
  const f = { dir, dbPath, metaPath: path.join(dir, '.app.db-walship'), replicaDir, client, lines, events, rep };
  cleanups.push(async () => {
    await rep.stop({ timeout: 2000 }).catch(() => {});
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return f;
}

/** Files of validations in the meta directory (none may be left once a validation ended). */
function validationFiles(metaPath: string): string[] {
  return fs.existsSync(metaPath) ? fs.readdirSync(metaPath).filter((n) => /validation/.test(n)) : [];
}

async function encodeLz4(data: Buffer): Promise<Buffer> {
  return buffer(Readable.from([data]).pipe(createLz4FrameEncoder()));
}

test('an unchanging database validates ok, with the page count, and leaves no files behind', async () => {
  const f = await fixture({ validationInterval: 300 });
  const app = openApp(f.dbPath);
  cleanups.push(() => void app.close());
  insertRows(app, 300, 500);
  await f.rep.start();
  await f.rep.sync();
  // Validations before the replica's first snapshot (sync() waits for it) are skipped.
  const before = f.events.splice(0);
  for (const e of before) assert.equal(e.reason, 'the replica has no snapshot of this generation yet', JSON.stringify(e));
  await until(() => f.events.length >= 2, 20_000, 'two validations');
  await f.rep.stop();
  const pages = app.pragma('page_count', { simple: true }) as number;
  for (const e of f.events) {
    assert.equal(e.result, 'ok', JSON.stringify(e));
    assert.equal(e.replica, 'file');
    assert.equal(e.mismatchedPages, 0);
    assert.equal(e.pages, pages);
    assert.equal(e.pos.generation, f.rep.status().generation);
    assert.equal(typeof e.durationMs, 'number');
    assert.equal(typeof e.localHoldMs, 'number');
    assert.equal(e.snapshotIndex, 0);
  }
  const ok = f.lines.filter((l) => l.level === 'info' && l.message === 'validation ok');
  assert.ok(ok.length >= 2, 'an info line per ok validation');
  assert.equal(ok[0]!.fields?.replica, 'file');
  assert.deepEqual(validationFiles(f.metaPath), []);
  assert.equal(f.lines.filter((l) => l.level === 'error').length, 0, JSON.stringify(f.lines.filter((l) => l.level === 'error')));
});

test('under steady write load every validation is ok or skipped with a reason, never a mismatch', async (t) => {
  // Everything that moves under a validation: an application in another process committing
  // ~1500 transactions a second with its own automatic checkpoints, updates in place from this
  // process, walship's WAL restarts every 200 pages, snapshots every 2 s and retention of 3 s
  // (both held back while a validation runs).
  const f = await fixture(
    { validationInterval: 200, snapshotInterval: '2s', retention: '3s', retentionCheckInterval: '1s' },
    { minCheckpointPageCount: 200, maxCheckpointPageCount: 2000, checkpointInterval: 500 },
  );
  const app = openApp(f.dbPath, { autocheckpoint: 1000 });
  cleanups.push(() => void app.close());
  insertRows(app, 500, 200);
  // The stop's clean checkpoint may restart the WAL and ship that one-page commit after `end`.
  let lastUploaded: Pos | undefined;
  f.rep.on('replica-sync', (e) => (lastUploaded = e.pos));
  await f.rep.start();
  const writer = spawnScript('paced-writer-child.ts', [f.dbPath, '1500', '1000']);
  cleanups.push(() => void writer.kill('SIGKILL'));
  await writer.waitFor(/committed/);
  const upd = app.prepare('UPDATE t SET v = ? WHERE id = ?');
  let k = 0;
  const updater = setInterval(() => {
    for (let i = 0; i < 5; i++) upd.run(`u${k++}`.padEnd(200, 'z'), 1 + ((k * 7919) % 500));
  }, 5);
  try {
    const t0 = Date.now();
    await until(() => f.events.filter((e) => e.result === 'ok').length >= 5 && Date.now() - t0 >= 8000, 40_000, 'validations under load');
  } finally {
    clearInterval(updater);
    writer.kill('SIGTERM');
    await exited(writer);
  }
  const end = await f.rep.sync();
  await f.rep.stop();
  const summary = f.events.map((e) => `${e.result}${e.reason ? `(${e.reason})` : ''}@${e.pos.index}:${e.pos.offset}`).join(' ');
  t.diagnostic(`${f.events.length} validations: ${summary}`);
  t.diagnostic(`writer committed up to ${writer.lines[writer.lines.length - 1]}`);
  assert.equal(f.events.filter((e) => e.result === 'mismatch').length, 0, summary);
  assert.ok(f.events.filter((e) => e.result === 'ok').length >= 5, summary);
  for (const e of f.events) {
    if (e.result === 'skipped') assert.ok(e.reason && e.reason.length > 0, summary);
    if (e.result === 'ok') assert.ok(e.pages > 0);
  }
  // The positions validated moved on with the writes (not one position over and over).
  assert.ok(new Set(f.events.filter((e) => e.result === 'ok').map((e) => `${e.pos.index}:${e.pos.offset}`)).size >= 2, summary);
  assert.equal(f.lines.filter((l) => /validation mismatch/.test(l.message)).length, 0);
  assert.deepEqual(validationFiles(f.metaPath), []);
  // And the replica restores to the final state.
  const out = path.join(f.dir, 'restored.db');
  const r = await restore({ outputPath: out, replicas: [{ name: 'file', client: f.client }] });
  assert.ok(
    lastUploaded && comparePos(lastUploaded, end) >= 0,
    `last upload ${JSON.stringify(lastUploaded)} at or past sync()'s ${JSON.stringify(end)}`,
  );
  assert.deepEqual(r.restoredTo, lastUploaded);
  assert.ok(integrityOk(out));
  assert.deepEqual(rows(out), rows(f.dbPath));
});

/** Waits for the first validation ok, lets `damage` change the replica, then returns the first later non-ok event. */
async function damagedRun(
  damage: (f: Fixture, app: Database.Database) => Promise<number[]>,
): Promise<{ f: Fixture; event: ValidationEvent; pages: number[] }> {
  const f = await fixture({ validationInterval: 300 }, { minCheckpointPageCount: 100_000, checkpointInterval: 0 });
  const app = openApp(f.dbPath);
  cleanups.push(() => void app.close());
  insertRows(app, 200, 500);
  // Everything in the database file: the generation's WAL (index 0) then holds few pages.
  app.pragma('wal_checkpoint(TRUNCATE)');
  await f.rep.start();
  await f.rep.sync();
  insertRows(app, 20, 500);
  await f.rep.sync();
  await until(() => f.events.some((e) => e.result === 'ok'), 20_000, 'a first ok validation');
  const pages = await damage(f, app);
  const seen = f.events.length;
  await until(() => f.events.slice(seen).some((e) => e.result === 'mismatch'), 20_000, 'a mismatch');
  const event = f.events.slice(seen).find((e) => e.result === 'mismatch')!;
  // Nothing but the damage changed: no skip in between.
  assert.deepEqual(
    f.events
      .slice(seen, f.events.indexOf(event))
      .map((e) => e.result)
      .filter((r) => r !== 'ok'),
    [],
  );
  await f.rep.stop();
  return { f, event, pages };
}

function assertMismatchReported(f: Fixture, event: ValidationEvent, pages: number[]): void {
  assert.equal(event.replica, 'file');
  assert.equal(event.mismatchedPages, pages.length, JSON.stringify(event));
  assert.deepEqual(event.mismatchedPageNumbers, pages);
  assert.match(event.reason ?? '', new RegExp(`${pages.length} of ${event.pages} pages differ`));
  const err = f.lines.find((l) => l.level === 'error' && /validation mismatch/.test(l.message));
  assert.ok(err, 'an error log line');
  assert.match(err.message, /replica "file" does not match the local database at /);
  assert.equal(err.fields?.mismatchedPages, pages.length);
  assert.equal(err.fields?.firstMismatchedPages, pages.join(','));
  assert.deepEqual(validationFiles(f.metaPath), []);
}

test('a page altered in a WAL segment object (consistent LZ4 frame and WAL checksums) is a mismatch naming that page', async () => {
  const { f, event, pages } = await damagedRun(async (fx) => {
    const gen = fx.rep.status().generation;
    const index = fx.rep.status().pos.index;
    const wal = (await walByIndex(fx.client, gen)).get(index)!;
    const segs = (await fx.client.walSegments(gen)).filter((s) => s.index === index).sort((a, b) => a.offset - b.offset);
    const last = segs[segs.length - 1]!;
    const pageSize = wal.readUInt32BE(8);
    const frameSize = WAL_FRAME_HEADER_SIZE + pageSize;
    // The WAL's last frame (the newest version of its page) lies in the last segment.
    const at = wal.length - frameSize;
    assert.ok(at >= last.offset && at >= WAL_HEADER_SIZE);
    const pgno = wal.readUInt32BE(at);
    const damaged = Buffer.from(wal);
    damaged.fill(0x5a, at + WAL_FRAME_HEADER_SIZE + pageSize - 64, at + WAL_FRAME_HEADER_SIZE + pageSize - 32);
    // Re-chain the checksums from that frame on, as SQLite would have written them.
    const bigEndian = damaged.readUInt32BE(0) === 0x377f0683;
    const prevAt = at - frameSize;
    let seed =
      prevAt >= WAL_HEADER_SIZE
        ? { s0: damaged.readUInt32BE(prevAt + 16), s1: damaged.readUInt32BE(prevAt + 20) }
        : { s0: damaged.readUInt32BE(24), s1: damaged.readUInt32BE(28) };
    seed = walChecksum(damaged, at, at + 8, bigEndian, seed);
    seed = walChecksum(damaged, at + WAL_FRAME_HEADER_SIZE, at + frameSize, bigEndian, seed);
    damaged.writeUInt32BE(seed.s0, at + 16);
    damaged.writeUInt32BE(seed.s1, at + 20);
    const file = fx.client.walSegmentPath(gen, index, last.offset);
    fs.writeFileSync(`${file}.tmp-test`, await encodeLz4(damaged.subarray(last.offset)));
    fs.renameSync(`${file}.tmp-test`, file);
    return [pgno];
  });
  assertMismatchReported(f, event, pages);
});

test('a snapshot object of another database is a mismatch naming the pages that differ', async () => {
  const { f, event, pages } = await damagedRun(async (fx) => {
    const gen = fx.rep.status().generation;
    const snaps = await fx.client.snapshots(gen);
    assert.equal(snaps.length, 1);
    const snap = await readObject(await fx.client.snapshotReader(gen, snaps[0]!.index));
    const pageSize = snap.readUInt16BE(16);
    // Pages the WAL after the snapshot rewrites are not the snapshot's: pick two that it does not.
    const inWal = new Set<number>();
    for (const [, wal] of await walByIndex(fx.client, gen)) {
      for (let at = WAL_HEADER_SIZE; at + WAL_FRAME_HEADER_SIZE + pageSize <= wal.length; at += WAL_FRAME_HEADER_SIZE + pageSize)
        inWal.add(wal.readUInt32BE(at));
    }
    const candidates: number[] = [];
    for (let p = 2; p <= snap.length / pageSize; p++) if (!inWal.has(p)) candidates.push(p);
    assert.ok(candidates.length >= 10, `pages outside the wal: ${candidates.length}`);
    const chosen = [candidates[3]!, candidates[candidates.length - 2]!];
    const other = Buffer.from(snap);
    for (const p of chosen) other.fill(0xa5, (p - 1) * pageSize + 200, (p - 1) * pageSize + 300);
    const file = fx.client.snapshotPath(gen, snaps[0]!.index);
    fs.writeFileSync(`${file}.tmp-test`, await encodeLz4(other));
    fs.renameSync(`${file}.tmp-test`, file);
    return chosen;
  });
  assertMismatchReported(f, event, pages);
});

test('a missing WAL segment is a mismatch: the replica cannot be restored to the position', async () => {
  const { f, event } = await damagedRun(async (fx) => {
    const gen = fx.rep.status().generation;
    const index = fx.rep.status().pos.index;
    const segs = (await fx.client.walSegments(gen)).filter((s) => s.index === index).sort((a, b) => a.offset - b.offset);
    assert.ok(segs.length >= 2);
    fs.rmSync(fx.client.walSegmentPath(gen, index, segs[1]!.offset));
    return [];
  });
  assert.equal(event.mismatchedPages, 0);
  // The last segment gone: the replica restores to an earlier position (a gap before later
  // segments would be "cannot be restored to …").
  assert.match(event.reason ?? '', /the replica restores to \S+, not to \S+|cannot be restored to/);
  assert.ok(f.lines.some((l) => l.level === 'error' && /validation mismatch/.test(l.message)));
});

test('leftovers of validations cut short (kill -9) are removed at start', async () => {
  const f = await fixture({ validationInterval: '1h' });
  const app = openApp(f.dbPath);
  cleanups.push(() => void app.close());
  fs.mkdirSync(f.metaPath, { recursive: true });
  const tag = '4242-0badc0de';
  const leftovers = [
    `validation-${tag}.digest.tmp`,
    `validation-${tag}.db.tmp`,
    `validation-${tag}.db.tmp-wal`,
    `.validation-${tag}.db.tmp.walship-restore-4242-0123456789ab`,
    `.validation-${tag}.db.tmp.walship-restore-4242-0123456789ab.spill`,
  ];
  for (const n of leftovers) fs.writeFileSync(path.join(f.metaPath, n), 'x');
  fs.writeFileSync(path.join(f.metaPath, 'keep-me'), 'x');
  await f.rep.start();
  assert.deepEqual(validationFiles(f.metaPath), []);
  assert.ok(fs.existsSync(path.join(f.metaPath, 'keep-me')));
  await f.rep.stop();
});
