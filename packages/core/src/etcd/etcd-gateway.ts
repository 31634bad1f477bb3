/**
 * What etcd-recover needs from etcd, one small interface per capability.
 * Only etcd3-gateway.ts (and etcd3-replication.ts, through its openEtcd3) touch the etcd3 client.
 */

/** Client TLS material for etcd (PEM bytes). */
export interface EtcdTls {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
}

export interface EtcdConnection {
  /** Client URLs, e.g. http://127.0.0.1:2379. */
  endpoints: string[];
  tls?: EtcdTls;
  /** Per-call timeout; default 5 s (snapshots use their own, longer limit). */
  timeoutMs?: number;
}

/** Member IDs are hex strings, as etcdctl prints them. */
export interface MemberStatus {
  endpoint: string;
  memberId: string;
  clusterId: string;
  leaderId: string;
  isLeader: boolean;
  isLearner: boolean;
  revision: number;
  raftIndex: number;
  raftAppliedIndex: number;
  raftTerm: number;
  dbSize: number;
  dbSizeInUse: number;
  version: string;
  errors: string[];
}

export interface EtcdMember {
  id: string;
  name: string;
  peerURLs: string[];
  clientURLs: string[];
  isLearner: boolean;
}

export interface MemberList {
  clusterId: string;
  members: EtcdMember[];
}

export interface Alarm {
  memberId: string;
  alarm: string;
}

/** A response header seen on a snapshot stream (etcd 3.6 may send none: do not depend on it). */
export interface SnapshotHeader {
  clusterId: string;
  memberId: string;
  revision: number;
  raftTerm: number;
}

export interface SnapshotStream extends AsyncIterable<Buffer> {
  /** Resolves with the first response header seen; rejects at the end of the stream if etcd sent none. */
  readonly header: Promise<SnapshotHeader>;
  /** Remaining bytes etcd announced with the first chunk (total size estimate), if any. */
  readonly expectedBytes: Promise<number | undefined>;
}

export interface EtcdMaintenance {
  status(endpoint: string, signal?: AbortSignal): Promise<MemberStatus>;
  alarms(signal?: AbortSignal): Promise<Alarm[]>;
  /** Streams a snapshot from exactly this member. Ends with etcd's 32-byte sha256 trailer. */
  snapshot(endpoint: string, signal?: AbortSignal): SnapshotStream;
  defragment(endpoint: string, signal?: AbortSignal): Promise<void>;
  /** HashKV of one member's MVCC keyspace up to a revision: equal on members that hold the same data. */
  hashKV(endpoint: string, revision: number, signal?: AbortSignal): Promise<number>;
}

export interface EtcdMembership {
  list(signal?: AbortSignal): Promise<MemberList>;
  add(peerURLs: string[], opts: { learner: boolean }, signal?: AbortSignal): Promise<EtcdMember>;
  remove(memberId: string, signal?: AbortSignal): Promise<void>;
  promote(memberId: string, signal?: AbortSignal): Promise<void>;
}

export interface EtcdKv {
  get(key: string, signal?: AbortSignal): Promise<string | undefined>;
  /** Number of keys under a prefix ("" = the whole keyspace), linearizable. */
  /** Keys under the prefix; at `revision` when given (the keyspace as it was then). */
  count(prefix: string, signal?: AbortSignal, revision?: number): Promise<number>;
}

export interface EtcdGateway extends EtcdMaintenance, EtcdMembership {
  readonly endpoints: readonly string[];
  readonly kv: EtcdKv;
  close(): void;
}

/** etcd returns IDs as decimal strings; etcdctl and our records use hex. */
export function idToHex(id: string | number | bigint): string {
  return BigInt(id).toString(16);
}

export function hexToId(hex: string): string {
  return BigInt('0x' + hex).toString(10);
}
