// Re-renders the compact table of a results file: node --import tsx bench/report.ts bench/results/<file>.json
import { readFileSync } from 'node:fs';
import { summarizeLag, table } from './lib/report.js';
import { scaleTable } from './lib/scale.js';

const file = process.argv[2];
if (!file) {
  process.stderr.write('usage: node --import tsx bench/report.ts bench/results/<timestamp>.json\n');
  process.exit(1);
}
const R = JSON.parse(readFileSync(file, 'utf8'));
if (R.lag?.runs) {
  const loads: number[] = R.params.lag.loads;
  Object.assign(R.lag, summarizeLag(R.lag.runs, loads, R.lag.syncIntervalMs));
  if (R.lag.runs.some((r: any) => r.arm === 'litestream')) {
    const ls = summarizeLag(R.lag.runs, loads, R.lag.syncIntervalMs, 'litestream');
    R.lag.litestreamLevels = ls.levels;
    R.lag.litestreamHighestSustained = ls.highestSustained;
  }
}
// The same tables as the run printed (run.ts joins these two).
process.stdout.write(`${[table(R), scaleTable(R.scale)].filter(Boolean).join('\n\n')}\n`);
