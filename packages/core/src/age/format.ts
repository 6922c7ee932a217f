/**
 * The age v1 header (age-encryption.org/v1), binary form only:
 *
 * ```
 * age-encryption.org/v1
 * -> X25519 <base64 ephemeral share>
 * <base64 wrapped file key>
 * --- <base64 HMAC-SHA256 of everything above, up to and including "---">
 * <16-byte nonce><STREAM payload>
 * ```
 *
 * Parsing is as strict as age v1.1.1's (canonical unpadded base64, 64-column body lines, LF line
 * ends only), so the bytes MACed are exactly the bytes read.
 */
import { createCipheriv, createDecipheriv, createHmac, generateKeyPairSync, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';
import { CorruptDataError } from '../errors.js';
import { type AgeIdentity, type AgeRecipient, rawPublicKey, x25519, x25519PublicKey } from './keys.js';

const INTRO = 'age-encryption.org/v1';
const INTRO_PREFIX = 'age-encryption.org/';
const X25519_LABEL = 'age-encryption.org/v1/X25519';
const FILE_KEY_SIZE = 16;
const TAG_SIZE = 16;
const BYTES_PER_LINE = 48; // 64 base64 columns
/** A header larger than this is refused (bounded memory; real headers are ~100 bytes per recipient). */
export const MAX_HEADER_BYTES = 1024 * 1024;

interface Stanza {
  readonly type: string;
  readonly args: readonly string[];
  readonly body: Buffer;
}

export interface Header {
  readonly stanzas: readonly Stanza[];
  /** The header bytes the MAC covers (intro through `---`). */
  readonly macInput: Buffer;
  readonly mac: Buffer;
  /** Total header length in bytes, including the MAC line's LF. */
  readonly length: number;
}

function b64encode(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('base64').replace(/=+$/, '');
}

/** Strict unpadded standard base64 (canonical only, no CR/LF), as age's `DecodeString`. */
function b64decode(s: string): Buffer {
  if (!/^[A-Za-z0-9+/]*$/.test(s) || s.length % 4 === 1) throw new Error('invalid base64');
  const out = Buffer.from(s, 'base64');
  if (b64encode(out) !== s) throw new Error('non-canonical base64');
  return out;
}

function isValidArg(s: string): boolean {
  if (s.length === 0) return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 33 || c > 126) return false;
  }
  return true;
}

function headerError(what: string): CorruptDataError {
  return new CorruptDataError(`age: malformed header: ${what}`);
}

/**
 * Parses a header at the start of `buf`. Returns undefined when `buf` ends before the header
 * does (more input needed).
 * @throws CorruptDataError on a malformed header
 */
export function parseHeader(buf: Buffer): Header | undefined {
  let pos = 0;
  const nextLine = (): string | undefined => {
    const nl = buf.indexOf(0x0a, pos);
    if (nl < 0) return undefined;
    const line = buf.toString('latin1', pos, nl);
    pos = nl + 1;
    return line;
  };
  const intro = nextLine();
  if (intro === undefined) {
    const head = buf.toString('latin1', 0, Math.min(buf.length, INTRO_PREFIX.length));
    if (!INTRO_PREFIX.startsWith(head) || buf.length > 256) throw headerError('no age-encryption.org/v1 intro line');
    return undefined;
  }
  if (intro !== INTRO) {
    if (intro.startsWith('age-encryption.org/')) throw new CorruptDataError(`age: unsupported format version ${JSON.stringify(intro)}`);
    throw headerError('no age-encryption.org/v1 intro line');
  }
  const stanzas: Stanza[] = [];
  for (;;) {
    const lineStart = pos;
    const line = nextLine();
    if (line === undefined) return undefined;
    if (line.startsWith('---')) {
      const parts = line.split(' ');
      if (parts[0] !== '---' || parts.length !== 2) throw headerError('malformed closing line');
      let mac: Buffer;
      try {
        mac = b64decode(parts[1]!);
      } catch {
        throw headerError('malformed closing line');
      }
      if (mac.length !== 32) throw headerError('malformed closing line');
      return { stanzas, macInput: buf.subarray(0, lineStart + 3), mac, length: pos };
    }
    if (!line.startsWith('->')) throw headerError('unexpected line');
    const parts = line.split(' ');
    if (parts[0] !== '->' || parts.length < 2) throw headerError('malformed stanza');
    const args = parts.slice(1);
    if (!args.every(isValidArg)) throw headerError('malformed stanza');
    const body: Buffer[] = [];
    for (;;) {
      const bl = nextLine();
      if (bl === undefined) return undefined;
      let b: Buffer;
      try {
        b = b64decode(bl);
      } catch {
        throw headerError('malformed stanza body line');
      }
      if (b.length > BYTES_PER_LINE) throw headerError('stanza body line too long');
      body.push(b);
      if (b.length < BYTES_PER_LINE) break;
    }
    stanzas.push({ type: args[0]!, args: args.slice(1), body: Buffer.concat(body) });
  }
}

function hkdf(ikm: Uint8Array, salt: Uint8Array, info: string): Buffer {
  return Buffer.from(hkdfSync('sha256', ikm, salt, info, 32));
}

const ZERO_NONCE = Buffer.alloc(12);

function seal(key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array): Buffer {
  const c = createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: TAG_SIZE });
  const out = c.update(plaintext);
  c.final();
  return Buffer.concat([out, c.getAuthTag()]);
}

/** Opens `sealed` (ciphertext ‖ tag); undefined when authentication fails. */
export function open(key: Uint8Array, nonce: Uint8Array, sealed: Uint8Array): Buffer | undefined {
  if (sealed.length < TAG_SIZE) return undefined;
  const d = createDecipheriv('chacha20-poly1305', key, nonce, { authTagLength: TAG_SIZE });
  d.setAuthTag(sealed.subarray(sealed.length - TAG_SIZE));
  const out = d.update(sealed.subarray(0, sealed.length - TAG_SIZE));
  try {
    d.final();
  } catch {
    return undefined;
  }
  return out;
}

function encodeStanza(s: Stanza): string {
  let out = `-> ${[s.type, ...s.args].join(' ')}\n`;
  for (let i = 0; ; i += BYTES_PER_LINE) {
    const piece = s.body.subarray(i, i + BYTES_PER_LINE);
    out += `${b64encode(piece)}\n`;
    if (piece.length < BYTES_PER_LINE) break;
  }
  return out;
}

/** An X25519 stanza wrapping `fileKey` for `recipient`. */
function wrapX25519(fileKey: Buffer, recipient: AgeRecipient): Stanza {
  const { privateKey } = generateKeyPairSync('x25519');
  const share = rawPublicKey(privateKey);
  const shared = x25519(privateKey, recipient.publicKeyObject);
  const wrapKey = hkdf(shared, Buffer.concat([share, recipient.publicKey]), X25519_LABEL);
  return { type: 'X25519', args: [b64encode(share)], body: seal(wrapKey, ZERO_NONCE, fileKey) };
}

/** The file key for `identity` from one X25519 stanza; undefined when the stanza is not for it. */
function unwrapX25519(identity: AgeIdentity, s: Stanza): Buffer | undefined {
  if (s.args.length !== 1) throw new CorruptDataError('age: invalid X25519 stanza');
  let share: Buffer;
  try {
    share = b64decode(s.args[0]!);
  } catch {
    throw new CorruptDataError('age: invalid X25519 stanza');
  }
  if (share.length !== 32) throw new CorruptDataError('age: invalid X25519 stanza');
  let shared: Buffer;
  try {
    shared = x25519(identity.privateKey, x25519PublicKey(share));
  } catch {
    throw new CorruptDataError('age: invalid X25519 stanza: low-order share');
  }
  if (s.body.length !== FILE_KEY_SIZE + TAG_SIZE) throw new CorruptDataError('age: invalid X25519 stanza: incorrect file key size');
  const wrapKey = hkdf(shared, Buffer.concat([share, identity.publicKey]), X25519_LABEL);
  return open(wrapKey, ZERO_NONCE, s.body);
}

/** Result of {@link unwrapFileKey}. */
export type Unwrapped = { fileKey: Buffer } | { noMatch: string };

/**
 * Finds the file key with the first identity that opens one of the header's X25519 stanzas
 * (others are ignored, as age does), and checks the header MAC.
 * @throws CorruptDataError on an invalid stanza or a bad header MAC
 */
export function unwrapFileKey(header: Header, identities: readonly AgeIdentity[]): Unwrapped {
  if (header.stanzas.some((s) => s.type === 'scrypt') && header.stanzas.length !== 1) {
    throw new CorruptDataError('age: an scrypt stanza must be the only one');
  }
  let fileKey: Buffer | undefined;
  outer: for (const id of identities) {
    for (const s of header.stanzas) {
      if (s.type !== 'X25519') continue;
      fileKey = unwrapX25519(id, s);
      if (fileKey) break outer;
    }
  }
  if (!fileKey) {
    const types = [...new Set(header.stanzas.map((s) => s.type))].join(', ') || 'none';
    return { noMatch: types };
  }
  const mac = createHmac('sha256', hkdf(fileKey, Buffer.alloc(0), 'header'))
    .update(header.macInput)
    .digest();
  if (!timingSafeEqual(mac, header.mac)) throw new CorruptDataError('age: bad header MAC (the object was modified or damaged)');
  return { fileKey };
}

/** A new header for `recipients`, with the file key and the payload key derived from a fresh nonce. */
export function newHeader(recipients: readonly AgeRecipient[]): { bytes: Buffer; payloadKey: Buffer } {
  const fileKey = randomBytes(FILE_KEY_SIZE);
  let text = `${INTRO}\n`;
  for (const r of recipients) text += encodeStanza(wrapX25519(fileKey, r));
  text += '---';
  const mac = createHmac('sha256', hkdf(fileKey, Buffer.alloc(0), 'header'))
    .update(text, 'latin1')
    .digest();
  const nonce = randomBytes(16);
  return {
    bytes: Buffer.concat([Buffer.from(`${text} ${b64encode(mac)}\n`, 'latin1'), nonce]),
    payloadKey: payloadKey(fileKey, nonce),
  };
}

export function payloadKey(fileKey: Uint8Array, nonce: Uint8Array): Buffer {
  return hkdf(fileKey, nonce, 'payload');
}
