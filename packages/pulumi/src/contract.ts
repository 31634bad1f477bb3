import { CONTRACT_API_VERSION, CONTRACT_KIND, memberURLs, type RecoveryContract } from '@etcd-recover/core';
import type { ResolvedArgs } from './resolve-args.js';
import { DATA_DIR, MOUNT, PORTS, namesFor } from './names.js';

export function podLabels(r: ResolvedArgs): Record<string, string> {
  return { 'app.kubernetes.io/name': 'etcd', 'app.kubernetes.io/instance': r.name, 'app.kubernetes.io/managed-by': 'etcd-recover' };
}

/** backup.sse as the contract records it: for SSE-C the Secret's name, never a key. */
function contractSse(sse: NonNullable<ResolvedArgs['backup']['sse']>): NonNullable<RecoveryContract['backup']['sse']> {
  if (sse.mode === 'SSE-KMS') return { mode: sse.mode, ...(sse.kmsKeyId !== undefined ? { kmsKeyId: sse.kmsKeyId } : {}) };
  if (sse.mode === 'SSE-C') return { mode: sse.mode, customerKeySecret: sse.customerKeySecret };
  return { mode: sse.mode };
}

/** The recovery contract for these arguments. Pure. */
export function buildContract(r: ResolvedArgs, bucket: string, endpoint: string | undefined): RecoveryContract {
  const n = namesFor(r.name);
  const members = Array.from({ length: r.members }, (_, i) => {
    const pod = n.pod(i);
    return {
      name: pod,
      pvc: n.pvc(pod),
      peerURL: memberURLs(pod, n.headless, r.namespace, PORTS.peer, r.peerScheme),
      clientURL: memberURLs(pod, n.headless, r.namespace, PORTS.client, r.scheme),
    };
  });
  return {
    apiVersion: CONTRACT_API_VERSION,
    kind: CONTRACT_KIND,
    cluster: r.name,
    namespace: r.namespace,
    etcd: {
      statefulSet: n.statefulSet,
      headlessService: n.headless,
      clientService: n.client,
      replicas: r.members,
      image: r.image,
      ...(r.etcdVersion ? { version: r.etcdVersion } : {}),
      containerName: 'etcd',
      volumeClaimTemplate: n.volumeClaimTemplate,
      mountPath: MOUNT,
      dataDir: DATA_DIR,
      clientPort: PORTS.client,
      peerPort: PORTS.peer,
      members,
      podLabels: podLabels(r),
      ...(r.tls
        ? {
            tls: {
              ...(r.tls.clientSecret ? { clientSecret: r.tls.clientSecret } : {}),
              ...(r.tls.serverSecret ? { serverSecret: r.tls.serverSecret } : {}),
              ...(r.tls.peerSecret ? { peerSecret: r.tls.peerSecret } : {}),
            },
          }
        : {}),
    },
    backup: {
      bucket,
      prefix: r.backup.prefix,
      ...(endpoint ? { endpoint } : {}),
      region: r.backup.region,
      forcePathStyle: r.backup.forcePathStyle ?? Boolean(endpoint),
      checksumMode: r.backup.checksumMode,
      credentialsSecret: n.credentials,
      ...(r.backup.encryption ? { encryption: { secretName: r.backup.encryption.secretName } } : {}),
      ...(r.backup.sse ? { sse: contractSse(r.backup.sse) } : {}),
    },
    agent: { image: r.agentImage, restoreServiceAccount: n.sa('restore') },
    dependents: r.dependents.map((d) => ({ apiVersion: 'apps/v1' as const, ...d })),
    ...(r.companions ? { companions: r.companions } : {}),
    reporting: { contractConfigMap: n.contract, statusConfigMap: n.status },
    ...(r.pause ? { pause: { ...r.pause } } : {}),
    ...(r.afterRestore ? { afterRestore: r.afterRestore } : {}),
    ...(r.archive ? { archive: { deployment: n.archiver, intervalMs: r.archive.intervalMs } } : {}),
  };
}
