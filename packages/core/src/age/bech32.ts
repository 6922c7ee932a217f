/**
 * Bech32 (BIP 173, the original checksum constant 1, not bech32m) as age uses it for keys:
 * no 90-character limit, one case throughout (upper or lower, never mixed). The human-readable
 * part is returned as written, so callers can require `age` (lower case) or `AGE-SECRET-KEY-`
 * (upper case) exactly, as age v1.1.1 does.
 */

const CHARSET = 'qpzry9x8gf2tvdw0s3jn54khce6mua7l';
const GENERATOR = [0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3];

function polymod(values: readonly number[]): number {
  let chk = 1;
  for (const v of values) {
    const top = chk >>> 25;
    chk = ((chk & 0x1ffffff) << 5) ^ v;
    for (let i = 0; i < 5; i++) if ((top >>> i) & 1) chk ^= GENERATOR[i]!;
  }
  return chk >>> 0;
}

function hrpExpand(hrp: string): number[] {
  const out: number[] = [];
  for (let i = 0; i < hrp.length; i++) out.push(hrp.charCodeAt(i) >>> 5);
  out.push(0);
  for (let i = 0; i < hrp.length; i++) out.push(hrp.charCodeAt(i) & 31);
  return out;
}

function convertBits(data: readonly number[] | Uint8Array, from: number, to: number, pad: boolean): number[] {
  let acc = 0;
  let bits = 0;
  const out: number[] = [];
  const maxv = (1 << to) - 1;
  for (const value of data) {
    if (value >>> from !== 0) throw new Error('invalid data range');
    acc = (acc << from) | value;
    bits += from;
    while (bits >= to) {
      bits -= to;
      out.push((acc >>> bits) & maxv);
    }
  }
  if (pad) {
    if (bits > 0) out.push((acc << (to - bits)) & maxv);
  } else if (bits >= from) {
    throw new Error('illegal zero padding');
  } else if ((acc << (to - bits)) & maxv) {
    throw new Error('non-zero padding');
  }
  return out;
}

/** Encodes `data` under `hrp`; the result is upper case when `hrp` is. */
export function bech32Encode(hrp: string, data: Uint8Array): string {
  const lower = hrp.toLowerCase();
  const values = convertBits(data, 8, 5, true);
  const mod = polymod([...hrpExpand(lower), ...values, 0, 0, 0, 0, 0, 0]) ^ 1;
  let s = `${lower}1`;
  for (const v of values) s += CHARSET[v];
  for (let i = 0; i < 6; i++) s += CHARSET[(mod >>> (5 * (5 - i))) & 31];
  return hrp === lower ? s : s.toUpperCase();
}

/**
 * Decodes a bech32 string.
 * @throws Error naming the problem (mixed case, separator, character, checksum, padding)
 */
export function bech32Decode(s: string): { hrp: string; data: Uint8Array } {
  if (s.toLowerCase() !== s && s.toUpperCase() !== s) throw new Error('mixed case');
  const pos = s.lastIndexOf('1');
  if (pos < 1 || pos + 7 > s.length) throw new Error('separator "1" at invalid position');
  const hrp = s.slice(0, pos);
  for (let i = 0; i < hrp.length; i++) {
    const c = hrp.charCodeAt(i);
    if (c < 33 || c > 126) throw new Error('invalid character in human-readable part');
  }
  const lower = s.toLowerCase();
  const values: number[] = [];
  for (const ch of lower.slice(pos + 1)) {
    const d = CHARSET.indexOf(ch);
    if (d < 0) throw new Error('invalid character'); // which one is not said: keys are secrets
    values.push(d);
  }
  if (polymod([...hrpExpand(hrp.toLowerCase()), ...values]) !== 1) throw new Error('invalid checksum');
  return { hrp, data: Uint8Array.from(convertBits(values.slice(0, -6), 5, 8, false)) };
}
