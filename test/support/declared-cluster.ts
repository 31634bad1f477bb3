import { CoreV1Api } from '@kubernetes/client-node';
import { Etcd3 } from 'etcd3';
import type { BackupArgs, EtcdClusterArgs } from '@etcd-recover/pulumi';
import type { Sandbox } from '@etcd-recover/core';
import { applyManifests, startControlPlane, waitFor, type ControlPlane, type ImageSpec } from './kube/index.js';
import { kubernetesManifests } from './manifests.js';
import { json, runCli } from './cli.js';
import { setupMocks } from './pulumi-mocks.js';
import { startSandbox, stopSandbox } from './sandbox.js';

export interface DeclaredCluster {
  cp: ControlPlane;
  /** MinIO (a one-member sandbox used for its bucket), listening where pods reach it. */
  store: Sandbox;
  /** The manifests `pulumi up` would have sent (captured from the Pulumi mocks). */
  manifests: Record<string, any>[];
}

/**
 * A real control plane with the EtcdCluster component's resources applied to it (as `pulumi up`
 * would send them), backed by a real MinIO bucket: the starting point of every Kubernetes scenario.
 */
export async function declaredCluster(
  namespace: string,
  args: Partial<EtcdClusterArgs> = {},
  o: { backup?: Partial<BackupArgs>; beforeApply?: (cp: ControlPlane) => Promise<void>; images?: Record<string, ImageSpec> } = {},
): Promise<DeclaredCluster> {
  const cp = await startControlPlane(o.images ? { images: o.images } : {});
  let store: Sandbox | undefined;
  try {
    // MinIO listens on the node's bridge address, so pods can reach it.
    store = await startSandbox({ members: 1, cluster: 'store-only', storeHost: cp.network.hostIP });
    const s3 = store.s3Config();
    const mocks = await setupMocks();
    const { EtcdCluster } = await import('@etcd-recover/pulumi');
    new EtcdCluster('etcd', {
      namespace,
      agentImage: 'ghcr.io/etcd-recover/agent:0.1.0',
      storage: { size: '1Gi' },
      backup: {
        bucket: { existing: s3.bucket },
        endpoint: s3.endpoint!,
        credentials: { accessKeyId: s3.credentials!.accessKeyId, secretAccessKey: s3.credentials!.secretAccessKey },
        // The harness's CronJob controller is real: the default schedules (backup */30, verify at :15)
        // would fire mid-test depending on the time of day (a verify Job at :15 broke quorum tests).
        // Tests start these Jobs themselves; one that wants a schedule passes it.
        schedule: '0 0 1 1 *',
        verifySchedule: '0 0 1 1 *',
        ...o.backup,
      },
      // Off unless a test asks: the daily drill must not fire mid-suite, and the exporter is one more process.
      drill: { enabled: false },
      monitoring: { exporter: false },
      // Off unless a test asks: its chain bases are backups too, which would change what tests count.
      archive: { enabled: false },
      ...args,
    });
    await new Promise((r) => setTimeout(r, 300));
    const manifests = kubernetesManifests(mocks.resources);
    const kc = cp.kubeConfig();
    await kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: namespace } } });
    await o.beforeApply?.(cp);
    await applyManifests(kc, manifests);
    return { cp, store, manifests };
  } catch (e) {
    await cp.stop();
    if (store) await stopSandbox(store);
    throw e;
  }
}

/** The pod IPs of a declared cluster's members, in order. */
export function memberIPs(cp: ControlPlane, namespace: string, members: readonly string[]): Promise<string[]> {
  return Promise.all(members.map((m) => cp.podIP(namespace, m)));
}

/** Writes n keys `${prefix}NNNNN` = `vN` through the members' client ports, 50 at a time. */
export async function writeKeys(ips: string[], prefix: string, n: number): Promise<void> {
  const client = new Etcd3({ hosts: ips.map((ip) => `http://${ip}:2379`) });
  try {
    for (let i = 0; i < n; i += 50) await Promise.all(Array.from({ length: Math.min(50, n - i) }, (_, j) => client.put(`${prefix}${String(i + j).padStart(5, '0')}`).value(`v${i + j}`)));
  } finally {
    client.close();
  }
}

/**
 * Loses members the hard way: their PVCs deleted, their pods killed. Returns once the loss is real
 * and settled: every lost member's claim is gone or a new one (another UID) — a pod recreated before
 * its old claim went would otherwise come back on the old data — and `status`, asked twice a few
 * seconds apart, sees no quorum and no member that still sees a leader (a survivor keeps its dead
 * leader for an election timeout).
 */
export async function loseMembers(cp: ControlPlane, namespace: string, members: string[]): Promise<void> {
  const core = cp.kubeConfig().makeApiClient(CoreV1Api);
  const claim = (m: string) => `data-${m}`;
  const uidOf = async (m: string) => (await core.readNamespacedPersistentVolumeClaim({ namespace, name: claim(m) }).catch(() => undefined))?.metadata?.uid;
  const old = new Map<string, string | undefined>();
  for (const m of members) old.set(m, await uidOf(m));
  for (const m of members) await core.deleteNamespacedPersistentVolumeClaim({ namespace, name: claim(m) });
  for (const m of members) await core.deleteNamespacedPod({ namespace, name: m, gracePeriodSeconds: 0 });
  const started = Date.now();
  let kicked = false;
  await waitFor('the old claims gone', async () => {
    const stale = [];
    for (const m of members) if ((await uidOf(m)) === old.get(m)) stale.push(m);
    // A pod that took its old claim before the claim went holds it (the protection finalizer): kill it again.
    if (stale.length && !kicked && Date.now() - started > 30_000) {
      kicked = true;
      for (const m of stale) await core.deleteNamespacedPod({ namespace, name: m, gracePeriodSeconds: 0 }).catch(() => undefined);
    }
    return stale.length === 0;
  }, 120_000, 500);
  const settled = async () => {
    const st = await runCli(['status', '--kubeconfig', cp.kubeconfigPath, '-n', namespace, '-o', 'json']);
    if (!st.stdout.startsWith('{')) return false;
    const o = json(st);
    return o.quorum === false && o.healthy === 0;
  };
  await waitFor('quorum lost, and no member sees a leader', async () => (await settled()) && (await new Promise((r) => setTimeout(r, 3_000)), await settled()), 120_000, 1_000);
}
