import { setTimeout as sleep } from 'node:timers/promises';
import { EtcdRecoverError, isEtcdRecoverError } from '../errors.js';
import type { EtcdGateway, EtcdMember } from '../etcd/etcd-gateway.js';
import type { RecoveryContract } from '../contract/recovery-contract.js';
import type { KubeGateway } from '../kubernetes/kube-gateway.js';
import { quorumSize } from './observation.js';

export interface HealResult {
  action: 'none' | 'promoted' | 'replaced' | 'refused';
  healthy: string[];
  unhealthy: string[];
  promoted: string[];
  replaced?: string;
  message: string;
}

export interface HealOptions {
  contract: RecoveryContract;
  etcd: EtcdGateway;
  kube: KubeGateway;
  /** Consecutive failed checks before a member counts as failing. Default 3. */
  checks?: number;
  /** Seconds between checks. Default 10. */
  intervalMs?: number;
  /** How long to wait for the replacement to join and be promoted. Default 240 s. */
  joinTimeoutMs?: number;
  /** Replace this member (member replace), healthy or not — still only while the others hold quorum. */
  member?: string;
  log?: (m: string) => void;
  signal?: AbortSignal;
}

/**
 * One pass of member auto-heal, as HyperShift and kube-aws do it: promote any
 * learner that has caught up; when exactly one member fails several
 * consecutive health checks while the others hold quorum, remove it from the
 * membership, add it back as a learner, delete its pod (the StatefulSet
 * recreates it; member-init sets the old data aside in the volume and joins
 * the existing cluster empty) and promote it once caught up. Never acts
 * without quorum.
 */
export async function healOnce(o: HealOptions): Promise<HealResult> {
  const log = o.log ?? (() => undefined);
  const ns = o.contract.namespace;
  const members = o.contract.etcd.members;
  const checks = o.checks ?? 3;
  const interval = o.intervalMs ?? 10_000;

  const promoted = await promoteLearners(o.etcd, log, o.signal);
  // A learner still catching up is a replacement in progress, not a failure: never start another.
  const learners = await o.etcd.list(o.signal).then((l) => l.members.filter((m) => m.isLearner), () => []);
  if (learners.length && !o.member) {
    return {
      action: promoted.length ? 'promoted' : 'none',
      healthy: [],
      unhealthy: [],
      promoted,
      message: `a replacement is in progress: learner ${learners.map((l) => l.name || l.id).join(', ')} is catching up; the next run promotes it`,
    };
  }

  let failing = new Set(members.map((m) => m.name));
  let healthy: string[] = [];
  for (let i = 0; i < checks; i++) {
    if (i) await sleep(interval, undefined, o.signal ? { signal: o.signal } : undefined);
    const now = await healthyMembers(o, members.map((m) => m.name));
    healthy = now;
    failing = new Set([...failing].filter((n) => !now.includes(n)));
    if (!failing.size) break;
  }
  if (o.member) {
    if (!members.some((m) => m.name === o.member)) throw new EtcdRecoverError('USAGE', `no member named ${o.member} (members: ${members.map((m) => m.name).join(', ')})`);
    const others = healthy.filter((n) => n !== o.member);
    if (others.length < quorumSize(members.length)) {
      return { action: 'refused', healthy, unhealthy: [...failing], promoted, message: `replacing ${o.member} needs a quorum of ${quorumSize(members.length)} other healthy members; only ${others.length} are healthy: restore with \`kubectl etcd-recover quorum\`` };
    }
    failing = new Set([o.member]);
  }
  const unhealthy = [...failing];
  if (!unhealthy.length) {
    return { action: promoted.length ? 'promoted' : 'none', healthy, unhealthy, promoted, message: `all ${members.length} members healthy` };
  }
  if (healthy.length < quorumSize(members.length)) {
    return {
      action: 'refused',
      healthy,
      unhealthy,
      promoted,
      message: `quorum lost (${healthy.length} of ${members.length} healthy): auto-heal never acts without quorum; restore with \`kubectl etcd-recover quorum\``,
    };
  }
  if (unhealthy.length > 1) {
    return { action: 'refused', healthy, unhealthy, promoted, message: `${unhealthy.length} members failing (${unhealthy.join(', ')}): auto-heal replaces only one at a time; run \`kubectl etcd-recover member replace\`` };
  }
  const name = unhealthy[0]!;
  const m = members.find((x) => x.name === name)!;
  log(o.member ? `replacing ${name} as asked` : `${name} failed ${checks} consecutive health checks; replacing it`);
  const list = await o.etcd.list(o.signal);
  const entry = list.members.find((x) => x.peerURLs.includes(m.peerURL));
  if (entry && !entry.isLearner) {
    await o.etcd.remove(entry.id, o.signal);
    log(`removed member ${entry.id} (${name})`);
  }
  const again = (await o.etcd.list(o.signal)).members.find((x) => x.peerURLs.includes(m.peerURL));
  if (!again) {
    const added = await retry(() => o.etcd.add([m.peerURL], { learner: true }, o.signal), 60_000, o.signal);
    log(`added ${name} back as learner ${added.id}`);
  }
  // The pod restarts; its member-init finds itself re-added as a learner, sets the old data aside
  // inside the volume and joins empty. The PVC is deleted only when it is unusable (gone already,
  // or not bound): a recreated pod would otherwise pin a terminating PVC (pvc-protection) for long.
  const pvc = await o.kube.getPvc(ns, m.pvc);
  if (pvc && pvc.phase !== 'Bound' && !pvc.deleting) await o.kube.deletePvc(ns, m.pvc);
  await o.kube.deletePod(ns, name);
  log(`deleted pod ${name}; the StatefulSet recreates it and it rejoins empty (old data kept in ${m.pvc})`);
  const deadline = Date.now() + (o.joinTimeoutMs ?? 240_000);
  for (;;) {
    const entry2 = (await o.etcd.list(o.signal)).members.find((x) => x.peerURLs.includes(m.peerURL));
    if (entry2?.isLearner) {
      try {
        await o.etcd.promote(entry2.id, o.signal);
        log(`promoted ${name}`);
        return { action: 'replaced', healthy, unhealthy, promoted, replaced: name, message: `replaced ${name}` };
      } catch (e) {
        if (!(isEtcdRecoverError(e) && e.retryable)) throw e;
      }
    } else if (entry2 && !entry2.isLearner && entry2.name) {
      return { action: 'replaced', healthy, unhealthy, promoted, replaced: name, message: `replaced ${name}` };
    }
    if (Date.now() > deadline) {
      return { action: 'replaced', healthy, unhealthy, promoted, replaced: name, message: `replaced ${name}; it has not caught up yet — the next run promotes it` };
    }
    await sleep(2_000, undefined, o.signal ? { signal: o.signal } : undefined);
  }
}

async function healthyMembers(o: HealOptions, names: string[]): Promise<string[]> {
  const ok: string[] = [];
  await Promise.all(
    o.contract.etcd.members
      .filter((m) => names.includes(m.name))
      .map(async (m) => {
        try {
          const s = await o.etcd.status(m.clientURL, o.signal);
          if (s.leaderId !== '0' && !s.isLearner) ok.push(m.name);
        } catch {
          /* failing */
        }
      }),
  );
  return ok;
}

async function promoteLearners(etcd: EtcdGateway, log: (m: string) => void, signal?: AbortSignal): Promise<string[]> {
  let list: EtcdMember[];
  try {
    list = (await etcd.list(signal)).members;
  } catch {
    return [];
  }
  const done: string[] = [];
  for (const l of list.filter((x) => x.isLearner && x.name)) {
    try {
      await etcd.promote(l.id, signal);
      done.push(l.name);
      log(`promoted caught-up learner ${l.name}`);
    } catch (e) {
      if (!(isEtcdRecoverError(e) && e.retryable)) throw e;
      log(`learner ${l.name} is still catching up`);
    }
  }
  return done;
}

async function retry<T>(fn: () => Promise<T>, timeoutMs: number, signal?: AbortSignal): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await fn();
    } catch (e) {
      if (!(isEtcdRecoverError(e) && e.retryable) || Date.now() > deadline) throw e;
      await sleep(1_000, undefined, signal ? { signal } : undefined);
    }
  }
}
