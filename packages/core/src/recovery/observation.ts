import type { EtcdGateway, MemberStatus } from '../etcd/etcd-gateway.js';

/** A member as the topology declares it. */
export interface MemberSpec {
  name: string;
  peerURL: string;
  clientURL: string;
}

export interface MemberObservation extends MemberSpec {
  /** The process or pod exists (whether or not etcd answers). */
  running: boolean;
  /** Its data directory / volume still holds data. Undefined when the target cannot tell. */
  hasData: boolean | undefined;
  status?: MemberStatus;
  error?: string;
}

export interface ClusterObservation {
  at: string;
  members: MemberObservation[];
  /** Members that answer and see a leader. */
  healthy: string[];
  quorum: boolean;
  leader?: string;
  /** The highest revision any member reports: what watchers may have seen. */
  maxRevision?: number;
  clusterId?: string;
}

export function quorumSize(n: number): number {
  return Math.floor(n / 2) + 1;
}

/** Asks every member for its status (in parallel) and derives health and quorum. */
export async function observeMembers(
  specs: MemberSpec[],
  gateway: EtcdGateway,
  facts: (spec: MemberSpec) => Promise<{ running: boolean; hasData: boolean | undefined }>,
  signal?: AbortSignal,
): Promise<ClusterObservation> {
  const members = await Promise.all(
    specs.map(async (spec): Promise<MemberObservation> => {
      const f = await facts(spec);
      try {
        const status = await gateway.status(spec.clientURL, signal);
        return { ...spec, ...f, running: true, status };
      } catch (e) {
        return { ...spec, ...f, error: (e as Error).message };
      }
    }),
  );
  return summarize(members);
}

export function summarize(members: MemberObservation[]): ClusterObservation {
  const healthy = members.filter((m) => m.status && m.status.leaderId !== '0' && !m.status.isLearner).map((m) => m.name);
  const revisions = members.map((m) => m.status?.revision).filter((r): r is number => r !== undefined);
  const leaderId = members.find((m) => m.status && m.status.leaderId !== '0')?.status?.leaderId;
  const leader = members.find((m) => m.status?.memberId === leaderId)?.name;
  const clusterId = members.find((m) => m.status)?.status?.clusterId;
  return {
    at: new Date().toISOString(),
    members,
    healthy,
    quorum: healthy.length >= quorumSize(members.length),
    ...(leader ? { leader } : {}),
    ...(revisions.length ? { maxRevision: Math.max(...revisions) } : {}),
    ...(clusterId ? { clusterId } : {}),
  };
}
