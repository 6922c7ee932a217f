#!/usr/bin/env node
// `npm run walship -- <command> [args]`: installs and builds on first use, then runs the
// walship CLI from this checkout (the same as `npx walship` after `npm ci && npm run build`).
import { execSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const bin = path.join(root, 'packages/cli/dist/bin.js');
if (!existsSync(path.join(root, 'node_modules/better-sqlite3'))) {
  console.error('walship: first run: installing dependencies (npm ci, about a minute)…');
  execSync('npm ci --no-audit --no-fund', { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] });
}
if (!existsSync(bin)) {
  console.error('walship: first run: building…');
  execSync('npm run build', { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] });
}
const child = spawn(process.execPath, [bin, ...process.argv.slice(2)], { stdio: 'inherit' });
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => child.kill(sig));
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
