// A walship Follower in its own process (what `walship restore -f` runs). Protocol over IPC:
//   → {type:'ready', restoreMs}   once the output is restored
//   → {type:'applied', pos, t}    … recorded, sent with the report instead (no IPC per batch)
//   ← {type:'mark'}               start of the idle window: counters reset
//   ← {type:'report'}             → {type:'report', applied: [{pos, t}], requests, status}
import { Follower } from '@walship/core';
import { childConfig, hardDeadline, installChildErrorHandlers, now, procMem, send } from '../lib/common.js';
import { makeClient, type ReplicaSpec } from '../lib/clients.js';

interface Config {
  out: string;
  replica: ReplicaSpec;
  intervalMs?: number;
  maxLifetimeMs: number;
}

installChildErrorHandlers();
const cfg = childConfig<Config>();
hardDeadline(cfg.maxLifetimeMs, 'follower');
const follower = new Follower(cfg.out, {
  replicas: [{ name: 'r', client: await makeClient(cfg.replica) }],
  verify: 'quick',
  ...(cfg.intervalMs ? { intervalMs: cfg.intervalMs } : {}),
});
const applied: { pos: { generation: string; index: number; offset: number }; t: number }[] = [];
follower.on('applied', (e) => applied.push({ pos: e.pos, t: now() }));
const t0 = now();
await follower.start();
await send({ type: 'ready', restoreMs: now() - t0 });
let requestsAtMark = 0;
process.on('message', (m: { type?: string }) => {
  if (m?.type === 'mark') requestsAtMark = follower.status().requests;
  if (m?.type === 'report') {
    const s = follower.status();
    void send({
      type: 'report',
      applied: applied.splice(0),
      requests: s.requests - requestsAtMark,
      status: { state: s.state, pos: s.pos, damage: s.damage, lastError: s.lastError },
      mem: procMem(),
    });
  }
  if (m?.type === 'stop') void follower.stop().then(() => process.exit(0));
});
