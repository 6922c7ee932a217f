// age encryption (src/age): the C2SP age testkit (cctv-age), keys, interop with the age CLI
// (Debian's `age` 1.1.1, the same filippo.io/age Litestream v0.3.13 links), the object pipeline
// with LZ4, the error codes, and bounded memory.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable, type Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, test, type TestContext } from 'node:test';
import { inflateSync } from 'node:zlib';
import * as testkit from 'cctv-age';
import {
  AgeDecryptor,
  AgeEncryptor,
  ageIdentityToRecipient,
  ageStage,
  generateAgeIdentity,
  parseAgeIdentities,
  parseAgeIdentity,
  parseAgeRecipient,
  parseAgeRecipients,
} from '../src/age/index.js';
import { bech32Decode, bech32Encode } from '../src/age/bech32.js';
import { AgeError, CorruptDataError } from '../src/errors.js';
import { decodeObject, encodeObject, lz4Stage } from '../src/pipeline.js';

const haveAge = spawnSync('age', ['--version']).status === 0 && spawnSync('age-keygen', ['--version']).status === 0;
const haveLz4 = spawnSync('lz4', ['--version']).status === 0;

/** The age CLI, or a skip (a failure under CI=true). */
function needAge(t: TestContext): boolean {
  if (haveAge && haveLz4) return true;
  if (process.env['CI'] === 'true')
    assert.fail('the age, age-keygen and lz4 commands are required under CI=true (apt-get install age lz4)');
  t.skip('age/age-keygen/lz4 not found: apt-get install age lz4');
  return false;
}

function tmp(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'walship-age-'));
}

/** Runs `input` through `t` in pieces of `piece` bytes; returns what came out and the error, if any. */
async function run(t: Transform, input: Buffer, piece = 1 << 20): Promise<{ out: Buffer; err: unknown }> {
  const parts: Buffer[] = [];
  let err: unknown;
  const src = Readable.from(
    (function* () {
      for (let p = 0; p < input.length; p += piece) yield input.subarray(p, p + piece);
    })(),
  );
  t.on('data', (c: Buffer) => parts.push(c));
  try {
    await pipeline(src, t);
  } catch (e) {
    err = e;
  }
  return { out: Buffer.concat(parts), err };
}

async function collect(r: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of r) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

// -- C2SP testkit ----------------------------------------------------------------------------

interface Vector {
  name: string;
  meta: Map<string, string[]>;
  body: Buffer;
}

function vectors(): Vector[] {
  const out: Vector[] = [];
  for (const [name, raw] of Object.entries(testkit as Record<string, Uint8Array>)) {
    const contents = Buffer.from(raw);
    const sep = contents.indexOf('\n\n');
    const meta = new Map<string, string[]>();
    for (const line of contents.toString('utf8', 0, sep).split('\n')) {
      const i = line.indexOf(': ');
      const k = line.slice(0, i);
      meta.set(k, [...(meta.get(k) ?? []), line.slice(i + 2)]);
    }
    let body = contents.subarray(sep + 2);
    if (meta.get('compressed')?.[0] === 'zlib') body = inflateSync(body);
    out.push({ name, meta, body });
  }
  return out;
}

describe('C2SP age testkit (cctv-age)', () => {
  const all = vectors();
  test('the vectors are there', () => assert.ok(all.length > 100, `${all.length} vectors`));
  let ran = 0;
  for (const v of all) {
    const expect = v.meta.get('expect')![0]!;
    const ids = v.meta.get('identity') ?? [];
    // Not implemented (as in Litestream v0.3): armor, passphrases (scrypt), post-quantum keys.
    const unsupported = v.meta.has('armored') || ids.length === 0 || ids.some((id) => !id.startsWith('AGE-SECRET-KEY-1'));
    if (unsupported) continue;
    ran++;
    // Small pieces exercise the incremental header and chunk parsing (big vectors in 4093s).
    const small = v.body.length > 200_000 ? 4093 : 7;
    for (const piece of [1 << 24, small]) {
      test(`${v.name} (${expect}, ${piece === small ? `${small}-byte pieces` : 'one piece'})`, async () => {
        const identities = ids.map((s) => parseAgeIdentity(s));
        const { out, err } = await run(new AgeDecryptor(identities), v.body, piece);
        const payload = v.meta.get('payload')?.[0];
        switch (expect) {
          case 'success':
            assert.equal(err, undefined, String(err));
            assert.equal(sha256(out), payload);
            break;
          case 'no match':
            assert.ok(err instanceof AgeError && err.code === 'WALSHIP_AGE_NO_MATCH', String(err));
            assert.match((err as Error).message, /^no identity matched/);
            assert.equal(out.length, 0);
            break;
          case 'HMAC failure':
            assert.ok(err instanceof CorruptDataError, String(err));
            assert.match((err as Error).message, /MAC/);
            assert.equal(out.length, 0);
            break;
          case 'header failure':
            assert.ok(err instanceof CorruptDataError, String(err));
            assert.doesNotMatch((err as Error).message, /MAC|payload/);
            assert.equal(out.length, 0);
            break;
          case 'payload failure':
            assert.ok(err instanceof CorruptDataError, String(err));
            assert.equal(sha256(out), payload, 'the plaintext released before the failure');
            break;
          default:
            assert.fail(`unknown expect ${expect}`);
        }
      });
    }
  }
  test('X25519 vectors ran', () => assert.ok(ran >= 60, `${ran} vectors`));
});

// -- keys --------------------------------------------------------------------------------------

describe('age keys', () => {
  test('bech32 round trip; mixed case and bad checksums are refused', () => {
    const data = randomBytes(32);
    const s = bech32Encode('age', data);
    assert.deepEqual(Buffer.from(bech32Decode(s).data), data);
    const upper = bech32Encode('AGE-SECRET-KEY-', data);
    assert.equal(upper, upper.toUpperCase());
    assert.deepEqual(Buffer.from(bech32Decode(upper).data), data);
    assert.throws(() => bech32Decode(s.slice(0, 10) + s.slice(10).toUpperCase()), /mixed case/);
    const bad = s.slice(0, -1) + (s.endsWith('q') ? 'p' : 'q');
    assert.throws(() => bech32Decode(bad), /checksum/);
  });

  test('identity → recipient as age-keygen -y; identity files with comments', (t) => {
    if (!needAge(t)) return;
    const dir = tmp();
    const keyFile = path.join(dir, 'key.txt');
    execFileSync('age-keygen', ['-o', keyFile], { stdio: 'pipe' });
    const text = fs.readFileSync(keyFile, 'utf8');
    assert.match(text, /^# created: /m);
    const [id] = parseAgeIdentities(text);
    const expected = execFileSync('age-keygen', ['-y', keyFile], { encoding: 'utf8' }).trim();
    assert.equal(id!.recipient, expected);
    const mine = generateAgeIdentity();
    fs.writeFileSync(keyFile, `${mine}\n`);
    assert.equal(ageIdentityToRecipient(mine), execFileSync('age-keygen', ['-y', keyFile], { encoding: 'utf8' }).trim());
  });

  test('files: blank lines, comments and several keys; CRLF tolerated', () => {
    const a = generateAgeIdentity();
    const b = generateAgeIdentity();
    const ids = parseAgeIdentities(`# one\r\n${a}\r\n\n# two\n  ${b}  \n`);
    assert.equal(ids.length, 2);
    const recs = parseAgeRecipients(`# comment\n${ageIdentityToRecipient(a)}\n${ageIdentityToRecipient(b)}\n`);
    assert.deepEqual(
      recs.map((r) => r.text),
      ids.map((i) => i.recipient),
    );
  });

  test('malformed keys: AgeError WALSHIP_AGE_KEY naming the entry and line, never the key', () => {
    const good = generateAgeIdentity();
    const broken = good.slice(0, -3) + (good.endsWith('QQQ') ? 'PPP' : 'QQQ');
    const e1 = capture(() => parseAgeIdentities(`# c\n${good}\n${broken}\n`, { field: 'identities', entry: 2 }));
    assert.equal(e1.code, 'WALSHIP_AGE_KEY');
    assert.equal(e1.message, 'age.identities[2]: line 3: malformed secret key: invalid checksum');
    assert.equal(e1.line, 3);
    assert.equal(e1.entry, 2);
    assert.ok(!e1.message.includes(broken.slice(20)));
    const e2 = capture(() => parseAgeIdentities(ageIdentityToRecipient(good)));
    assert.match(e2.message, /^age\.identities\[0\]: line 1: malformed secret key: unknown type/);
    const e3 = capture(() => parseAgeRecipients(good.toLowerCase(), { field: 'recipients', entry: 0 }));
    assert.match(e3.message, /^age\.recipients\[0\]: line 1: malformed recipient: unknown type "age-secret-key-"/);
    assert.match(capture(() => parseAgeRecipients('# nothing\n')).message, /^age\.recipients\[0\]: no recipients found/);
    assert.match(capture(() => parseAgeIdentities('')).message, /no secret keys found/);
    assert.throws(() => parseAgeRecipient(ageIdentityToRecipient(good).toUpperCase()), /unknown type "AGE"/);
    assert.match(capture(() => ageStage({})).message, /no identities and no recipients/);
    assert.match(capture(() => ageStage({ recipients: ['age1nope'] })).message, /^age\.recipients\[0\]: line 1: malformed recipient/);
  });
});

function capture(fn: () => unknown): AgeError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof AgeError, String(err));
    return err;
  }
  assert.fail('no error');
}

// -- interop with the age CLI -------------------------------------------------------------------

const SIZES = [0, 1, 1000, 65535, 65536, 65537, 3 * 65536, 1_000_003];

describe('age CLI interop (age 1.1.1 = filippo.io/age, as in Litestream v0.3.13)', () => {
  test('walship encrypts, age -d decrypts; age -r encrypts, walship decrypts', async (t) => {
    if (!needAge(t)) return;
    const dir = tmp();
    const id = generateAgeIdentity();
    const other = generateAgeIdentity();
    const keyFile = path.join(dir, 'key.txt');
    fs.writeFileSync(keyFile, `# test key\n${id}\n`);
    const recipient = ageIdentityToRecipient(id);
    for (const size of SIZES) {
      const data = randomBytes(size);
      // Two recipients: age must find its own stanza among them.
      const enc = await run(
        new AgeEncryptor([parseAgeRecipient(ageIdentityToRecipient(other)), parseAgeRecipient(recipient)]),
        data,
        10_000,
      );
      assert.equal(enc.err, undefined);
      assert.ok(enc.out.subarray(0, 22).equals(Buffer.from('age-encryption.org/v1\n')));
      const file = path.join(dir, `w-${size}.age`);
      fs.writeFileSync(file, enc.out);
      const plain = execFileSync('age', ['-d', '-i', keyFile, file], { maxBuffer: 1 << 26 });
      assert.ok(plain.equals(data), `age -d of ${size} bytes`);
      const theirs = execFileSync('age', ['-r', recipient], { input: data, maxBuffer: 1 << 26 });
      for (const piece of [1 << 20, 4093]) {
        const dec = await run(new AgeDecryptor(parseAgeIdentities(fs.readFileSync(keyFile, 'utf8'))), theirs, piece);
        assert.equal(dec.err, undefined, String(dec.err));
        assert.ok(dec.out.equals(data), `walship decrypts age -r of ${size} bytes`);
      }
    }
  });
});

// -- the object pipeline ----------------------------------------------------------------------

describe('age stage in the object pipeline', () => {
  const id = generateAgeIdentity();
  const stages = [lz4Stage, ageStage({ identities: [id] })];

  test('LZ4 then age; round trip; age -d gives a valid LZ4 frame (04 22 4D 18 64 70 B9)', async (t) => {
    const data = Buffer.concat([randomBytes(300_000), Buffer.alloc(2_000_000, 7)]);
    const stored = await collect(encodeObject(Readable.from([data]), stages));
    assert.ok(stored.subarray(0, 21).equals(Buffer.from('age-encryption.org/v1')));
    assert.ok((await collect(decodeObject(Readable.from([stored]), stages))).equals(data));
    if (!needAge(t)) return;
    const dir = tmp();
    fs.writeFileSync(path.join(dir, 'k'), id);
    fs.writeFileSync(path.join(dir, 'o'), stored);
    const frame = execFileSync('age', ['-d', '-i', path.join(dir, 'k'), path.join(dir, 'o')], { maxBuffer: 1 << 26 });
    assert.ok(frame.subarray(0, 7).equals(Buffer.from([0x04, 0x22, 0x4d, 0x18, 0x64, 0x70, 0xb9])));
    assert.ok(execFileSync('lz4', ['-d', '-c'], { input: frame, maxBuffer: 1 << 26 }).equals(data));
  });

  test("recipients only: writes; defaults to the identities' recipients", async () => {
    const other = generateAgeIdentity();
    const writer = ageStage({ recipients: [ageIdentityToRecipient(other), ageIdentityToRecipient(id)] });
    assert.equal(writer.keys.identities.length, 0);
    const stored = await collect(encodeObject(Readable.from([Buffer.from('hello')]), [lz4Stage, writer]));
    assert.equal((await collect(decodeObject(Readable.from([stored]), [lz4Stage, ageStage({ identities: [other] })]))).toString(), 'hello');
    assert.deepEqual(
      ageStage({ identities: [id] }).keys.recipients.map((r) => r.text),
      [ageIdentityToRecipient(id)],
    );
  });

  test('rotation: old objects need the old identity, new objects the new one; both configured reads both', async () => {
    const oldId = generateAgeIdentity();
    const newId = generateAgeIdentity();
    const oldObj = await collect(
      encodeObject(Readable.from([Buffer.from('old')]), [lz4Stage, ageStage({ recipients: [ageIdentityToRecipient(oldId)] })]),
    );
    const newObj = await collect(
      encodeObject(Readable.from([Buffer.from('new')]), [lz4Stage, ageStage({ recipients: [ageIdentityToRecipient(newId)] })]),
    );
    const both = [lz4Stage, ageStage({ identities: [newId, `# retired\n${oldId}`], recipients: [ageIdentityToRecipient(newId)] })];
    assert.equal((await collect(decodeObject(Readable.from([oldObj]), both))).toString(), 'old');
    assert.equal((await collect(decodeObject(Readable.from([newObj]), both))).toString(), 'new');
    const err = await rejects(collect(decodeObject(Readable.from([oldObj]), [lz4Stage, ageStage({ identities: [newId] })])));
    assert.equal(err.code, 'WALSHIP_AGE_NO_MATCH');
  });

  test('errors: no identity matched, no identities, not encrypted, damaged — one line each', async () => {
    const stored = await collect(encodeObject(Readable.from([randomBytes(200_000)]), stages));
    const plain = await collect(encodeObject(Readable.from([Buffer.from('plain')]), [lz4Stage]));
    const wrong = [lz4Stage, ageStage({ identities: [generateAgeIdentity()] })];
    const cases: [Promise<Buffer>, string][] = [
      [collect(decodeObject(Readable.from([stored]), wrong)), 'WALSHIP_AGE_NO_MATCH'],
      [collect(decodeObject(Readable.from([stored]), [lz4Stage])), 'WALSHIP_AGE_NO_IDENTITY'],
      [
        collect(decodeObject(Readable.from([stored]), [lz4Stage, ageStage({ recipients: [ageIdentityToRecipient(id)] })])),
        'WALSHIP_AGE_NO_IDENTITY',
      ],
      [collect(decodeObject(Readable.from([plain]), stages)), 'WALSHIP_AGE_NOT_ENCRYPTED'],
    ];
    for (const [p, code] of cases) {
      const err = await rejects(p);
      assert.ok(err instanceof AgeError, String(err));
      assert.equal(err.code, code);
      assert.ok(!err.message.includes('\n'));
    }
    const flipped = Buffer.from(stored);
    flipped[flipped.length - 100]! ^= 1;
    assert.ok((await rejects(collect(decodeObject(Readable.from([flipped]), stages)))) instanceof CorruptDataError);
    const cut = stored.subarray(0, stored.length - 10);
    assert.match(
      (await rejects(collect(decodeObject(Readable.from([cut]), stages)))).message,
      /age: payload chunk \d+ failed authentication/,
    );
    const cutAtChunk = stored.subarray(0, stored.length - ((stored.length - 200) % 65552));
    assert.ok((await rejects(collect(decodeObject(Readable.from([cutAtChunk]), stages)))) instanceof CorruptDataError);
  });

  test('bounded memory: 192 MiB through encryption and decryption', async () => {
    const block = randomBytes(1 << 20);
    const total = 192;
    let seen = 0;
    let peak = 0;
    const base = process.memoryUsage().arrayBuffers;
    const src = Readable.from(
      (function* () {
        for (let i = 0; i < total; i++) yield block;
      })(),
    );
    const enc = new AgeEncryptor([parseAgeRecipient(ageIdentityToRecipient(id))]);
    const dec = new AgeDecryptor([parseAgeIdentity(id)]);
    dec.on('data', (c: Buffer) => {
      seen += c.length;
      if ((seen & 0xffffff) < c.length) peak = Math.max(peak, process.memoryUsage().arrayBuffers - base);
    });
    await pipeline(src, enc, dec);
    assert.equal(seen, total << 20);
    assert.ok(peak < 64 << 20, `peak array buffers ${(peak / 1048576).toFixed(1)} MiB`);
  });
});

async function rejects(p: Promise<unknown>): Promise<AgeError & CorruptDataError> {
  try {
    await p;
  } catch (err) {
    return err as AgeError & CorruptDataError;
  }
  assert.fail('expected an error');
}
