import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  AgeError,
  BackendError,
  ConfigError,
  isNotFoundError,
  isWalshipError,
  NotFoundError,
  WalshipError,
  type WalshipErrorCode,
} from '../src/index.js';
import { isTransientError } from '../src/restore/retry.js';

/** What another copy of @walship/core throws: same name, code and fields, a different class. */
class ForeignBackendError extends Error {
  readonly code = 'WALSHIP_BACKEND';
  readonly retryable: boolean;
  constructor(message: string, retryable: boolean) {
    super(message);
    this.name = 'BackendError';
    this.retryable = retryable;
  }
}

test('isWalshipError matches by code, with or without a list of codes', () => {
  const notFound = new NotFoundError('gone');
  assert.ok(isWalshipError(notFound), 'any walship error matches without codes');
  assert.ok(isWalshipError(notFound, 'WALSHIP_NOT_FOUND'), 'its own code matches');
  assert.ok(isWalshipError(notFound, 'WALSHIP_BACKEND', 'WALSHIP_NOT_FOUND'), 'one of several codes matches');
  assert.equal(isWalshipError(notFound, 'WALSHIP_BACKEND'), false, 'another code does not match');
  assert.ok(isWalshipError(new AgeError('WALSHIP_AGE_KEY', 'bad key')), 'subclasses with their own codes match');
});

test('isWalshipError recognises errors of another copy of core, where instanceof fails', () => {
  const foreign = new ForeignBackendError('s3: PUT x: 503', false);
  assert.equal(foreign instanceof BackendError, false, 'precondition: a different class');
  assert.ok(isWalshipError(foreign, 'WALSHIP_BACKEND'), 'matched by its code');
  if (isWalshipError(foreign, 'WALSHIP_BACKEND')) {
    assert.equal(foreign.retryable, false, 'narrowed to BackendError: retryable readable');
  }
  assert.equal(isTransientError(foreign), false, 'restore does not retry a foreign non-retryable BackendError');
  assert.equal(isTransientError(new ForeignBackendError('s3: GET x: 503', true)), true, 'and retries a retryable one');
  const foreignNotFound = Object.assign(new Error('missing'), { code: 'WALSHIP_NOT_FOUND' });
  assert.ok(isNotFoundError(foreignNotFound), 'isNotFoundError goes by code too');
  assert.equal(isTransientError(foreignNotFound), false, 'not found is final');
});

test('isWalshipError rejects what is not a walship error', () => {
  const enoent = Object.assign(new Error('ENOENT: no such file'), { code: 'ENOENT' });
  assert.equal(isWalshipError(enoent), false, 'a Node error');
  assert.equal(isWalshipError({ code: 'WALSHIP_BACKEND', message: 'x' }), false, 'a plain object with a code is not an Error');
  assert.equal(isWalshipError('WALSHIP_BACKEND'), false, 'a string');
  assert.equal(isWalshipError(undefined), false, 'undefined');
  assert.equal(isWalshipError(null, 'WALSHIP_CONFIG'), false, 'null with a code');
  assert.equal(isWalshipError(new Error('plain')), false, 'an Error without a code');
});

test('every code in the documented table is one WalshipError accepts', () => {
  // A compile-time check as much as a run-time one: the codes thrown without a subclass.
  const codes: WalshipErrorCode[] = ['WALSHIP_TIMEOUT', 'WALSHIP_BUSY', 'WALSHIP_NOT_OPEN', 'WALSHIP_INTERNAL'];
  for (const code of codes) {
    const err = new WalshipError(code, 'x');
    assert.ok(isWalshipError(err, code), `${code} matches itself`);
    assert.equal(err.name, 'WalshipError', `${code}: name`);
  }
  assert.ok(isWalshipError(new ConfigError('bad'), 'WALSHIP_CONFIG'), 'ConfigError carries WALSHIP_CONFIG');
});
