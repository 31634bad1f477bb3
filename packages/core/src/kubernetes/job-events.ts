import { CoreV1Api, KubeConfig, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import type { RecoveryContract } from '../contract/recovery-contract.js';
import type { JobName, JobOutcome, JobStatus } from '../observability/job-status.js';

/** In a pod: the ServiceAccount's credentials. */
export function inClusterKubeConfig(): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromCluster();
  return kc;
}

/** The ConfigMap that carries each job's last outcome (`kubectl get cm <name>-recovery-status -o yaml`). */
export const statusConfigMapOf = (c: RecoveryContract) => c.reporting?.statusConfigMap ?? `${c.cluster}-recovery-status`;
export const contractConfigMapOf = (c: RecoveryContract) => c.reporting?.contractConfigMap ?? `${c.cluster}-recovery-contract`;

/**
 * Tells Kubernetes what a job did: an Event on the recovery contract's ConfigMap (Normal or Warning,
 * with the reason and message, readable with `kubectl get events` / `kubectl describe cm`) and the
 * job's status in the recovery-status ConfigMap (one JSON value per job). Never throws: a job that
 * cannot report still did its work; the caller logs the returned errors.
 */
export async function reportToKubernetes(kc: KubeConfig, contract: RecoveryContract, job: JobName, outcome: JobOutcome, status: JobStatus | undefined): Promise<Error[]> {
  const core = kc.makeApiClient(CoreV1Api);
  const namespace = contract.namespace;
  const errors: Error[] = [];
  const now = new Date(outcome.at);
  try {
    await core.createNamespacedEvent({
      namespace,
      body: {
        metadata: { generateName: `${contract.cluster}-${job}-`, namespace },
        involvedObject: { apiVersion: 'v1', kind: 'ConfigMap', name: contractConfigMapOf(contract), namespace },
        reason: outcome.reason,
        message: outcome.message.slice(0, 1024),
        type: outcome.ok ? 'Normal' : 'Warning',
        source: { component: 'etcd-recover' },
        reportingComponent: 'etcd-recover.io/agent',
        reportingInstance: process.env['HOSTNAME'] ?? 'etcd-recover',
        firstTimestamp: now,
        lastTimestamp: now,
        count: 1,
      },
    });
  } catch (e) {
    errors.push(new Error(`could not record the ${job} Event: ${(e as Error).message}`));
  }
  try {
    const value = JSON.stringify(status ?? { job, last: outcome, consecutiveFailures: outcome.ok ? 0 : 1 });
    const name = statusConfigMapOf(contract);
    try {
      await core.patchNamespacedConfigMap({ namespace, name, body: { data: { [job]: value } } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
    } catch (e) {
      if ((e as { code?: number }).code !== 404) throw e;
      // The first report creates it (not the component: Pulumi would see the jobs' writes as drift),
      // owned by the contract's ConfigMap, so that it goes when the component is destroyed.
      const owner = await core.readNamespacedConfigMap({ namespace, name: contractConfigMapOf(contract) }).catch(() => undefined);
      const ownerReferences = owner?.metadata?.uid ? [{ apiVersion: 'v1', kind: 'ConfigMap', name: contractConfigMapOf(contract), uid: owner.metadata.uid }] : undefined;
      await core.createNamespacedConfigMap({
        namespace,
        body: { metadata: { name, namespace, labels: { 'etcd-recover.io/cluster': contract.cluster, 'etcd-recover.io/status': 'v1' }, ...(ownerReferences ? { ownerReferences } : {}) }, data: { [job]: value } },
      });
    }
  } catch (e) {
    errors.push(new Error(`could not record the ${job} status in ConfigMap ${namespace}/${statusConfigMapOf(contract)}: ${(e as Error).message}`));
  }
  return errors;
}
