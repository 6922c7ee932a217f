// The floor of a benchmark child: node + tsx + the walship sources + better-sqlite3 loaded, no
// work done. Peak-RSS figures of the other children include this floor; with `stay` it idles
// until killed, so the idle scenario can measure what node + tsx alone cost in CPU.
import Database from 'better-sqlite3';
import { Replicator, restore } from '@walship/core';
import { FileReplicaClient } from '@walship/file';
import { childConfig, installChildErrorHandlers, procMem, send } from '../lib/common.js';

installChildErrorHandlers();
const cfg = childConfig<{ stay?: boolean }>();
void [Database, Replicator, restore, FileReplicaClient];
await new Promise((r) => setTimeout(r, 200));
await send({ type: cfg.stay ? 'ready' : 'result', mem: procMem(), pid: process.pid });
if (!cfg.stay) process.exit(0);
setInterval(() => {}, 1 << 30);
