import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { fileSystemBackdoor, replicaClientSuite } from '@walship/replica-client-tests';
import { FileReplicaClient } from '../src/index.js';

const base = await mkdtemp(path.join(os.tmpdir(), 'walship-file-conformance-'));
after(() => rm(base, { recursive: true, force: true }));

let roots = 0;
replicaClientSuite({
  test,
  prefix: 'file: ',
  create: async () => {
    // A fresh, not yet existing root per test: the client creates it on the first write.
    const root = path.join(base, `root-${++roots}`);
    return { client: new FileReplicaClient({ path: root }), store: fileSystemBackdoor(root) };
  },
});
