/**
 * The bbolt (go.etcd.io/bbolt) on-disk format, little-endian throughout.
 *
 *   page header (16 B): id u64 | flags u16 | count u16 | overflow u32
 *   meta body (at +16): magic u32 | version u32 | pageSize u32 | flags u32 |
 *                       root {pgid u64, sequence u64} | freelist u64 | pgid (hwm) u64 |
 *                       txid u64 | checksum u64 (FNV-1a 64 over the 56 bytes before it)
 *   branch element (16 B): pos u32 | ksize u32 | pgid u64      key at elem+pos
 *   leaf element   (16 B): flags u32 | pos u32 | ksize u32 | vsize u32
 *                          key at elem+pos, value right after it
 *   bucket value: {root u64, sequence u64} [+ inline leaf page when root == 0]
 *   freelist: count u16 (0xFFFF → real count is the first u64) then u64 page ids
 */

export const PAGE_HEADER_SIZE = 16;
export const ELEMENT_SIZE = 16; // both branch and leaf elements
export const BUCKET_HEADER_SIZE = 16;
export const META_BODY_OFFSET = 16;
export const META_SIZE = 64; // meta struct incl. checksum
export const META_CHECKSUMMED = 56;

export const MAGIC = 0xed0cdaed;
export const VERSION = 2;

export const FLAG_BRANCH = 0x01;
export const FLAG_LEAF = 0x02;
export const FLAG_META = 0x04;
export const FLAG_FREELIST = 0x10;
export const LEAF_FLAG_BUCKET = 0x01;

export const FREELIST_COUNT_OVERFLOW = 0xffff;
/** Pgid meaning "freelist not persisted" (bbolt NoFreelistSync). */
export const PGID_NO_FREELIST = Number.MAX_SAFE_INTEGER + 1; // sentinel: any u64 beyond 2^53

/** Page sizes bbolt probes when meta page 0 is unreadable: 1 KiB << 0..14. */
export const META1_PROBE_OFFSETS: readonly number[] = Array.from({ length: 15 }, (_, i) => 1024 * 2 ** i);
export const MIN_PAGE_SIZE = 512;
export const MAX_PAGE_SIZE = 1 << 24;

export const GZIP_MAGIC0 = 0x1f;
export const GZIP_MAGIC1 = 0x8b;

/** etcd maintenance-API snapshots end with a sha256 of everything before it. */
export const TRAILER_SIZE = 32;
export const TRAILER_ALIGN = 512;

export function u16(b: Uint8Array, o: number): number {
  return b[o]! | (b[o + 1]! << 8);
}

export function u32(b: Uint8Array, o: number): number {
  return (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16)) + b[o + 3]! * 0x1000000;
}

/**
 * u64 as a JS number. Values ≥ 2^53 are not exact; they are mapped to
 * PGID_NO_FREELIST-or-larger, which is only ever compared against small bounds.
 */
export function u64(b: Uint8Array, o: number): number {
  const hi = u32(b, o + 4);
  const lo = u32(b, o);
  if (hi >= 0x200000) return PGID_NO_FREELIST + hi; // ≥ 2^53: out of any range we use
  return hi * 0x100000000 + lo;
}

/** u64 as hex, exact. */
export function u64hex(b: Uint8Array, o: number): string {
  return u32(b, o + 4).toString(16).padStart(8, '0') + u32(b, o).toString(16).padStart(8, '0');
}

export function pageTypeName(flags: number): string {
  if (flags & FLAG_BRANCH) return 'branch';
  if (flags & FLAG_LEAF) return 'leaf';
  if (flags & FLAG_META) return 'meta';
  if (flags & FLAG_FREELIST) return 'freelist';
  return `unknown<${flags.toString(16).padStart(2, '0')}>`;
}

const FNV_OFFSET = 0xcbf29ce484222325n;
const FNV_PRIME = 0x100000001b3n;
const MASK64 = 0xffffffffffffffffn;

/** FNV-1a 64-bit, as bbolt's meta.Sum64 uses it. Only ever called on 56-byte meta bodies. */
export function fnv1a64(b: Uint8Array, start: number, end: number): bigint {
  let h = FNV_OFFSET;
  for (let i = start; i < end; i++) h = ((h ^ BigInt(b[i]!)) * FNV_PRIME) & MASK64;
  return h;
}

function readU64Big(b: Uint8Array, o: number): bigint {
  return (BigInt(u32(b, o + 4)) << 32n) | BigInt(u32(b, o));
}

export interface MetaInfo {
  /** The page slot (0 or 1). */
  page: number;
  magic: number;
  version: number;
  pageSize: number;
  flags: number;
  root: number;
  freelist: number;
  /** True when the freelist pgid is 0xFFFFFFFFFFFFFFFF (not persisted). */
  noFreelist: boolean;
  /** High-water mark: number of pages in use. */
  hwm: number;
  txid: number;
  checksumStored: bigint;
  checksumComputed: bigint;
  /** Null when valid, else why bbolt's meta.validate() rejects it. */
  invalid: string | null;
}

/** Parses and validates (like bbolt's meta.validate) the meta page at `off` (page start). */
export function parseMeta(b: Uint8Array, off: number, page: number): MetaInfo {
  const m = off + META_BODY_OFFSET;
  if (b.length < m + META_SIZE) {
    return {
      page, magic: b.length >= m + 4 ? u32(b, m) : 0, version: 0, pageSize: 0, flags: 0, root: 0, freelist: 0, noFreelist: false,
      hwm: 0, txid: 0, checksumStored: 0n, checksumComputed: 0n, invalid: 'meta page is incomplete (file too short)',
    };
  }
  const info: MetaInfo = {
    page,
    magic: u32(b, m),
    version: u32(b, m + 4),
    pageSize: u32(b, m + 8),
    flags: u32(b, m + 12),
    root: u64(b, m + 16),
    freelist: u64(b, m + 32),
    noFreelist: u32(b, m + 32) === 0xffffffff && u32(b, m + 36) === 0xffffffff,
    hwm: u64(b, m + 40),
    txid: u64(b, m + 48),
    checksumStored: readU64Big(b, m + 56),
    checksumComputed: fnv1a64(b, m, m + META_CHECKSUMMED),
    invalid: null,
  };
  if (info.magic !== MAGIC) {
    info.invalid = `bad magic 0x${info.magic.toString(16).padStart(8, '0')} (expected 0x${MAGIC.toString(16)})`;
  } else if (info.version !== VERSION) {
    info.invalid = `unsupported bbolt format version ${info.version} (expected ${VERSION})`;
  } else if (info.checksumStored !== info.checksumComputed) {
    info.invalid =
      `checksum mismatch (stored 0x${info.checksumStored.toString(16).padStart(16, '0')}, ` +
      `computed 0x${info.checksumComputed.toString(16).padStart(16, '0')})`;
  } else if (info.pageSize < MIN_PAGE_SIZE || info.pageSize > MAX_PAGE_SIZE) {
    info.invalid = `unsupported page size ${info.pageSize}`;
  }
  return info;
}

/**
 * etcd's revision key: 8-byte big-endian main revision, '_', 8-byte big-endian
 * sub revision, optional 't' (tombstone). Returns the main revision.
 */
export function mainRevision(key: Uint8Array): number {
  return key.length < 8 ? 0 : beU64(key, 0);
}

/** Big-endian u64 at b[o] as a number (exact below 2^53). */
export function beU64(b: Uint8Array, o: number): number {
  const hi = ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;
  const lo = ((b[o + 4]! << 24) | (b[o + 5]! << 16) | (b[o + 6]! << 8) | b[o + 7]!) >>> 0;
  return hi * 0x100000000 + lo;
}

/**
 * etcd 3.6 `schema.ReadStorageVersionFromSnapshot`: the value parsed as semver
 * (coreos/go-semver) and printed back; undefined when absent or not semver.
 */
export function storageVersionString(v: Uint8Array | undefined): string | undefined {
  if (!v) return undefined;
  const s = Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('latin1');
  const id = '[0-9A-Za-z-]+(?:\\.[0-9A-Za-z-]+)*';
  const m = new RegExp(`^(\\d+)\\.(\\d+)\\.(\\d+)(?:-(${id}))?(?:\\+(${id}))?$`).exec(s);
  if (!m) return undefined;
  let out = `${Number(m[1])}.${Number(m[2])}.${Number(m[3])}`;
  if (m[4]) out += `-${m[4]}`;
  if (m[5]) out += `+${m[5]}`;
  return out;
}
