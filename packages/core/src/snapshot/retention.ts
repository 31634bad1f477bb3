import { EtcdRecoverError } from '../errors.js';
import { isVerified, type SnapshotRecord } from './catalog.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

/**
 * Which snapshots to keep. A snapshot is kept when any rule keeps it:
 *   keepLast       the N newest, whatever their age                 (default 3)
 *   keepAllWithin  every snapshot younger than this                   (default 6 h)
 *   hourlyWithin   the newest of each UTC hour younger than this      (default 24 h)
 *   dailyWithin    the newest of each UTC day younger than this       (default 7 d)
 *   weeklyWithin   the newest of each week younger than this          (default 30 d)
 *   maxCount       then, at most this many in all: the oldest kept ones go first (default: no cap)
 * The newest verified snapshot is always kept, whatever the rules say: it is the restore point.
 * Durations are milliseconds; 0 turns a rule off.
 */
export interface RetentionPolicy {
  keepLast: number;
  keepAllWithin: number;
  hourlyWithin: number;
  dailyWithin: number;
  weeklyWithin: number;
  maxCount?: number;
}

export const DEFAULT_RETENTION: RetentionPolicy = {
  keepLast: 3,
  keepAllWithin: 6 * HOUR,
  hourlyWithin: DAY,
  dailyWithin: 7 * DAY,
  weeklyWithin: 30 * DAY,
};

export function validateRetention(p: RetentionPolicy): void {
  for (const [k, v] of Object.entries(p)) {
    if (v !== undefined && (!Number.isFinite(v) || v < 0)) throw new EtcdRecoverError('CONFIG', `retention ${k} must be a non-negative number, got ${v}`);
  }
  if (p.maxCount !== undefined && p.maxCount < 1) {
    throw new EtcdRecoverError('CONFIG', 'retention maxCount must be at least 1: a policy that keeps nothing would delete every backup');
  }
  if (p.keepLast < 1 && !p.keepAllWithin && !p.hourlyWithin && !p.dailyWithin && !p.weeklyWithin && p.maxCount === undefined) {
    throw new EtcdRecoverError('CONFIG', 'this retention policy keeps nothing but the newest verified backup; set keepLast >= 1 or a time window');
  }
}

/** "90m", "36h", "7d", "4w", or a number of hours. */
export function parseDuration(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(s|m|h|d|w)?$/.exec(text.trim());
  if (!m) throw new EtcdRecoverError('USAGE', `"${text}" is not a duration (use e.g. 90m, 36h, 7d, 4w)`);
  const n = Number(m[1]);
  const unit = m[2] ?? 'h';
  const ms = { s: 1000, m: 60_000, h: HOUR, d: DAY, w: 7 * DAY }[unit]!;
  return n * ms;
}

export interface RetentionDecision {
  name: string;
  createdAt: string;
  keep: boolean;
  reasons: string[];
}

/** Pure: decides for each snapshot (any order) whether to keep it, and why. Newest first in the result. */
export function applyRetention(snapshots: readonly SnapshotRecord[], policy: RetentionPolicy, now: Date): RetentionDecision[] {
  const sorted = [...snapshots].sort((a, b) => Date.parse(b.createdAt) - Date.parse(a.createdAt) || b.revision - a.revision);
  const t = now.getTime();
  const decisions = new Map<string, RetentionDecision>(
    sorted.map((s) => [s.name, { name: s.name, createdAt: s.createdAt, keep: false, reasons: [] }]),
  );
  const keep = (s: SnapshotRecord, why: string) => {
    const d = decisions.get(s.name)!;
    d.keep = true;
    d.reasons.push(why);
  };
  sorted.slice(0, policy.keepLast).forEach((s, i) => keep(s, `one of the ${policy.keepLast} newest (#${i + 1})`));
  const bucketRule = (within: number, size: number, label: string) => {
    if (!within) return;
    const seen = new Set<number>();
    for (const s of sorted) {
      const created = Date.parse(s.createdAt);
      if (t - created > within) continue;
      const bucket = Math.floor(created / size);
      if (seen.has(bucket)) continue;
      seen.add(bucket);
      keep(s, `newest of its ${label}`);
    }
  };
  if (policy.keepAllWithin) {
    for (const s of sorted) if (t - Date.parse(s.createdAt) <= policy.keepAllWithin) keep(s, 'within the keep-all window');
  }
  bucketRule(policy.hourlyWithin, HOUR, 'hour');
  bucketRule(policy.dailyWithin, DAY, 'day');
  bucketRule(policy.weeklyWithin, 7 * DAY, 'week');

  // The newest verified backup is the restore point: kept first, and it counts against maxCount.
  const newestVerified = sorted.find(isVerified);
  if (newestVerified) {
    const d = decisions.get(newestVerified.name)!;
    d.keep = true;
    d.reasons.push('newest verified backup (always kept)');
  }
  if (policy.maxCount !== undefined) {
    const kept = sorted.filter((s) => decisions.get(s.name)!.keep);
    let excess = kept.length - policy.maxCount;
    for (let i = kept.length - 1; i >= 0 && excess > 0; i--) {
      const s = kept[i]!;
      if (s === newestVerified) continue;
      const d = decisions.get(s.name)!;
      d.keep = false;
      d.reasons = [`over the count limit of ${policy.maxCount}`];
      excess--;
    }
  }
  for (const d of decisions.values()) if (!d.keep && !d.reasons.length) d.reasons.push('outside every retention window');
  return sorted.map((s) => decisions.get(s.name)!);
}
