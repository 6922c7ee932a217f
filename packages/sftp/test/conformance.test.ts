/** The published ReplicaClient conformance suite against a real OpenSSH sshd. */
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { replicaClientSuite } from '@walship/replica-client-tests';
import { SftpReplicaClient } from '../src/index.js';
import { RawSftp } from './helpers/backdoor.js';
import { requireSshd, startSshd, type SshdServer } from './helpers/sshd.js';

const skip = requireSshd();

describe('sftp conformance', { skip }, () => {
  let server: SshdServer;
  let raw: RawSftp;
  let n = 0;

  before(async () => {
    server = await startSshd();
    raw = await RawSftp.connect(server);
  });
  after(async () => {
    await raw?.end();
    await server?.stop();
  });

  replicaClientSuite({
    test,
    prefix: 'sftp: ',
    create: async () => {
      const root = join(server.dataDir, `root-${++n}`);
      const client = new SftpReplicaClient({
        host: `127.0.0.1:${server.port}`,
        user: server.user,
        keyPath: server.clientKeyPath,
        hostKey: server.hostKeyLine,
        path: root,
      });
      return { client, store: raw.backdoor(root) };
    },
  });
});
