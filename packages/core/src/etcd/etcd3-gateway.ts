import type { Etcd3, IOptions } from 'etcd3';
import { EtcdRecoverError, messageOf } from '../errors.js';
import { decodeStatusResponse, grpcSnapshot, grpcUnary } from './grpc-snapshot.js';
import { classifyTls, tlsError } from './tls-errors.js';
import {
  idToHex,
  hexToId,
  type Alarm,
  type EtcdConnection,
  type EtcdGateway,
  type EtcdKv,
  type EtcdMember,
  type MemberList,
  type MemberStatus,
  type SnapshotStream,
} from './etcd-gateway.js';

const DEFAULT_TIMEOUT_MS = 5_000;

/**
 * An etcd3 client for these hosts with the connection's TLS material. cockatiel's retry and circuit
 * breaker are disabled: callers decide what to retry (a refused connection would otherwise block a
 * client for 5 s).
 */
export async function openEtcd3(hosts: string[], conn: EtcdConnection, dialTimeoutMs = conn.timeoutMs ?? DEFAULT_TIMEOUT_MS): Promise<Etcd3> {
  const [{ Etcd3 }, { noop }] = await Promise.all([import('etcd3'), import('cockatiel')]);
  const opts: IOptions = { hosts, dialTimeout: dialTimeoutMs, faultHandling: { host: () => noop, global: noop } };
  const tls = conn.tls;
  // The scheme decides, as on the snapshot and status path: TLS material is for https:// members.
  if (tls && (tls.ca || tls.cert) && hosts.every((h) => h.startsWith('https:'))) {
    opts.credentials = {
      // No CA given: the system's roots (grpc-js reads null so), not an empty, trust-nothing bundle.
      rootCertificate: tls.ca ?? (null as unknown as Buffer),
      ...(tls.cert ? { certChain: tls.cert } : {}),
      ...(tls.key ? { privateKey: tls.key } : {}),
    };
  }
  return new Etcd3(opts);
}

/**
 * EtcdGateway over the etcd3 client. One client per endpoint, so that a call
 * goes to exactly the member asked for; cockatiel's retry and circuit breaker
 * are disabled because callers decide what to retry (a refused connection
 * would otherwise block a client for 5 s).
 */
export class Etcd3Gateway implements EtcdGateway {
  readonly endpoints: readonly string[];
  private readonly clients = new Map<string, Etcd3>();
  private readonly timeoutMs: number;

  constructor(private readonly conn: EtcdConnection) {
    if (conn.endpoints.length === 0) {
      throw new EtcdRecoverError('CONFIG', 'no etcd endpoints given', {
        hint: 'pass --endpoints http://host:2379[,…] or choose a target with members',
      });
    }
    this.endpoints = conn.endpoints;
    this.timeoutMs = conn.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  }

  /** etcd3 (and its protobuf machinery) is loaded on first use: a backup never needs it. */
  private async client(endpoint: string): Promise<Etcd3> {
    let c = this.clients.get(endpoint);
    if (!c) {
      c = await openEtcd3([endpoint], this.conn, this.timeoutMs);
      this.clients.set(endpoint, c);
    }
    return c;
  }

  private deadline(ms = this.timeoutMs): { deadline: Date } {
    return { deadline: new Date(Date.now() + ms) };
  }

  /** What went wrong talking to one member, on one line; TLS causes named (tls-errors.ts). */
  private describe(endpoint: string, e: unknown): string {
    return classifyTls(endpoint, e, this.conn.tls)?.cause ?? describeGrpc(e);
  }

  /**
   * No member answered: when every one of them failed on TLS, that is the one error (the same
   * settings reach them all, so the first names the cause), else the list of what each said.
   */
  private noneAnswered(what: string, failures: { ep: string; e: unknown }[], hint?: string): EtcdRecoverError {
    const tls = failures.map((f) => classifyTls(f.ep, f.e, this.conn.tls));
    if (failures.length && tls.every(Boolean)) return tlsError(failures[0]!.ep, tls[0]!, failures[0]!.e);
    return new EtcdRecoverError('ETCD_UNREACHABLE', `${what}: no etcd member answered (${failures.map((f) => `${f.ep}: ${this.describe(f.ep, f.e)}`).join('; ')})`, hint ? { hint } : {});
  }

  /** Runs fn against each endpoint in turn until one answers. */
  private async any<T>(what: string, fn: (c: Etcd3, endpoint: string) => Promise<T>, signal?: AbortSignal): Promise<T> {
    const failures: { ep: string; e: unknown }[] = [];
    for (const ep of this.endpoints) {
      signal?.throwIfAborted();
      try {
        return await fn(await this.client(ep), ep);
      } catch (e) {
        failures.push({ ep, e });
      }
    }
    throw this.noneAnswered(what, failures, 'check that at least one member is running and reachable, and the TLS settings');
  }

  async status(endpoint: string, signal?: AbortSignal): Promise<MemberStatus> {
    signal?.throwIfAborted();
    try {
      const s = decodeStatusResponse(await grpcUnary(endpoint, this.conn.tls, '/etcdserverpb.Maintenance/Status', Buffer.alloc(0), this.timeoutMs, signal));
      return {
        endpoint,
        memberId: s.memberId,
        clusterId: s.clusterId,
        leaderId: s.leader,
        isLeader: s.memberId === s.leader,
        isLearner: s.isLearner,
        revision: s.revision,
        raftIndex: s.raftIndex,
        raftAppliedIndex: s.raftAppliedIndex || s.raftIndex,
        raftTerm: s.raftTerm,
        dbSize: s.dbSize,
        dbSizeInUse: s.dbSizeInUse || s.dbSize,
        version: s.version,
        errors: s.errors,
      };
    } catch (e) {
      if (e instanceof EtcdRecoverError && e.code === 'ETCD_TLS') throw e;
      throw new EtcdRecoverError('ETCD_UNREACHABLE', `etcd member ${endpoint} did not answer: ${describeGrpc(e)}`, {
        cause: e,
        hint: 'the member may be down; check its process or pod',
      });
    }
  }

  async alarms(signal?: AbortSignal): Promise<Alarm[]> {
    return this.any('alarm list', async (c) => {
      const r = await c.maintenance.alarm({ action: 'Get', memberID: '0', alarm: 'None' }, this.deadline());
      return (r.alarms ?? []).map((a) => ({ memberId: idToHex(a.memberID), alarm: String(a.alarm) }));
    }, signal);
  }

  snapshot(endpoint: string, signal?: AbortSignal): SnapshotStream {
    return grpcSnapshot(endpoint, this.conn.tls, signal, this.timeoutMs);
  }

  async defragment(endpoint: string, signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted();
    try {
      await (await this.client(endpoint)).maintenance.defragment(this.deadline(120_000));
    } catch (e) {
      const tls = classifyTls(endpoint, e, this.conn.tls);
      throw tls ? tlsError(endpoint, tls, e) : e;
    }
  }

  async hashKV(endpoint: string, revision: number, signal?: AbortSignal): Promise<number> {
    signal?.throwIfAborted();
    try {
      // etcd3 1.1.2 calls the gRPC method "hashKV", but grpc-js names it "hashKv": call it directly.
      const m = (await this.client(endpoint)).maintenance as unknown as { client: { exec(svc: string, method: string, req: object, opts: object): Promise<{ hash: string }> } };
      const r = await m.client.exec('Maintenance', 'hashKv', { revision: String(revision) }, this.deadline(60_000));
      return Number(r.hash);
    } catch (e) {
      const tls = classifyTls(endpoint, e, this.conn.tls);
      if (tls) throw tlsError(endpoint, tls, e);
      throw new EtcdRecoverError('ETCD_UNREACHABLE', `hashKV on ${endpoint} failed: ${describeGrpc(e)}`, { cause: e });
    }
  }

  async list(signal?: AbortSignal): Promise<MemberList> {
    return this.any('member list', async (c) => {
      const r = await c.cluster.memberList({ linearizable: false }, this.deadline());
      return { clusterId: idToHex(r.header.cluster_id), members: r.members.map(toMember) };
    }, signal);
  }

  async add(peerURLs: string[], opts: { learner: boolean }, signal?: AbortSignal): Promise<EtcdMember> {
    // Not via any(): "unhealthy cluster" (etcd wants 5 s of stable peer connections after a
    // membership change) must surface as retryable so the caller can wait and retry.
    const failures: { ep: string; e: unknown }[] = [];
    for (const ep of this.endpoints) {
      signal?.throwIfAborted();
      try {
        const r = await (await this.client(ep)).cluster.memberAdd({ peerURLs, isLearner: opts.learner }, this.deadline());
        return toMember(r.member);
      } catch (e) {
        const m = describeGrpc(e);
        if (/unhealthy cluster|not enough started members|too many learner/i.test(m)) throw new EtcdRecoverError('ETCD_ERROR', `member add: ${m}`, { retryable: true, cause: e });
        failures.push({ ep, e });
      }
    }
    throw this.noneAnswered('member add', failures);
  }

  async remove(memberId: string, signal?: AbortSignal): Promise<void> {
    // Not via any(): etcd refuses to remove a member while the ones that would remain have not all been
    // connected for 5 s ("unhealthy cluster": e.g. right after another member was replaced) — retryable.
    const failures: { ep: string; e: unknown }[] = [];
    for (const ep of this.endpoints) {
      signal?.throwIfAborted();
      try {
        await (await this.client(ep)).cluster.memberRemove({ ID: hexToId(memberId) }, this.deadline());
        return;
      } catch (e) {
        const m = describeGrpc(e);
        if (/unhealthy cluster|re-configuration failed due to not enough started members/i.test(m)) throw new EtcdRecoverError('ETCD_ERROR', `member remove: ${m}`, { retryable: true, cause: e });
        failures.push({ ep, e });
      }
    }
    throw this.noneAnswered('member remove', failures);
  }

  async promote(memberId: string, signal?: AbortSignal): Promise<void> {
    // Not via any(): "learner not in sync" must surface to the caller, which retries.
    const failures: { ep: string; e: unknown }[] = [];
    for (const ep of this.endpoints) {
      signal?.throwIfAborted();
      try {
        await (await this.client(ep)).cluster.memberPromote({ ID: hexToId(memberId) }, this.deadline());
        return;
      } catch (e) {
        const m = describeGrpc(e);
        // "rpc not supported for learner": this endpoint IS a learner (often the one being promoted,
        // first in the list): ask the next member. "…in sync with leader": retry later.
        if (/not supported for learner/i.test(m)) {
          failures.push({ ep, e });
          continue;
        }
        if (/not in sync|in sync with leader|learner/i.test(m)) throw new EtcdRecoverError('ETCD_ERROR', m, { retryable: true, cause: e });
        failures.push({ ep, e });
      }
    }
    throw this.noneAnswered('member promote', failures);
  }

  readonly kv: EtcdKv = {
    get: (key, signal) =>
      this.any('get', async (c) => (await c.get(key).string()) ?? undefined, signal),
    count: (prefix, signal, revision) =>
      this.any('count', async (c) => {
        const q = prefix ? c.getAll().prefix(prefix) : c.getAll();
        return (revision !== undefined ? q.revision(revision) : q).count();
      }, signal),
  };

  close(): void {
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
  }
}

function toMember(m: { ID: string; name: string; peerURLs: string[]; clientURLs: string[]; isLearner?: boolean }): EtcdMember {
  return {
    id: idToHex(m.ID),
    name: m.name,
    peerURLs: m.peerURLs ?? [],
    clientURLs: m.clientURLs ?? [],
    isLearner: Boolean(m.isLearner),
  };
}

function describeGrpc(e: unknown): string {
  const msg = messageOf(e);
  const net = /\b(ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENOTFOUND|EHOSTUNREACH|ENETUNREACH)\b/.exec(msg);
  if (net) return { ECONNREFUSED: 'connection refused', ECONNRESET: 'connection reset', ETIMEDOUT: 'timed out', ENOTFOUND: 'host not found', EHOSTUNREACH: 'host unreachable', ENETUNREACH: 'network unreachable' }[net[1] as 'ECONNREFUSED'];
  if (/deadline exceeded/i.test(msg)) return 'timed out';
  return (msg.replace(/^\d+ [A-Z_]+: /, '').split('\n')[0] ?? msg).replace(/\s*Resolution note:.*$/, '');
}
