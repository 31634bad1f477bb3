import { EtcdRecoverError } from '../errors.js';
import type { EtcdGateway } from '../etcd/etcd-gateway.js';
import { layout } from '../layout.js';
import type { MemberSpec } from './observation.js';
import type { Keyspace } from './target.js';

/**
 * Key count (linearizable; at `countAt` when given) and every member's HashKV at the lowest current
 * revision: equal hashes mean the members hold the same keyspace. After a restore the count is taken
 * at the restored revision: a leased key whose lease expires once the cluster runs again (etcd keeps
 * leases across a restore) must not look like a lost key. Used by the executor, and by the in-cluster Job that
 * answers for a Kubernetes target.
 */
export async function measureKeyspace(gateway: EtcdGateway, members: MemberSpec[], signal?: AbortSignal, countAt?: number): Promise<Keyspace> {
  const statuses = await Promise.all(
    members.map(async (m) => {
      try {
        return { m, status: await gateway.status(m.clientURL, signal) };
      } catch (e) {
        throw new EtcdRecoverError('STEP_FAILED', `member ${m.name} does not answer: ${(e as Error).message}`, { cause: e });
      }
    }),
  );
  const revision = Math.min(...statuses.map((s) => s.status.revision));
  const hashed = await Promise.all(statuses.map(async ({ m, status }) => ({ name: m.name, revision: status.revision, hash: await gateway.hashKV(m.clientURL, revision, signal) })));
  const clusterId = statuses[0]?.status.clusterId;
  return { keys: await gateway.kv.count('', signal, countAt), revision, members: hashed, ...(clusterId ? { clusterId } : {}) };
}

/** Where the in-cluster keyspace Job of a recovery reports what it measured. */
export function keyspaceReportKey(cluster: string, recoveryId: string): string {
  return layout.recoveryWork(cluster, recoveryId, 'keyspace');
}
