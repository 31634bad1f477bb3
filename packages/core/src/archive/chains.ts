/**
 * Archive chains: a full snapshot (the base) and the segments that carry its history forward, one
 * revision after another. A chain ends where the archiver lost the thread (history compacted away
 * during an outage, a restore that began a new history): the next one starts from a new base, and the
 * time between is a gap, shown as such. What a chain can restore is [base revision, the last revision
 * before its first hole].
 */
import { randomBytes } from 'node:crypto';
import { EtcdRecoverError } from '../errors.js';
import { layout } from '../layout.js';
import { readJson, type ObjectStore } from '../store/object-store.js';
import { parseSegmentName, type SegmentRef } from './segment.js';

export const CHAIN_FORMAT = 1;

export interface ChainRecord {
  format: number;
  cluster: string;
  chain: string;
  /** etcd's cluster ID (hex) the chain follows. */
  clusterId: string;
  base: { snapshot: string; revision: number; createdAt: string };
  startedAt: string;
  /** Why a new chain began. */
  reason: 'first' | 'compacted' | 'restored' | 'rebased';
  /** The chain before it, where it ended: the gap is (previous.last, base.revision]. */
  previous?: { chain: string; last: number; lastAt?: number };
}

export interface ChainInfo {
  record: ChainRecord;
  /** The segments that continue the base without a hole, in order. */
  segments: SegmentRef[];
  /** Restorable: from the base revision to `to` (= base when no segment yet). */
  to: number;
  toAt: number;
  /** Where a segment is missing: revisions after..before-1 are not in the bucket (later segments exist). */
  hole?: { after: number; next: number };
  /** Segments past the hole (not restorable from this chain). */
  stranded: number;
}

export function newChainId(now = new Date()): string {
  return `${now.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z')}-${randomBytes(2).toString('hex')}`;
}

/** Every chain of a cluster, oldest first, with its restorable range. */
export async function listChains(store: ObjectStore, cluster: string, signal?: AbortSignal): Promise<ChainInfo[]> {
  const prefix = layout.archivePrefix(cluster);
  const byChain = new Map<string, { record?: ChainRecord; segments: SegmentRef[] }>();
  for await (const o of store.list(prefix, signal)) {
    const rel = o.key.slice(prefix.length);
    const slash = rel.indexOf('/');
    if (slash < 0) continue;
    const chain = rel.slice(0, slash);
    const entry = byChain.get(chain) ?? { segments: [] };
    byChain.set(chain, entry);
    if (rel.endsWith('/chain.json')) continue;
    const ref = parseSegmentName(chain, o.key, o.size);
    if (ref) entry.segments.push(ref);
  }
  const out: ChainInfo[] = [];
  for (const [chain, e] of byChain) {
    const got = await readJson<ChainRecord>(store, layout.archiveChain(cluster, chain), signal);
    if (!got) continue; // segments without their chain record: a chain being started (the record is written first) or debris
    out.push(walk(got.value, e.segments));
  }
  return out.sort((a, b) => a.record.startedAt.localeCompare(b.record.startedAt) || a.record.base.revision - b.record.base.revision);
}

function walk(record: ChainRecord, all: SegmentRef[]): ChainInfo {
  const sorted = [...all].sort((a, b) => a.first - b.first || b.last - a.last);
  const segments: SegmentRef[] = [];
  let covered = record.base.revision;
  let toAt = Date.parse(record.base.createdAt);
  for (const s of sorted) {
    if (s.last <= covered) continue; // a duplicate of what is covered
    if (s.first !== covered + 1) break;
    segments.push(s);
    covered = s.last;
    toAt = s.lastAt;
  }
  const rest = sorted.filter((s) => s.first > covered);
  const info: ChainInfo = { record, segments, to: covered, toAt, stranded: rest.length };
  if (rest.length) info.hole = { after: covered, next: rest[0]!.first };
  return info;
}

export type PointRequest = { revision: number } | { time: Date };

export interface ChosenPoint {
  chain: ChainInfo;
  /** The revision to restore to (for a time: the newest revision archived at or before it). */
  revision: number;
  /** The segments to replay (their last may pass the revision: the replay stops at it). */
  segments: SegmentRef[];
}

const rangeOf = (c: ChainInfo) => `chain ${c.record.chain}: revisions ${c.record.base.revision}-${c.to} (${c.record.base.createdAt} to ${new Date(c.toAt).toISOString()})`;

/**
 * The chain and segments that restore a revision, or (for a time) the chain whose range covers it;
 * the exact revision of a time is found by the caller in the segment that holds it (timeIn).
 * Refuses a point outside every chain, in a hole, or in the gap between two chains, naming what is there.
 */
export function choosePoint(chains: readonly ChainInfo[], req: PointRequest): ChosenPoint | { chain: ChainInfo; segment: SegmentRef | undefined; time: number } {
  const ranges = chains.length ? chains.map(rangeOf).join('; ') : 'none (is the archiver running? `kubectl etcd-recover status`)';
  if ('revision' in req) {
    const R = req.revision;
    const c = [...chains].reverse().find((x) => x.record.base.revision <= R && R <= x.to);
    if (!c) {
      const holed = chains.find((x) => x.hole && x.hole.after < R && R < x.hole.next);
      if (holed) {
        throw new EtcdRecoverError('NO_RESTORE_POINT', `revision ${R} cannot be restored: chain ${holed.record.chain} is missing revisions ${holed.hole!.after + 1}-${holed.hole!.next - 1} (a segment is gone or damaged); it restores up to revision ${holed.to}`, {
          hint: `restore to revision ${holed.to} or earlier (--to-revision ${holed.to}), or to a later chain`,
        });
      }
      throw new EtcdRecoverError('NO_RESTORE_POINT', `revision ${R} is in no archive chain; restorable ranges: ${ranges}`, { hint: 'choose a revision inside one of these ranges (`backup history KEY` finds one)' });
    }
    return { chain: c, revision: R, segments: c.segments.filter((s) => s.first <= R) };
  }
  const T = req.time.getTime();
  const c = [...chains].reverse().find((x) => Date.parse(x.record.base.createdAt) <= T && T <= Math.max(x.toAt, Date.parse(x.record.base.createdAt)));
  if (!c) {
    const i = chains.findIndex((x) => Date.parse(x.record.base.createdAt) > T);
    const before = i > 0 ? chains[i - 1] : i < 0 ? chains[chains.length - 1] : undefined;
    const after = i >= 0 ? chains[i] : undefined;
    const around = [before ? `the newest point before it is revision ${before.to} (${new Date(before.toAt).toISOString()})` : '', after ? `the next chain starts at revision ${after.record.base.revision} (${after.record.base.createdAt})` : '']
      .filter(Boolean)
      .join('; ');
    throw new EtcdRecoverError('NO_RESTORE_POINT', `${req.time.toISOString()} is ${before && after ? 'in the gap between two archive chains' : 'outside every archive chain'}: ${around || `restorable ranges: ${ranges}`}`, {
      hint: 'choose a time inside a chain, or name a revision (--to-revision)',
    });
  }
  const segment = c.segments.find((s) => s.firstAt <= T && T <= s.lastAt) ?? [...c.segments].reverse().find((s) => s.lastAt <= T);
  return { chain: c, segment, time: T };
}
