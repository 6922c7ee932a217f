import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isWalshipError } from '../src/index.js';
import { bodyChunkToBuffer, isRetryableHttpStatus } from '../src/entry/backend.js';

test('isRetryableHttpStatus: timeouts, throttling and transient 5xx only', () => {
  for (const s of [408, 429, 500, 502, 503, 504, 507, 599]) assert.equal(isRetryableHttpStatus(s), true, `${s} is retried`);
  for (const s of [200, 301, 400, 401, 403, 404, 409, 412, 416, 501, 505, 600]) {
    assert.equal(isRetryableHttpStatus(s), false, `${s} is final`);
  }
});

test('bodyChunkToBuffer: Buffers as they are, Uint8Arrays as views, strings as UTF-8; anything else is a caller error', () => {
  const b = Buffer.from('abc');
  assert.equal(bodyChunkToBuffer(b, 'x'), b, 'a Buffer is returned as is');
  const backing = new Uint8Array([9, 1, 2, 3, 9]);
  const view = bodyChunkToBuffer(backing.subarray(1, 4), 'x');
  assert.deepEqual([...view], [1, 2, 3], 'the view has the bytes of the subarray');
  backing[2] = 7;
  assert.equal(view[1], 7, 'no copy: the Buffer shares the Uint8Array memory');
  assert.equal(bodyChunkToBuffer('é', 'x').toString('hex'), 'c3a9', 'strings are UTF-8');
  assert.throws(
    () => bodyChunkToBuffer(42, 'gcs'),
    (err: unknown) =>
      isWalshipError(err, 'WALSHIP_INVALID_ARGUMENT') && err.message === 'gcs: upload body must yield Buffer, Uint8Array or string chunks',
    'a number is rejected with the backend named',
  );
});
