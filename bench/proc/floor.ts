// The RSS floor of a benchmark child: node + tsx + the walship sources + better-sqlite3 loaded,
// no work done. Peak-RSS figures of the other children include this floor.
import Database from 'better-sqlite3';
import { Replicator, restore } from '@walship/core';
import { FileReplicaClient } from '@walship/file';
import { installChildErrorHandlers, procMem, send } from '../lib/common.js';

installChildErrorHandlers();
void [Database, Replicator, restore, FileReplicaClient];
await new Promise((r) => setTimeout(r, 200));
await send({ type: 'result', mem: procMem() });
process.exit(0);
