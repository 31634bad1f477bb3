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

export function parseEtcdMetrics(text: string): MetricsView {
  const metric = (name: string) => {
    const r = new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.e+-]+)$`, 'm').exec(text);
    return r ? Number(r[1]) : 0;
  };
  return {
    hasLeader: metric('etcd_server_has_leader') === 1,
    isLeader: metric('etcd_server_is_leader') === 1,
    isLearner: metric('etcd_server_is_learner') === 1,
    revision: metric('etcd_debugging_mvcc_current_revision'),
    raftIndex: metric('etcd_server_proposals_committed_total'),
    dbSize: metric('etcd_mvcc_db_total_size_in_bytes'),
  };
}

/** GETs a member's metrics (plain HTTP, as the component's members listen); undefined when it does not answer. */
export async function readEtcdMetrics(url: string, timeoutMs = 2_000): Promise<MetricsView | undefined> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    if (!res.ok) return undefined;
    const text = await res.text();
    return text.includes('etcd_server_has_leader') ? parseEtcdMetrics(text) : undefined;
  } catch {
    return undefined;
  }
}
