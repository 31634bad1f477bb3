import { EtcdRecoverError } from '../errors.js';
import { isPointInTime, isSuspect, isTrusted, isVerified, newestFirst, type SnapshotRecord } from './catalog.js';

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
 * The newest trusted snapshot (verified, not an unconfirmed suspect) is always kept, whatever the
 * rules say: it is the restore point; so is the newest verified one. While unconfirmed suspect
 * backups are newer than the newest trusted one (the keyspace collapsed), every trusted backup is
 * kept, whatever the rules and maxCount say, until one is confirmed (`backup confirm NAME`).
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
  /** Present (true) on an unconfirmed suspect backup. */
  suspect?: boolean;
}

/** Pure: decides for each snapshot (any order) whether to keep it, and why. Newest first in the result. */
export function applyRetention(all: readonly SnapshotRecord[], policy: RetentionPolicy, now: Date, chainBases?: ReadonlySet<string>): RetentionDecision[] {
  // Outside the policy, always kept: the base of an archive chain that is kept (its segments restore
  // nothing without it; without `chainBases`, every base counts as such) and point-in-time builds
  // (older data taken now: counting them would push out real backups).
  const isBase = (s: SnapshotRecord) => s.labels?.['reason'] === 'archive-base' && (!chainBases || chainBases.has(s.name));
  const outside = all.filter((s) => isPointInTime(s) || isBase(s));
  const snapshots = all.filter((s) => !outside.includes(s));
  const kept = outside.map((s) => ({
    name: s.name,
    createdAt: s.createdAt,
    keep: true,
    reasons: [isPointInTime(s) ? 'a point-in-time restore point built from the archive (outside retention: kept until removed from the bucket)' : `the base snapshot of archive chain ${s.labels?.['chain'] ?? '?'} (outside retention: the chain's segments restore nothing without it)`],
  }));
  return [...decide(snapshots, policy, now), ...kept];
}

function decide(snapshots: readonly SnapshotRecord[], policy: RetentionPolicy, now: Date): RetentionDecision[] {
  const sorted = [...snapshots].sort((a, b) => Date.parse(b.createdAt) - Date.parse(a.createdAt) || b.revision - a.revision);
  const t = now.getTime();
  const decisions = new Map<string, RetentionDecision>(
    sorted.map((s) => [s.name, { name: s.name, createdAt: s.createdAt, keep: false, reasons: [], ...(isSuspect(s) ? { suspect: true } : {}) }]),
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

  // The newest trusted backup is the restore point: kept first, and it counts against maxCount.
  const pinned = new Set<SnapshotRecord>();
  const pin = (s: SnapshotRecord | undefined, why: string) => {
    if (!s) return;
    keep(s, why);
    pinned.add(s);
  };
  const newestTrusted = sorted.find(isTrusted);
  pin(newestTrusted, 'newest verified, trusted backup: the restore point (always kept)');
  const newestVerified = sorted.find(isVerified);
  if (newestVerified !== newestTrusted) pin(newestVerified, 'newest verified backup, suspect (always kept)');
  // Suspect backups newer than every trusted one: the older trusted backups may be the only good data.
  const pending = pendingSuspects(sorted);
  if (pending.length) {
    const why = `kept while suspect backup ${pending[0]!.name}${pending.length > 1 ? ` (and ${pending.length - 1} more)` : ''} is unconfirmed: \`backup confirm ${pending[0]!.name}\` accepts it`;
    for (const s of sorted) if (isTrusted(s)) pin(s, why);
  }
  if (policy.maxCount !== undefined) {
    const kept = sorted.filter((s) => decisions.get(s.name)!.keep);
    let excess = kept.length - policy.maxCount;
    for (let i = kept.length - 1; i >= 0 && excess > 0; i--) {
      const s = kept[i]!;
      if (pinned.has(s)) continue;
      const d = decisions.get(s.name)!;
      d.keep = false;
      d.reasons = [`over the count limit of ${policy.maxCount}`];
      excess--;
    }
  }
  for (const d of decisions.values()) if (!d.keep && !d.reasons.length) d.reasons.push('outside every retention window');
  return sorted.map((s) => decisions.get(s.name)!);
}

/** Unconfirmed suspect backups newer than the newest trusted one, newest first: what blocks pruning of trusted backups. */
export function pendingSuspects(snapshots: readonly SnapshotRecord[]): SnapshotRecord[] {
  const sorted = [...snapshots].sort(newestFirst);
  const i = sorted.findIndex(isTrusted);
  return sorted.slice(0, i < 0 ? sorted.length : i).filter(isSuspect);
}
