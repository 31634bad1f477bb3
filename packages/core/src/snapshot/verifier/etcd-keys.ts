/**
 * etcd's `key` bucket: what `etcdutl snapshot status` (v3.6) derives from it.
 *
 * etcdutl 3.6 computes TotalKey as the number of *live* user keys: it walks the
 * `key` bucket in revision order, unmarshals each value as mvccpb.KeyValue and
 * adds kv.Key to a set for a put, removes it for a tombstone; TotalKey is the
 * final set size. It fails when a key is not a revision (17 bytes, or 18 with a
 * mark byte; '_' at 8; non-negative main/sub) or a value does not unmarshal.
 *
 * A set of all keys is not bounded memory, and pages arrive out of key order,
 * so we count generations instead. A key's history is a sequence of
 * generations: puts with version 1, 2, …, n, ended by a tombstone (except the
 * current one). Compaction at revision C (etcd 3.6 keyIndex.compact) drops the
 * generations whose tombstone is < C and keeps, of the first generation whose
 * tombstone is ≥ C (or the current one), only the latest record ≤ C — a put, or
 * the tombstone itself when it is exactly at C. Hence after a completed compaction:
 *   - every put ≤ C is the first present record of its generation; a tombstone
 *     ≤ C has no present put before it (etcdutl's delete is a no-op);
 *   - a record > C starts a present generation iff it is a put with version 1;
 *   - every tombstone > C ends exactly one present generation.
 * So  live = #puts(≤ C) + Σ_{records > C} ([version = 1] − [tombstone]),
 * which decomposes per leaf page. With s = [version = 1] − [tombstone] and
 * D = 1 − [version = 1], a page contributes  Σ s + Σ_{main ≤ C} D.
 *
 * C is meta/finishedCompactRev (0 when never compacted). A snapshot taken while
 * a compaction was still running (meta/scheduledCompactRev > finished) holds a
 * partially compacted bucket; the count is then approximate (hash, revision
 * and everything else stay exact).
 */

/** Value of the last varint read by readVarint. */
let vpos = 0;

/** Reads a protobuf varint at b[i..end). Returns the value (exact below 2^53), -1 on EOF, -2 on overflow; sets vpos. */
function readVarint(b: Uint8Array, i: number, end: number): number {
  let result = 0;
  let mul = 1;
  for (let shift = 0; ; shift += 7) {
    if (shift >= 64) return -2;
    if (i >= end) return -1;
    const c = b[i++]!;
    result += (c & 0x7f) * mul;
    mul *= 128;
    if (c < 0x80) break;
  }
  vpos = i;
  return result;
}

/** Error of the last kvVersion call that returned -1. */
export let kvError = '';

function fail(msg: string): number {
  kvError = msg;
  return -1;
}

/** gogo-protobuf skipKv: skips one (possibly group) field at i; returns the index after it or -1. */
function skipField(b: Uint8Array, i: number, end: number): number {
  let depth = 0;
  while (i < end) {
    const wire = readVarint(b, i, end);
    if (wire < 0) return fail(wire === -1 ? 'unexpected EOF' : 'integer overflow');
    i = vpos;
    const wt = wire % 8;
    switch (wt) {
      case 0: {
        for (let shift = 0; ; shift += 7) {
          if (shift >= 64) return fail('integer overflow');
          if (i >= end) return fail('unexpected EOF');
          if (b[i++]! < 0x80) break;
        }
        break;
      }
      case 1:
        i += 8;
        break;
      case 2: {
        const len = readVarint(b, i, end);
        if (len < 0) return fail(len === -1 ? 'unexpected EOF' : 'integer overflow');
        if (len >= 2 ** 63) return fail('invalid length');
        i = vpos + len;
        break;
      }
      case 3:
        depth++;
        break;
      case 4:
        if (depth === 0) return fail('unexpected end of group');
        depth--;
        break;
      case 5:
        i += 4;
        break;
      default:
        return fail(`illegal wireType ${wt}`);
    }
    if (depth === 0) return i;
  }
  return fail('unexpected EOF');
}

/**
 * Unmarshals mvccpb.KeyValue at b[o..end) the way the generated gogo code does
 * (same error cases) and returns its `version` field (0 when absent), or -1
 * with kvError set.
 */
export function kvVersion(b: Uint8Array, o: number, end: number): number {
  let i = o;
  let version = 0;
  while (i < end) {
    const pre = i;
    const wire = readVarint(b, i, end);
    if (wire < 0) return fail(wire === -1 ? 'unexpected EOF' : 'integer overflow');
    i = vpos;
    const wt = wire % 8;
    const field = Math.floor(wire / 8);
    if (wt === 4) return fail('wiretype end group for non-group');
    if (field <= 0 || field > 0x7fffffff) return fail(`illegal tag ${field} (wire type ${wt})`);
    switch (field) {
      case 1: // key
      case 5: {
        // value
        if (wt !== 2) return fail(`wrong wireType = ${wt} for field ${field === 1 ? 'Key' : 'Value'}`);
        const len = readVarint(b, i, end);
        if (len < 0) return fail(len === -1 ? 'unexpected EOF' : 'integer overflow');
        if (len >= 2 ** 63) return fail('invalid length');
        i = vpos + len;
        if (i > end) return fail('unexpected EOF');
        break;
      }
      case 2:
      case 3:
      case 4:
      case 6: {
        if (wt !== 0) return fail(`wrong wireType = ${wt} for field ${['', '', 'CreateRevision', 'ModRevision', 'Version', '', 'Lease'][field]}`);
        const v = readVarint(b, i, end);
        if (v < 0) return fail(v === -1 ? 'unexpected EOF' : 'integer overflow');
        i = vpos;
        if (field === 4) version = v;
        break;
      }
      default: {
        const next = skipField(b, pre, end);
        if (next < 0) return -1;
        if (next > end) return fail('unexpected EOF');
        i = next;
      }
    }
  }
  return version;
}

/** Why key b[k0..k0+ks) is not an etcd revision key (null when it is). Mirrors mvcc.BytesToBucketKey's panics. */
export function revisionKeyProblem(b: Uint8Array, k0: number, ks: number): string | null {
  if (ks !== 17 && ks !== 18) return `invalid revision length: ${ks}`;
  if (b[k0 + 8] !== 0x5f) return `invalid separator in bucket key: 0x${b[k0 + 8]!.toString(16)}`;
  if (b[k0]! >= 0x80 || b[k0 + 9]! >= 0x80) return 'negative revision';
  return null;
}

/** Appends a non-negative integer (< 2^53) as a varint. */
export function putVarint(out: { buf: Uint8Array; len: number; reserve(n: number): void }, v: number): void {
  out.reserve(8);
  const d = out.buf;
  let o = out.len;
  while (v >= 0x80) {
    d[o++] = (v % 128) | 0x80;
    v = Math.floor(v / 128);
  }
  d[o++] = v;
  out.len = o;
}

/** Reads a varint written by putVarint at b[i]; the index after it is left in `varintEnd`. */
export let varintEnd = 0;
export function getVarint(b: Uint8Array, i: number): number {
  let result = 0;
  let mul = 1;
  for (;;) {
    const c = b[i++]!;
    result += (c & 0x7f) * mul;
    if (c < 0x80) break;
    mul *= 128;
  }
  varintEnd = i;
  return result;
}
