/**
 * A hosted control plane, the shape HyperShift runs: in one namespace of a
 * management cluster, etcd (declared with EtcdCluster, together with its
 * backup bucket, backup / verification / auto-heal jobs and the recovery
 * contract) and the hosted kube-apiserver that stores its objects in it.
 *
 *   pulumi config set namespace hcp-demo
 *   pulumi config set s3Endpoint http://minio.storage.svc:9000
 *   pulumi config set bucket hcp-demo-etcd-backups
 *   pulumi config set --secret s3AccessKeyId …
 *   pulumi config set --secret s3SecretAccessKey …
 *   pulumi up
 *
 * At 3 a.m., `kubectl etcd-recover quorum -n hcp-demo` finds everything it
 * needs in the recovery contract: it scales the kube-apiserver down, restores
 * etcd, and scales it back.
 */
import * as pulumi from '@pulumi/pulumi';
import * as k8s from '@pulumi/kubernetes';
import { EtcdCluster } from '@etcd-recover/pulumi';

const config = new pulumi.Config();
const namespaceName = config.get('namespace') ?? 'hcp-demo';
const agentImage = config.get('agentImage') ?? 'ghcr.io/etcd-recover/agent:0.1.0';
const apiserverImage = config.get('apiserverImage') ?? 'registry.k8s.io/kube-apiserver:v1.34.4';

const ns = new k8s.core.v1.Namespace('hcp', { metadata: { name: namespaceName } });

export const etcd = new EtcdCluster(
  'etcd',
  {
    namespace: namespaceName,
    members: 3,
    agentImage,
    storage: { size: '8Gi' },
    backup: {
      bucket: config.getBoolean('createBucket') === false ? { existing: config.require('bucket') } : { create: { name: config.require('bucket'), versioning: true, expirationDays: 45 } },
      endpoint: config.get('s3Endpoint'),
      credentials: { accessKeyId: config.requireSecret('s3AccessKeyId'), secretAccessKey: config.requireSecret('s3SecretAccessKey') },
      schedule: '*/30 * * * *',
      retention: { keepLast: 3, keepWithin: '6h', hourly: '24h', daily: '7d', weekly: '30d' },
    },
    dependents: [{ kind: 'Deployment', name: 'kube-apiserver', replicas: 2 }],
  },
  { dependsOn: [ns] },
);

// The hosted kube-apiserver: its only storage is the etcd above.
const labels = { app: 'kube-apiserver' };
new k8s.apps.v1.Deployment(
  'kube-apiserver',
  {
    metadata: { name: 'kube-apiserver', namespace: namespaceName, labels },
    spec: {
      replicas: 2,
      selector: { matchLabels: labels },
      template: {
        metadata: { labels },
        spec: {
          containers: [
            {
              name: 'kube-apiserver',
              image: apiserverImage,
              command: ['kube-apiserver'],
              args: [
                pulumi.interpolate`--etcd-servers=${etcd.clientEndpoint}`,
                '--secure-port=6443',
                '--service-cluster-ip-range=10.96.0.0/16',
                '--service-account-issuer=https://kubernetes.default.svc',
                '--service-account-key-file=/etc/kubernetes/pki/sa.pub',
                '--service-account-signing-key-file=/etc/kubernetes/pki/sa.key',
                '--tls-cert-file=/etc/kubernetes/pki/apiserver.crt',
                '--tls-private-key-file=/etc/kubernetes/pki/apiserver.key',
                '--client-ca-file=/etc/kubernetes/pki/ca.crt',
                '--authorization-mode=RBAC',
              ],
              ports: [{ name: 'https', containerPort: 6443 }],
              volumeMounts: [{ name: 'pki', mountPath: '/etc/kubernetes/pki', readOnly: true }],
            },
          ],
          volumes: [{ name: 'pki', secret: { secretName: 'kube-apiserver-pki' } }],
        },
      },
    },
  },
  { dependsOn: [etcd] },
);

export const etcdClientEndpoint = etcd.clientEndpoint;
export const backupBucket = etcd.bucketName;
export const recoveryContract = etcd.contractName;
