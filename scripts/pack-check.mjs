#!/usr/bin/env node
// Checks what `npm publish` would ship, from the outside, as a new user meets it:
//   1. packs every workspace package (`npm pack`) and lints each with publint (--strict) and
//      @arethetypeswrong/cli (ESM-only profile);
//   2. checks each tarball's contents: LICENSE and README present, no *.tsbuildinfo, every
//      source map's sources and every relative README link inside the tarball;
//   3. installs all tarballs into a fresh app directory outside the workspace (the npm registry
//      supplies everything else), checks that better-sqlite3 is installed (and compiled) once;
//   4. type-checks every package README's first TypeScript example against the installed
//      types (strict, NodeNext) and runs the top-level README's library example (paths moved
//      into the scratch directory) and checks the database it restores;
//   5. runs the installed CLI: `walship version`, then replicate (rows written while it runs,
//      stopped with SIGINT) and restore, and compares the restored rows.
// Usage: npm run pack-check (builds first). Exits non-zero with one line per failure.
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, posix, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const rootPkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const packageDirs = rootPkg.workspaces;
const work = mkdtempSync(join(process.env.TMPDIR ?? tmpdir(), 'walship-pack-'));
const failures = [];
const fail = (msg) => {
  failures.push(msg);
  console.error(`pack-check: FAIL ${msg}`);
};
const step = (msg) => console.log(`pack-check: ${msg}`);
const run = (cmd, args, opts = {}) =>
  execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8', maxBuffer: 64 << 20, ...opts });
/** Runs a command; on failure records `what` with the command's last output lines. */
const check = (what, cmd, args, opts) => {
  try {
    return run(cmd, args, opts);
  } catch (err) {
    const out = `${err.stdout ?? ''}${err.stderr ?? ''}`.trim().split('\n').slice(-15).join('\n');
    fail(`${what}: ${cmd} ${args.join(' ')} exited ${err.status ?? err.signal}\n${out}`);
    return null;
  }
};
const bin = (name) => join(root, 'node_modules', '.bin', name);

let replicate;
try {
  await main();
} finally {
  replicate?.kill('SIGKILL');
  if (failures.length === 0) rmSync(work, { recursive: true, force: true });
  else console.error(`pack-check: scratch directory kept for inspection: ${work}`);
}
if (failures.length > 0) {
  console.error(`pack-check: ${failures.length} failure(s)`);
  process.exit(1);
}
step('all packages pack, lint, install and work from a fresh app');

async function main() {
  step('building');
  run('npm', ['run', 'build'], { cwd: root, stdio: 'inherit' });

  // 1. pack and lint
  const tarballs = join(work, 'tarballs');
  mkdirSync(tarballs);
  const packed = JSON.parse(run('npm', ['pack', '--workspaces', '--json', '--pack-destination', tarballs], { cwd: root }));
  step(`packed ${packed.map((p) => `${p.filename} (${Math.round(p.size / 1024)} KiB)`).join(', ')}`);
  if (packed.length !== packageDirs.length) fail(`npm pack produced ${packed.length} tarballs for ${packageDirs.length} packages`);
  for (const dir of packageDirs) {
    check(`publint ${dir}`, bin('publint'), ['--strict', join(root, dir)]);
  }
  for (const p of packed) {
    check(`attw ${p.name}`, bin('attw'), ['--profile', 'esm-only', '--format', 'table-flipped', join(tarballs, p.filename)]);
  }

  // 2. contents
  for (const p of packed) checkContents(p, tarballs);

  // 3. install into a fresh app
  const app = join(work, 'app');
  mkdirSync(app);
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'walship-pack-check-app', private: true, type: 'module' }, null, 2));
  const devVersion = (name) => rootPkg.devDependencies[name];
  step('installing the tarballs into a fresh app (better-sqlite3 compiles from source)');
  const installed = check(
    'npm install of the tarballs',
    'npm',
    [
      'install',
      '--no-audit',
      '--no-fund',
      '--prefer-offline',
      ...packed.map((p) => join(tarballs, p.filename)),
      'better-sqlite3@^12',
      `typescript@${devVersion('typescript')}`,
      `@types/node@${devVersion('@types/node')}`,
      `@types/better-sqlite3@${devVersion('@types/better-sqlite3')}`,
    ],
    { cwd: app },
  );
  if (installed === null) return;
  // One copy each: two better-sqlite3s compile twice and break SQLite's per-process locks; two
  // cores break `instanceof` on errors.
  for (const name of ['better-sqlite3', '@walship/core']) {
    const copies = run('find', ['.', '-path', `*/node_modules/${name}/package.json`], { cwd: app })
      .split('\n')
      .filter(Boolean);
    if (copies.length !== 1) fail(`${name} is installed ${copies.length} times in the app (want 1): ${copies.join(', ')}`);
  }
  if (!existsSync(join(app, 'node_modules', 'better-sqlite3', 'build', 'Release', 'better_sqlite3.node'))) {
    fail('better-sqlite3 was not compiled in the app (were its install scripts blocked?)');
  }

  // 4. README examples
  const examples = join(app, 'examples');
  mkdirSync(examples);
  const readmes = [['README.md', 'readme-library'], ...packageDirs.map((d) => [join(d, 'README.md'), d.split('/').pop()])];
  for (const [readme, name] of readmes) {
    const code = firstImportingTsBlock(readFileSync(join(root, readme), 'utf8'));
    if (code === null) continue;
    writeFileSync(join(examples, `${name}.ts`), name === 'readme-library' ? relocate(code, app) : code);
  }
  writeFileSync(
    join(app, 'tsconfig.json'),
    JSON.stringify(
      {
        compilerOptions: {
          target: 'ES2022',
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          strict: true,
          types: ['node'],
          outDir: 'out',
          rootDir: 'examples',
          skipLibCheck: false,
        },
        include: ['examples/*.ts'],
      },
      null,
      2,
    ),
  );
  step(`type-checking README examples: ${readdirSync(examples).join(', ')}`);
  if (check('type-check of the README examples', join(app, 'node_modules', '.bin', 'tsc'), ['-p', '.'], { cwd: app }) === null) return;

  const db = join(app, 'data', 'app.db');
  mkdirSync(dirname(db));
  sqlite(app, db, `PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t(v) VALUES ('a'),('b'),('c');`);
  step('running the README library example');
  if (check('README library example', process.execPath, ['out/readme-library.js'], { cwd: app, timeout: 120_000 }) === null) return;
  const restored = join(app, 'tmp', 'app-restored.db');
  const rows = sqlite(app, restored, 'SELECT group_concat(v) AS v FROM t');
  if (rows !== 'a,b,c') fail(`README library example restored ${JSON.stringify(rows)}, want "a,b,c"`);

  // 5. the CLI
  const walship = join(app, 'node_modules', '.bin', 'walship');
  const version = check('walship version', walship, ['version'], { cwd: app });
  const cliVersion = JSON.parse(readFileSync(join(root, 'packages', 'cli', 'package.json'), 'utf8')).version;
  if (version !== null && !version.includes(cliVersion))
    fail(`walship version printed ${JSON.stringify(version.trim())}, want ${cliVersion}`);
  await cliRoundTrip(app, walship);
}

function checkContents(p, tarballs) {
  const files = new Set(p.files.map((f) => f.path));
  for (const want of ['LICENSE', 'README.md', 'package.json']) if (!files.has(want)) fail(`${p.name}: ${want} is not in the tarball`);
  for (const f of files) if (f.endsWith('.tsbuildinfo')) fail(`${p.name}: ships ${f}`);
  const unpacked = join(tarballs, p.name.replace('/', '__'));
  mkdirSync(unpacked);
  run('tar', ['-xzf', join(tarballs, p.filename), '-C', unpacked, '--strip-components=1']);
  const dangling = [];
  for (const f of files) {
    if (!f.endsWith('.map')) continue;
    const map = JSON.parse(readFileSync(join(unpacked, f), 'utf8'));
    for (const src of map.sources ?? []) {
      const target = posix.normalize(posix.join(posix.dirname(f), map.sourceRoot ?? '', src));
      if (!files.has(target)) dangling.push(`${f} → ${target}`);
    }
  }
  if (dangling.length > 0) fail(`${p.name}: ${dangling.length} source-map sources are not in the tarball (first: ${dangling[0]})`);
  const manifest = JSON.parse(readFileSync(join(unpacked, 'package.json'), 'utf8'));
  for (const target of exportTargets(manifest.exports)) {
    if (!files.has(posix.normalize(target))) fail(`${p.name}: package.json exports ${target}, which is not in the tarball`);
  }
  const readme = readFileSync(join(unpacked, 'README.md'), 'utf8');
  for (const [, link] of readme.matchAll(/\]\(([^)#\s]+)(?:#[^)]*)?\)/g)) {
    if (/^[a-z]+:/i.test(link)) continue;
    const target = posix.normalize(link);
    if (!files.has(target) && ![...files].some((f) => f.startsWith(`${target.replace(/\/$/, '')}/`))) {
      fail(`${p.name}: README links to ${link}, which is not in the tarball`);
    }
  }
}

/** Every file path an `exports` map points at, under every condition. */
function exportTargets(exports) {
  if (typeof exports === 'string') return [exports];
  if (exports === null || typeof exports !== 'object') return [];
  return Object.values(exports).flatMap(exportTargets);
}

/** The first ```ts block that imports a package (a usable example, not a fragment). */
function firstImportingTsBlock(markdown) {
  for (const [, code] of markdown.matchAll(/```ts\n([\s\S]*?)```/g)) {
    if (/^import .* from '(@walship\/|walship)/m.test(code) && !/from '\.\.?\//.test(code)) return code;
  }
  return null;
}

/** Moves the library example's absolute paths into the app's scratch directory. */
function relocate(code, app) {
  const moved = code
    .replaceAll("'/data/app.db'", JSON.stringify(join(app, 'data', 'app.db')))
    .replaceAll("'/backups/app'", JSON.stringify(join(app, 'backups', 'app')))
    .replaceAll("'/tmp/app-restored.db'", JSON.stringify(join(app, 'tmp', 'app-restored.db')));
  if (/'\/(data|backups|tmp)\//.test(moved))
    fail('README library example: a path the check does not relocate (update scripts/pack-check.mjs)');
  return moved;
}

/** Runs SQL with the app's better-sqlite3 and returns the first column of the first row. */
function sqlite(app, file, sql) {
  const script = `import Database from 'better-sqlite3';
const db = new Database(process.argv[1]);
let out = '';
if (/^\\s*SELECT/i.test(process.argv[2])) out = String(Object.values(db.prepare(process.argv[2]).get() ?? {})[0] ?? '');
else db.exec(process.argv[2]);
db.close();
process.stdout.write(out);`;
  return run(process.execPath, ['--input-type=module', '-e', script, file, sql], { cwd: app });
}

async function cliRoundTrip(app, walship) {
  const db = join(app, 'cli.db');
  const backup = `file://${join(app, 'cli-backup')}`;
  sqlite(app, db, 'PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v INTEGER); INSERT INTO t(v) VALUES (1);');
  step('walship replicate / restore round trip');
  let output = '';
  replicate = spawn(walship, ['replicate', db, backup], { cwd: app, stdio: ['ignore', 'pipe', 'pipe'] });
  replicate.stdout.on('data', (d) => (output += d));
  replicate.stderr.on('data', (d) => (output += d));
  const exited = new Promise((res) => replicate.once('exit', (code, signal) => res(code ?? signal)));
  await new Promise((res) => setTimeout(res, 3000));
  for (let i = 2; i <= 100; i++) sqlite(app, db, `INSERT INTO t(v) VALUES (${i})`);
  await new Promise((res) => setTimeout(res, 2000));
  replicate.kill('SIGINT');
  const code = await Promise.race([exited, new Promise((res) => setTimeout(() => res('timeout'), 30_000))]);
  replicate = undefined;
  if (code !== 0) {
    fail(`walship replicate exited ${code} after SIGINT:\n${output.trim().split('\n').slice(-10).join('\n')}`);
    return;
  }
  const out = join(app, 'cli-restored.db');
  if (check('walship restore', walship, ['restore', '-o', out, backup], { cwd: app }) === null) return;
  const got = sqlite(app, out, "SELECT count(*) || ':' || sum(v) FROM t");
  if (got !== '100:5050') fail(`walship restore gave ${got} (rows:sum), want 100:5050`);
  if (!existsSync(out)) fail('walship restore wrote no database');
}
