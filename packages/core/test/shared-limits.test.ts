// Shared concurrency limits (#16): one group per key while any replicator uses it; a process that
// creates and drops directory replicators does not keep their groups.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import v8 from 'node:v8';
import vm from 'node:vm';
import { checkConcurrency, sharedLimiterGroups, sharedLimiters } from '../src/util/shared-limits.js';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

test('replicators naming the same key share one group; groups nobody holds are dropped', async () => {
  const held = sharedLimiters(checkConcurrency({ key: 'held', snapshots: 3 })!);
  assert.equal(sharedLimiters(checkConcurrency({ key: 'held' })!), held, 'the same key gives the same limiters');
  assert.equal(held.snapshots.concurrency, 3, "the first one's numbers win");
  const before = sharedLimiterGroups();
  (() => {
    for (let i = 0; i < 200; i++) sharedLimiters(checkConcurrency({ key: `dropped-${i}` })!);
  })();
  assert.equal(sharedLimiterGroups(), before + 200, 'each new key makes a group');
  for (let i = 0; i < 20 && sharedLimiterGroups() > before; i++) {
    gc();
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.equal(sharedLimiterGroups(), before, 'the dropped groups are gone, the held one kept');
  assert.equal(sharedLimiters(checkConcurrency({ key: 'held' })!), held, 'the held group is still shared');
});
