/**
 * Retention over chains: a chain whose newest point is older than the archive's keep window holds no
 * point anyone may still ask for, and goes — its record first (from then on its segments are no
 * chain's: never listed, never restored), then its segments. The newest chain is never pruned. The
 * chain's base snapshot is a backup like any other from then on: the backup retention decides it.
 */
import type { Catalog } from '../snapshot/catalog.js';
import { layout } from '../layout.js';
import { listChains, type ChainInfo } from './chains.js';

export interface ChainPruneResult {
  /** Chains removed (or, in a dry run, that would be). */
  pruned: { chain: string; to: number; toAt: string; segments: number; base: string }[];
  /** The base snapshots of the chains that remain: outside the backup retention while their chain is kept. */
  protectedBases: string[];
}

export async function pruneChains(catalog: Catalog, o: { keepMs: number; now?: Date; dryRun: boolean; signal?: AbortSignal }): Promise<ChainPruneResult> {
  const now = (o.now ?? new Date()).getTime();
  const chains = await listChains(catalog.store, catalog.cluster, o.signal);
  const expired = (c: ChainInfo, i: number) => i < chains.length - 1 && now - c.toAt > o.keepMs;
  const pruned: ChainPruneResult['pruned'] = [];
  const kept: ChainInfo[] = [];
  for (const [i, c] of chains.entries()) {
    if (!expired(c, i)) {
      kept.push(c);
      continue;
    }
    pruned.push({ chain: c.record.chain, to: c.to, toAt: new Date(c.toAt).toISOString(), segments: c.segments.length, base: c.record.base.snapshot });
    if (o.dryRun) continue;
    await catalog.store.delete(layout.archiveChain(catalog.cluster, c.record.chain), o.signal);
    for await (const obj of catalog.store.list(layout.archiveChainPrefix(catalog.cluster, c.record.chain), o.signal)) await catalog.store.delete(obj.key, o.signal);
  }
  return { pruned, protectedBases: kept.map((c) => c.record.base.snapshot) };
}
