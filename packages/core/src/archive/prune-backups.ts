import { Catalog } from '../snapshot/catalog.js';
import { pruneChains, type ChainPruneResult } from './prune.js';
import { applyRetention, pendingSuspects, validateRetention, type RetentionDecision, type RetentionPolicy } from '../snapshot/retention.js';

export interface PruneResult {
  dryRun: boolean;
  decisions: RetentionDecision[];
  deleted: string[];
  /** Snapshot objects without a record (interrupted uploads) older than the grace period. */
  incompleteDeleted: string[];
  kept: number;
  /** Unconfirmed suspect backups newer than the newest trusted one (newest first): every trusted backup is kept while any is listed. */
  suspects: string[];
  /** Archive chains past the archive's keep window (archive/prune.ts). */
  chains: ChainPruneResult['pruned'];
}

export interface PruneOptions {
  policy: RetentionPolicy;
  dryRun: boolean;
  now?: Date;
  /** Incomplete uploads younger than this are left alone (an upload may be in progress). Default 1 h. */
  incompleteGraceMs?: number;
  /** The point-in-time window: chains whose newest point is older go (default 7 days). */
  archiveKeepMs?: number;
  signal?: AbortSignal;
  onDelete?: (name: string) => void;
}

export async function pruneSnapshots(catalog: Catalog, opts: PruneOptions): Promise<PruneResult> {
  validateRetention(opts.policy);
  const now = opts.now ?? new Date();
  // Chains first: the bases of the chains that remain are outside the backup retention.
  const chains = await pruneChains(catalog, { keepMs: opts.archiveKeepMs ?? 7 * 86_400_000, now, dryRun: opts.dryRun, ...(opts.signal ? { signal: opts.signal } : {}) });
  const listing = await catalog.list(opts.signal);
  const decisions = applyRetention(listing.snapshots, opts.policy, now, new Set(chains.protectedBases));
  const grace = opts.incompleteGraceMs ?? 3_600_000;
  const stale = listing.incomplete.filter((o) => o.lastModified && now.getTime() - o.lastModified.getTime() > grace).map((o) => o.name);
  const deleted: string[] = [];
  const incompleteDeleted: string[] = [];
  if (!opts.dryRun) {
    for (const d of decisions) {
      if (d.keep) continue;
      await catalog.delete(d.name, opts.signal);
      opts.onDelete?.(d.name);
      deleted.push(d.name);
    }
    for (const name of stale) {
      await catalog.deleteIncomplete(name, opts.signal);
      incompleteDeleted.push(name);
    }
  }
  return {
    dryRun: opts.dryRun,
    decisions,
    deleted: opts.dryRun ? decisions.filter((d) => !d.keep).map((d) => d.name) : deleted,
    incompleteDeleted: opts.dryRun ? stale : incompleteDeleted,
    kept: decisions.filter((d) => d.keep).length,
    suspects: pendingSuspects(listing.snapshots).map((s) => s.name),
    chains: chains.pruned,
  };
}
