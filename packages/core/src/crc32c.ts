/**
 * CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as Go's
 * `crc32.MakeTable(crc32.Castagnoli)` computes it: init 0xFFFFFFFF, final xor
 * 0xFFFFFFFF, and `update(crc, data)` chaining semantics (passing a previous
 * result as `initial` continues the checksum as if the inputs were concatenated).
 *
 * The hot path uses the native `@node-rs/crc32` binding (SSE4.2/ARMv8 CRC
 * instructions); a pure-JS slice-by-8 implementation is kept as a fallback in
 * case the napi binary cannot be loaded on this platform.
 *
 * `crc32cCombine` computes crc(A‖B) from crc(A), crc(B) and len(B) without the
 * data (zlib's `crc32_combine` algorithm: multiply crc(A) by x^(8·len(B)) modulo
 * the polynomial, using a table of x^(2^k) mod P).
 */
import { createRequire } from 'node:module';

const POLY = 0x82f63b78;

// ---------------------------------------------------------------- pure JS ---

const TABLES: Uint32Array[] = (() => {
  const t: Uint32Array[] = [];
  for (let k = 0; k < 8; k++) t.push(new Uint32Array(256));
  const t0 = t[0]!;
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let i = 0; i < 8; i++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
    t0[n] = c >>> 0;
  }
  for (let n = 0; n < 256; n++) {
    let c = t0[n]!;
    for (let k = 1; k < 8; k++) {
      c = t0[c & 0xff]! ^ (c >>> 8);
      t[k]![n] = c >>> 0;
    }
  }
  return t;
})();

/** Pure-JS slice-by-8 CRC-32C. `initial` is a previous result to continue from (0 to start). */
export function crc32cJs(data: Uint8Array, initial = 0): number {
  const [t0, t1, t2, t3, t4, t5, t6, t7] = TABLES as [Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array];
  let c = ~initial >>> 0;
  let i = 0;
  const n = data.length;
  const end8 = n - (n & 7);
  while (i < end8) {
    const lo = (c ^ (data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24))) >>> 0;
    c =
      t7[lo & 0xff]! ^
      t6[(lo >>> 8) & 0xff]! ^
      t5[(lo >>> 16) & 0xff]! ^
      t4[lo >>> 24]! ^
      t3[data[i + 4]!]! ^
      t2[data[i + 5]!]! ^
      t1[data[i + 6]!]! ^
      t0[data[i + 7]!]!;
    i += 8;
  }
  while (i < n) c = t0[(c ^ data[i++]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}

// ----------------------------------------------------------------- native ---

type NativeCrc = (input: Uint8Array, initialState?: number | null) => number;

/** A binding that computes the standard check value, also chained; else none. */
function checked(fn: unknown): NativeCrc | undefined {
  if (typeof fn !== 'function') return undefined;
  const f = fn as NativeCrc;
  const probe = new TextEncoder().encode('123456789');
  if (f(probe) >>> 0 !== 0xe3069283) return undefined;
  if (f(probe.subarray(4), f(probe.subarray(0, 4))) >>> 0 !== 0xe3069283) return undefined;
  return f;
}

function loadNative(): NativeCrc | undefined {
  try {
    const require = createRequire(import.meta.url);
    return checked((require('@node-rs/crc32') as { crc32c?: unknown }).crc32c);
  } catch {
    return undefined;
  }
}

/**
 * Where the package cannot be required (the single executable: the binding is an asset in it, see
 * packages/kubectl-plugin/src/native-assets.ts), a loader of the binding's crc32c function, asked once,
 * on the first checksum. Whatever it returns is checked first; nothing usable means the JS path.
 */
let loader: (() => unknown) | undefined;
let impl: ((data: Uint8Array, initial: number) => number) | undefined;

export function setCrc32cLoader(l: (() => unknown) | undefined): void {
  loader = l;
  impl = undefined;
}

function resolveImpl(): (data: Uint8Array, initial: number) => number {
  let native = loadNative();
  if (!native && loader) {
    try {
      native = checked(loader());
    } catch {
      native = undefined;
    }
  }
  return native ? (data, initial) => (data.length === 0 ? initial >>> 0 : native(data, initial) >>> 0) : crc32cJs;
}

/** True when a native binding (SSE4.2/ARMv8 CRC instructions) computes crc32c. */
export function crc32cNative(): boolean {
  return (impl ??= resolveImpl()) !== crc32cJs;
}

/** CRC-32C of `data`, continuing from `initial` (a previous result; 0 to start). */
export function crc32c(data: Uint8Array, initial = 0): number {
  return (impl ??= resolveImpl())(data, initial);
}

// ---------------------------------------------------------------- combine ---

/** a(x)·b(x) mod P(x), both in reflected bit order. */
function multmodp(a: number, b: number): number {
  let m = 0x80000000;
  let p = 0;
  for (;;) {
    if (a & m) {
      p ^= b;
      if ((a & (m - 1)) === 0) break;
    }
    m >>>= 1;
    b = b & 1 ? (b >>> 1) ^ POLY : b >>> 1;
  }
  return p >>> 0;
}

/** X2N[k] = x^(2^k) mod P. */
const X2N: Uint32Array = (() => {
  const t = new Uint32Array(64);
  let p = 0x40000000; // x^1
  t[0] = p;
  for (let k = 1; k < 64; k++) t[k] = p = multmodp(p, p);
  return t;
})();

/** x^(n·2^k) mod P. */
function x2nmodp(n: number, k: number): number {
  let p = 0x80000000; // x^0
  while (n > 0) {
    if (n % 2 === 1) p = multmodp(X2N[k & 63]!, p);
    n = Math.floor(n / 2);
    k++;
  }
  return p;
}

// Memo of the shift operator for frequent lengths (leaf pages repeat sizes).
const SHIFT_MEMO = new Map<number, number>();

/** Operator that advances a CRC over `len` bytes (zeros-free; see crc32cCombine). */
function shiftOp(len: number): number {
  let op = SHIFT_MEMO.get(len);
  if (op === undefined) {
    op = x2nmodp(len, 3);
    if (SHIFT_MEMO.size < 65536) SHIFT_MEMO.set(len, op);
  }
  return op;
}

/** crc32c(A‖B) given crc1 = crc32c(A), crc2 = crc32c(B) and len2 = B.length. */
export function crc32cCombine(crc1: number, crc2: number, len2: number): number {
  if (len2 <= 0) return crc1 >>> 0;
  return (multmodp(shiftOp(len2), crc1 >>> 0) ^ crc2) >>> 0;
}
