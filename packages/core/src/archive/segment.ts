/**
 * A segment: a contiguous run of revisions of one archive chain, as one object in the bucket.
 *
 *   clusters/<cluster>/archive/<chain>/<first>-<last>-<firstMs>-<lastMs>.seg
 *
 * (revisions zero-padded to 16 digits, times in ms since the epoch, so a listing alone gives every
 * segment's range and an ordered walk). The body is gzip'd NDJSON — a header line, one line per
 * revision, a trailer line with the sha256 of every byte before it — age-encrypted when the backups
 * are. It is written with one PUT, so it is in the bucket complete or not at all; decoding checks
 * the trailer, the header against the name, and that the revisions run first..last without a hole.
 */
import { createHash } from 'node:crypto';
import { gunzipSync, gzipSync } from 'node:zlib';
import { EtcdRecoverError } from '../errors.js';
import type { KvEvent, RevisionBatch } from '../etcd/replication.js';

export const SEGMENT_FORMAT = 1;

export interface SegmentRef {
  key: string;
  chain: string;
  first: number;
  last: number;
  firstAt: number;
  lastAt: number;
  size: number;
}

const pad = (n: number) => String(n).padStart(16, '0');
const NAME = /^(\d{16})-(\d{16})-(\d{13,})-(\d{13,})\.seg$/;

export function segmentName(first: number, last: number, firstAt: number, lastAt: number): string {
  return `${pad(first)}-${pad(last)}-${firstAt}-${lastAt}.seg`;
}

export function parseSegmentName(chain: string, key: string, size: number): SegmentRef | undefined {
  const m = NAME.exec(key.slice(key.lastIndexOf('/') + 1));
  if (!m) return undefined;
  return { key, chain, first: Number(m[1]), last: Number(m[2]), firstAt: Number(m[3]), lastAt: Number(m[4]), size };
}

type PutRow = ['p', string, string, number, number, string?];
type DelRow = ['d', string];

/** One revision per line: r, t (ms), e (puts: key, value (base64), create revision, version, lease; deletes: key). */
function row(b: RevisionBatch): string {
  const e = b.events.map((x): PutRow | DelRow =>
    x.type === 'delete'
      ? ['d', x.key.toString('base64')]
      : (['p', x.key.toString('base64'), (x.value ?? Buffer.alloc(0)).toString('base64'), x.createRevision ?? 0, x.version ?? 0, ...(x.lease ? [x.lease] : [])] as PutRow),
  );
  return JSON.stringify({ r: b.revision, t: b.at, e });
}

export interface SegmentHeader {
  format: number;
  cluster: string;
  chain: string;
  first: number;
  last: number;
  firstAt: number;
  lastAt: number;
  revisions: number;
  events: number;
  /** Granted TTLs (s) of the leases first seen in this segment: what the replay grants them with. */
  leases: Record<string, number>;
}

/** The plaintext (gzip'd) body of a segment holding these batches, in order and contiguous. */
export function encodeSegment(o: { cluster: string; chain: string; batches: readonly RevisionBatch[]; leases: Record<string, number> }): Buffer {
  const b = o.batches;
  if (!b.length) throw new EtcdRecoverError('INTERNAL', 'a segment needs at least one revision');
  for (let i = 1; i < b.length; i++) {
    if (b[i]!.revision !== b[i - 1]!.revision + 1) throw new EtcdRecoverError('INTERNAL', `segment revisions jump from ${b[i - 1]!.revision} to ${b[i]!.revision}`);
  }
  const header: SegmentHeader = {
    format: SEGMENT_FORMAT,
    cluster: o.cluster,
    chain: o.chain,
    first: b[0]!.revision,
    last: b[b.length - 1]!.revision,
    firstAt: b[0]!.at,
    lastAt: b[b.length - 1]!.at,
    revisions: b.length,
    events: b.reduce((n, x) => n + x.events.length, 0),
    leases: o.leases,
  };
  const body = [JSON.stringify(header), ...b.map(row)].join('\n') + '\n';
  const sha256 = createHash('sha256').update(body).digest('hex');
  return gzipSync(body + JSON.stringify({ sha256 }) + '\n', { level: 1 });
}

export interface DecodedSegment {
  header: SegmentHeader;
  batches: RevisionBatch[];
}

/** Decodes and checks a segment body (plaintext gzip). Any defect is SNAPSHOT_CORRUPT naming the segment. */
export function decodeSegment(gz: Buffer, ref: Pick<SegmentRef, 'key' | 'first' | 'last'>): DecodedSegment {
  const corrupt = (why: string) =>
    new EtcdRecoverError('SNAPSHOT_CORRUPT', `archive segment ${ref.key} (revisions ${ref.first}-${ref.last}) ${why}`, {
      hint: 'a point in time before this segment can still be restored; the revisions it covers cannot be restored from this chain',
    });
  let text: string;
  try {
    text = gunzipSync(gz).toString('utf8');
  } catch (e) {
    throw corrupt(`cannot be decompressed: ${(e as Error).message}`);
  }
  const end = text.lastIndexOf('\n', text.length - 2);
  if (end < 0) throw corrupt('has no trailer');
  const body = text.slice(0, end + 1);
  let trailer: { sha256?: string };
  try {
    trailer = JSON.parse(text.slice(end + 1));
  } catch {
    throw corrupt('has a damaged trailer');
  }
  const sha = createHash('sha256').update(body).digest('hex');
  if (trailer.sha256 !== sha) throw corrupt(`fails its checksum (sha256 ${sha}, the trailer says ${trailer.sha256 ?? 'nothing'})`);
  const lines = body.split('\n');
  lines.pop();
  const header = JSON.parse(lines[0]!) as SegmentHeader;
  if (header.format !== SEGMENT_FORMAT) throw corrupt(`has format ${header.format}; this tool reads format ${SEGMENT_FORMAT}`);
  if (header.first !== ref.first || header.last !== ref.last) throw corrupt(`holds revisions ${header.first}-${header.last}, not what its name says`);
  const batches: RevisionBatch[] = [];
  for (const l of lines.slice(1)) {
    const r = JSON.parse(l) as { r: number; t: number; e: (PutRow | DelRow)[] };
    const events = r.e.map((x): KvEvent =>
      x[0] === 'd'
        ? { type: 'delete', key: Buffer.from(x[1], 'base64') }
        : { type: 'put', key: Buffer.from(x[1], 'base64'), value: Buffer.from(x[2], 'base64'), createRevision: x[3], version: x[4], ...(x[5] ? { lease: x[5] } : {}) },
    );
    batches.push({ revision: r.r, at: r.t, events });
  }
  if (batches.length !== header.last - header.first + 1 || batches.some((b, i) => b.revision !== header.first + i)) throw corrupt('does not hold every revision of its range');
  return { header, batches };
}
