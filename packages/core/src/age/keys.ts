import { createPrivateKey, createPublicKey, diffieHellman, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { AgeError } from '../errors.js';
import { bech32Decode, bech32Encode } from './bech32.js';

/** DER prefixes that turn 32 raw bytes into an X25519 PKCS#8 private key / SPKI public key. */
const PKCS8_X25519 = Buffer.from('302e020100300506032b656e04220420', 'hex');
const SPKI_X25519 = Buffer.from('302a300506032b656e032100', 'hex');

const IDENTITY_HRP = 'AGE-SECRET-KEY-';
const RECIPIENT_HRP = 'age';

/** An X25519 identity (`AGE-SECRET-KEY-1…`): the secret key and its recipient's public key. */
export interface AgeIdentity {
  readonly type: 'X25519';
  readonly privateKey: KeyObject;
  /** The 32-byte public key of the identity's recipient. */
  readonly publicKey: Buffer;
  /** The identity's recipient, `age1…`. */
  readonly recipient: string;
}

/** An X25519 recipient (`age1…`). */
export interface AgeRecipient {
  readonly type: 'X25519';
  /** The 32-byte public key. */
  readonly publicKey: Buffer;
  readonly publicKeyObject: KeyObject;
  /** The recipient as written (`age1…`). */
  readonly text: string;
}

function x25519PrivateKey(raw: Uint8Array): KeyObject {
  return createPrivateKey({ key: Buffer.concat([PKCS8_X25519, raw]), format: 'der', type: 'pkcs8' });
}

export function x25519PublicKey(raw: Uint8Array): KeyObject {
  return createPublicKey({ key: Buffer.concat([SPKI_X25519, raw]), format: 'der', type: 'spki' });
}

export function rawPublicKey(key: KeyObject): Buffer {
  return (createPublicKey(key).export({ format: 'der', type: 'spki' }) as Buffer).subarray(SPKI_X25519.length);
}

/**
 * X25519(privateKey, publicKey). Throws when the result is all zeros (a low-order point), as
 * age requires.
 */
export function x25519(privateKey: KeyObject, publicKey: KeyObject): Buffer {
  const shared = diffieHellman({ privateKey, publicKey });
  if (shared.every((b) => b === 0)) throw new Error('low-order point');
  return shared;
}

/**
 * Parses one X25519 identity, `AGE-SECRET-KEY-1…` (upper case, as age-keygen writes it).
 * @throws Error `malformed secret key: …` (the key itself is never in the message)
 */
export function parseAgeIdentity(s: string): AgeIdentity {
  let decoded: { hrp: string; data: Uint8Array };
  try {
    decoded = bech32Decode(s);
  } catch (err) {
    throw new Error(`malformed secret key: ${(err as Error).message}`);
  }
  if (decoded.hrp !== IDENTITY_HRP) {
    throw new Error(`malformed secret key: unknown type (expected an X25519 identity, AGE-SECRET-KEY-1…)`);
  }
  if (decoded.data.length !== 32) throw new Error(`malformed secret key: ${decoded.data.length} bytes instead of 32`);
  const privateKey = x25519PrivateKey(decoded.data);
  const publicKey = rawPublicKey(privateKey);
  return { type: 'X25519', privateKey, publicKey, recipient: bech32Encode(RECIPIENT_HRP, publicKey) };
}

/**
 * Parses one X25519 recipient, `age1…` (lower case).
 * @throws Error `malformed recipient: …`
 */
export function parseAgeRecipient(s: string): AgeRecipient {
  let decoded: { hrp: string; data: Uint8Array };
  try {
    decoded = bech32Decode(s);
  } catch (err) {
    throw new Error(`malformed recipient: ${(err as Error).message}`);
  }
  if (decoded.hrp !== RECIPIENT_HRP) {
    throw new Error(`malformed recipient: unknown type ${JSON.stringify(decoded.hrp)} (expected an X25519 recipient, age1…)`);
  }
  if (decoded.data.length !== 32) throw new Error(`malformed recipient: ${decoded.data.length} bytes instead of 32`);
  const publicKey = Buffer.from(decoded.data);
  return { type: 'X25519', publicKey, publicKeyObject: x25519PublicKey(publicKey), text: s };
}

/** Where a list of keys came from, for error messages: `age.identities[1]`, or a file name. */
export interface AgeKeySource {
  /** `identities` or `recipients`. */
  readonly field: 'identities' | 'recipients';
  /** Position of the entry in its list. */
  readonly entry: number;
  /** A label for messages, e.g. `age.identities[1]` or `/etc/walship/age.key`. */
  readonly label?: string;
}

/**
 * Parses age key text as age v1.1.1's `ParseIdentities`/`ParseRecipients` do (and so Litestream
 * v0.3's `age:` lists): one key per line; blank lines and lines starting with `#` are ignored
 * (walship also trims spaces and a trailing CR); at least one key.
 */
function parseLines<T>(text: string, source: AgeKeySource, parse: (s: string) => T): T[] {
  const out: T[] = [];
  const lines = text.split('\n');
  const label = source.label ?? `age.${source.field}[${source.entry}]`;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === '' || line.startsWith('#')) continue;
    try {
      out.push(parse(line));
    } catch (err) {
      throw new AgeError('WALSHIP_AGE_KEY', `${label}: line ${i + 1}: ${(err as Error).message}`, { ...source, line: i + 1 });
    }
  }
  if (out.length === 0) {
    const what =
      source.field === 'identities'
        ? 'no secret keys found (expected AGE-SECRET-KEY-1… lines)'
        : 'no recipients found (expected age1… lines)';
    throw new AgeError('WALSHIP_AGE_KEY', `${label}: ${what}`, { ...source, line: undefined });
  }
  return out;
}

/**
 * Parses the text of one `age.identities` entry: an X25519 identity, or the text of an identity
 * file (`age-keygen` output: `#` comments and `AGE-SECRET-KEY-1…` lines).
 * @throws AgeError `WALSHIP_AGE_KEY` naming the entry and line
 */
export function parseAgeIdentities(text: string, source: AgeKeySource = { field: 'identities', entry: 0 }): AgeIdentity[] {
  return parseLines(text, source, parseAgeIdentity);
}

/**
 * Parses the text of one `age.recipients` entry: an `age1…` recipient, or the text of a
 * recipients file (one per line, `#` comments).
 * @throws AgeError `WALSHIP_AGE_KEY` naming the entry and line
 */
export function parseAgeRecipients(text: string, source: AgeKeySource = { field: 'recipients', entry: 0 }): AgeRecipient[] {
  return parseLines(text, source, parseAgeRecipient);
}

/** A new random X25519 identity, `AGE-SECRET-KEY-1…` (as `age-keygen` makes). */
export function generateAgeIdentity(): string {
  const { privateKey } = generateKeyPairSync('x25519');
  const raw = (privateKey.export({ format: 'der', type: 'pkcs8' }) as Buffer).subarray(PKCS8_X25519.length);
  return bech32Encode(IDENTITY_HRP, raw);
}

/** The recipient (`age1…`) of an X25519 identity (as `age-keygen -y` prints). */
export function ageIdentityToRecipient(identity: string): string {
  return parseAgeIdentity(identity.trim()).recipient;
}
