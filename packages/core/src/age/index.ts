import type { Transform } from 'node:stream';
import { AgeError } from '../errors.js';
import type { ObjectStage } from '../pipeline.js';
import { type AgeIdentity, type AgeRecipient, parseAgeIdentities, parseAgeRecipient, parseAgeRecipients } from './keys.js';
import { AgeDecryptor, AgeEncryptor } from './stream.js';

export {
  ageIdentityToRecipient,
  generateAgeIdentity,
  parseAgeIdentities,
  parseAgeIdentity,
  parseAgeRecipient,
  parseAgeRecipients,
  type AgeIdentity,
  type AgeKeySource,
  type AgeRecipient,
} from './keys.js';
export { AgeDecryptor, AgeEncryptor } from './stream.js';

/** Keys of an {@link ageStage}, as `litestream.yml` v0.3's `age:` block has them. */
export interface AgeOptions {
  /**
   * X25519 identities, needed to read (restore, validation, and the replica's position at
   * start-up). Each entry is one `AGE-SECRET-KEY-1…` key or the text of an identity file
   * (`age-keygen` output: one key per line, `#` comments and blank lines ignored). Every
   * identity is tried on every object, so keep old ones after a rotation.
   */
  readonly identities?: readonly string[];
  /**
   * X25519 recipients (`age1…`), each entry one key or the text of a recipients file. New
   * objects are encrypted to every recipient. Default: the recipients of `identities`.
   */
  readonly recipients?: readonly string[];
}

/** The parsed keys of a stage (for inspection; the stage is immutable). */
export interface AgeKeys {
  readonly identities: readonly AgeIdentity[];
  readonly recipients: readonly AgeRecipient[];
}

/** An age stage: `ageStage(...)` plus its parsed keys. */
export interface AgeStage extends ObjectStage {
  readonly name: 'age';
  readonly keys: AgeKeys;
}

/**
 * age encryption (binary age v1 files, X25519 recipients) as an object pipeline stage, to put
 * after LZ4 as Litestream v0.3 does: `stages: [lz4Stage, ageStage({ identities, recipients })]`
 * (also in `restore()`'s replicas). Object names do not change. Encryption and decryption
 * stream in 64 KiB chunks: memory stays bounded whatever the object's size.
 *
 * Writing needs recipients (default: the identities' own); reading needs identities. Reading
 * fails with `AgeError`: `WALSHIP_AGE_NO_MATCH` (no identity opens the object),
 * `WALSHIP_AGE_NO_IDENTITY` (an encrypted object, no identities), `WALSHIP_AGE_NOT_ENCRYPTED`
 * (a plain LZ4 object); a damaged or modified object fails with `CorruptDataError`.
 *
 * @throws AgeError `WALSHIP_AGE_KEY` for a malformed key (naming the entry and line), or when
 *   neither identities nor recipients are given
 */
export function ageStage(options: AgeOptions): AgeStage {
  const identities: AgeIdentity[] = [];
  const recipients: AgeRecipient[] = [];
  for (const [entry, text] of (options.identities ?? []).entries())
    identities.push(...parseAgeIdentities(text, { field: 'identities', entry }));
  for (const [entry, text] of (options.recipients ?? []).entries())
    recipients.push(...parseAgeRecipients(text, { field: 'recipients', entry }));
  if (identities.length === 0 && recipients.length === 0) {
    throw new AgeError(
      'WALSHIP_AGE_KEY',
      'age: no identities and no recipients: give age.recipients to write encrypted objects and age.identities to read them',
    );
  }
  const writeTo = recipients.length > 0 ? recipients : identities.map((id) => parseAgeRecipient(id.recipient));
  const keys: AgeKeys = { identities, recipients: writeTo };
  return {
    name: 'age',
    keys,
    encoder: (): Transform => new AgeEncryptor(writeTo),
    decoder: (): Transform => new AgeDecryptor(identities),
  };
}

/** True when `stage` is an {@link ageStage}. */
export function isAgeStage(stage: ObjectStage): stage is AgeStage {
  return stage.name === 'age' && 'keys' in stage;
}
