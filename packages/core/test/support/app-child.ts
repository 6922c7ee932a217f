// An application that embeds walship: `app-child.ts <db> <client-module> [minCheckpointPages]`.
// <client-module> is a module whose default export `makeClient()` returns the ReplicaClient
// (so other packages' tests can run it against their own store). The app commits one row per
// transaction, calls `await replicator.sync()` after every few rows and then prints
// `acked <id>`: every row up to <id> is acknowledged as replicated. It also prints
// `generation <name> <reason>` for every generation walship starts. A parent kills it with -9.
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { Replicator, type ReplicaClient } from '@walship/core';
import Database from 'better-sqlite3';

const [dbPath, clientModule, minPages] = process.argv.slice(2);
const mod = (await import(pathToFileURL(path.resolve(clientModule!)).href)) as { default: () => ReplicaClient | Promise<ReplicaClient> };
const client = await mod.default();

const db = new Database(dbPath!);
db.pragma('journal_mode = wal');
db.pragma('synchronous = normal');
db.pragma('busy_timeout = 5000');
db.pragma('wal_autocheckpoint = 0');
db.exec('CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)');
const ins = db.prepare('INSERT INTO t (v) VALUES (?)');

const rep = new Replicator(dbPath!, {
  monitorInterval: 20,
  minCheckpointPageCount: Number(minPages ?? 40),
  replicas: [{ name: 'r', client, syncInterval: 20 }],
});
rep.on('generation', (e) => process.stdout.write(`generation ${e.generation} ${e.reason}\n`));
await rep.start();
process.stdout.write('ready\n');
for (;;) {
  let last = 0;
  const n = 1 + Math.floor(Math.random() * 20);
  for (let i = 0; i < n; i++) last = Number(ins.run('z'.repeat(300)).lastInsertRowid);
  await rep.sync();
  process.stdout.write(`acked ${last}\n`);
}
