import assert from 'node:assert/strict';
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { ageStage, generateAgeIdentity, InvalidArgumentError, isWalshipError, lz4Stage } from '@walship/core';
import { decodeObject, encodeObject } from '@walship/core/format';
import type { Pos, ReplicaClient, SnapshotInfo, WALSegmentInfo } from '@walship/core';
import { bodyOf, digestStream, failingBody, generatedBody, generatedBodyDigest, pseudoRandomBytes, readAll } from './bodies.js';
import { describeStoreKeys, snapshotKey, sortedStoreKeys, walSegmentKey } from './keys.js';
import type { ReplicaClientSuiteOptions, StoreBackdoor, StoredObjectInfo } from './types.js';

const MiB = 1024 * 1024;
const DEFAULT_LARGE_OBJECT_BYTES = 64 * MiB;
const DEFAULT_PAGINATION_OBJECT_COUNT = 1100;
/**
 * Allowed distance between a time the store reports and the local write time (server clock
 * skew). Only a sanity bound: listed times must equal the stored time (see `assertStoredTime`).
 */
const CLOCK_SKEW_MS = 5 * 60 * 1000;
/** Upper bound of `StoreBackdoor.timeResolutionMs`. */
const MAX_TIME_RESOLUTION_MS = 60_000;
/** Added to the store's time resolution for the gap between writes whose times must differ. */
const GAP_MARGIN_MS = 100;
/** A write whose body fails must settle within this time; a hang fails the test instead of the run. */
const SETTLE_MS = 120_000;
const MAX_INDEX = 0x7fffffff;

const GEN_A = '0123456789abcdef';
const GEN_B = 'b16ddcf5c697540f';
const GEN_C = 'fedcba9876543210';

interface Ctx {
  readonly client: ReplicaClient;
  readonly store: StoreBackdoor;
  readonly largeObjectBytes: number;
  readonly paginationObjectCount: number;
}

interface Case {
  readonly name: string;
  readonly run: (ctx: Ctx) => Promise<void>;
}

const cases: Case[] = [];
function define(name: string, run: (ctx: Ctx) => Promise<void>): void {
  cases.push({ name, run });
}

// ---------------------------------------------------------------------------------------------
// helpers

const METHODS = new Set([
  'generations',
  'deleteGeneration',
  'snapshots',
  'writeSnapshot',
  'snapshotReader',
  'deleteSnapshot',
  'walSegments',
  'writeWALSegment',
  'walSegmentReader',
  'deleteWALSegments',
  'close',
]);
/** Optional lease methods (present when `capabilities.leases` is true). */
const LEASE_METHODS = new Set(['readLease', 'writeLease']);
/** Optional asynchronous directory-replication method (`scoped` is synchronous; see `strict`). */
const DIRECTORY_METHODS = new Set(['databases']);

/**
 * Thrown by a case that does not apply to the client under test (an optional method it lacks).
 * The case counts as passed; runners whose test context has `skip(message)` (node:test,
 * vitest) report it as skipped with the message.
 */
class NotApplicable extends Error {}

function notApplicable(reason: string): never {
  throw new NotApplicable(reason);
}

function describeError(err: unknown): string {
  if (err instanceof Error) {
    const c = (err as { code?: unknown }).code;
    return `${err.constructor.name}${c === undefined ? '' : ` (code ${String(c)})`}: ${err.message}`;
  }
  return `non-Error value ${String(err)}`;
}

/**
 * Wraps the client so that every contract method must return a promise: a synchronous throw
 * (which would escape a caller's `.catch`) fails the test with a clear message.
 */
function strict(client: ReplicaClient): ReplicaClient {
  return new Proxy(client, {
    get(target, prop) {
      const value: unknown = Reflect.get(target, prop, target);
      if (prop === 'scoped' && typeof value === 'function') {
        // Synchronous by contract: returns a client (checked as strictly) or throws.
        return (subPath: string) => {
          const scoped: unknown = (value as (s: string) => unknown).call(target, subPath);
          assert.ok(
            typeof scoped === 'object' && scoped !== null,
            `scoped(${JSON.stringify(subPath)}) must return a ReplicaClient, got ${String(scoped)}`,
          );
          return strict(scoped as ReplicaClient);
        };
      }
      if (
        typeof value !== 'function' ||
        typeof prop !== 'string' ||
        (!METHODS.has(prop) && !LEASE_METHODS.has(prop) && !DIRECTORY_METHODS.has(prop))
      ) {
        return value;
      }
      return (...args: unknown[]) => {
        let result: unknown;
        try {
          result = (value as (...a: unknown[]) => unknown).apply(target, args);
        } catch (err) {
          return Promise.reject(
            new assert.AssertionError({
              message: `${prop}() threw synchronously instead of returning a rejected promise: ${describeError(err)}`,
            }),
          );
        }
        if (typeof (result as { then?: unknown } | null)?.then !== 'function') {
          return Promise.reject(new assert.AssertionError({ message: `${prop}() did not return a promise` }));
        }
        return result;
      };
    },
  });
}

async function settle<T>(label: string, promise: Promise<T>, ms = SETTLE_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new assert.AssertionError({ message: `${label}: did not settle within ${ms / 1000}s` })), ms);
    timer.unref?.();
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** A body that fails mid-way; a stray 'error' event can never crash the process. */
function brokenBody(goodBytes: number): Readable {
  const body = failingBody(goodBytes);
  body.on('error', () => {});
  return body;
}

/** Asserts that a write settles by rejecting (a hang or a resolution fails). */
async function assertWriteRejects(label: string, write: Promise<unknown>): Promise<void> {
  const outcome = await settle(
    label,
    write.then(
      () => 'resolved' as const,
      () => 'rejected' as const,
    ),
  );
  assert.equal(outcome, 'rejected', `${label}: must reject when its body fails`);
}

async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, i: number) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  let failed = false;
  async function worker(): Promise<void> {
    while (!failed && next < items.length) {
      const i = next++;
      try {
        results[i] = await fn(items[i]!, i);
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  }
  const workers = Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, () => worker());
  const outcomes = await Promise.allSettled(workers);
  const rejected = outcomes.find((o): o is PromiseRejectedResult => o.status === 'rejected');
  if (rejected) throw rejected.reason;
  return results;
}

function concurrencyOf(client: ReplicaClient): number {
  const max = client.capabilities?.maxConcurrency ?? 8;
  return Math.max(1, Math.min(max, 32));
}

/**
 * For the result of a write only: a plausible Date near the local write time. Listed times are
 * held to the stored time instead (`assertStoredTime`).
 */
function assertCreatedAt(createdAt: unknown, before: number, after: number, label: string): void {
  assert.ok(createdAt instanceof Date, `${label}: createdAt must be a Date, got ${String(createdAt)}`);
  const t = createdAt.getTime();
  assert.ok(Number.isFinite(t), `${label}: createdAt is an invalid Date`);
  assert.ok(
    t >= before - CLOCK_SKEW_MS && t <= after + CLOCK_SKEW_MS,
    `${label}: createdAt ${createdAt.toISOString()} is not within 5 minutes of the write ` +
      `(${new Date(before).toISOString()} … ${new Date(after).toISOString()})`,
  );
}

function timeResolutionOf(store: StoreBackdoor): number {
  const r = store.timeResolutionMs;
  assert.ok(
    Number.isSafeInteger(r) && r >= 1 && r <= MAX_TIME_RESOLUTION_MS,
    `store.timeResolutionMs must be an integer from 1 to ${MAX_TIME_RESOLUTION_MS}, got ${String(r)}`,
  );
  return r;
}

/** Waits long enough that the store's clock has moved past its resolution (times differ). */
function storeTimeGap(store: StoreBackdoor): Promise<void> {
  return sleep(timeResolutionOf(store) + GAP_MARGIN_MS);
}

/** Size and time the store records for `key`, read through the backdoor; fails when absent. */
async function storedInfo(store: StoreBackdoor, key: string, label: string): Promise<StoredObjectInfo> {
  const st = await store.statKey(key);
  assert.ok(st !== undefined, `${label}: the backdoor's statKey finds nothing at ${key}; ${await describeStoreKeys(store)}`);
  assert.ok(
    st.createdAt instanceof Date && Number.isFinite(st.createdAt.getTime()),
    `${label}: the backdoor's statKey(${key}) must give a valid Date, got ${String(st.createdAt)}`,
  );
  return st;
}

/** Requires `createdAt` (as listed by the client) to be the time the store records, to its resolution. */
function assertStoredTime(createdAt: unknown, stored: Date, resolutionMs: number, label: string): void {
  assert.ok(createdAt instanceof Date, `${label}: createdAt must be a Date, got ${String(createdAt)}`);
  const t = createdAt.getTime();
  assert.ok(Number.isFinite(t), `${label}: createdAt is an invalid Date`);
  const off = Math.abs(t - stored.getTime());
  assert.ok(
    off < resolutionMs,
    `${label}: createdAt ${createdAt.toISOString()} is not the object's creation time in storage ` +
      `${stored.toISOString()} (off by ${off} ms, store resolution ${resolutionMs} ms); report the ` +
      "store's time, not the listing time or the client's clock",
  );
}

/** Every listed object's createdAt equals the time the store records for it. */
async function assertListedTimes<T extends { readonly createdAt: Date }>(
  store: StoreBackdoor,
  listed: readonly T[],
  keyOf: (info: T) => string,
  label: string,
): Promise<void> {
  const res = timeResolutionOf(store);
  await mapLimit(listed, 8, async (info) => {
    const key = keyOf(info);
    const stored = await storedInfo(store, key, label);
    assertStoredTime(info.createdAt, stored.createdAt, res, `${label}: ${key}`);
  });
}

/** Size and SHA-256 of the bytes stored at `key`, streamed through the backdoor. */
async function storedDigest(store: StoreBackdoor, key: string, label: string): Promise<{ bytes: number; sha256: string }> {
  const stream = await store.openKey(key);
  assert.ok(stream !== undefined, `${label}: the backdoor's openKey finds nothing at ${key}; ${await describeStoreKeys(store)}`);
  return digestStream(stream);
}

type SnapRow = { generation: string; index: number; size: number };
type WalRow = { generation: string; index: number; offset: number; size: number };

function compareRows(a: { generation: string; index: number; offset?: number }, b: typeof a): number {
  if (a.generation !== b.generation) return a.generation < b.generation ? -1 : 1;
  if (a.index !== b.index) return a.index - b.index;
  return (a.offset ?? 0) - (b.offset ?? 0);
}

function snapRows(list: unknown, label: string): SnapRow[] {
  assert.ok(Array.isArray(list), `${label}: snapshots() must resolve to an array`);
  return (list as SnapshotInfo[]).map((s) => ({ generation: s.generation, index: s.index, size: s.size })).sort(compareRows);
}

function walRows(list: unknown, label: string): WalRow[] {
  assert.ok(Array.isArray(list), `${label}: walSegments() must resolve to an array`);
  return (list as WALSegmentInfo[])
    .map((s) => ({ generation: s.generation, index: s.index, offset: s.offset, size: s.size }))
    .sort(compareRows);
}

async function listGenerations(client: ReplicaClient): Promise<string[]> {
  const list = await client.generations();
  assert.ok(Array.isArray(list), 'generations() must resolve to an array');
  return list.slice().sort();
}

async function putSnapshot(ctx: Ctx, generation: string, index: number, data: Buffer): Promise<SnapshotInfo> {
  const label = `writeSnapshot(${generation}, ${index})`;
  const before = Date.now();
  const info = await ctx.client.writeSnapshot(generation, index, bodyOf(data));
  const after = Date.now();
  assert.equal(info.generation, generation, `${label}: returned generation`);
  assert.equal(info.index, index, `${label}: returned index`);
  assert.equal(info.size, data.length, `${label}: returned size must equal the bytes stored`);
  assertCreatedAt(info.createdAt, before, after, label);
  return info;
}

async function putSegment(ctx: Ctx, pos: Pos, data: Buffer): Promise<WALSegmentInfo> {
  const label = `writeWALSegment(${pos.generation}, ${pos.index}, ${pos.offset})`;
  const before = Date.now();
  const info = await ctx.client.writeWALSegment(pos, bodyOf(data));
  const after = Date.now();
  assert.equal(info.generation, pos.generation, `${label}: returned generation`);
  assert.equal(info.index, pos.index, `${label}: returned index`);
  assert.equal(info.offset, pos.offset, `${label}: returned offset`);
  assert.equal(info.size, data.length, `${label}: returned size must equal the bytes stored`);
  assertCreatedAt(info.createdAt, before, after, label);
  return info;
}

async function readSnapshot(client: ReplicaClient, generation: string, index: number): Promise<Buffer> {
  return readAll(await client.snapshotReader(generation, index));
}

async function readSegment(client: ReplicaClient, pos: Pos): Promise<Buffer> {
  return readAll(await client.walSegmentReader(pos));
}

async function assertNotFound(label: string, open: () => Promise<Readable>): Promise<void> {
  let stream: Readable;
  try {
    stream = await open();
  } catch (err) {
    assert.ok(
      isWalshipError(err, 'WALSHIP_NOT_FOUND'),
      `${label}: expected NotFoundError (code WALSHIP_NOT_FOUND), got ${describeError(err)}`,
    );
    assert.ok(!err.message.includes('\n'), `${label}: error message must be one line`);
    return;
  }
  stream.destroy();
  assert.fail(`${label}: resolved with a stream for a missing object; readers must reject with NotFoundError`);
}

async function assertInvalidArgument(label: string, call: () => Promise<unknown>, message: string): Promise<void> {
  let result: unknown;
  try {
    result = await call();
  } catch (err) {
    assert.ok(
      isWalshipError(err, 'WALSHIP_INVALID_ARGUMENT'),
      `${label}: expected InvalidArgumentError (code WALSHIP_INVALID_ARGUMENT), got ${describeError(err)}`,
    );
    assert.equal(err.message, message, `${label}: message must be Litestream's`);
    return;
  }
  (result as Readable | undefined)?.destroy?.();
  assert.fail(`${label}: resolved; expected InvalidArgumentError "${message}"`);
}

/** Awaits `promise`; a rejection fails with `label` and the error (e.g. a delete of a missing object). */
async function succeeds(label: string, promise: Promise<unknown>): Promise<void> {
  try {
    await promise;
  } catch (err) {
    if (err instanceof assert.AssertionError) throw err;
    assert.fail(`${label} must succeed, but rejected with ${describeError(err)}`);
  }
}

async function assertKeys(store: StoreBackdoor, expected: readonly string[], label: string): Promise<void> {
  const keys = await sortedStoreKeys(store);
  assert.deepEqual(keys, expected.slice().sort(), `${label}: the store must hold exactly the expected keys`);
}

async function assertStored(store: StoreBackdoor, key: string, data: Buffer, label: string): Promise<void> {
  const stored = await store.readKey(key);
  assert.ok(stored !== undefined, `${label}: nothing stored at ${key}; ${await describeStoreKeys(store)}`);
  assert.ok(Buffer.from(stored).equals(data), `${label}: bytes stored at ${key} differ from the bytes written`);
}

// ---------------------------------------------------------------------------------------------
// the contract

define('type and capabilities', async ({ client }) => {
  assert.equal(typeof client.type, 'string', 'type must be a string');
  assert.ok(client.type.length > 0, 'type must not be empty');
  for (const m of METHODS) {
    if (m === 'close') continue;
    assert.equal(typeof (client as unknown as Record<string, unknown>)[m], 'function', `${m} must be a method`);
  }
  const closeFn: unknown = client.close;
  assert.ok(closeFn === undefined || typeof closeFn === 'function', 'close must be a method when present');
  const caps = client.capabilities;
  if (caps !== undefined) {
    assert.ok(caps.batchDelete === undefined || typeof caps.batchDelete === 'boolean', 'capabilities.batchDelete must be a boolean');
    assert.ok(
      caps.maxConcurrency === undefined || (Number.isSafeInteger(caps.maxConcurrency) && caps.maxConcurrency > 0),
      'capabilities.maxConcurrency must be a positive integer',
    );
  }
});

define('generations: empty when the root is missing', async ({ client, store }) => {
  assert.deepEqual(await listGenerations(client), [], 'missing root');
  assert.deepEqual(await client.snapshots(GEN_A), [], 'snapshots of a missing root');
  assert.deepEqual(await client.walSegments(GEN_A), [], 'WAL segments of a missing root');
  await store.writeKey('README.txt', Buffer.from('foreign'));
  assert.deepEqual(await listGenerations(client), [], 'root without a generations folder');
  await store.writeKey('generations/notes.txt', Buffer.from('foreign'));
  assert.deepEqual(await listGenerations(client), [], 'generations folder without generations');
});

define('generations: lists every generation written', async (ctx) => {
  await putSnapshot(ctx, GEN_A, 0, Buffer.from('a'));
  await putSegment(ctx, { generation: GEN_B, index: 0, offset: 0 }, Buffer.from('b'));
  await putSnapshot(ctx, GEN_C, 1, Buffer.from('c'));
  await putSegment(ctx, { generation: GEN_C, index: 1, offset: 0 }, Buffer.from('c'));
  assert.deepEqual(await listGenerations(ctx.client), [GEN_A, GEN_B, GEN_C]);
});

define('generations: ignores invalid names and plain objects', async (ctx) => {
  const { client, store } = ctx;
  await putSnapshot(ctx, GEN_A, 1, Buffer.from('x'));
  const body = Buffer.from('foreign');
  for (const name of [
    'not-a-generation',
    'ABCDEF0123456789', // uppercase hex
    'abcdef012345678', // 15 characters
    'abcdef01234567890', // 17 characters
    'abcdef012345678g', // not hex
  ]) {
    await store.writeKey(`generations/${name}/snapshots/00000001.snapshot.lz4`, body);
  }
  await store.writeKey('generations/1111111111111111', body); // valid name, but an object, not a folder
  assert.deepEqual(await listGenerations(client), [GEN_A]);
});

/**
 * The creation times a listing reports are the store's: `first` was written a gap (longer than
 * the store's time resolution) before the `later` ones (one of them planted behind the client's
 * back); the listing must report each object's stored time, order them, and report the same
 * times when listed again a gap later (so the listing time, the client's clock or a cached write
 * time all fail).
 */
async function checkListedCreationTimes<T extends { readonly createdAt: Date }>(
  ctx: Ctx,
  what: string,
  first: { key: string; write: () => Promise<unknown> },
  later: Array<{ key: string; write: () => Promise<unknown> }>,
  list: () => Promise<T[]>,
  keyOf: (info: T) => string,
): Promise<T[]> {
  const { store } = ctx;
  const res = timeResolutionOf(store);
  const before = Date.now();
  await first.write();
  await storeTimeGap(store);
  for (const w of later) await w.write();
  const after = Date.now();
  const stored = new Map<string, Date>();
  for (const { key } of [first, ...later]) {
    const st = await storedInfo(store, key, what);
    const t = st.createdAt.getTime();
    assert.ok(
      t >= before - CLOCK_SKEW_MS && t <= after + CLOCK_SKEW_MS,
      `${what}: the backdoor's statKey(${key}) time ${st.createdAt.toISOString()} is not within 5 minutes of the write`,
    );
    stored.set(key, st.createdAt);
  }
  for (const { key } of later) {
    assert.ok(
      stored.get(key)!.getTime() > stored.get(first.key)!.getTime(),
      `${what}: the store recorded ${key} (${stored.get(key)!.toISOString()}) no later than ${first.key} ` +
        `(${stored.get(first.key)!.toISOString()}), written ${res + GAP_MARGIN_MS} ms earlier; is timeResolutionMs right?`,
    );
  }
  const listed = await list();
  const byKey = new Map(listed.map((info) => [keyOf(info), info]));
  for (const [key, time] of stored) {
    const info = byKey.get(key);
    assert.ok(info, `${what}: ${key} is not listed`);
    assertStoredTime(info.createdAt, time, res, `${what}: listed ${key}`);
  }
  const t0 = byKey.get(first.key)!.createdAt.getTime();
  for (const { key } of later) {
    assert.ok(byKey.get(key)!.createdAt.getTime() > t0, `${what}: listed createdAt of ${key} must be later than that of ${first.key}`);
  }
  await storeTimeGap(store);
  const again = new Map((await list()).map((info) => [keyOf(info), info]));
  for (const key of stored.keys()) {
    assert.equal(
      again.get(key)?.createdAt.getTime(),
      byKey.get(key)!.createdAt.getTime(),
      `${what}: listed again ${res + GAP_MARGIN_MS} ms later, ${key} must report the same createdAt ` +
        `(got ${again.get(key)?.createdAt.toISOString()}, first ${byKey.get(key)!.createdAt.toISOString()})`,
    );
  }
  return listed;
}

define('snapshots: lists one generation with sizes and creation times', async (ctx) => {
  const { client, store } = ctx;
  const listA = await checkListedCreationTimes(
    ctx,
    `snapshots(${GEN_A})`,
    { key: snapshotKey(GEN_A, 5), write: () => putSnapshot(ctx, GEN_A, 5, Buffer.from('x')) },
    [
      { key: snapshotKey(GEN_A, 10), write: () => putSnapshot(ctx, GEN_A, 10, Buffer.from('xyz')) },
      // Planted behind the client's back: the client never saw it written.
      { key: snapshotKey(GEN_A, 12), write: () => store.writeKey(snapshotKey(GEN_A, 12), Buffer.from('planted')) },
    ],
    () => client.snapshots(GEN_A),
    (s: SnapshotInfo) => snapshotKey(s.generation, s.index),
  );
  assert.deepEqual(snapRows(listA, GEN_A), [
    { generation: GEN_A, index: 5, size: 1 },
    { generation: GEN_A, index: 10, size: 3 },
    { generation: GEN_A, index: 12, size: 7 },
  ]);
  await putSnapshot(ctx, GEN_B, 5, Buffer.from('zz'));
  await putSegment(ctx, { generation: GEN_A, index: 7, offset: 0 }, Buffer.from('wal'));
  assert.deepEqual(
    snapRows(await client.snapshots(GEN_A), GEN_A).map((r) => r.index),
    [5, 10, 12],
    'only snapshots are listed',
  );
  const listB = await client.snapshots(GEN_B);
  assert.deepEqual(snapRows(listB, GEN_B), [{ generation: GEN_B, index: 5, size: 2 }]);
  await assertListedTimes(store, listB, (s: SnapshotInfo) => snapshotKey(s.generation, s.index), `snapshots(${GEN_B})`);
});

define('snapshots: empty for unknown and WAL-only generations', async (ctx) => {
  await putSnapshot(ctx, GEN_A, 1, Buffer.from('x'));
  await putSegment(ctx, { generation: GEN_B, index: 1, offset: 0 }, Buffer.from('wal'));
  assert.deepEqual(await ctx.client.snapshots(GEN_C), [], 'unknown generation');
  assert.deepEqual(await ctx.client.snapshots(GEN_B), [], 'generation with only WAL segments');
});

define('snapshots: ignores foreign objects', async (ctx) => {
  const { client, store } = ctx;
  await putSnapshot(ctx, GEN_A, 1, Buffer.from('snap'));
  const dir = `generations/${GEN_A}/snapshots`;
  const body = Buffer.from('foreign');
  for (const name of [
    'garbage.txt',
    '0000000A.snapshot.lz4', // uppercase hex
    '00000002.snapshot', // no .lz4
    '0000003.snapshot.lz4', // 7 digits
    '00000000000000004.snapshot.lz4', // 17 digits
    '00000004.snapshot.lz4.tmp', // temp file of a crashed writer
    'x00000006.snapshot.lz4',
    '00000005_00000000.wal.lz4', // a segment name in the snapshots folder
  ]) {
    await store.writeKey(`${dir}/${name}`, body);
  }
  await store.writeKey(`generations/${GEN_A}/00000008.snapshot.lz4`, body); // outside snapshots/
  await store.writeKey(`generations/${GEN_A}/wal/00000009.snapshot.lz4`, body); // in wal/
  assert.deepEqual(snapRows(await client.snapshots(GEN_A), GEN_A), [{ generation: GEN_A, index: 1, size: 4 }]);
});

define('wal segments: lists one generation with offsets, sizes and creation times', async (ctx) => {
  const { client, store } = ctx;
  const p20 = { generation: GEN_A, index: 2, offset: 0 };
  const p25 = { generation: GEN_A, index: 2, offset: 5 };
  const p30 = { generation: GEN_A, index: 3, offset: 0 };
  const planted = { generation: GEN_A, index: 3, offset: 3 };
  const listA = await checkListedCreationTimes(
    ctx,
    `walSegments(${GEN_A})`,
    { key: walSegmentKey(p20), write: () => putSegment(ctx, p20, Buffer.from('12345')) },
    [
      { key: walSegmentKey(p25), write: () => putSegment(ctx, p25, Buffer.from('67')) },
      { key: walSegmentKey(p30), write: () => putSegment(ctx, p30, Buffer.from('890')) },
      // Planted behind the client's back: the client never saw it written.
      { key: walSegmentKey(planted), write: () => store.writeKey(walSegmentKey(planted), Buffer.from('planted')) },
    ],
    () => client.walSegments(GEN_A),
    (s: WALSegmentInfo) => walSegmentKey(s),
  );
  assert.deepEqual(walRows(listA, GEN_A), [
    { ...p20, size: 5 },
    { ...p25, size: 2 },
    { ...p30, size: 3 },
    { ...planted, size: 7 },
  ]);
  await putSegment(ctx, { generation: GEN_B, index: 2, offset: 0 }, Buffer.from('b'));
  await putSnapshot(ctx, GEN_A, 2, Buffer.from('snapshot'));
  assert.equal(walRows(await client.walSegments(GEN_A), GEN_A).length, 4, 'only WAL segments are listed');
  const listB = await client.walSegments(GEN_B);
  assert.deepEqual(walRows(listB, GEN_B), [{ generation: GEN_B, index: 2, offset: 0, size: 1 }]);
  await assertListedTimes(store, listB, (s: WALSegmentInfo) => walSegmentKey(s), `walSegments(${GEN_B})`);
});

define('wal segments: empty for unknown and snapshot-only generations', async (ctx) => {
  await putSegment(ctx, { generation: GEN_A, index: 1, offset: 0 }, Buffer.from('wal'));
  await putSnapshot(ctx, GEN_B, 1, Buffer.from('snap'));
  assert.deepEqual(await ctx.client.walSegments(GEN_C), [], 'unknown generation');
  assert.deepEqual(await ctx.client.walSegments(GEN_B), [], 'generation with only snapshots');
});

define('wal segments: ignores foreign objects', async (ctx) => {
  const { client, store } = ctx;
  await putSegment(ctx, { generation: GEN_A, index: 1, offset: 32 }, Buffer.from('seg'));
  const dir = `generations/${GEN_A}/wal`;
  const body = Buffer.from('foreign');
  for (const name of [
    'garbage.txt',
    '00000001.wal.lz4', // whole-WAL file of file replicas written by Litestream v0.3.0–v0.3.4
    '00000001.wal',
    '0000000A_00000000.wal.lz4', // uppercase hex
    '00000001_0000000g.wal.lz4', // not hex
    '0000001_00000000.wal.lz4', // 7 digits
    '00000001_00000000.wal.lz4.tmp', // temp file of a crashed writer
    '00000001-00000000.wal.lz4',
    '00000002.snapshot.lz4', // a snapshot name in the wal folder
  ]) {
    await store.writeKey(`${dir}/${name}`, body);
  }
  await store.writeKey(`generations/${GEN_A}/00000003_00000000.wal.lz4`, body); // outside wal/
  await store.writeKey(`generations/${GEN_A}/snapshots/00000004_00000000.wal.lz4`, body); // in snapshots/
  assert.deepEqual(walRows(await client.walSegments(GEN_A), GEN_A), [{ generation: GEN_A, index: 1, offset: 32, size: 3 }]);
});

define('listing: walSegments({ fromIndex }) holds every segment of that index and later ones', async (ctx) => {
  const body = Buffer.from('x');
  const all: Pos[] = [];
  for (const index of [0, 1, 0x0f, 0x10, 0xff, 0x100, 0x1000]) {
    for (const offset of [0, 4152]) {
      const pos = { generation: GEN_A, index, offset };
      await putSegment(ctx, pos, body);
      all.push(pos);
    }
  }
  for (const fromIndex of [0, 1, 0x10, 0x100, 0x101, 0x2000]) {
    const listed = walRows(await ctx.client.walSegments(GEN_A, { fromIndex }), GEN_A).filter((r) => r.index >= fromIndex);
    const want = all.filter((p) => p.index >= fromIndex).map((p) => ({ ...p, size: 1 }));
    assert.deepEqual(
      [...listed].sort((a, b) => a.index - b.index || a.offset - b.offset),
      want,
      `walSegments(${GEN_A}, { fromIndex: ${fromIndex} }) must hold every segment of index ${fromIndex} and later (it may hold lower ones too)`,
    );
  }
});

define("layout: objects land at Litestream's keys", async (ctx) => {
  const snap = Buffer.from('snapshot 1000');
  const seg0 = Buffer.from('segment 0/0');
  const seg1 = Buffer.from('segment 1000/1001');
  const segB = Buffer.from('segment of B');
  await putSnapshot(ctx, GEN_A, 1000, snap);
  await putSegment(ctx, { generation: GEN_A, index: 0, offset: 0 }, seg0);
  await putSegment(ctx, { generation: GEN_A, index: 1000, offset: 1001 }, seg1);
  await putSegment(ctx, { generation: GEN_B, index: 1, offset: 32 }, segB);
  const expected: Array<[string, Buffer]> = [
    [`generations/${GEN_A}/snapshots/000003e8.snapshot.lz4`, snap],
    [`generations/${GEN_A}/wal/00000000_00000000.wal.lz4`, seg0],
    [`generations/${GEN_A}/wal/000003e8_000003e9.wal.lz4`, seg1],
    [`generations/${GEN_B}/wal/00000001_00000020.wal.lz4`, segB],
  ];
  await assertKeys(
    ctx.store,
    expected.map(([k]) => k),
    'layout',
  );
  for (const [key, data] of expected) await assertStored(ctx.store, key, data, 'layout');
});

define("layout: objects planted at Litestream's keys are listed and read", async ({ client, store }) => {
  await store.writeKey(snapshotKey(GEN_A, 7), Buffer.from('abc'));
  await store.writeKey(walSegmentKey({ generation: GEN_A, index: 7, offset: 32 }), Buffer.from('hello'));
  assert.deepEqual(await listGenerations(client), [GEN_A]);
  assert.deepEqual(snapRows(await client.snapshots(GEN_A), GEN_A), [{ generation: GEN_A, index: 7, size: 3 }]);
  assert.deepEqual(walRows(await client.walSegments(GEN_A), GEN_A), [{ generation: GEN_A, index: 7, offset: 32, size: 5 }]);
  assert.equal((await readSnapshot(client, GEN_A, 7)).toString(), 'abc');
  assert.equal((await readSegment(client, { generation: GEN_A, index: 7, offset: 32 })).toString(), 'hello');
  await client.deleteSnapshot(GEN_A, 7);
  await client.deleteWALSegments([{ generation: GEN_A, index: 7, offset: 32 }]);
  await assertKeys(store, [], 'after deleting the planted objects');
});

define('round trip: small bodies', async (ctx) => {
  const { client, store } = ctx;
  const allBytes = Buffer.alloc(1024);
  for (let i = 0; i < allBytes.length; i++) allBytes[i] = i % 256;
  await putSnapshot(ctx, GEN_A, 0, Buffer.from('foobar'));
  await putSnapshot(ctx, GEN_A, 1, allBytes);
  const p1 = { generation: GEN_A, index: 1000, offset: 2000 };
  const p2 = { generation: GEN_A, index: 10, offset: 5 };
  await putSegment(ctx, p1, Buffer.from('foobar'));
  await putSegment(ctx, p2, allBytes);
  assert.equal((await readSnapshot(client, GEN_A, 0)).toString(), 'foobar');
  assert.ok((await readSnapshot(client, GEN_A, 1)).equals(allBytes), 'binary snapshot bytes must round-trip unchanged');
  assert.equal((await readSegment(client, p1)).toString(), 'foobar');
  assert.ok((await readSegment(client, p2)).equals(allBytes), 'binary segment bytes must round-trip unchanged');
  await assertStored(store, snapshotKey(GEN_A, 1), allBytes, 'snapshot');
  await assertStored(store, walSegmentKey(p2), allBytes, 'segment');
});

define('round trip: empty body', async (ctx) => {
  const { client, store } = ctx;
  const pos = { generation: GEN_A, index: 1, offset: 0 };
  await putSnapshot(ctx, GEN_A, 1, Buffer.alloc(0));
  await putSegment(ctx, pos, Buffer.alloc(0));
  assert.deepEqual(snapRows(await client.snapshots(GEN_A), GEN_A), [{ generation: GEN_A, index: 1, size: 0 }]);
  assert.deepEqual(walRows(await client.walSegments(GEN_A), GEN_A), [{ ...pos, size: 0 }]);
  assert.equal((await readSnapshot(client, GEN_A, 1)).length, 0);
  assert.equal((await readSegment(client, pos)).length, 0);
  await assertStored(store, snapshotKey(GEN_A, 1), Buffer.alloc(0), 'empty snapshot');
  await assertStored(store, walSegmentKey(pos), Buffer.alloc(0), 'empty segment');
});

define('round trip: overwrite replaces the object', async (ctx) => {
  const { client, store } = ctx;
  const pos = { generation: GEN_A, index: 3, offset: 4096 };
  await putSnapshot(ctx, GEN_A, 3, Buffer.from('first version'));
  await putSegment(ctx, pos, Buffer.from('first version'));
  await putSnapshot(ctx, GEN_A, 3, Buffer.from('v2'));
  await putSegment(ctx, pos, Buffer.from('v2!'));
  assert.equal((await readSnapshot(client, GEN_A, 3)).toString(), 'v2');
  assert.equal((await readSegment(client, pos)).toString(), 'v2!');
  assert.deepEqual(snapRows(await client.snapshots(GEN_A), GEN_A), [{ generation: GEN_A, index: 3, size: 2 }]);
  assert.deepEqual(walRows(await client.walSegments(GEN_A), GEN_A), [{ ...pos, size: 3 }]);
  await assertKeys(store, [snapshotKey(GEN_A, 3), walSegmentKey(pos)], 'after overwriting');
});

define('round trip: large snapshot streamed', async ({ client, store, largeObjectBytes }) => {
  const size = largeObjectBytes;
  const seed = `large-${size}`;
  const expected = await generatedBodyDigest(seed, size);
  const before = Date.now();
  const info = await client.writeSnapshot(GEN_A, 1, generatedBody(seed, size));
  const after = Date.now();
  assert.equal(info.size, size, 'returned size of the large snapshot');
  assertCreatedAt(info.createdAt, before, after, 'large snapshot');
  const listed = await client.snapshots(GEN_A);
  assert.deepEqual(snapRows(listed, GEN_A), [{ generation: GEN_A, index: 1, size }]);
  await assertKeys(store, [snapshotKey(GEN_A, 1)], 'large snapshot');
  // What landed, read through the backdoor (not the client under test).
  const key = snapshotKey(GEN_A, 1);
  assert.equal((await storedInfo(store, key, 'large snapshot')).size, size, 'size the store records for the large snapshot');
  const stored = await storedDigest(store, key, 'large snapshot');
  assert.equal(stored.bytes, size, 'bytes stored (read through the backdoor)');
  assert.equal(stored.sha256, expected.sha256, 'SHA-256 of the bytes stored (read through the backdoor)');
  await assertListedTimes(store, listed, (s: SnapshotInfo) => snapshotKey(s.generation, s.index), 'large snapshot');
  const actual = await digestStream(await client.snapshotReader(GEN_A, 1));
  assert.equal(actual.bytes, size, 'bytes read back');
  assert.equal(actual.sha256, expected.sha256, 'SHA-256 of the bytes read back');
});

define('round trip: many-chunk WAL segment', async ({ client, store }) => {
  const size = 3 * MiB + 12345;
  const seed = 'many-chunks';
  const pos = { generation: GEN_A, index: 2, offset: 4152 };
  const expected = await generatedBodyDigest(seed, size);
  const info = await client.writeWALSegment(pos, generatedBody(seed, size, 4099));
  assert.equal(info.size, size, 'returned size');
  assert.deepEqual(walRows(await client.walSegments(GEN_A), GEN_A), [{ ...pos, size }]);
  await assertKeys(store, [walSegmentKey(pos)], 'many-chunk segment');
  assert.equal((await storedInfo(store, walSegmentKey(pos), 'many-chunk segment')).size, size, 'size the store records');
  const stored = await storedDigest(store, walSegmentKey(pos), 'many-chunk segment');
  assert.equal(stored.bytes, size, 'bytes stored (read through the backdoor)');
  assert.equal(stored.sha256, expected.sha256, 'SHA-256 of the bytes stored (read through the backdoor)');
  const actual = await digestStream(await client.walSegmentReader(pos));
  assert.equal(actual.bytes, size, 'bytes read back');
  assert.equal(actual.sha256, expected.sha256, 'SHA-256 of the bytes read back');
});

define('round trip: age-encrypted objects (LZ4, then age) stream through the client', async ({ client, store }) => {
  // What walship writes with `age:` configured: the client stores opaque bytes, streamed.
  const stages = [lz4Stage, ageStage({ identities: [generateAgeIdentity()] })];
  const size = 2 * MiB + 777;
  const expected = await generatedBodyDigest('age', size);
  const pos = { generation: GEN_A, index: 4, offset: 32 };
  const snap = await client.writeSnapshot(GEN_A, 4, encodeObject(generatedBody('age', size, 8191), stages));
  const seg = await client.writeWALSegment(pos, encodeObject(generatedBody('age', size, 4099), stages));
  for (const [label, key, info, open] of [
    ['encrypted snapshot', snapshotKey(GEN_A, 4), snap, () => client.snapshotReader(GEN_A, 4)],
    ['encrypted segment', walSegmentKey(pos), seg, () => client.walSegmentReader(pos)],
  ] as const) {
    assert.equal((await storedInfo(store, key, label)).size, info.size, `size of the ${label}`);
    const raw = await store.openKey(key);
    assert.ok(raw, `the ${label} is in the store`);
    const head = await readAll(raw);
    assert.equal(head.subarray(0, 22).toString('latin1'), 'age-encryption.org/v1\n', `the ${label} is stored as a binary age file`);
    const actual = await digestStream(decodeObject(await open(), stages));
    assert.equal(actual.sha256, expected.sha256, `SHA-256 of the ${label} read back and decrypted`);
  }
});

define('write: failing body rejects and leaves no object', async ({ client, store }) => {
  const pos = { generation: GEN_A, index: 1, offset: 0 };
  await assertWriteRejects('writeSnapshot', client.writeSnapshot(GEN_A, 1, brokenBody(256 * 1024)));
  await assertWriteRejects('writeWALSegment', client.writeWALSegment(pos, brokenBody(256 * 1024)));
  assert.deepEqual(await client.snapshots(GEN_A), [], 'no snapshot may be listed after a failed write');
  assert.deepEqual(await client.walSegments(GEN_A), [], 'no segment may be listed after a failed write');
  await assertNotFound('snapshotReader after a failed write', () => client.snapshotReader(GEN_A, 1));
  await assertNotFound('walSegmentReader after a failed write', () => client.walSegmentReader(pos));
  await assertKeys(store, [], 'after failed writes (no partial or temporary objects)');
});

define('write: failing body keeps the previous object', async (ctx) => {
  const { client, store } = ctx;
  const pos = { generation: GEN_A, index: 1, offset: 0 };
  await putSnapshot(ctx, GEN_A, 1, Buffer.from('previous snapshot'));
  await putSegment(ctx, pos, Buffer.from('previous segment'));
  await assertWriteRejects('writeSnapshot (overwrite)', client.writeSnapshot(GEN_A, 1, brokenBody(64 * 1024)));
  await assertWriteRejects('writeWALSegment (overwrite)', client.writeWALSegment(pos, brokenBody(64 * 1024)));
  assert.equal((await readSnapshot(client, GEN_A, 1)).toString(), 'previous snapshot');
  assert.equal((await readSegment(client, pos)).toString(), 'previous segment');
  await assertKeys(store, [snapshotKey(GEN_A, 1), walSegmentKey(pos)], 'after failed overwrites');
});

define('readers: missing objects throw NotFoundError', async (ctx) => {
  const { client } = ctx;
  await assertNotFound('snapshotReader on an empty root', () => client.snapshotReader(GEN_A, 1));
  await assertNotFound('walSegmentReader on an empty root', () => client.walSegmentReader({ generation: GEN_A, index: 1, offset: 0 }));
  await putSnapshot(ctx, GEN_A, 1, Buffer.from('snap'));
  await putSegment(ctx, { generation: GEN_A, index: 1, offset: 0 }, Buffer.from('seg'));
  await assertNotFound('snapshotReader of another index', () => client.snapshotReader(GEN_A, 2));
  await assertNotFound('snapshotReader of another generation', () => client.snapshotReader(GEN_B, 1));
  await assertNotFound('walSegmentReader of another offset', () => client.walSegmentReader({ generation: GEN_A, index: 1, offset: 32 }));
  await assertNotFound('walSegmentReader of another index', () => client.walSegmentReader({ generation: GEN_A, index: 2, offset: 0 }));
  await assertNotFound('walSegmentReader of another generation', () => client.walSegmentReader({ generation: GEN_B, index: 1, offset: 0 }));
});

define('invalid arguments: empty generation', async (ctx) => {
  const { client, store } = ctx;
  const kept = { generation: GEN_A, index: 1, offset: 0 };
  await putSegment(ctx, kept, Buffer.from('kept'));
  const zero = { generation: '', index: 0, offset: 0 };
  const seg = 'cannot determine wal segment path: generation required';
  const snap = 'cannot determine snapshot path: generation required';
  await assertInvalidArgument(
    'deleteGeneration("")',
    () => client.deleteGeneration(''),
    'cannot determine generation path: generation required',
  );
  await assertInvalidArgument('snapshots("")', () => client.snapshots(''), 'cannot determine snapshots path: generation required');
  const body1 = bodyOf(Buffer.from('x'));
  await assertInvalidArgument('writeSnapshot("")', () => client.writeSnapshot('', 1, body1), snap);
  body1.destroy();
  await assertInvalidArgument('snapshotReader("")', () => client.snapshotReader('', 1), snap);
  await assertInvalidArgument('deleteSnapshot("")', () => client.deleteSnapshot('', 1), snap);
  await assertInvalidArgument('walSegments("")', () => client.walSegments(''), 'cannot determine wal path: generation required');
  const body2 = bodyOf(Buffer.from('x'));
  await assertInvalidArgument('writeWALSegment(zero pos)', () => client.writeWALSegment(zero, body2), seg);
  body2.destroy();
  await assertInvalidArgument('walSegmentReader(zero pos)', () => client.walSegmentReader(zero), seg);
  await assertInvalidArgument('deleteWALSegments([valid, zero pos])', () => client.deleteWALSegments([kept, zero]), seg);
  // deleteWALSegments validates every position before deleting anything.
  assert.ok(
    (await store.readKey(walSegmentKey(kept)))?.equals(Buffer.from('kept')),
    'deleteWALSegments must validate every position before deleting anything, but deleted a valid one',
  );
  await assertKeys(store, [walSegmentKey(kept)], 'after calls with an empty generation');
});

define('offsets above 4 GiB', async (ctx) => {
  const { client, store } = ctx;
  const above = { generation: GEN_A, index: 1, offset: 0x1_0000_0020 };
  const edge = { generation: GEN_A, index: 1, offset: 0xffff_ffff };
  const far = { generation: GEN_A, index: MAX_INDEX, offset: 2 ** 40 };
  await putSegment(ctx, above, Buffer.from('above 4 GiB'));
  await putSegment(ctx, edge, Buffer.from('edge'));
  await putSegment(ctx, far, Buffer.from('far'));
  await putSnapshot(ctx, GEN_A, MAX_INDEX, Buffer.from('max index'));
  await assertKeys(
    store,
    [
      `generations/${GEN_A}/wal/00000001_100000020.wal.lz4`,
      `generations/${GEN_A}/wal/00000001_ffffffff.wal.lz4`,
      `generations/${GEN_A}/wal/7fffffff_10000000000.wal.lz4`,
      `generations/${GEN_A}/snapshots/7fffffff.snapshot.lz4`,
    ],
    'names above 4 GiB',
  );
  assert.deepEqual(walRows(await client.walSegments(GEN_A), GEN_A), [
    { ...edge, size: 4 },
    { ...above, size: 11 },
    { ...far, size: 3 },
  ]);
  assert.deepEqual(snapRows(await client.snapshots(GEN_A), GEN_A), [{ generation: GEN_A, index: MAX_INDEX, size: 9 }]);
  assert.equal((await readSegment(client, above)).toString(), 'above 4 GiB');
  assert.equal((await readSegment(client, far)).toString(), 'far');
  assert.equal((await readSnapshot(client, GEN_A, MAX_INDEX)).toString(), 'max index');
  await client.deleteWALSegments([above]);
  await assertNotFound('walSegmentReader after deleting the segment above 4 GiB', () => client.walSegmentReader(above));
  assert.equal((await readSegment(client, edge)).toString(), 'edge', 'the segment at 0xffffffff must survive');
});

define('delete: snapshot, and deletes of missing objects succeed', async (ctx) => {
  const { client, store } = ctx;
  await putSnapshot(ctx, GEN_A, 1, Buffer.from('one'));
  await putSnapshot(ctx, GEN_A, 2, Buffer.from('two'));
  await client.deleteSnapshot(GEN_A, 1);
  assert.deepEqual(snapRows(await client.snapshots(GEN_A), GEN_A), [{ generation: GEN_A, index: 2, size: 3 }]);
  await assertNotFound('snapshotReader after deleteSnapshot', () => client.snapshotReader(GEN_A, 1));
  await assertKeys(store, [snapshotKey(GEN_A, 2)], 'after deleteSnapshot');
  // Idempotent deletes: none of these exist.
  await succeeds('deleteSnapshot of a deleted snapshot', client.deleteSnapshot(GEN_A, 1));
  await succeeds('deleteSnapshot in a missing generation', client.deleteSnapshot(GEN_C, 5));
  await succeeds('deleteWALSegments([])', client.deleteWALSegments([]));
  await succeeds(
    'deleteWALSegments of missing segments',
    client.deleteWALSegments([
      { generation: GEN_A, index: 1, offset: 0 },
      { generation: GEN_C, index: 9, offset: 32 },
    ]),
  );
  await succeeds('deleteGeneration of a missing generation', client.deleteGeneration(GEN_C));
  assert.equal((await readSnapshot(client, GEN_A, 2)).toString(), 'two');
  await assertKeys(store, [snapshotKey(GEN_A, 2)], 'after deleting missing objects');
});

define('delete: WAL segments across generations', async (ctx) => {
  const { client, store } = ctx;
  const a1 = { generation: GEN_A, index: 1, offset: 0 };
  const a2 = { generation: GEN_A, index: 1, offset: 10 };
  const a3 = { generation: GEN_A, index: 2, offset: 0 };
  const b1 = { generation: GEN_B, index: 1, offset: 0 };
  const b2 = { generation: GEN_B, index: 5, offset: 7 };
  for (const p of [a1, a2, a3, b1, b2]) await putSegment(ctx, p, Buffer.from(`${p.generation}/${p.index}/${p.offset}`));
  await putSnapshot(ctx, GEN_A, 1, Buffer.from('snapshot stays'));
  await succeeds(
    'deleteWALSegments across generations (one missing)',
    client.deleteWALSegments([a1, b2, a3, { generation: GEN_B, index: 9, offset: 9 }]),
  );
  assert.deepEqual(
    walRows(await client.walSegments(GEN_A), GEN_A).map(({ size: _, ...p }) => p),
    [a2],
  );
  assert.deepEqual(
    walRows(await client.walSegments(GEN_B), GEN_B).map(({ size: _, ...p }) => p),
    [b1],
  );
  for (const p of [a1, a3, b2]) {
    await assertNotFound(`walSegmentReader(${p.generation}/${p.index}/${p.offset}) after delete`, () => client.walSegmentReader(p));
  }
  await assertKeys(store, [walSegmentKey(a2), walSegmentKey(b1), snapshotKey(GEN_A, 1)], 'after deleteWALSegments');
});

define('delete: generation removes everything under it and nothing else', async (ctx) => {
  const { client, store } = ctx;
  await putSnapshot(ctx, GEN_A, 1, Buffer.from('a'));
  await putSnapshot(ctx, GEN_A, 2, Buffer.from('a'));
  await putSegment(ctx, { generation: GEN_A, index: 1, offset: 0 }, Buffer.from('a'));
  await putSegment(ctx, { generation: GEN_A, index: 2, offset: 32 }, Buffer.from('a'));
  await store.writeKey(`generations/${GEN_A}/other/foreign.bin`, Buffer.from('foreign'));
  await putSnapshot(ctx, GEN_B, 1, Buffer.from('b'));
  await putSegment(ctx, { generation: GEN_B, index: 1, offset: 0 }, Buffer.from('b'));
  const sibling = `generations/${GEN_A}0/keep.bin`; // shares GEN_A as a key prefix
  await store.writeKey(sibling, Buffer.from('keep'));
  await client.deleteGeneration(GEN_A);
  assert.deepEqual(await listGenerations(client), [GEN_B]);
  assert.deepEqual(await client.snapshots(GEN_A), []);
  assert.deepEqual(await client.walSegments(GEN_A), []);
  await assertKeys(
    store,
    [snapshotKey(GEN_B, 1), walSegmentKey({ generation: GEN_B, index: 1, offset: 0 }), sibling],
    'after deleteGeneration',
  );
  await succeeds('deleteGeneration of a deleted generation', client.deleteGeneration(GEN_A));
  await client.deleteGeneration(GEN_B);
  assert.deepEqual(await listGenerations(client), []);
  await assertKeys(store, [sibling], 'after deleting every generation');
});

define('concurrency: parallel writes and reads', async (ctx) => {
  const { client, store } = ctx;
  const N = 32;
  type Item = { kind: 'snapshot' | 'segment'; pos: Pos; data: Buffer };
  const items = (offset: number): Item[] =>
    Array.from({ length: N }, (_, k) => {
      const i = k + offset;
      const generation = i % 2 === 0 ? GEN_A : GEN_B;
      const kind = i % 4 < 2 ? 'snapshot' : 'segment';
      return {
        kind,
        pos: { generation, index: i, offset: kind === 'segment' ? i * 4096 : 0 },
        data: pseudoRandomBytes(`c${i}`, 1000 + i * 997),
      };
    });
  const write = (it: Item) =>
    it.kind === 'snapshot' ? putSnapshot(ctx, it.pos.generation, it.pos.index, it.data) : putSegment(ctx, it.pos, it.data);
  const check = async (it: Item) => {
    const got = it.kind === 'snapshot' ? await readSnapshot(client, it.pos.generation, it.pos.index) : await readSegment(client, it.pos);
    assert.ok(
      got.equals(it.data),
      `concurrent read of ${it.kind} ${it.pos.generation}/${it.pos.index}/${it.pos.offset} returned other bytes`,
    );
  };
  const first = items(0);
  const second = items(N);
  await Promise.all(first.map(write));
  // Reads of the first batch, writes of the second batch and listings, all at once.
  await Promise.all([...first.map(check), ...second.map(write), client.generations(), client.snapshots(GEN_A), client.walSegments(GEN_B)]);
  await Promise.all(second.map(check));
  const all = [...first, ...second];
  const keyOf = (it: Item) => (it.kind === 'snapshot' ? snapshotKey(it.pos.generation, it.pos.index) : walSegmentKey(it.pos));
  for (const generation of [GEN_A, GEN_B]) {
    const mine = all.filter((it) => it.pos.generation === generation);
    const snaps = await client.snapshots(generation);
    assert.deepEqual(
      snapRows(snaps, generation),
      mine
        .filter((it) => it.kind === 'snapshot')
        .map((it) => ({ generation, index: it.pos.index, size: it.data.length }))
        .sort(compareRows),
    );
    const segs = await client.walSegments(generation);
    assert.deepEqual(
      walRows(segs, generation),
      mine
        .filter((it) => it.kind === 'segment')
        .map((it) => ({ ...it.pos, size: it.data.length }))
        .sort(compareRows),
    );
    await assertListedTimes(store, snaps, (s: SnapshotInfo) => snapshotKey(s.generation, s.index), `concurrent snapshots(${generation})`);
    await assertListedTimes(store, segs, (s: WALSegmentInfo) => walSegmentKey(s), `concurrent walSegments(${generation})`);
  }
  await assertKeys(store, all.map(keyOf), 'one object per write');
  // What landed, read through the backdoor (not the client under test).
  await mapLimit(all, 8, (it) => assertStored(store, keyOf(it), it.data, `concurrent write of ${it.kind} ${keyOf(it)}`));
});

define('pagination: WAL segments', async (ctx) => {
  const { client, store, paginationObjectCount: n } = ctx;
  const positions = Array.from({ length: n }, (_, i) => ({ generation: GEN_A, index: Math.floor(i / 100), offset: (i % 100) * 4152 }));
  await mapLimit(positions, concurrencyOf(client), (p) => client.writeWALSegment(p, bodyOf(Buffer.from(String(p.offset)))));
  const rows = walRows(await client.walSegments(GEN_A), GEN_A);
  assert.equal(rows.length, n, `walSegments must list all ${n} segments (more than one listing page)`);
  assert.deepEqual(rows, positions.map((p) => ({ ...p, size: String(p.offset).length })).sort(compareRows));
  await client.deleteWALSegments(positions);
  assert.deepEqual(await client.walSegments(GEN_A), [], `deleteWALSegments of ${n} positions must delete them all`);
  await assertKeys(store, [], `after deleting ${n} segments`);
});

define('pagination: snapshots', async (ctx) => {
  const { client, store, paginationObjectCount: n } = ctx;
  const indexes = Array.from({ length: n }, (_, i) => i);
  await mapLimit(indexes, concurrencyOf(client), (i) => client.writeSnapshot(GEN_A, i, bodyOf(Buffer.from(String(i)))));
  const rows = snapRows(await client.snapshots(GEN_A), GEN_A);
  assert.equal(rows.length, n, `snapshots must list all ${n} snapshots (more than one listing page)`);
  assert.deepEqual(
    rows,
    indexes.map((i) => ({ generation: GEN_A, index: i, size: String(i).length })),
  );
  await client.deleteGeneration(GEN_A);
  assert.deepEqual(await client.snapshots(GEN_A), [], `deleteGeneration must delete all ${n} snapshots`);
  await assertKeys(store, [], `after deleting a generation of ${n} snapshots`);
});

define('pagination: generations', async (ctx) => {
  const { client, paginationObjectCount: n } = ctx;
  const generations = Array.from({ length: n }, (_, i) => (0xa000_0000_0000 + i).toString(16).padStart(16, '0'));
  await mapLimit(generations, concurrencyOf(client), (g) => client.writeSnapshot(g, 1, bodyOf(Buffer.from('g'))));
  const listed = await listGenerations(client);
  assert.equal(listed.length, n, `generations must list all ${n} generations (more than one listing page)`);
  assert.deepEqual(listed, generations.slice().sort());
});

define('close: idempotent', async ({ client }) => {
  if (!client.close) return;
  await client.close();
  await client.close();
});

// ---------------------------------------------------------------------------------------------
// leases (optional: clients that declare `capabilities.leases`)

/** The client's lease methods, or undefined when it does not declare lease support. */
function leaseOf(
  client: ReplicaClient,
): { read: NonNullable<ReplicaClient['readLease']>; write: NonNullable<ReplicaClient['writeLease']> } | undefined {
  if (client.capabilities?.leases !== true) return undefined;
  return { read: () => client.readLease!(), write: (body, v) => client.writeLease!(body, v) };
}

function leaseBody(tag: string): string {
  return `${JSON.stringify({ walship: 'lease', test: tag, at: new Date().toISOString() })}\n`;
}

async function assertLease(lease: NonNullable<ReturnType<typeof leaseOf>>, body: string, version: string, label: string): Promise<void> {
  const got = await lease.read();
  assert.ok(got, `${label}: readLease() must return the lease`);
  assert.equal(got.body, body, `${label}: readLease() must return the stored body`);
  assert.equal(got.version, version, `${label}: readLease() must return the version writeLease() resolved with`);
}

function assertVersion(v: unknown, label: string): asserts v is string {
  assert.equal(typeof v, 'string', `${label}: writeLease() must resolve with the new version (a string) when it wrote`);
  assert.ok((v as string).length > 0, `${label}: the version must not be empty`);
}

define('lease: capability matches the methods', async ({ client }) => {
  const c = client as unknown as Record<string, unknown>;
  const has = typeof c['readLease'] === 'function' && typeof c['writeLease'] === 'function';
  const caps = client.capabilities;
  assert.ok(caps?.leases === undefined || typeof caps.leases === 'boolean', 'capabilities.leases must be a boolean');
  if (caps?.leases === true) assert.ok(has, 'capabilities.leases is true: readLease and writeLease must be methods');
  else {
    assert.ok(
      c['readLease'] === undefined && c['writeLease'] === undefined,
      'readLease/writeLease are present: declare capabilities.leases: true (walship uses them only then)',
    );
  }
});

define('lease: round trip beside generations, invisible to listings', async (ctx) => {
  const { client, store } = ctx;
  const lease = leaseOf(client);
  if (!lease) return;
  assert.equal(await lease.read(), undefined, 'readLease() of a fresh root must be undefined');
  const a = leaseBody('a');
  const v1 = await lease.write(a, null);
  assertVersion(v1, 'create');
  await assertLease(lease, a, v1, 'after create');
  const b = leaseBody('b');
  const v2 = await lease.write(b, v1);
  assertVersion(v2, 'replace');
  assert.notEqual(v2, v1, 'a replaced lease must get a new version');
  await assertLease(lease, b, v2, 'after replace');
  // Litestream only lists generations/: the lease must live outside it, and listings skip it.
  await putSnapshot(ctx, GEN_A, 1, Buffer.from('s'));
  assert.deepEqual(await listGenerations(client), [GEN_A], 'generations() must not list the lease');
  assert.equal((await client.snapshots(GEN_A)).length, 1);
  const keys = await sortedStoreKeys(store);
  const leaseKeys = keys.filter((k) => !k.startsWith('generations/'));
  assert.ok(leaseKeys.length > 0, `the lease must be stored under the root, outside generations/ (${await describeStoreKeys(store)})`);
  for (const k of leaseKeys) {
    assert.ok(
      k === 'walship-lease.json' || k.startsWith('walship-lease/'),
      `unexpected key ${k}: the lease goes to walship-lease.json or walship-lease/`,
    );
  }
  assert.deepEqual(
    keys.filter((k) => k.startsWith('generations/')),
    [snapshotKey(GEN_A, 1)],
    'nothing of the lease under generations/',
  );
});

define('lease precondition: create-if-absent refuses an existing lease', async ({ client }) => {
  const lease = leaseOf(client);
  if (!lease) return;
  const a = leaseBody('a');
  const v1 = await lease.write(a, null);
  assertVersion(v1, 'create');
  assert.equal(await lease.write(leaseBody('b'), null), null, 'writeLease(body, null) must resolve null when a lease exists');
  await assertLease(lease, a, v1, 'after the refused create');
});

define('lease precondition: a stale version is refused', async ({ client }) => {
  const lease = leaseOf(client);
  if (!lease) return;
  const v1 = await lease.write(leaseBody('a'), null);
  assertVersion(v1, 'create');
  const b = leaseBody('b');
  const v2 = await lease.write(b, v1);
  assertVersion(v2, 'replace');
  assert.equal(await lease.write(leaseBody('c'), v1), null, 'writeLease(body, staleVersion) must resolve null');
  await assertLease(lease, b, v2, 'after the refused replace');
});

define('lease precondition: concurrent creates, exactly one wins', async ({ client }) => {
  const lease = leaseOf(client);
  if (!lease) return;
  const bodies = Array.from({ length: 6 }, (_, i) => leaseBody(`create-${i}`));
  const results = await Promise.all(bodies.map((b) => lease.write(b, null)));
  const winners = results.map((v, i) => ({ v, i })).filter((r) => r.v !== null);
  assert.equal(winners.length, 1, `exactly one of ${bodies.length} concurrent creates must succeed, ${winners.length} did`);
  const w = winners[0]!;
  assertVersion(w.v, 'winner');
  await assertLease(lease, bodies[w.i]!, w.v, 'the winner');
});

define('lease precondition: concurrent replacements, exactly one wins', async ({ client }) => {
  const lease = leaseOf(client);
  if (!lease) return;
  const v1 = await lease.write(leaseBody('base'), null);
  assertVersion(v1, 'create');
  const bodies = Array.from({ length: 6 }, (_, i) => leaseBody(`replace-${i}`));
  const results = await Promise.all(bodies.map((b) => lease.write(b, v1)));
  const winners = results.map((v, i) => ({ v, i })).filter((r) => r.v !== null);
  assert.equal(
    winners.length,
    1,
    `exactly one of ${bodies.length} concurrent replacements of one version must succeed, ${winners.length} did`,
  );
  const w = winners[0]!;
  assertVersion(w.v, 'winner');
  await assertLease(lease, bodies[w.i]!, w.v, 'the winner');
});

// ---------------------------------------------------------------------------------------------
// scoped clients and databases() (optional: directory replication)

const TENANT = 'tenants/a.db';

/** `client.scoped`, or the case does not apply (a third-party client may lack it). */
function scopeOf(client: ReplicaClient): (subPath: string) => ReplicaClient {
  if (typeof client.scoped !== 'function') {
    notApplicable('the client has no scoped(subPath) (optional, for directory replication)');
  }
  return (subPath) => client.scoped!(subPath);
}

/** `client.databases`, or the case does not apply. */
function databasesOf(client: ReplicaClient): () => Promise<string[]> {
  if (typeof client.databases !== 'function') {
    notApplicable('the client has no databases() (optional, for directory replication)');
  }
  return async () => {
    const list = await client.databases!();
    assert.ok(Array.isArray(list), 'databases() must resolve to an array');
    return list.slice().sort();
  };
}

define('scoped: objects land under <subPath>/generations/ and stay out of the parent', async (ctx) => {
  const { client, store } = ctx;
  const scoped = scopeOf(client)(TENANT);
  const sctx: Ctx = { ...ctx, client: scoped };
  const snap = Buffer.from('tenant snapshot');
  const seg = Buffer.from('tenant segment');
  const pos = { generation: GEN_A, index: 1, offset: 4152 };
  // The scoped client is used before its parent: it must connect on its own.
  await putSnapshot(sctx, GEN_A, 1, snap);
  await putSegment(sctx, pos, seg);
  const snapAt = `${TENANT}/${snapshotKey(GEN_A, 1)}`;
  const segAt = `${TENANT}/${walSegmentKey(pos)}`;
  await assertKeys(store, [snapAt, segAt], `scoped(${JSON.stringify(TENANT)}) writes`);
  await assertStored(store, snapAt, snap, 'scoped snapshot');
  await assertStored(store, segAt, seg, 'scoped segment');

  assert.deepEqual(await listGenerations(scoped), [GEN_A], 'the scoped client lists its generation');
  const snaps = await scoped.snapshots(GEN_A);
  assert.deepEqual(snapRows(snaps, 'scoped'), [{ generation: GEN_A, index: 1, size: snap.length }], 'scoped snapshots()');
  await assertListedTimes(store, snaps, (s) => `${TENANT}/${snapshotKey(s.generation, s.index)}`, 'scoped snapshots()');
  const segs = await scoped.walSegments(GEN_A);
  assert.deepEqual(walRows(segs, 'scoped'), [{ ...pos, size: seg.length }], 'scoped walSegments()');
  await assertListedTimes(store, segs, (s) => `${TENANT}/${walSegmentKey(s)}`, 'scoped walSegments()');
  assert.ok((await readSnapshot(scoped, GEN_A, 1)).equals(snap), 'scoped snapshotReader() must return the bytes written');
  assert.ok((await readSegment(scoped, pos)).equals(seg), 'scoped walSegmentReader() must return the bytes written');

  assert.deepEqual(await listGenerations(client), [], "the parent's generations() must not list the scoped client's generations");
  assert.deepEqual(await client.snapshots(GEN_A), [], "the parent's snapshots() must not list the scoped client's snapshots");
  assert.deepEqual(await client.walSegments(GEN_A), [], "the parent's walSegments() must not list the scoped client's segments");
  await assertNotFound("the parent's snapshotReader() of the scoped client's snapshot", () => client.snapshotReader(GEN_A, 1));

  await putSnapshot(ctx, GEN_B, 2, Buffer.from('parent'));
  assert.deepEqual(await listGenerations(scoped), [GEN_A], "the scoped client's generations() must not list the parent's");
  assert.deepEqual(await listGenerations(client), [GEN_B], "the parent's generations() lists only its own");
  await scoped.deleteGeneration(GEN_A);
  await assertKeys(store, [snapshotKey(GEN_B, 2)], "the scoped client's deleteGeneration() removes only under its root");
});

define('scoped: invalid sub-paths throw InvalidArgumentError; sub-paths are cleaned', async (ctx) => {
  const { client, store } = ctx;
  const scope = scopeOf(client);
  for (const bad of ['', '/', '/x', 'a/../b', '..', '.', './a']) {
    let threw: unknown;
    let returned = false;
    try {
      scope(bad);
      returned = true;
    } catch (err) {
      threw = err;
    }
    assert.ok(!returned, `scoped(${JSON.stringify(bad)}) must throw InvalidArgumentError, but returned a client`);
    assert.ok(
      isWalshipError(threw, 'WALSHIP_INVALID_ARGUMENT'),
      `scoped(${JSON.stringify(bad)}): expected InvalidArgumentError (code WALSHIP_INVALID_ARGUMENT), got ${describeError(threw)}`,
    );
  }
  const data = Buffer.from('cleaned');
  await putSnapshot({ ...ctx, client: scope('a//b/') }, GEN_A, 1, data);
  await assertKeys(store, [`a/b/${snapshotKey(GEN_A, 1)}`], "scoped('a//b/') must write where scoped('a/b') does");
  const ab = scope('a/b');
  assert.deepEqual(await listGenerations(ab), [GEN_A], "scoped('a/b') lists what scoped('a//b/') wrote");
  assert.ok((await readSnapshot(ab, GEN_A, 1)).equals(data), "scoped('a/b') reads what scoped('a//b/') wrote");
  const a = scope('a');
  if (typeof a.scoped === 'function') {
    assert.deepEqual(await listGenerations(a.scoped('b')), [GEN_A], "scoped('a').scoped('b') must be rooted where scoped('a/b') is");
  }
  assert.deepEqual(await listGenerations(a), [], "scoped('a') holds no generation of its own");
});

define('databases: every relative path whose generations/ holds a valid generation', async (ctx) => {
  const { client, store } = ctx;
  const scope = scopeOf(client);
  const databases = databasesOf(client);
  const body = Buffer.from('db');
  await putSnapshot({ ...ctx, client: scope('a.db') }, GEN_A, 1, body);
  await putSegment({ ...ctx, client: scope('x/b.db') }, { generation: GEN_B, index: 0, offset: 0 }, body); // WAL only
  await putSnapshot({ ...ctx, client: scope('x/y/c.db') }, GEN_C, 0, body);
  await putSegment({ ...ctx, client: scope('x/y/c.db') }, { generation: GEN_C, index: 0, offset: 0 }, body);
  await putSnapshot(ctx, GEN_A, 2, body); // the root's own generations/ is no database of the directory
  await store.writeKey('x/notes.txt', Buffer.from('foreign'));
  await store.writeKey('z/generations/nothex/snapshots/00000001.snapshot.lz4', body); // not a valid generation
  await store.writeKey('w/generations/1111111111111111', body); // a valid name, but an object, not a folder
  assert.deepEqual(
    await databases(),
    ['a.db', 'x/b.db', 'x/y/c.db'],
    `databases() must list exactly the paths whose generations/ holds a valid generation (${await describeStoreKeys(store)})`,
  );
});

define('databases: empty when the root is missing or holds no database', async ({ client, store }) => {
  const databases = databasesOf(client);
  assert.deepEqual(await databases(), [], 'databases() of a missing root');
  await store.writeKey('README.txt', Buffer.from('foreign'));
  await store.writeKey('x/notes.txt', Buffer.from('foreign'));
  assert.deepEqual(await databases(), [], 'databases() of a root holding only foreign objects');
});

define('scoped: closing a scoped client leaves the parent and other scoped clients working', async (ctx) => {
  const { client } = ctx;
  const scope = scopeOf(client);
  const one = scope('one.db');
  const two = scope('two.db');
  await putSnapshot({ ...ctx, client: one }, GEN_A, 1, Buffer.from('one'));
  await putSnapshot({ ...ctx, client: two }, GEN_A, 1, Buffer.from('two'));
  if (one.close) {
    await one.close();
    await one.close(); // idempotent
  }
  await putSnapshot(ctx, GEN_B, 1, Buffer.from('parent'));
  assert.equal((await readSnapshot(client, GEN_B, 1)).toString(), 'parent', 'the parent works after a scoped client was closed');
  assert.deepEqual(await listGenerations(client), [GEN_B]);
  await putSegment({ ...ctx, client: two }, { generation: GEN_A, index: 1, offset: 0 }, Buffer.from('two'));
  assert.equal((await readSnapshot(two, GEN_A, 1)).toString(), 'two', 'another scoped client works after one was closed');
  assert.deepEqual(await listGenerations(two), [GEN_A]);
  assert.equal((await readSnapshot(scope('one.db'), GEN_A, 1)).toString(), 'one', 'a new scoped client works after one was closed');
});

define('scoped: leases are per root', async (ctx) => {
  const { client, store } = ctx;
  const scope = scopeOf(client);
  const lease = leaseOf(client);
  if (!lease) notApplicable('the client declares no leases (capabilities.leases)');
  const scoped = leaseOf(scope(TENANT));
  assert.ok(scoped, 'a scoped client of a client with leases must declare capabilities.leases');
  const a = leaseBody('scoped');
  const va = await scoped.write(a, null);
  assertVersion(va, 'scoped create');
  assert.equal(await lease.read(), undefined, "the parent's readLease() must not see a scoped client's lease");
  const b = leaseBody('parent');
  const vb = await lease.write(b, null);
  assertVersion(vb, "the parent's create (its root has no lease)");
  await assertLease(lease, b, vb, "the parent's lease");
  await assertLease(scoped, a, va, "the scoped client's lease after the parent's write");
  await assertLease(leaseOf(scope(TENANT))!, a, va, 'another scoped client of the same sub-path');
  assert.equal(await leaseOf(scope('other.db'))!.read(), undefined, 'a scoped client of another sub-path sees no lease');
  const keys = await sortedStoreKeys(store);
  assert.ok(
    keys.some((k) => k.startsWith(`${TENANT}/walship-lease`)),
    `the scoped client's lease must be stored under ${TENANT}/ (${await describeStoreKeys(store)})`,
  );
  assert.ok(
    keys.some((k) => k.startsWith('walship-lease')),
    `the parent's lease must be stored under the root (${await describeStoreKeys(store)})`,
  );
});

// ---------------------------------------------------------------------------------------------

/** Names of every test the suite registers (without `prefix`), in registration order. */
export const replicaClientTestNames: readonly string[] = Object.freeze(cases.map((c) => c.name));

/**
 * The lease cases that need the server to enforce `writeLease`'s precondition (create-if-absent,
 * replace-if-version, atomically). A backend whose test server ignores preconditions declares
 * these in `gaps` with the reason (see `ReplicaClientSuiteOptions.gaps`).
 */
export const leasePreconditionTestNames: readonly string[] = Object.freeze(
  replicaClientTestNames.filter((n) => n.startsWith('lease precondition: ')),
);

/** `gaps` for a server that ignores lease preconditions: every precondition case, with `reason`. */
export function leasePreconditionGaps(reason: string): Record<string, string> {
  return Object.fromEntries(leasePreconditionTestNames.map((n) => [n, reason]));
}

function positiveInteger(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new InvalidArgumentError(`replicaClientSuite: ${name} must be a positive integer, got ${String(value)}`);
  }
  return value;
}

/**
 * Registers the ReplicaClient conformance tests with `options.test`. Each test calls
 * `options.create()` for a fresh client on an empty root, runs, then always calls
 * `client.close?.()` and `store.cleanup()`; a test failure wins over a cleanup failure.
 * Assertions use `node:assert` only, so any runner works.
 *
 * @throws InvalidArgumentError when an option is invalid or `skip` names an unknown test
 */
export function replicaClientSuite(options: ReplicaClientSuiteOptions): void {
  if (typeof options?.test !== 'function') throw new InvalidArgumentError('replicaClientSuite: test must be a function');
  if (typeof options.create !== 'function') throw new InvalidArgumentError('replicaClientSuite: create must be a function');
  const largeObjectBytes = positiveInteger(options.largeObjectBytes, DEFAULT_LARGE_OBJECT_BYTES, 'largeObjectBytes');
  const paginationObjectCount = positiveInteger(options.paginationObjectCount, DEFAULT_PAGINATION_OBJECT_COUNT, 'paginationObjectCount');
  const skip = new Set(options.skip ?? []);
  for (const name of skip) {
    if (!replicaClientTestNames.includes(name)) {
      throw new InvalidArgumentError(`replicaClientSuite: unknown test name in skip: ${JSON.stringify(name)}`);
    }
  }
  const gaps = new Map(Object.entries(options.gaps ?? {}));
  for (const [name, reason] of gaps) {
    if (!replicaClientTestNames.includes(name)) {
      throw new InvalidArgumentError(`replicaClientSuite: unknown test name in gaps: ${JSON.stringify(name)}`);
    }
    if (typeof reason !== 'string' || reason.trim() === '') {
      throw new InvalidArgumentError(`replicaClientSuite: gaps[${JSON.stringify(name)}] must give the reason`);
    }
    if (skip.has(name)) throw new InvalidArgumentError(`replicaClientSuite: ${JSON.stringify(name)} is in both skip and gaps`);
  }
  const prefix = options.prefix ?? '';
  const create = options.create;

  for (const c of cases) {
    if (skip.has(c.name)) continue;
    const gap = gaps.get(c.name);
    options.test(prefix + c.name + (gap !== undefined ? ` (capability gap: ${gap})` : ''), async (...runnerArgs: unknown[]) => {
      const { client, store } = await create();
      let failed = false;
      let failure: unknown;
      let notApplicableReason: string | undefined;
      try {
        await c.run({ client: strict(client), store, largeObjectBytes, paginationObjectCount });
      } catch (err) {
        if (err instanceof NotApplicable) notApplicableReason = err.message;
        else {
          failed = true;
          failure = err;
        }
      }
      if (gap !== undefined && notApplicableReason === undefined) {
        // A declared gap must really be one: the case has to fail its assertions here. One that
        // passes (the server learnt the feature) or fails otherwise (an error) fails the test.
        if (!failed) {
          failed = true;
          failure = new assert.AssertionError({
            message: `${c.name}: declared as a capability gap (${gap}) but it passed: remove it from gaps`,
          });
        } else if (failure instanceof assert.AssertionError) {
          failed = false;
        }
      }
      const cleanupErrors: unknown[] = [];
      try {
        await client.close?.();
      } catch (err) {
        cleanupErrors.push(err);
      }
      try {
        await store.cleanup();
      } catch (err) {
        cleanupErrors.push(err);
      }
      if (failed) throw failure;
      if (cleanupErrors.length > 0) {
        throw new AggregateError(cleanupErrors, `cleanup failed: ${cleanupErrors.map(describeError).join('; ')}`);
      }
      if (notApplicableReason !== undefined) {
        const context = runnerArgs[0] as { skip?: unknown } | null | undefined;
        if (typeof context?.skip === 'function') (context.skip as (message: string) => void).call(context, notApplicableReason);
      }
    });
  }
}
