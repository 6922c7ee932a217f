import fs from 'node:fs/promises';
import path from 'node:path';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import Database from 'better-sqlite3';
import type { ReplicaClient, WALSegmentInfo } from '@walship/core';
import { decodeObject } from '@walship/core/format';

/** Decodes one stored object fully into memory (test data is small). */
export async function readObject(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  await pipeline(
    decodeObject(stream as never),
    new Writable({
      write(c: Buffer, _e, cb) {
        chunks.push(c);
        cb();
      },
    }),
  );
  return Buffer.concat(chunks);
}

/** The WAL bytes of every index of a generation, concatenated from its segments (checked contiguous). */
export async function walByIndex(client: ReplicaClient, generation: string): Promise<Map<number, Buffer>> {
  const segs = (await client.walSegments(generation)).sort((a, b) => a.index - b.index || a.offset - b.offset);
  const out = new Map<number, Buffer>();
  for (const s of segs) {
    const data = await readObject(await client.walSegmentReader({ generation, index: s.index, offset: s.offset }));
    const prev = out.get(s.index) ?? Buffer.alloc(0);
    if (prev.length !== s.offset)
      throw new Error(`segment gap in index ${s.index}: have ${prev.length} bytes, next segment at ${s.offset}`);
    out.set(s.index, Buffer.concat([prev, data]));
  }
  return out;
}

export async function latestGeneration(client: ReplicaClient): Promise<string> {
  const gens = await client.generations();
  let best = '';
  let bestAt = -1;
  for (const g of gens) {
    const times = [...(await client.snapshots(g)), ...(await client.walSegments(g))].map((x) => x.createdAt.getTime());
    const t = Math.max(...times);
    if (t > bestAt) {
      bestAt = t;
      best = g;
    }
  }
  return best;
}

/**
 * Rebuilds the database from a replica the way Litestream v0.3 does (independent of walship's
 * restore): decode the latest snapshot, then for every index from the snapshot's index on write
 * the index's WAL next to it and let SQLite checkpoint it. Returns the output path.
 */
export async function rebuildLikeLitestream(client: ReplicaClient, outDir: string, generation?: string): Promise<string> {
  const gen = generation ?? (await latestGeneration(client));
  const snaps = (await client.snapshots(gen)).sort((a, b) => a.index - b.index);
  const snap = snaps[snaps.length - 1];
  if (!snap) throw new Error(`no snapshot in generation ${gen}`);
  await fs.mkdir(outDir, { recursive: true });
  const out = path.join(outDir, 'rebuilt.db');
  await fs.writeFile(out, await readObject(await client.snapshotReader(gen, snap.index)));
  const wal = await walByIndex(client, gen);
  const indexes = [...wal.keys()].filter((i) => i >= snap.index).sort((a, b) => a - b);
  for (let k = 0; k < indexes.length; k++) {
    if (indexes[k] !== snap.index + k) throw new Error(`missing wal index ${snap.index + k}`);
    await fs.writeFile(`${out}-wal`, wal.get(indexes[k]!)!);
    const db = new Database(out);
    const r = db.pragma('wal_checkpoint(TRUNCATE)') as Array<{ busy: number }>;
    if (r[0]?.busy !== 0) throw new Error('checkpoint busy');
    db.close();
  }
  return out;
}

export function rows(dbPath: string, sql = 'SELECT * FROM t ORDER BY id'): unknown[] {
  const db = new Database(dbPath, { readonly: true });
  try {
    return db.prepare(sql).all();
  } finally {
    db.close();
  }
}

export function integrityOk(dbPath: string): boolean {
  const db = new Database(dbPath, { readonly: true });
  try {
    return db.pragma('integrity_check', { simple: true }) === 'ok';
  } finally {
    db.close();
  }
}

export type { WALSegmentInfo };
