import { FileReplicaClient } from '@walship/file';
import { restore } from '../../src/restore/index.js';
import { LitestreamFixture, workload, sqliteDump } from './litestream-fixture.js';
import fs from 'node:fs';
const dir = '/tmp/rs/fx1'; fs.rmSync(dir, { recursive: true, force: true });
const fx = new LitestreamFixture({ dir });
for (let i = 0; i < 5; i++) { workload(fx, i); fx.ship(); }
fx.newIndex('RESTART');
for (let i = 5; i < 10; i++) { workload(fx, i); fx.ship(); }
fx.snapshot({ checkpoint: 'PASSIVE' });
for (let i = 10; i < 14; i++) { workload(fx, i); fx.ship(); }
fx.newIndex('TRUNCATE');
for (let i = 14; i < 18; i++) { workload(fx, i); fx.ship(); }
fx.close();
console.log(fx.points.map(p => [p.index, p.offset, p.end, p.createdAt.toISOString()]));
const client = new FileReplicaClient({ path: fx.replicaDir });
const out = dir + '/out.db';
const r = await restore({ outputPath: out, replicas: [{ name: 'file', client }], logger: console as any });
console.log(r);
console.log(sqliteDump(out) === fx.points.at(-1)!.dump);
console.log(fs.readdirSync(dir));
