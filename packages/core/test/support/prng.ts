/** Deterministic pseudo-random 32-bit numbers (xorshift32; fast, not crypto-quality). */
export function prng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return s >>> 0;
  };
}
