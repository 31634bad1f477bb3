/**
 * How far to bump the revision of a full-cluster restore (etcdutl
 * --bump-revision, with --mark-compacted), so that no watcher ever sees a
 * revision go backwards and every client re-lists instead of silently missing
 * changes. Pure; see docs/design.md#revision-bump.
 *
 *   bump = max(MIN, 2 × observed gap, 2 × write rate × time since the snapshot)
 *
 * - observed gap: highest revision any member still reports, or any backup
 *   or earlier recovery of this cluster recorded, minus the snapshot's
 *   revision (an exact lower bound for what watchers may have seen);
 * - write rate: revisions per second between the recent backups in the
 *   catalog (an estimate for revisions that only lost members saw);
 * - MIN (100,000) covers an unobserved burst; the factor 2 is margin.
 * An explicit --bump-revision overrides; it may not be smaller than the
 * observed gap.
 */
export const MIN_BUMP = 100_000;

export interface BumpInput {
  snapshotRevision: number;
  snapshotCreatedAt: Date;
  now: Date;
  observedMaxRevision?: number;
  /** Revisions per second, if known. */
  rate?: number;
  override?: number;
}

export interface BumpDecision {
  bump: number;
  reason: string;
  observedGap: number;
  estimatedGap: number;
}

export function computeRevisionBump(i: BumpInput): BumpDecision {
  const observedGap = Math.max(0, (i.observedMaxRevision ?? 0) - i.snapshotRevision);
  const elapsed = Math.max(0, (i.now.getTime() - i.snapshotCreatedAt.getTime()) / 1000);
  const estimatedGap = Math.ceil((i.rate ?? 0) * elapsed);
  if (i.override !== undefined) {
    if (i.override < observedGap) {
      throw new RangeError(`--bump-revision ${i.override} is smaller than the ${observedGap} revisions a member has already seen past the snapshot`);
    }
    return { bump: i.override, reason: 'given with --bump-revision', observedGap, estimatedGap };
  }
  const candidates: [number, string][] = [
    [MIN_BUMP, `minimum of ${MIN_BUMP}`],
    [2 * observedGap, `2 × ${observedGap} revisions seen past the snapshot`],
    [2 * estimatedGap, `2 × ${estimatedGap} revisions estimated at ${(i.rate ?? 0).toFixed(1)}/s over ${Math.round(elapsed)} s`],
  ];
  const [bump, reason] = candidates.reduce((a, b) => (b[0] > a[0] ? b : a));
  return { bump, reason, observedGap, estimatedGap };
}

/** Revisions per second across recent backups (newest first), or undefined. */
export function writeRate(backups: { revision: number; createdAt: string }[]): number | undefined {
  if (backups.length < 2) return undefined;
  const recent = backups.slice(0, 10);
  const newest = recent[0]!;
  const oldest = recent[recent.length - 1]!;
  const dt = (Date.parse(newest.createdAt) - Date.parse(oldest.createdAt)) / 1000;
  const dr = newest.revision - oldest.revision;
  if (dt <= 0 || dr <= 0) return undefined;
  return dr / dt;
}
