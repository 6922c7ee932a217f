import path from 'node:path';
import { restore, type ReplicaClient } from '@walship/core';
import { integrityOk, rows } from './replica-check.js';
import { exited, spawnScript } from './spawn.js';

export interface KillRoundsResult {
  readonly rounds: number;
  /** Highest row id acknowledged by `sync()` before a kill. */
  readonly maxAcked: number;
  /** Highest row id restored after the last round. */
  readonly restoredMax: number;
  /** `generation` events seen over all rounds (the first start's included). */
  readonly generationEvents: string[];
}

/**
 * An embedding app (support/app-child.ts) is killed with -9 at a random moment, `rounds`
 * times, and restarted on the same database. After every kill the replica is restored with
 * walship's `restore()` and checked: integrity ok, ids contiguous from 1, and every id that
 * `sync()` acknowledged before the kill is there. Throws with the round on any failure.
 */
export async function killRounds(opts: {
  readonly dbPath: string;
  readonly clientModule: string;
  readonly client: ReplicaClient;
  readonly workDir: string;
  readonly rounds: number;
  readonly minCheckpointPages?: number;
}): Promise<KillRoundsResult> {
  let maxAcked = 0;
  let restoredMax = 0;
  const generationEvents: string[] = [];
  for (let round = 0; round < opts.rounds; round++) {
    const app = spawnScript('app-child.ts', [opts.dbPath, opts.clientModule, String(opts.minCheckpointPages ?? 40)]);
    await app.waitFor(/^acked /, 60_000);
    // Kill at a random moment: while writing, inside sync(), during a restart or a snapshot.
    await new Promise((r) => setTimeout(r, 50 + Math.random() * 700));
    app.kill('SIGKILL');
    await exited(app);
    for (const l of app.lines) {
      const m = /^acked (\d+)$/.exec(l);
      if (m) maxAcked = Math.max(maxAcked, Number(m[1]));
      if (l.startsWith('generation ')) generationEvents.push(`round ${round}: ${l}`);
    }
    const out = path.join(opts.workDir, `restore-${round}.db`);
    const r = await restore({ outputPath: out, replicas: [{ name: 'r', client: opts.client }] });
    if (r.status !== 'restored') throw new Error(`round ${round}: restore status ${r.status}`);
    if (!integrityOk(out)) throw new Error(`round ${round}: restored database fails integrity_check`);
    const ids = (rows(out, 'SELECT id FROM t ORDER BY id') as Array<{ id: number }>).map((x) => x.id);
    const gap = ids.findIndex((id, i) => id !== i + 1);
    if (gap >= 0) throw new Error(`round ${round}: restored ids not contiguous at position ${gap} (id ${ids[gap]})`);
    restoredMax = ids.length;
    if (restoredMax < maxAcked) {
      throw new Error(
        `round ${round}: acknowledged rows lost: restored up to id ${restoredMax}, sync() had acknowledged ${maxAcked} (${maxAcked - restoredMax} rows)`,
      );
    }
  }
  return { rounds: opts.rounds, maxAcked, restoredMax, generationEvents };
}
