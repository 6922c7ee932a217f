// `kill-rounds-main.ts <db> <client-module> <work-dir> <rounds> [minCheckpointPages]`: runs
// support/kill-rounds.ts in its own process, for backend packages' tests (which cannot import
// core's test files). Prints one JSON line with the result, or the failure and exits 1.
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { ReplicaClient } from '@walship/core';
import { killRounds } from './kill-rounds.js';

const [dbPath, clientModule, workDir, rounds, minPages] = process.argv.slice(2);
const mod = (await import(pathToFileURL(path.resolve(clientModule!)).href)) as { default: () => ReplicaClient | Promise<ReplicaClient> };
try {
  const r = await killRounds({
    dbPath: dbPath!,
    clientModule: clientModule!,
    client: await mod.default(),
    workDir: workDir!,
    rounds: Number(rounds),
    minCheckpointPages: Number(minPages ?? 40),
  });
  process.stdout.write(`${JSON.stringify({ ok: true, ...r })}\n`);
  process.exit(0);
} catch (err) {
  process.stdout.write(`${JSON.stringify({ ok: false, error: String((err as Error).message ?? err) })}\n`);
  process.exit(1);
}
