// Client module for core's test/support/app-child.ts: an S3 replica described by the
// WALSHIP_TEST_S3_* environment (endpoint, bucket, path, access key, secret).
import { S3ReplicaClient } from '../../src/index.js';

export default function makeClient(): S3ReplicaClient {
  const env = (k: string): string => {
    const v = process.env[`WALSHIP_TEST_S3_${k}`];
    if (!v) throw new Error(`WALSHIP_TEST_S3_${k} is not set`);
    return v;
  };
  return new S3ReplicaClient({
    bucket: env('BUCKET'),
    path: env('PATH'),
    endpoint: env('ENDPOINT'),
    region: 'us-east-1',
    accessKeyId: env('KEY'),
    secretAccessKey: env('SECRET'),
  });
}
