/**
 * Restore "the Litestream v0.3 way" (format reference §6.2 steps 5–10), as an oracle and a
 * speed baseline: decode the snapshot, then for each index concatenate its segments into
 * `<db>-wal` and let SQLite apply it with `PRAGMA wal_checkpoint(TRUNCATE)`.
 *
 * Decoding is either the `lz4` CLI (independent of walship, for correctness comparisons) or a
 * caller-supplied stream decoder (walship's, for a same-decoder speed comparison).
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import Database from 'better-sqlite3';
import { hex8, LZ4 } from './litestream-fixture.js';

export interface LitestreamWayOptions {
  replicaDir: string;
  generation: string;
  snapshotIndex: number;
  /** Segments to apply: (index, offset) pairs sorted; default every segment with index ≥ snapshotIndex. */
  segments?: ReadonlyArray<{ index: number; offset: number }>;
  outputPath: string;
  /** Stream decoder; default: the `lz4` CLI. */
  decode?: (file: string) => Readable;
}

function listSegments(replicaDir: string, generation: string): Array<{ index: number; offset: number; name: string }> {
  const dir = path.join(replicaDir, 'generations', generation, 'wal');
  const out: Array<{ index: number; offset: number; name: string }> = [];
  for (const name of fs.existsSync(dir) ? fs.readdirSync(dir) : []) {
    const m = /^([0-9a-f]{8,16})_([0-9a-f]{8,16})\.wal\.lz4$/.exec(name);
    if (m) out.push({ index: parseInt(m[1]!, 16), offset: parseInt(m[2]!, 16), name });
  }
  return out.sort((a, b) => a.index - b.index || a.offset - b.offset);
}

async function decodeTo(file: string, out: string, decode: LitestreamWayOptions['decode'], append: boolean): Promise<void> {
  if (!decode) {
    const data = execFileSync(LZ4, ['-d', '-c', file], { maxBuffer: 2 ** 31 - 1 });
    if (append) fs.appendFileSync(out, data);
    else fs.writeFileSync(out, data);
    return;
  }
  await pipeline(decode(file), fs.createWriteStream(out, { flags: append ? 'a' : 'w' }));
}

/** Returns the decoded WAL bytes applied. */
export async function litestreamWayRestore(o: LitestreamWayOptions): Promise<number> {
  const genDir = path.join(o.replicaDir, 'generations', o.generation);
  const tmp = `${o.outputPath}.tmp`;
  await decodeTo(path.join(genDir, 'snapshots', `${hex8(o.snapshotIndex)}.snapshot.lz4`), tmp, o.decode, false);
  const all = listSegments(o.replicaDir, o.generation).filter((s) => s.index >= o.snapshotIndex);
  const wanted = o.segments ? all.filter((s) => o.segments!.some((w) => w.index === s.index && w.offset === s.offset)) : all;
  const indexes = [...new Set(wanted.map((s) => s.index))].sort((a, b) => a - b);
  let walBytes = 0;
  for (const idx of indexes) {
    const walPath = `${tmp}-wal`;
    fs.rmSync(walPath, { force: true });
    let first = true;
    for (const s of wanted.filter((w) => w.index === idx)) {
      await decodeTo(path.join(genDir, 'wal', s.name), walPath, o.decode, !first);
      first = false;
    }
    walBytes += fs.statSync(walPath).size;
    const db = new Database(tmp);
    try {
      const rows = db.pragma('wal_checkpoint(TRUNCATE)') as Array<{ busy: number; log: number; checkpointed: number }>;
      if (rows[0]?.busy !== 0) throw new Error(`truncation checkpoint failed during restore (${JSON.stringify(rows[0])})`);
    } finally {
      db.close();
    }
  }
  fs.renameSync(tmp, o.outputPath);
  for (const s of ['-wal', '-shm']) fs.rmSync(`${tmp}${s}`, { force: true });
  return walBytes;
}
