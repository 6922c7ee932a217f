import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

/** A public key as written in `known_hosts` or `authorized_keys`: `<type> <base64 blob>`. */
export interface PublicKey {
  /** Key type as named inside the blob, e.g. `ssh-ed25519`, `ssh-rsa`, `ecdsa-sha2-nistp256`. */
  readonly type: string;
  /** SSH wire-format public key blob. */
  readonly blob: Buffer;
}

/** One usable line of an OpenSSH `known_hosts` file. */
export interface KnownHostEntry {
  /** `@revoked` or `@cert-authority` marker, when present. */
  readonly marker?: 'revoked' | 'cert-authority';
  /** Comma-separated host patterns, or one hashed `|1|salt|hash` entry. */
  readonly hosts: string;
  readonly key: PublicKey;
  /** 1-based line number, for messages. */
  readonly line: number;
}

/** OpenSSH's fingerprint of a key blob: `SHA256:` + unpadded base64 of its SHA-256. */
export function fingerprint(blob: Buffer): string {
  return `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
}

/** Key type stored at the start of an SSH public key blob (`string` = uint32 length + bytes). */
export function blobKeyType(blob: Buffer): string | undefined {
  if (blob.length < 4) return undefined;
  const len = blob.readUInt32BE(0);
  if (len === 0 || len > 64 || 4 + len > blob.length) return undefined;
  return blob.subarray(4, 4 + len).toString('latin1');
}

/**
 * Parses a public key line such as `ssh-ed25519 AAAAC3Nz... comment` (the `host-key` option,
 * a `.pub` file, or the key part of a known_hosts line). Returns undefined when malformed.
 */
export function parsePublicKey(text: string): PublicKey | undefined {
  const fields = text.trim().split(/\s+/);
  if (fields.length < 2) return undefined;
  const [type, b64] = fields as [string, string];
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) return undefined;
  const blob = Buffer.from(b64, 'base64');
  if (blobKeyType(blob) !== type) return undefined;
  return { type, blob };
}

/**
 * Parses the text of an OpenSSH `known_hosts` file. Comments, blank lines and malformed lines
 * are skipped (as ssh does).
 */
export function parseKnownHosts(text: string): KnownHostEntry[] {
  const entries: KnownHostEntry[] = [];
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i]!.trim();
    if (raw === '' || raw.startsWith('#')) continue;
    const fields = raw.split(/\s+/);
    let marker: KnownHostEntry['marker'];
    if (fields[0]?.startsWith('@')) {
      const m = fields.shift();
      if (m === '@revoked') marker = 'revoked';
      else if (m === '@cert-authority') marker = 'cert-authority';
      else continue;
    }
    if (fields.length < 3) continue;
    const hosts = fields[0]!;
    const key = parsePublicKey(`${fields[1]} ${fields[2]}`);
    if (!key) continue;
    entries.push(marker ? { marker, hosts, key, line: i + 1 } : { hosts, key, line: i + 1 });
  }
  return entries;
}

/** The name ssh looks up in known_hosts: `host` on port 22, `[host]:port` otherwise. */
export function knownHostsName(host: string, port: number): string {
  const h = host.toLowerCase();
  return port === 22 ? h : `[${h}]:${port}`;
}

function globToRegExp(pattern: string): RegExp {
  let re = '^';
  for (const ch of pattern) {
    if (ch === '*') re += '.*';
    else if (ch === '?') re += '.';
    else re += ch.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`${re}$`, 'i');
}

function hashedMatch(entry: string, name: string): boolean {
  // |1|<base64 salt>|<base64 HMAC-SHA1(salt, name)>
  const parts = entry.split('|');
  if (parts.length !== 4 || parts[1] !== '1') return false;
  const salt = Buffer.from(parts[2]!, 'base64');
  const expected = Buffer.from(parts[3]!, 'base64');
  const actual = createHmac('sha1', salt).update(name).digest();
  return expected.length === actual.length && timingSafeEqual(expected, actual);
}

/**
 * True when a known_hosts host field matches `name` (as built by `knownHostsName`): hashed
 * entries, comma-separated patterns with `*` / `?` wildcards and `!` negation (a matching
 * negated pattern rejects the whole line).
 */
function hostFieldMatches(hosts: string, name: string): boolean {
  if (hosts.startsWith('|')) return hashedMatch(hosts, name);
  let matched = false;
  for (const pattern of hosts.split(',')) {
    if (pattern === '') continue;
    const negated = pattern.startsWith('!');
    const p = negated ? pattern.slice(1) : pattern;
    if (globToRegExp(p).test(name)) {
      if (negated) return false;
      matched = true;
    }
  }
  return matched;
}

/** Outcome of checking a server's host key. */
export type HostKeyCheck = { readonly ok: true } | { readonly ok: false; readonly reason: 'unknown' | 'mismatch' | 'revoked' };

/** Checks `blob` against the keys known for `name` (entries already parsed from known_hosts). */
export function checkKnownHosts(entries: readonly KnownHostEntry[], name: string, blob: Buffer): HostKeyCheck {
  let sawHost = false;
  let matched = false;
  for (const e of entries) {
    if (e.marker === 'revoked') {
      // A revoked key is refused whichever host it is presented by (as ssh does).
      if (e.key.blob.equals(blob)) return { ok: false, reason: 'revoked' };
      continue;
    }
    if (e.marker === 'cert-authority') continue;
    if (!hostFieldMatches(e.hosts, name)) continue;
    sawHost = true;
    if (e.key.blob.equals(blob)) matched = true;
  }
  if (matched) return { ok: true };
  return { ok: false, reason: sawHost ? 'mismatch' : 'unknown' };
}

/** Key types (from known_hosts) recorded for `name`, for host-key algorithm preference. */
export function knownKeyTypes(entries: readonly KnownHostEntry[], name: string): string[] {
  const types: string[] = [];
  for (const e of entries) {
    if (e.marker) continue;
    if (hostFieldMatches(e.hosts, name) && !types.includes(e.key.type)) types.push(e.key.type);
  }
  return types;
}

const SUPPORTED_HOST_KEY_ALGORITHMS = new Set([
  'ssh-ed25519',
  'ecdsa-sha2-nistp256',
  'ecdsa-sha2-nistp384',
  'ecdsa-sha2-nistp521',
  'rsa-sha2-512',
  'rsa-sha2-256',
  'ssh-rsa',
  'ssh-dss',
]);

/** Host-key signature algorithms that produce keys of the given types (ssh-rsa → rsa-sha2-*). */
export function hostKeyAlgorithmsFor(types: readonly string[]): string[] {
  const out: string[] = [];
  for (const t of types) {
    const algos = t === 'ssh-rsa' ? ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'] : [t];
    for (const a of algos) if (SUPPORTED_HOST_KEY_ALGORITHMS.has(a) && !out.includes(a)) out.push(a);
  }
  return out;
}
