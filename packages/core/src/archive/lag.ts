import { layout } from '../layout.js';
import { readJson, type ObjectStore } from '../store/object-store.js';
import type { ArchiveStatus } from './archiver.js';

export interface ArchiveLag extends ArchiveStatus {
  /** Revisions etcd holds that the archive does not yet (0 when it is caught up or etcd is unknown). */
  lagRevisions: number;
  /** How old the oldest write not yet archived can be: 0 when caught up, else the time since the last archived one was seen. */
  lagSeconds: number;
  /** The archiver has not reported for longer than it should (it reports at least every 10 s). */
  stale: boolean;
}

/**
 * How far behind the archive is, from the archiver's own report (archive-status.json) and etcd's
 * newest revision when known. Undefined when no archiver ever reported for this cluster.
 */
export async function archiveLag(store: ObjectStore, cluster: string, o: { liveRevision?: number | undefined; now?: Date; staleAfterMs?: number; signal?: AbortSignal } = {}): Promise<ArchiveLag | undefined> {
  const got = await readJson<ArchiveStatus>(store, layout.archiveStatus(cluster), o.signal).catch(() => undefined);
  if (!got) return undefined;
  const s = got.value;
  const now = (o.now ?? new Date()).getTime();
  const lagRevisions = o.liveRevision !== undefined ? Math.max(0, o.liveRevision - s.lastRevision) : 0;
  const stale = now - Date.parse(s.flushedAt) > (o.staleAfterMs ?? 60_000);
  const lagSeconds = lagRevisions === 0 && !stale ? 0 : Math.max(0, (now - s.lastAt) / 1000);
  return { ...s, lagRevisions, lagSeconds, stale };
}
