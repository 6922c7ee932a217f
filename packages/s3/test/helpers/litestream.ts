// The real Litestream v0.3.13 for interoperability tests: `LITESTREAM_BIN`, or `../shared/bin/`
// beside the checkout.
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { S3TestServer } from './servers.js';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', '..');

/** The binary's path, or undefined when it is not there. */
export function litestreamBin(): string | undefined {
  const candidates = [process.env['LITESTREAM_BIN'], join(repoRoot, '..', 'shared', 'bin', 'litestream-v0.3.13')];
  return candidates.find((p): p is string => !!p && existsSync(p));
}

/** Writes a litestream.yml replicating `dbPath` to `bucket`/`prefix` on the server; returns its path. */
export async function writeLitestreamConfig(
  file: string,
  dbPath: string,
  server: S3TestServer,
  bucket: string,
  prefix: string,
  extra: readonly string[] = [],
): Promise<string> {
  await writeFile(
    file,
    [
      'dbs:',
      `  - path: ${dbPath}`,
      '    replicas:',
      '      - type: s3',
      `        bucket: ${bucket}`,
      `        path: ${prefix}`,
      `        endpoint: ${server.endpoint}`,
      `        region: ${server.region}`,
      `        access-key-id: ${server.accessKeyId}`,
      `        secret-access-key: ${server.secretAccessKey}`,
      '        force-path-style: true',
      ...extra.map((l) => `        ${l}`),
      '',
    ].join('\n'),
  );
  return file;
}
