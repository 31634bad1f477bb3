/**
 * Which etcd cluster an imported snapshot belongs to, and whether that is this cluster: the same
 * rule `quorum` applies to a restore point (recovery/restore-point.ts): against the cluster IDs
 * of the backups already in the catalog, of the cluster's recoveries and of its live members.
 */
import { EtcdRecoverError } from '../../errors.js';
import type { SnapshotRecord } from '../catalog.js';
import type { MemberList } from './members.js';

export interface ClusterIdentity {
  /** etcd cluster ID (hex); '' when unknown. */
  clusterId: string;
  /** Where it came from. */
  from: 'given' | 'members' | 'backups' | 'unknown';
  /** One line for the record's notes. */
  note: string;
  /** Set when it is not this cluster's (or cannot be told): the reason. */
  foreign?: string;
}

const hexId = (s: string): string => {
  const t = s.trim().toLowerCase().replace(/^0x/, '');
  if (!/^[0-9a-f]{1,16}$/.test(t)) throw new EtcdRecoverError('USAGE', `--cluster-id ${s} is not an etcd cluster ID (up to 16 hex digits)`, { hint: 'etcdctl endpoint status -w json prints it as cluster_id (decimal): give it in hex' });
  return BigInt(`0x${t}`).toString(16);
};

export function identify(o: {
  given?: string;
  members: MemberList | undefined;
  membersProblem?: string;
  backups: readonly SnapshotRecord[];
  /** Other IDs this cluster had or has: its recoveries' (a restore changes the ID), the live cluster's. */
  lineage?: readonly string[];
}): ClusterIdentity {
  const known = new Set([...o.backups.map((b) => b.clusterId), ...(o.lineage ?? [])].filter(Boolean));
  const knownList = [...known].join(', ');
  const judge = (id: string): string | undefined =>
    known.size && !known.has(id) ? `its etcd cluster ID ${id || '(unknown)'} is none this cluster had (its backups', recoveries' and live members': ${knownList})` : undefined;
  if (o.given !== undefined) {
    const id = hexId(o.given);
    const foreign = judge(id);
    return { clusterId: id, from: 'given', note: `cluster ID ${id} given with --cluster-id`, ...(foreign ? { foreign } : {}) };
  }
  const m = o.members;
  if (!m) {
    const why = `cluster ID unknown: the snapshot's member list could not be read (${o.membersProblem ?? 'unknown reason'})`;
    return { clusterId: '', from: 'unknown', note: why, ...(known.size ? { foreign: `${why}, so it cannot be told apart from another cluster's` } : {}) };
  }
  const derived = m.derivedClusterId;
  if (!known.size || known.has(derived)) {
    return { clusterId: derived, from: 'members', note: `cluster ID ${derived} derived from the snapshot's ${m.ids.length} member(s) (${m.names.join(', ') || m.ids.join(', ')})` };
  }
  // Members added or removed since bootstrap change the list, not the ID: a shared member ID (a hash
  // of the member's peer URLs and the cluster token) still names the same cluster.
  const ids = new Set(m.ids);
  const same = o.backups.find((b) => b.clusterId && b.sourceMember.id && ids.has(b.sourceMember.id.toLowerCase().replace(/^0+(?=.)/, '')));
  if (same) {
    return {
      clusterId: same.clusterId,
      from: 'backups',
      note: `cluster ID ${same.clusterId} of backup ${same.name}, whose source member ${same.sourceMember.id} is in the snapshot's member list (the list alone gives ${derived}: members changed since bootstrap)`,
    };
  }
  return { clusterId: derived, from: 'members', note: `cluster ID ${derived} derived from the snapshot's ${m.ids.length} member(s)`, foreign: judge(derived)! };
}

export function foreignError(what: string, reason: string): EtcdRecoverError {
  return new EtcdRecoverError('SNAPSHOT_FOREIGN', `${what} belongs to another cluster: ${reason}`, {
    hint: 'import it into the catalog of the cluster it came from (--cluster), name its ID with --cluster-id, or pass --force-foreign if you really mean to keep it here',
  });
}
