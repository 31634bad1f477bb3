import * as pulumi from '@pulumi/pulumi';
import * as k8s from '@pulumi/kubernetes';
import type { ResolvedArgs } from './resolve-args.js';

type Container = k8s.types.input.core.v1.Container;

/**
 * A long-running agent (the exporter, the archiver): one replica, Recreate (never two at once), the
 * agent's non-root user, a read-only root filesystem with every capability dropped. `up` does not
 * wait for it (skipAwait): it is not what makes the cluster recoverable, and `status` says whether it runs.
 */
export function agentDeployment(
  resourceName: string,
  r: ResolvedArgs,
  o: {
    name: string;
    labels: Record<string, string>;
    serviceAccount: k8s.core.v1.ServiceAccount;
    automountServiceAccountToken: boolean;
    container: Omit<Container, 'image' | 'command' | 'terminationMessagePolicy' | 'securityContext'> & { name: string };
    volumes: k8s.types.input.core.v1.Volume[];
    terminationGracePeriodSeconds?: number;
  },
  opts: pulumi.CustomResourceOptions,
): k8s.apps.v1.Deployment {
  return new k8s.apps.v1.Deployment(
    resourceName,
    {
      metadata: { name: o.name, namespace: r.namespace, labels: o.labels, annotations: { 'pulumi.com/skipAwait': 'true' } },
      spec: {
        replicas: 1,
        strategy: { type: 'Recreate' },
        selector: { matchLabels: o.labels },
        template: {
          metadata: { labels: o.labels },
          spec: {
            serviceAccountName: o.serviceAccount.metadata.name,
            automountServiceAccountToken: o.automountServiceAccountToken,
            ...(o.terminationGracePeriodSeconds !== undefined ? { terminationGracePeriodSeconds: o.terminationGracePeriodSeconds } : {}),
            securityContext: { runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532, fsGroup: 65532 },
            containers: [
              {
                ...o.container,
                image: r.agentImage,
                command: ['kubectl-etcd_recover'],
                terminationMessagePolicy: 'FallbackToLogsOnError',
                securityContext: { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } },
              },
            ],
            volumes: o.volumes,
          },
        },
      },
    },
    opts,
  );
}
