/**
 * A hosted control plane, the shape HyperShift runs: in one namespace of a management cluster, etcd
 * (declared with EtcdCluster, together with its backup bucket, backup / verification / auto-heal
 * jobs and the recovery contract) and the hosted kube-apiserver that stores its objects in it, with
 * TLS on etcd's peer and client traffic.
 *
 * This function is the whole program: `index.ts` runs it for `pulumi up`, and the test suite runs
 * the same function through Pulumi's Automation API (test/engine). Every knob is a stack config key;
 * see the README in this folder.
 */
import * as pulumi from '@pulumi/pulumi';
import * as k8s from '@pulumi/kubernetes';
import { EtcdCluster, type EtcdClusterArgs } from '@etcd-recover/pulumi';

export interface HostedControlPlaneOutputs {
  etcdClientEndpoint: pulumi.Output<string>;
  backupBucket: pulumi.Output<string>;
  recoveryContract: pulumi.Output<string>;
  namespace: pulumi.Output<string>;
}

/** Where the hosted kube-apiserver finds etcd's client certificate. */
const ETCD_CLIENT_DIR = '/etc/kubernetes/etcd-client';
const PKI_DIR = '/etc/kubernetes/pki';

export function hostedControlPlane(): HostedControlPlaneOutputs {
  const config = new pulumi.Config();
  const namespaceName = config.get('namespace') ?? 'hcp-demo';
  const agentImage = config.get('agentImage') ?? 'ghcr.io/etcd-recover/agent:0.1.0';
  const apiserverImage = config.get('apiserverImage') ?? 'registry.k8s.io/kube-apiserver:v1.34.4';
  // TLS on by default: the Secrets (ca.crt, tls.crt, tls.key) come from the platform's PKI
  // (cert-manager, or the commands in this folder's README).
  const tlsOn = config.getBoolean('tls') ?? true;
  const tls = tlsOn
    ? {
        serverSecret: config.get('etcdServerTlsSecret') ?? 'etcd-server-tls',
        peerSecret: config.get('etcdPeerTlsSecret') ?? 'etcd-peer-tls',
        clientSecret: config.get('etcdClientTlsSecret') ?? 'etcd-client-tls',
      }
    : undefined;
  // The hosted API server's own PKI: ca.crt (its client CA), sa.pub and sa.key (service-account keys).
  const apiserverPki = config.get('apiserverPkiSecret') ?? 'kube-apiserver-pki';
  const apiserverReplicas = config.getNumber('apiserverReplicas') ?? 2;
  const createNamespace = config.getBoolean('createNamespace') ?? true;

  const ns = createNamespace ? new k8s.core.v1.Namespace('hcp', { metadata: { name: namespaceName } }) : undefined;
  const bucketName = config.require('bucket');
  const args: EtcdClusterArgs = {
    namespace: namespaceName,
    members: config.getNumber('members') ?? 3,
    agentImage,
    storage: { size: config.get('storageSize') ?? '8Gi' },
    ...(tls ? { tls } : {}),
    ...(config.getObject<Record<string, unknown>>('etcdResources') ? { resources: config.getObject('etcdResources')! } : {}),
    ...(config.getObject<string[]>('etcdExtraArgs') ? { extraArgs: config.getObject<string[]>('etcdExtraArgs')! } : {}),
    ...(config.get('readyTimeout') ? { readyTimeout: config.get('readyTimeout')! } : {}),
    backup: {
      bucket:
        config.getBoolean('createBucket') === false
          ? { existing: bucketName }
          : { create: { name: bucketName, versioning: true, expirationDays: 45, forceDestroy: config.getBoolean('forceDestroy') ?? false } },
      endpoint: config.get('s3Endpoint'),
      credentials: { accessKeyId: config.requireSecret('s3AccessKeyId'), secretAccessKey: config.requireSecret('s3SecretAccessKey') },
      schedule: config.get('backupSchedule') ?? '*/30 * * * *',
      retention: { keepLast: config.getNumber('keepLast') ?? 3, keepWithin: '6h', hourly: '24h', daily: '7d', weekly: '30d' },
    },
    dependents: [{ kind: 'Deployment', name: 'kube-apiserver', replicas: apiserverReplicas }],
  };
  const etcd = new EtcdCluster('etcd', args, ns ? { dependsOn: [ns] } : {});

  // The hosted kube-apiserver: its only storage is the etcd above.
  const labels = { app: 'kube-apiserver' };
  new k8s.apps.v1.Deployment(
    'kube-apiserver',
    {
      metadata: { name: 'kube-apiserver', namespace: namespaceName, labels },
      spec: {
        replicas: apiserverReplicas,
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
                  ...(tls ? [`--etcd-cafile=${ETCD_CLIENT_DIR}/ca.crt`, `--etcd-certfile=${ETCD_CLIENT_DIR}/tls.crt`, `--etcd-keyfile=${ETCD_CLIENT_DIR}/tls.key`] : []),
                  '--secure-port=6443',
                  '--advertise-address=$(POD_IP)',
                  // A self-signed serving certificate in an emptyDir; put a real one in the PKI Secret for production.
                  '--cert-dir=/var/run/kube-apiserver',
                  '--service-cluster-ip-range=10.96.0.0/16',
                  '--service-account-issuer=https://kubernetes.default.svc',
                  `--service-account-key-file=${PKI_DIR}/sa.pub`,
                  `--service-account-signing-key-file=${PKI_DIR}/sa.key`,
                  `--client-ca-file=${PKI_DIR}/ca.crt`,
                  '--authorization-mode=RBAC',
                  '--enable-priority-and-fairness=false',
                  '--profiling=false',
                ],
                env: [{ name: 'POD_IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } }],
                ports: [{ name: 'https', containerPort: 6443 }],
                readinessProbe: { tcpSocket: { port: 6443 }, periodSeconds: 2 },
                volumeMounts: [
                  { name: 'pki', mountPath: PKI_DIR, readOnly: true },
                  { name: 'serving', mountPath: '/var/run/kube-apiserver' },
                  ...(tls ? [{ name: 'etcd-client', mountPath: ETCD_CLIENT_DIR, readOnly: true }] : []),
                ],
              },
            ],
            volumes: [
              { name: 'pki', secret: { secretName: apiserverPki } },
              { name: 'serving', emptyDir: {} },
              ...(tls ? [{ name: 'etcd-client', secret: { secretName: tls.clientSecret } }] : []),
            ],
          },
        },
      },
    },
    { dependsOn: [etcd] },
  );

  return {
    etcdClientEndpoint: etcd.clientEndpoint,
    backupBucket: etcd.bucketName,
    recoveryContract: etcd.contractName,
    namespace: etcd.namespace,
  };
}
