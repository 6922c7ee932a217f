/** Shared fixture layouts and assertions for the restore tests. */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before } from 'node:test';
import Database from 'better-sqlite3';
import { LitestreamFixture, sqliteDump, workload, type FixtureOptions, type FixturePoint } from './litestream-fixture.js';

export function tempDir(name: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `walship-${name}-`));
}

/**
 * Generation A:
 * - snapshot@0; index 0: 5 segments;
 * - RESTART → index 1: 3 segments; a reader holds a read transaction; 1 segment; snapshot@1
 *   after a PASSIVE checkpoint that back-fills only up to the reader (the index continues);
 *   reader ends; 1 segment with two transactions; 1 segment;
 * - TRUNCATE → index 2: 4 segments; snapshot@2 after a PASSIVE checkpoint that back-fills
 *   everything, so SQLite restarts the WAL at the next write → index 3: 2 segments;
 *   snapshot@3 without checkpoint; 1 segment;
 * - RESTART → index 4: 3 segments.
 * Generation B (later): snapshot@0, index 0: 4 segments, TRUNCATE → index 1: 3 segments.
 */
export function buildStandardFixture(
  dir: string,
  opts: Partial<FixtureOptions> = {},
): { fx: LitestreamFixture; genA: string; genB: string } {
  const fx = new LitestreamFixture({ dir, ...opts });
  const genA = fx.generation;
  let step = 0;
  const one = () => {
    workload(fx, step++);
    fx.ship();
  };
  for (let i = 0; i < 5; i++) one();
  fx.newIndex('RESTART');
  for (let i = 0; i < 3; i++) one();
  fx.beginReader();
  one();
  fx.snapshot({ checkpoint: 'PASSIVE' });
  fx.endReader();
  workload(fx, step++);
  workload(fx, step++);
  fx.ship();
  one();
  fx.newIndex('TRUNCATE');
  for (let i = 0; i < 4; i++) one();
  fx.snapshot({ checkpoint: 'PASSIVE' });
  for (let i = 0; i < 2; i++) one();
  fx.snapshot();
  one();
  fx.newIndex('RESTART');
  for (let i = 0; i < 3; i++) one();
  const genB = fx.newGeneration();
  for (let i = 0; i < 4; i++) one();
  fx.newIndex('TRUNCATE');
  for (let i = 0; i < 3; i++) one();
  fx.close();
  return { fx, genA, genB };
}

/** Asserts the restored database equals the expected dump and is a normal WAL-mode database. */
export function assertRestored(dbPath: string, expectedDump: string, msg?: string): void {
  const hdr = Buffer.alloc(20);
  const fd = fs.openSync(dbPath, 'r');
  try {
    fs.readSync(fd, hdr, 0, 20, 0);
  } finally {
    fs.closeSync(fd);
  }
  assert.equal(hdr[18], 2, 'header byte 18 (write version) is 2 (WAL)');
  assert.equal(hdr[19], 2, 'header byte 19 (read version) is 2 (WAL)');
  const actual = sqliteDump(dbPath);
  assert.equal(actual, expectedDump, msg ?? 'restored database dump');
  const db = new Database(dbPath, { readonly: true, fileMustExist: true });
  try {
    assert.equal(db.pragma('journal_mode', { simple: true }), 'wal');
    assert.equal(db.pragma('integrity_check', { simple: true }), 'ok');
  } finally {
    db.close();
  }
  for (const s of ['-wal', '-shm']) fs.rmSync(`${dbPath}${s}`, { force: true });
}

/** Files a restore may have left in `dir` (anything with `walship-restore` in its name). */
export function strayFiles(dir: string): string[] {
  return fs.readdirSync(dir).filter((n) => n.includes('walship-restore') || n.endsWith('.tmp') || n.includes('.tmp-'));
}

export function pointAt(points: readonly FixturePoint[], generation: string, index: number, end: number): FixturePoint | undefined {
  return points.find((p) => p.generation === generation && p.index === index && p.end === end);
}

export function copyDir(from: string, to: string): void {
  fs.cpSync(from, to, { recursive: true, preserveTimestamps: true });
}

/** The standard fixture of a test file: built before its tests, removed after them. */
export interface SharedFixture {
  readonly dir: string;
  readonly fx: LitestreamFixture;
  readonly genA: string;
  readonly genB: string;
  /** A fresh copy of the fixture's replica, under a new case directory. */
  copyReplica(): { root: string; replicaDir: string };
}

export function sharedStandardFixture(name: string): SharedFixture {
  let copies = 0;
  const shared = {
    copyReplica() {
      const root = path.join(shared.dir, `case${copies++}`);
      copyDir(shared.fx.replicaDir, path.join(root, 'replica'));
      return { root, replicaDir: path.join(root, 'replica') };
    },
  } as { -readonly [K in keyof SharedFixture]: SharedFixture[K] };
  before(() => {
    shared.dir = tempDir(name);
    Object.assign(shared, buildStandardFixture(path.join(shared.dir, 'fx')));
  });
  after(() => {
    fs.rmSync(shared.dir, { recursive: true, force: true });
  });
  return shared;
}
