// Client module for support/app-child.ts: a file replica at $WALSHIP_TEST_REPLICA_DIR.
import { FileReplicaClient } from '@walship/file';

export default function makeClient(): FileReplicaClient {
  const dir = process.env.WALSHIP_TEST_REPLICA_DIR;
  if (!dir) throw new Error('WALSHIP_TEST_REPLICA_DIR is not set');
  return new FileReplicaClient({ path: dir });
}
