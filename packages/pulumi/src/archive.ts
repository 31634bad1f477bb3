import * as pulumi from '@pulumi/pulumi';
import * as k8s from '@pulumi/kubernetes';
import type { ResolvedArgs } from './resolve-args.js';
import { namesFor } from './names.js';
import { agentDeployment } from './agent-deployment.js';

type Volume = k8s.types.input.core.v1.Volume;
type VolumeMount = k8s.types.input.core.v1.VolumeMount;
type EnvVar = k8s.types.input.core.v1.EnvVar;

/**
 * The continuous archiver (`agent archive`, docs/archive.md): one replica with the Recreate strategy
 * (two never run at once by the Deployment's doing; the archiver's fence in the bucket makes sure of
 * it anyway), no Kubernetes rights, the bucket and etcd only. It pauses itself while a recovery holds
 * the cluster's lock, and starts a new chain on the restored cluster afterwards.
 */
export function createArchiver(
  name: string,
  r: ResolvedArgs,
  deps: { serviceAccount: k8s.core.v1.ServiceAccount | undefined; pod: { volumes: Volume[]; mounts: VolumeMount[]; env: EnvVar[] }; labels: Record<string, string> },
  opts: pulumi.CustomResourceOptions,
): k8s.apps.v1.Deployment | undefined {
  const a = r.archive;
  if (!a || !deps.serviceAccount) return undefined;
  const n = namesFor(name);
  const labels = { ...deps.labels, 'etcd-recover.io/job': 'archive' };
  // SIGTERM flushes what it holds: it gets time to.
  return agentDeployment(
    `${name}-archiver`,
    r,
    {
      name: n.archiver,
      labels,
      serviceAccount: deps.serviceAccount,
      automountServiceAccountToken: false,
      terminationGracePeriodSeconds: 30,
      container: {
        name: 'archiver',
        args: ['agent', 'archive', '--interval', String(a.intervalMs), '--rebase-every', String(a.rebaseSeconds), '--max-buffer-mib', String(a.maxBufferMiB)],
        env: deps.pod.env,
        volumeMounts: deps.pod.mounts,
        resources: a.resources,
      },
      volumes: deps.pod.volumes,
    },
    opts,
  );
}
