import { summarize, type MemberObservation } from '@etcd-recover/core';

/** Three members as a topology declares them. */
export const threeMembers = ['etcd-0', 'etcd-1', 'etcd-2'].map((name, i) => ({ name, peerURL: `http://10.0.0.${i}:2380`, clientURL: `http://10.0.0.${i}:2379` }));

/**
 * An observation of those members: the ones named answer (without a leader) at the given revision and
 * have data; the others are gone with their data. For decisions whose input state a real cluster cannot
 * be put in on demand (e.g. a survivor that answers with data older than the newest backup).
 */
export function observeMembers(alive: Record<string, number | undefined>): ReturnType<typeof summarize> {
  const ms: MemberObservation[] = threeMembers.map((m) => {
    const rev = alive[m.name];
    return rev === undefined
      ? { ...m, running: false, hasData: false, error: 'connection refused' }
      : { ...m, running: true, hasData: true, status: { endpoint: m.clientURL, memberId: m.name, clusterId: 'c1', leaderId: '0', isLeader: false, isLearner: false, revision: rev, raftIndex: 1, raftAppliedIndex: 1, raftTerm: 1, dbSize: 1, dbSizeInUse: 1, version: '3.6.16', errors: [] } };
  });
  return summarize(ms);
}
