/**
 * `backup history KEY`: when a key was created, changed and deleted, read from the archive — so the
 * revision just before a mistake is one command away.
 */
import type { Catalog } from '../snapshot/catalog.js';
import { listChains } from './chains.js';
import { readSegment } from './segment-io.js';

export interface HistoryRow {
  key: string;
  revision: number;
  /** When the archiver saw the revision (ISO). */
  at: string;
  change: 'created' | 'changed' | 'deleted';
  /** Bytes of the value after the change (0 for a delete). */
  size: number;
  version?: number;
  chain: string;
}

/** The changes found, oldest first; a segment that cannot be read is skipped and named in `unreadable`. */
export async function keyHistory(o: { catalog: Catalog; key: string; prefix?: boolean; signal?: AbortSignal; limit?: number; unreadable?: string[] }): Promise<HistoryRow[]> {
  const want = Buffer.from(o.key);
  const match = (k: Buffer) => (o.prefix ? k.subarray(0, want.length).equals(want) : k.equals(want));
  const rows: HistoryRow[] = [];
  for (const chain of await listChains(o.catalog.store, o.catalog.cluster, o.signal)) {
    for (const ref of chain.segments) {
      let seg;
      try {
        seg = await readSegment(o.catalog, ref, o.signal);
      } catch (e) {
        if (o.signal?.aborted) throw e;
        o.unreadable?.push(`${ref.key} (revisions ${ref.first}-${ref.last}): ${(e as Error).message}`);
        continue;
      }
      for (const b of seg.batches) {
        for (const e of b.events) {
          if (!match(e.key)) continue;
          rows.push({
            key: e.key.toString('utf8'),
            revision: b.revision,
            at: new Date(b.at).toISOString(),
            change: e.type === 'delete' ? 'deleted' : e.version === 1 ? 'created' : 'changed',
            size: e.value?.length ?? 0,
            ...(e.version ? { version: e.version } : {}),
            chain: chain.record.chain,
          });
        }
      }
    }
  }
  return o.limit ? rows.slice(-o.limit) : rows;
}
