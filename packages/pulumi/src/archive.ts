import * as pulumi from '@pulumi/pulumi';
import * as k8s from '@pulumi/kubernetes';
import type { ResolvedArgs } from './args.js';
import { namesFor } from './names.js';

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
  return new k8s.apps.v1.Deployment(
    `${name}-archiver`,
    {
      // `up` does not wait for it: it starts its first chain once etcd answers, and says so in its log and `status`.
      metadata: { name: n.archiver, namespace: r.namespace, labels, annotations: { 'pulumi.com/skipAwait': 'true' } },
      spec: {
        replicas: 1,
        strategy: { type: 'Recreate' },
        selector: { matchLabels: labels },
        template: {
          metadata: { labels },
          spec: {
            serviceAccountName: deps.serviceAccount.metadata.name,
            automountServiceAccountToken: false,
            // SIGTERM flushes what it holds: give it time to.
            terminationGracePeriodSeconds: 30,
            securityContext: { runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532, fsGroup: 65532 },
            containers: [
              {
                name: 'archiver',
                image: r.agentImage,
                command: ['kubectl-etcd_recover'],
                args: ['agent', 'archive', '--interval', String(a.intervalMs), '--rebase-every', String(a.rebaseSeconds), '--max-buffer-mib', String(a.maxBufferMiB)],
                env: deps.pod.env,
                volumeMounts: deps.pod.mounts,
                resources: a.resources,
                terminationMessagePolicy: 'FallbackToLogsOnError',
                securityContext: { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } },
              },
            ],
            volumes: deps.pod.volumes,
          },
        },
      },
    },
    opts,
  );
}
