// Replica clients the benchmark children build from a plain JSON description. @walship/s3 (and
// with it the AWS SDK) is loaded only for S3 replicas, so it does not inflate the RSS figures of
// file-replica runs.
import type { ReplicaClient } from '@walship/core';
import { FileReplicaClient } from '@walship/file';

export type ReplicaSpec = { kind: 'file'; path: string } | { kind: 's3'; endpoint: string; bucket: string; path: string };

export async function makeClient(spec: ReplicaSpec): Promise<ReplicaClient> {
  if (spec.kind === 'file') return new FileReplicaClient({ path: spec.path });
  const { S3ReplicaClient } = await import('@walship/s3');
  return new S3ReplicaClient({
    bucket: spec.bucket,
    path: spec.path,
    endpoint: spec.endpoint,
    region: 'us-east-1',
    accessKeyId: 'S3RVER',
    secretAccessKey: 'S3RVER',
    forcePathStyle: true,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  } as ConstructorParameters<typeof S3ReplicaClient>[0]);
}
