// SQLite restarts a WAL by writing the new header, fsyncing it, then writing the first frame.
// A kill -9 during that fsync leaves a `-wal` whose header is the restart but whose frames are
// still the previous WAL's (their salts no longer match, so SQLite sees an empty WAL). When
// walship's own restarting write was interrupted there, nothing was lost and the next start
// must continue the generation; when the previous WAL holds commits walship never scanned
// (someone else wrote and restarted after walship died), continuity is lost and it must not.
// The state is built on disk as the kill leaves it, from a real replication run.
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { Replicator, restore } from '@walship/core';
import { encodeWalHeader, parseFrameHeader, parseWalHeader, verifyFrame, WAL_HEADER_SIZE } from '@walship/core/format';
import { FileReplicaClient } from '@walship/file';
import { insertRows, openApp, tempDir } from './support/db.js';
import { rows } from './support/replica-check.js';

/** Ends (byte offsets) of every valid commit of a WAL image, in order. */
function commitEnds(wal: Buffer): number[] {
  const h = parseWalHeader(wal);
  const fsz = 24 + h.pageSize;
  const ends: number[] = [];
  let prev = h.checksum;
  for (let at = WAL_HEADER_SIZE; at + fsz <= wal.length; at += fsz) {
    const c = verifyFrame(wal, at, h.pageSize, h, prev);
    if (!c) break;
    prev = c;
    if (parseFrameHeader(wal, at).commit !== 0) ends.push(at + fsz);
  }
  return ends;
}

interface Setup {
  readonly dbPath: string;
  readonly client: FileReplicaClient;
  readonly rowsWritten: number;
  readonly generation: string;
}

/**
 * Replicates a few transactions, stops, then leaves the files as a kill -9 in the restart
 * header's fsync would: the state names the WAL walship scanned plus a restart intent ending at
 * `intentEnd(commitEnds)`, and the `-wal` holds a restart header over the old frames.
 */
async function killedInRestartHeaderFsync(intentEnd: (ends: number[]) => number): Promise<Setup> {
  const dir = await tempDir();
  const dbPath = path.join(dir, 'app.db');
  const metaPath = path.join(dir, '.app.db-walship');
  const client = new FileReplicaClient({ path: path.join(dir, 'replica') });
  const app = openApp(dbPath);
  let wal: Buffer;
  let seqPage: number;
  let generation: string;
  try {
    const rep = new Replicator(dbPath, { monitorInterval: 20, replicas: [{ name: 'r', client, syncInterval: 20 }] });
    await rep.start();
    try {
      for (let k = 0; k < 4; k++) insertRows(app, 25);
      generation = (await rep.sync({ timeout: 30_000 })).generation;
    } finally {
      await rep.stop();
    }
    wal = await fs.readFile(`${dbPath}-wal`);
    seqPage = Number(app.prepare(`SELECT rootpage FROM sqlite_master WHERE name = '_litestream_seq'`).pluck().get());
  } finally {
    app.close(); // the last connection: checkpoints everything into the database and removes the -wal
  }
  const stateFile = path.join(metaPath, 'state.json');
  const state = JSON.parse(await fs.readFile(stateFile, 'utf8')) as Record<string, unknown>;
  assert.equal(state.walHeader, wal.subarray(0, WAL_HEADER_SIZE).toString('hex'), 'set-up: the state names the wal as it was left');
  const ends = commitEnds(wal);
  assert.ok(ends.length >= 3, `set-up: the wal holds several commits (${ends.length})`);
  const old = parseWalHeader(wal);
  const restarted = encodeWalHeader({
    bigEndian: old.bigEndian,
    pageSize: old.pageSize,
    checkpointSeq: old.checkpointSeq + 1,
    salt1: (old.salt1 + 1) >>> 0,
    salt2: (old.salt2 ^ 0x5a5a5a5a) >>> 0,
  });
  await fs.writeFile(`${dbPath}-wal`, Buffer.concat([restarted, wal.subarray(WAL_HEADER_SIZE)]));
  await fs.rm(`${dbPath}-shm`, { force: true });
  const { cleanStop: _clean, ...rest } = state;
  await fs.writeFile(stateFile, JSON.stringify({ ...rest, restartIntent: { end: intentEnd(ends), seqPage } }));
  return { dbPath, client, rowsWritten: 100, generation };
}

async function restartAndWrite(s: Setup): Promise<{ generations: string[]; generation: string }> {
  const app = openApp(s.dbPath);
  try {
    const rep = new Replicator(s.dbPath, { monitorInterval: 20, replicas: [{ name: 'r', client: s.client, syncInterval: 20 }] });
    const generations: string[] = [];
    rep.on('generation', (e) => generations.push(e.reason));
    await rep.start();
    try {
      insertRows(app, 30);
      assert.equal(await rep.checkpoint(), true, 'walship restarts the wal again after the start');
      insertRows(app, 20);
      return { generations, generation: (await rep.sync({ timeout: 30_000 })).generation };
    } finally {
      await rep.stop();
    }
  } finally {
    app.close();
  }
}

async function restoredIds(s: Setup): Promise<number[]> {
  const out = path.join(path.dirname(s.dbPath), 'restored.db');
  const r = await restore({ outputPath: out, replicas: [{ name: 'r', client: s.client }] });
  assert.equal(r.status, 'restored');
  return (rows(out, 'SELECT id FROM t ORDER BY id') as Array<{ id: number }>).map((x) => x.id);
}

const contiguous = (n: number) => Array.from({ length: n }, (_, i) => i + 1);

test('killed while SQLite fsyncs the header of walship’s own wal restart: the next start continues the generation', async () => {
  const s = await killedInRestartHeaderFsync((ends) => ends.at(-1)!);
  const r = await restartAndWrite(s);
  assert.deepEqual(r.generations, [], 'no new generation');
  assert.equal(r.generation, s.generation, 'the generation continues');
  assert.deepEqual(await s.client.generations(), [s.generation], 'one generation on the replica');
  assert.deepEqual(await restoredIds(s), contiguous(s.rowsWritten + 50), 'every row, in order');
});

test('the same header when the old wal holds commits after the intent: a new generation, nothing lost', async () => {
  const s = await killedInRestartHeaderFsync((ends) => ends.at(-2)!);
  const r = await restartAndWrite(s);
  assert.deepEqual(r.generations, ['wal header mismatch'], 'continuity cannot be proven: one new generation');
  assert.notEqual(r.generation, s.generation);
  assert.deepEqual(await restoredIds(s), contiguous(s.rowsWritten + 50), 'every row, in order (from the new snapshot)');
});
