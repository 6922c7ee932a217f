import { after, test } from 'node:test';
import { randomBytes } from 'node:crypto';
import { replicaClientSuite } from '@walship/replica-client-tests';
import { AzureReplicaClient } from '../src/index.js';
import { startAzuriteOrSkip, type AzuriteServer } from './helpers/azurite.js';
import { containerBackdoor } from './helpers/store.js';

const started = await startAzuriteOrSkip();

if (typeof started === 'string') {
  test('abs conformance against Azurite', { skip: started }, () => {});
} else {
  const server: AzuriteServer = started;
  after(() => server.stop());
  const shared = await server.createContainer('conformance');

  function clientFor(container: string, path: string, listPageSize?: number): AzureReplicaClient {
    return new AzureReplicaClient({
      ...(listPageSize !== undefined && { listPageSize }),
      container,
      path,
      accountName: server.accountName,
      accountKey: server.accountKey,
      endpoint: server.endpoint,
      retry: { maxTries: 3, retryDelayInMs: 100, maxRetryDelayInMs: 1000 },
    });
  }

  // Replica root below a path inside a shared container (the usual set-up).
  replicaClientSuite({
    test,
    prefix: 'abs: ',
    create: async () => {
      const root = `t-${randomBytes(6).toString('hex')}/db`;
      return {
        client: clientFor(shared, root),
        store: containerBackdoor(server.service.getContainerClient(shared), root, false),
      };
    },
  });

  // Replica root at the top of its own container (empty `path`), with small listing pages so the
  // pagination tests cross page boundaries (Azurite returns up to 5000 names per page otherwise).
  replicaClientSuite({
    test,
    prefix: 'abs (container root): ',
    largeObjectBytes: 12 * 1024 * 1024,
    create: async () => {
      const container = await server.createContainer('root');
      return {
        client: clientFor(container, '', 250),
        store: containerBackdoor(server.service.getContainerClient(container), '', true),
      };
    },
  });
}
