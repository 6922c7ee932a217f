import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { InvalidArgumentError } from '@walship/core';
import { replicaClientSuite, replicaClientTestNames } from '../src/index.js';
import type { ReplicaClientSuiteOptions } from '../src/index.js';
import { MemoryReplicaClient, memoryBackdoor } from './memory-client.js';
import type { Faults, MemoryStore } from './memory-client.js';

/** Registers the suite into a map instead of a runner, so tests can run (and expect failures of) single cases. */
function collect(options: Omit<ReplicaClientSuiteOptions, 'test'>): Map<string, () => Promise<void>> {
  const tests = new Map<string, () => Promise<void>>();
  replicaClientSuite({
    largeObjectBytes: 3 * 1024 * 1024 + 17,
    paginationObjectCount: 120,
    ...options,
    test: (name, fn) => {
      assert.ok(!tests.has(name), `duplicate test name ${name}`);
      tests.set(name, fn);
    },
  });
  return tests;
}

function memorySuite(faults: Faults = {}, extra: Partial<ReplicaClientSuiteOptions> = {}) {
  const stats = { created: 0, cleaned: 0, clients: [] as MemoryReplicaClient[] };
  const tests = collect({
    ...extra,
    create: async () => {
      stats.created++;
      const store: MemoryStore = new Map();
      const client = new MemoryReplicaClient(store, faults);
      stats.clients.push(client);
      const backdoor = memoryBackdoor(store);
      return {
        client,
        store: {
          ...backdoor,
          cleanup: async () => {
            stats.cleaned++;
            await backdoor.cleanup();
          },
        },
      };
    },
  });
  return { tests, stats };
}

test('a conforming client passes every test', async () => {
  const { tests, stats } = memorySuite();
  assert.deepEqual([...tests.keys()], replicaClientTestNames);
  for (const [name, fn] of tests) {
    await fn().catch((err: unknown) => assert.fail(`${name}: ${(err as Error).message}`));
  }
  assert.equal(stats.created, tests.size);
  assert.equal(stats.cleaned, tests.size, 'cleanup after every test');
  assert.ok(
    stats.clients.every((c) => c.closed >= 1),
    'close after every test',
  );
});

describe('the suite catches contract violations', () => {
  const cases: Array<[string, Faults, string[]]> = [
    ['uppercase generation names', { uppercaseGenerations: true }, ['generations: ignores invalid names and plain objects']],
    ['readers throwing plain ENOENT errors', { plainNotFound: true }, ['readers: missing objects throw NotFoundError']],
    ['deletes of missing objects failing', { throwOnMissingDelete: true }, ['delete: snapshot, and deletes of missing objects succeed']],
    [
      'partial objects left by a failing body',
      { keepPartialWrite: true },
      ['write: failing body rejects and leaves no object', 'write: failing body keeps the previous object'],
    ],
    [
      'listings that stop after one page',
      { pageLimit: 100 },
      ['pagination: WAL segments', 'pagination: snapshots', 'pagination: generations'],
    ],
    ['deleting before validating every position', { deleteBeforeValidate: true }, ['invalid arguments: empty generation']],
    [
      'deleteGeneration by a prefix without a slash',
      { prefixDelete: true },
      ['delete: generation removes everything under it and nothing else'],
    ],
    ['synchronous throws', { syncThrow: true }, ['invalid arguments: empty generation']],
    ['offsets truncated to 32 bits', { truncateOffsets: true }, ['offsets above 4 GiB']],
    [
      'bogus creation times',
      { epochCreatedAt: true },
      ['snapshots: lists one generation with sizes and creation times', 'round trip: small bodies'],
    ],
    [
      'createdAt = the listing time',
      { listingTimeCreatedAt: true },
      [
        'snapshots: lists one generation with sizes and creation times',
        'wal segments: lists one generation with offsets, sizes and creation times',
      ],
    ],
    [
      'createdAt = the write time cached by the client',
      { cachedWriteTimes: true },
      [
        'snapshots: lists one generation with sizes and creation times',
        'wal segments: lists one generation with offsets, sizes and creation times',
      ],
    ],
    [
      'createdAt truncated to minutes',
      { minuteCreatedAt: true },
      [
        'snapshots: lists one generation with sizes and creation times',
        'wal segments: lists one generation with offsets, sizes and creation times',
      ],
    ],
    [
      'large bodies stored framed (readers strip the frame)',
      { framedLargeBodies: true },
      ['round trip: large snapshot streamed', 'round trip: many-chunk WAL segment'],
    ],
    [
      'concurrent writes storing other bytes (reads served from a cache)',
      { sharedBufferUnderConcurrency: true },
      ['concurrency: parallel writes and reads'],
    ],
    ['snapshots listed from other folders', { deepListing: true }, ['snapshots: ignores foreign objects']],
    ["messages other than Litestream's", { wrongMessage: true }, ['invalid arguments: empty generation']],
    [
      'lease preconditions ignored',
      { ignoreLeasePreconditions: true },
      [
        'lease precondition: create-if-absent refuses an existing lease',
        'lease precondition: a stale version is refused',
        'lease precondition: concurrent creates, exactly one wins',
        'lease precondition: concurrent replacements, exactly one wins',
      ],
    ],
    [
      'lease preconditions checked, then written (not atomic)',
      { racyLeaseWrites: true },
      ['lease precondition: concurrent creates, exactly one wins', 'lease precondition: concurrent replacements, exactly one wins'],
    ],
    ['lease stored under generations/', { leaseInGenerations: true }, ['lease: round trip beside generations, invisible to listings']],
    ['lease methods without capabilities.leases', { undeclaredLeases: true }, ['lease: capability matches the methods']],
  ];
  for (const [what, faults, names] of cases) {
    test(what, async () => {
      const { tests, stats } = memorySuite(faults);
      for (const name of names) {
        const fn = tests.get(name);
        assert.ok(fn, `no test named ${name}`);
        await assert.rejects(fn(), assert.AssertionError, `${name} must fail for ${what}`);
      }
      assert.equal(stats.cleaned, stats.created, 'cleanup runs after failing tests too');
    });
  }
});

describe('options', () => {
  test('prefix and skip', () => {
    const { tests } = memorySuite({}, { prefix: 'mem: ', skip: ['pagination: generations'] });
    assert.equal(tests.size, replicaClientTestNames.length - 1);
    assert.ok(tests.has('mem: type and capabilities'));
    assert.ok(!tests.has('mem: pagination: generations'));
  });

  test('gaps: a declared gap must fail its assertions, and is named with its reason', async () => {
    const name = 'lease precondition: a stale version is refused';
    const { tests: real } = memorySuite({ ignoreLeasePreconditions: true }, { gaps: { [name]: 'ignores If-Match' } });
    const gapTest = real.get(`${name} (capability gap: ignores If-Match)`);
    assert.ok(gapTest, 'the gap test is registered under a name carrying the reason');
    await gapTest(); // the server really lacks it: passes
    const { tests: stale } = memorySuite({}, { gaps: { [name]: 'ignores If-Match' } });
    await assert.rejects(stale.get(`${name} (capability gap: ignores If-Match)`)!(), /declared as a capability gap .* but it passed/);
    const create = async () => assert.fail('not called');
    assert.throws(() => collect({ create, gaps: { 'no such test': 'x' } }), InvalidArgumentError);
    assert.throws(() => collect({ create, gaps: { [name]: '' } }), InvalidArgumentError);
  });

  test('unknown skip names and bad sizes throw InvalidArgumentError', () => {
    const create = async () => assert.fail('not called');
    assert.throws(() => collect({ create, skip: ['no such test'] }), InvalidArgumentError);
    assert.throws(() => collect({ create, largeObjectBytes: 0 }), InvalidArgumentError);
    assert.throws(() => collect({ create, paginationObjectCount: 1.5 }), InvalidArgumentError);
  });

  test('a test failure wins over a cleanup failure; a cleanup failure alone fails the test', async () => {
    const make = (faults: Faults) =>
      collect({
        create: async () => {
          const store: MemoryStore = new Map();
          return {
            client: new MemoryReplicaClient(store, faults),
            store: {
              ...memoryBackdoor(store),
              cleanup: async () => {
                throw new Error('cleanup broke');
              },
            },
          };
        },
      });
    await assert.rejects(make({ plainNotFound: true }).get('readers: missing objects throw NotFoundError')!(), assert.AssertionError);
    await assert.rejects(make({}).get('type and capabilities')!(), /cleanup broke/);
  });
});
