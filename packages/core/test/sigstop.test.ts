// Issue #13 §5: SIGSTOP/SIGCONT of the replicator under load. The replicator runs in its own
// process (support/replicate-child.ts, a file replica), the application in another
// (support/paced-writer-child.ts). The replicator is frozen with SIGSTOP for a few seconds,
// several times, while the application keeps committing. The application must never be blocked
// by the frozen replicator (its read lock only keeps the WAL from being restarted, so the WAL
// grows meanwhile), and after SIGCONT the replica must catch up and restore to exactly the
// database, in one generation.
//
// One moment is exempt by design: walship's controlled WAL restart holds SQLite's write lock
// for a few milliseconds (the checkpoint of the epoch, roughly once per
// minCheckpointPageCount pages); a SIGSTOP that lands exactly there blocks the application
// until SIGCONT (up to its busy_timeout). This test keeps walship from restarting the WAL during
// the stops (a high minCheckpointPageCount), so a failure of the "kept committing" check is a
// real block.
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { restore } from '@walship/core';
import { FileReplicaClient } from '@walship/file';
import { tempDir } from './support/db.js';
import { integrityOk, rebuildLikeLitestream, rows } from './support/replica-check.js';
import { exited, spawnScript } from './support/spawn.js';

const ROUNDS = Number(process.env.WALSHIP_SIGSTOP_ROUNDS ?? 2);
const STOP_MS = Number(process.env.WALSHIP_SIGSTOP_MS ?? 4000);
/** Application commits per second (one row each). */
const RATE = 500;
/** Longest pause between two `committed` lines (50 rows) that still counts as "not blocked". */
const MAX_GAP_MS = 2000;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Every stdout line of a child with the time it arrived. */
function timedLines(child: ChildProcess): Array<{ at: number; line: string }> {
  const out: Array<{ at: number; line: string }> = [];
  let buf = '';
  child.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      out.push({ at: Date.now(), line: buf.slice(0, i) });
      buf = buf.slice(i + 1);
    }
  });
  return out;
}

/** Resolves once `n` lines matching `re` arrived after time `since`; rejects at the deadline or if the child exits. */
async function linesAfter(
  child: ChildProcess,
  lines: Array<{ at: number; line: string }>,
  re: RegExp,
  since: number,
  n: number,
  ms: number,
  what: string,
): Promise<number> {
  const deadline = Date.now() + ms;
  for (;;) {
    const hits = lines.filter((l) => l.at > since && re.test(l.line));
    if (hits.length >= n) return hits[n - 1]!.at;
    if (child.exitCode !== null || child.signalCode !== null)
      throw new Error(`${what}: the child exited (${child.exitCode ?? child.signalCode})`);
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(20);
  }
}

async function walSize(dbPath: string): Promise<number> {
  return (await fs.stat(`${dbPath}-wal`).catch(() => ({ size: 0 }))).size;
}

test(`SIGSTOP/SIGCONT of the replicator under load (${ROUNDS} × ${STOP_MS} ms): the application never blocks, the replica catches up`, {
  timeout: 120_000,
}, async (t) => {
  const dir = await tempDir('walship-sigstop-');
  const dbPath = path.join(dir, 'app.db');
  const replicaDir = path.join(dir, 'replica');
  const writer = spawnScript('paced-writer-child.ts', [dbPath, String(RATE), '1000']);
  const committed = timedLines(writer);
  let rep: ReturnType<typeof spawnScript> | undefined;
  try {
    await writer.waitFor(/^committed/);
    // minCheckpointPageCount 100000: no restart is due during the stops (only the forced one at
    // 10000 pages, ~20 s in), so a stop cannot land inside walship's write-lock window (below).
    rep = spawnScript('replicate-child.ts', [dbPath, replicaDir, '100000']);
    const synced = timedLines(rep);
    await rep.waitFor(/^ready/);
    await rep.waitFor(/^synced/);
    const lastCommitted = (before = Number.POSITIVE_INFINITY): number => {
      for (let i = committed.length - 1; i >= 0; i--) {
        const l = committed[i]!;
        if (l.at <= before) return Number(/^committed (\d+)/.exec(l.line)?.[1] ?? 0);
      }
      return 0;
    };

    for (let round = 0; round < ROUNDS; round++) {
      await sleep(1500);
      // Live and synced under load.
      await linesAfter(rep, synced, /^synced/, Date.now(), 1, 30_000, `round ${round}: a sync before the stop`);
      const walBefore = await walSize(dbPath);
      const c0 = lastCommitted();
      const stoppedAt = Date.now();
      assert.ok(rep.kill('SIGSTOP'), 'SIGSTOP sent');
      let gap = 0;
      try {
        await sleep(STOP_MS);
      } finally {
        const contAt = Date.now();
        // Measured before SIGCONT: everything here happened while the replicator was frozen.
        const during = committed.filter((l) => l.at > stoppedAt && l.at <= contAt && /^committed/.test(l.line));
        const times = [stoppedAt, ...during.map((l) => l.at), contAt];
        for (let i = 1; i < times.length; i++) gap = Math.max(gap, times[i]! - times[i - 1]!);
        const c1 = lastCommitted(contAt);
        const walAfter = await walSize(dbPath);
        // Lines the replicator wrote just before SIGSTOP may still be in the pipe: allow 500 ms.
        const syncsWhileStopped = synced.filter((l) => l.at > stoppedAt + 500 && l.at <= contAt && /^synced/.test(l.line)).length;
        rep.kill('SIGCONT');
        t.diagnostic(
          `round ${round}: stopped ${contAt - stoppedAt} ms; the application committed ${c1 - c0} rows meanwhile (longest pause ${gap} ms); ` +
            `wal ${walBefore} → ${walAfter} bytes; replicator syncs while stopped: ${syncsWhileStopped}`,
        );
        assert.equal(syncsWhileStopped, 0, `round ${round}: the replicator was really stopped`);
        assert.equal(writer.exitCode, null, `round ${round}: the application is still running`);
        assert.ok(
          c1 - c0 >= (RATE * STOP_MS) / 1000 / 4,
          `round ${round}: the application kept committing while the replicator was stopped (${c1 - c0} rows)`,
        );
        assert.ok(
          gap <= MAX_GAP_MS,
          `round ${round}: the application was never blocked for more than ${MAX_GAP_MS} ms (longest pause ${gap} ms)`,
        );
      }
      // Caught up after SIGCONT: a sync that began after the first post-SIGCONT sync completed
      // covers every row committed while the replicator was stopped.
      const contAt = Date.now();
      const caughtUpAt = await linesAfter(rep, synced, /^synced/, contAt, 2, 60_000, `round ${round}: catch-up after SIGCONT`);
      // The replica (read while the replicator keeps running) holds every row committed while
      // the replicator was stopped, as a contiguous prefix.
      const out = path.join(dir, `round-${round}.db`);
      await restore({ outputPath: out, replicas: [{ name: 'file', client: new FileReplicaClient({ path: replicaDir }) }] });
      const got = (rows(out, 'SELECT id FROM t ORDER BY id') as Array<{ id: number }>).map((r) => r.id);
      await fs.rm(out, { force: true });
      t.diagnostic(`round ${round}: caught up ${caughtUpAt - contAt} ms after SIGCONT; the replica then restored ${got.length} rows`);
      assert.ok(
        got.length >= lastCommitted(contAt),
        `round ${round}: the replica holds the ${lastCommitted(contAt)} rows committed before SIGCONT (has ${got.length})`,
      );
      assert.deepEqual(
        got,
        Array.from({ length: got.length }, (_, i) => i + 1),
        `round ${round}: restored ids contiguous`,
      );
    }

    await sleep(1000);
    writer.kill('SIGTERM');
    assert.equal(await exited(writer), 0, 'the application exits cleanly');
    const lastId = lastCommitted();
    assert.ok(lastId > 0);
    // Everything the application committed is replicated: a sync began after the writer exited.
    const writerDone = Date.now();
    await linesAfter(rep, synced, /^synced/, writerDone, 2, 60_000, 'the final catch-up');
    // (Its exit code is not checked: replicate-child.ts's loop of sync() calls rejects with
    // WALSHIP_CLOSED when SIGTERM's stop() wins the race, and the child then exits with 1.)
    rep.kill('SIGTERM');
    await exited(rep);
    rep = undefined;

    const want = rows(dbPath);
    assert.equal((want.at(-1) as { id: number }).id, lastId, 'the database holds the last committed id');
    const client = new FileReplicaClient({ path: replicaDir });
    // One generation: the pin never lets go of the WAL, even for a moment (a stop landing between
    // two statements of a pin move once let the application restart it; see pin.test.ts).
    assert.equal((await client.generations()).length, 1, 'one generation across the stops');
    const rebuilt = await rebuildLikeLitestream(client, path.join(dir, 'rebuild'));
    assert.ok(integrityOk(rebuilt), 'integrity of the Litestream-style rebuild');
    assert.deepEqual(rows(rebuilt), want, 'Litestream-style rebuild equals the database');
    const outputPath = path.join(dir, 'restored.db');
    const result = await restore({ outputPath, replicas: [{ name: 'file', client }] });
    assert.equal(result.status, 'restored');
    assert.ok(integrityOk(outputPath), 'integrity of the restore');
    assert.deepEqual(rows(outputPath), want, 'restore equals the database');
    t.diagnostic(`${want.length} rows replicated and restored; last id ${lastId}`);
  } finally {
    for (const c of [rep, writer]) {
      if (c && c.exitCode === null && c.signalCode === null) {
        c.kill('SIGCONT');
        c.kill('SIGKILL');
        await exited(c);
      }
    }
    await fs.rm(dir, { recursive: true, force: true });
  }
});
