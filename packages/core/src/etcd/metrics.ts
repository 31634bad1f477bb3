/**
 * etcd's own view of itself from its Prometheus metrics (`/metrics` on the metrics listener). That
 * listener answers as soon as the process runs — before the member can serve clients, which needs a
 * quorum — so it is how a restarted survivor without a leader can be seen at all.
 */
export interface MetricsView {
  hasLeader: boolean;
  isLeader: boolean;
  isLearner: boolean;
  revision: number;
  raftIndex: number;
  dbSize: number;
}

/**
 * The etcd metrics read here, by field. The names are the same on etcd 3.5, 3.6 and 3.7 (3.6 moved
 * is_learner's definition and the mvcc package, not the names); test/integration/etcd-versions.test.ts
 * checks each of them on every minor of the matrix, since a missing one would silently read as 0.
 */
export const ETCD_METRICS = {
  hasLeader: 'etcd_server_has_leader',
  isLeader: 'etcd_server_is_leader',
  isLearner: 'etcd_server_is_learner',
  revision: 'etcd_debugging_mvcc_current_revision',
  raftIndex: 'etcd_server_proposals_committed_total',
  dbSize: 'etcd_mvcc_db_total_size_in_bytes',
} as const;

export function parseEtcdMetrics(text: string): MetricsView {
  const metric = (name: string) => {
    const r = new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.e+-]+)$`, 'm').exec(text);
    return r ? Number(r[1]) : 0;
  };
  return {
    hasLeader: metric(ETCD_METRICS.hasLeader) === 1,
    isLeader: metric(ETCD_METRICS.isLeader) === 1,
    isLearner: metric(ETCD_METRICS.isLearner) === 1,
    revision: metric(ETCD_METRICS.revision),
    raftIndex: metric(ETCD_METRICS.raftIndex),
    dbSize: metric(ETCD_METRICS.dbSize),
  };
}

/** GETs a member's metrics (plain HTTP, as the component's members listen); undefined when it does not answer. */
export async function readEtcdMetrics(url: string, timeoutMs = 2_000): Promise<MetricsView | undefined> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    if (!res.ok) return undefined;
    const text = await res.text();
    return text.includes(ETCD_METRICS.hasLeader) ? parseEtcdMetrics(text) : undefined;
  } catch {
    return undefined;
  }
}
