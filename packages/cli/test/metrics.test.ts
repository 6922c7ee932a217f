/**
 * `replicate` metrics, checked against what really is on the replica (read from the replica
 * directory, independent of walship's own bookkeeping): WAL index and offset, uploaded
 * segments and bytes, snapshots, checkpoint modes, generations, replica health.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { before, describe, test } from 'node:test';
import { createLz4FrameDecoder } from '@walship/core/format';
import {
  FILE_BACKEND,
  REPLICATOR,
  httpGet,
  openWriter,
  parseMetrics,
  requires,
  type Sample,
  sleep,
  spawnCli,
  tempDir,
  value,
  writeConfig,
} from './helpers.js';

interface ReplicaState {
  generations: string[];
  /** Snapshot files of the (single) generation, with their stored sizes. */
  snapshots: { index: number; size: number }[];
  /** WAL segments: index, offset and decompressed length. */
  segments: { index: number; offset: number; length: number }[];
  /** Position the segments reach: the last segment's index and offset + length. */
  pos: { index: number; offset: number };
}

/** What the file replica holds, read straight from its directory. */
async function replicaState(replica: string): Promise<ReplicaState> {
  const gensDir = join(replica, 'generations');
  const generations = existsSync(gensDir) ? readdirSync(gensDir).sort() : [];
  const snapshots: ReplicaState['snapshots'] = [];
  const segments: ReplicaState['segments'] = [];
  for (const g of generations) {
    const snapDir = join(gensDir, g, 'snapshots');
    if (existsSync(snapDir)) {
      for (const f of readdirSync(snapDir)) {
        const m = /^([0-9a-f]{8})\.snapshot\.lz4$/.exec(f);
        if (m) snapshots.push({ index: parseInt(m[1]!, 16), size: statSync(join(snapDir, f)).size });
      }
    }
    const walDir = join(gensDir, g, 'wal');
    if (existsSync(walDir)) {
      for (const f of readdirSync(walDir)) {
        const m = /^([0-9a-f]{8})_([0-9a-f]{8})\.wal\.lz4$/.exec(f);
        if (!m) continue;
        const raw = await buffer(Readable.from([readFileSync(join(walDir, f))]).pipe(createLz4FrameDecoder()));
        segments.push({ index: parseInt(m[1]!, 16), offset: parseInt(m[2]!, 16), length: raw.length });
      }
    }
  }
  segments.sort((a, b) => a.index - b.index || a.offset - b.offset);
  const last = segments[segments.length - 1];
  return {
    generations,
    snapshots,
    segments,
    pos: last ? { index: last.index, offset: last.offset + last.length } : { index: 0, offset: 0 },
  };
}

describe('replicate metrics against the replica', () => {
  let skip: string | false = false;
  before(async () => {
    skip = await requires([FILE_BACKEND, REPLICATOR]);
  });

  test('wal index/offset, replica_sync_*, snapshot_*, checkpoint modes, generations and health match the replica', {
    timeout: 180_000,
  }, async (t) => {
    if (skip) return t.skip(skip);
    const { dir, cleanup } = tempDir();
    t.after(cleanup);
    const db = join(dir, 'app.db');
    const replica = join(dir, 'replica');
    // Restart (PASSIVE) past 20 pages; emergency TRUNCATE past 200; no idle checkpoints.
    const cfg = writeConfig(
      dir,
      `addr: "127.0.0.1:0"\ndbs:\n  - path: ${db}\n    monitor-interval: 100ms\n    checkpoint-interval: 1h\n` +
        `    min-checkpoint-page-count: 20\n    max-checkpoint-page-count: 1000\n    truncate-page-count: 200\n` +
        `    replicas:\n      - name: backup\n        path: ${replica}\n        sync-interval: 100ms\n`,
    );
    const w = openWriter(db);
    t.after(() => w.close());
    w.insert();
    const cli = spawnCli(['replicate', '-config', cfg], { timeoutMs: 170_000 });
    t.after(() => cli.kill('SIGKILL'));
    const [, url] = await cli.waitFor(/msg="serving metrics on" url=(http:\/\/127\.0\.0\.1:\d+\/metrics)/);
    const dbL = { db };
    const repL = { db, replica: 'backup' };

    let last: { samples: Sample[]; state: ReplicaState } | undefined;
    /**
     * Polls until the metrics agree with the replica directory and `extra` holds (bounded only
     * to catch a hang), then asserts every check so a mismatch shows the values.
     */
    const settle = async (extra: (s: Sample[], st: ReplicaState) => boolean, what: string) => {
      const deadline = Date.now() + 60_000;
      for (;;) {
        const samples = parseMetrics((await httpGet(url!)).body);
        const state = await replicaState(replica);
        last = { samples, state };
        const agree =
          value(samples, 'walship_replica_wal_index', repL) === state.pos.index &&
          value(samples, 'walship_replica_wal_offset', repL) === state.pos.offset &&
          value(samples, 'walship_wal_index', dbL) === state.pos.index &&
          value(samples, 'walship_replica_sync_total', repL) === state.segments.length &&
          value(samples, 'walship_snapshot_total', repL) === state.snapshots.length &&
          value(samples, 'walship_replica_healthy', repL) === 1 &&
          value(samples, 'walship_replica_lag_seconds', repL) === 0;
        if (agree && extra(samples, state)) break;
        if (Date.now() > deadline) break;
        await sleep(100);
      }
      const { samples, state } = last;
      const ctx = `${what}\nreplica: ${JSON.stringify(state)}\n${cli.output().stdout}`;
      assert.ok(extra(samples, state), `condition: ${ctx}`);
      assert.equal(
        value(samples, 'walship_wal_index', dbL),
        state.pos.index,
        `walship_wal_index is the replica's index when caught up: ${ctx}`,
      );
      assert.equal(value(samples, 'walship_replica_wal_index', repL), state.pos.index, `replica_wal_index: ${ctx}`);
      assert.equal(value(samples, 'walship_replica_wal_offset', repL), state.pos.offset, `replica_wal_offset: ${ctx}`);
      assert.equal(value(samples, 'walship_replica_healthy', repL), 1, `healthy: ${ctx}`);
      assert.equal(value(samples, 'walship_replica_lag_seconds', repL), 0, `caught up: no lag: ${ctx}`);
      // One replica_sync per WAL segment object; bytes are the uncompressed WAL bytes.
      assert.equal(value(samples, 'walship_replica_sync_total', repL), state.segments.length, `replica_sync_total: ${ctx}`);
      assert.equal(
        value(samples, 'walship_replica_sync_bytes_total', repL),
        state.segments.reduce((n, s) => n + s.length, 0),
        `replica_sync_bytes_total is the decompressed size of the segments: ${ctx}`,
      );
      assert.equal(value(samples, 'walship_replica_sync_seconds_count', repL), state.segments.length, `replica_sync_seconds_count: ${ctx}`);
      // Snapshots: count and stored bytes of the snapshot objects.
      assert.equal(value(samples, 'walship_snapshot_total', repL), state.snapshots.length, `snapshot_total: ${ctx}`);
      assert.equal(
        value(samples, 'walship_snapshot_bytes_total', repL),
        state.snapshots.reduce((n, s) => n + s.size, 0),
        `snapshot_bytes_total: ${ctx}`,
      );
      assert.equal(
        value(samples, 'walship_generation_changes_total', dbL),
        state.generations.length,
        `one generation change per generation: ${ctx}`,
      );
      assert.equal(value(samples, 'walship_replica_errors_total', repL) ?? 0, 0, `no replica errors: ${ctx}`);
      assert.equal(value(samples, 'walship_sync_errors_total', dbL) ?? 0, 0, `no sync errors: ${ctx}`);
      for (const s of samples.filter((x) => x.name.startsWith('walship_checkpoint'))) {
        if (s.labels.mode !== undefined)
          assert.ok(['PASSIVE', 'TRUNCATE'].includes(s.labels.mode), `checkpoint mode label ${s.labels.mode}: ${ctx}`);
      }
      for (const mode of ['PASSIVE', 'TRUNCATE']) {
        assert.equal(value(samples, 'walship_checkpoint_errors_total', { db, mode }) ?? 0, 0, `no ${mode} checkpoint errors`);
        assert.equal(
          value(samples, 'walship_checkpoint_seconds_count', { db, mode }) ?? 0,
          value(samples, 'walship_checkpoint_total', { db, mode }) ?? 0,
          `one ${mode} duration per checkpoint`,
        );
      }
      return { samples, state };
    };
    const checkpoints = (s: Sample[], mode: string) => value(s, 'walship_checkpoint_total', { db, mode }) ?? 0;

    // 1. Started: one generation, one snapshot, the first WAL shipped; no checkpoint yet.
    let { samples, state } = await settle((_s, st) => st.segments.length > 0, 'after start');
    assert.equal(state.generations.length, 1);
    assert.equal(state.snapshots.length, 1);
    assert.equal(state.pos.index, 0);
    assert.equal(checkpoints(samples, 'PASSIVE') + checkpoints(samples, 'TRUNCATE'), 0, 'no checkpoint below min-checkpoint-page-count');
    const startSegments = state.segments.length;

    // 2. A few small transactions (well below 20 pages): same index, offset moves on.
    for (let i = 0; i < 3; i++) w.insert();
    ({ samples, state } = await settle((_s, st) => st.segments.length > startSegments, 'after small writes'));
    assert.equal(state.pos.index, 0, 'small writes stay in index 0');
    assert.equal(checkpoints(samples, 'PASSIVE') + checkpoints(samples, 'TRUNCATE'), 0);

    // 3. ~40 pages in one transaction: past min-checkpoint-page-count → a PASSIVE restart, and
    //    the WAL index walship reports moves to the replica's new index.
    w.db.transaction(() => {
      for (let i = 0; i < 40; i++) w.insert('p'.repeat(4000));
    })();
    ({ samples, state } = await settle((s, st) => checkpoints(s, 'PASSIVE') >= 1 && st.pos.index >= 1, 'after the PASSIVE restart'));
    assert.equal(checkpoints(samples, 'TRUNCATE'), 0, 'no emergency checkpoint below truncate-page-count');
    const indexAfterPassive = state.pos.index;
    assert.equal(state.generations.length, 1, 'a restart keeps the generation');
    assert.equal(state.snapshots.length, 1, 'a restart takes no snapshot');

    // 4. ~300 pages in one transaction: past truncate-page-count → an emergency TRUNCATE restart.
    w.db.transaction(() => {
      for (let i = 0; i < 300; i++) w.insert('q'.repeat(4000));
    })();
    ({ samples, state } = await settle(
      (s, st) => checkpoints(s, 'TRUNCATE') >= 1 && st.pos.index > indexAfterPassive,
      'after the TRUNCATE restart',
    ));
    assert.ok(state.pos.index > indexAfterPassive);
    assert.equal(state.generations.length, 1);

    // 5. The replica breaks (its directory becomes a file): healthy drops to 0, errors count.
    rmSync(replica, { recursive: true, force: true });
    writeFileSync(replica, 'not a directory');
    const deadline = Date.now() + 60_000;
    for (;;) {
      w.insert();
      samples = parseMetrics((await httpGet(url!)).body);
      if (value(samples, 'walship_replica_healthy', repL) === 0 || Date.now() > deadline) break;
      await sleep(100);
    }
    assert.equal(value(samples, 'walship_replica_healthy', repL), 0, 'unhealthy once uploads fail');
    assert.ok((value(samples, 'walship_replica_errors_total', repL) ?? 0) >= 1, 'replica errors counted');
    // The durable position does not advance past what was shipped before the break.
    assert.equal(value(samples, 'walship_replica_wal_index', repL), state.pos.index);
    assert.equal(value(samples, 'walship_replica_wal_offset', repL), state.pos.offset);
  });
});
