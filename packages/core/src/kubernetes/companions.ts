import { CoreV1Api, KubeConfig, type V1ConfigMap, type V1Secret } from '@kubernetes/client-node';
import type { CompanionItem, CompanionSink, CompanionSource } from '../snapshot/companions.js';
import { apiError, statusOf } from './kube-cluster.js';

export const RESTORED_FROM_ANNOTATION = 'etcd-recover.io/restored-from';

/** The companions source of a backup Job: the pod's ServiceAccount, undefined outside a pod. */
export function inClusterCompanionSource(namespace: string, names: { secrets?: string[]; configMaps?: string[] }): CompanionSource | undefined {
  if (!process.env['KUBERNETES_SERVICE_HOST']) return undefined;
  const kc = new KubeConfig();
  kc.loadFromCluster();
  return kubeCompanionSource(kc, namespace, names);
}

/**
 * Reads the companions the contract names, for a backup Job (its ServiceAccount may `get` exactly
 * these names). One that is absent or unreadable is recorded as missing with the reason: the
 * snapshot is never lost for a companion, and the record and the job's log say what is missing.
 */
export function kubeCompanionSource(kc: KubeConfig, namespace: string, names: { secrets?: string[]; configMaps?: string[] }): CompanionSource {
  const core = kc.makeApiClient(CoreV1Api);
  return async () => {
    const items: CompanionItem[] = [];
    const missing: { kind: CompanionItem['kind']; name: string; reason?: string }[] = [];
    const get = async <T>(kind: CompanionItem['kind'], name: string, fn: () => Promise<T>): Promise<T | undefined> => {
      try {
        return await fn();
      } catch (e) {
        missing.push({ kind, name, reason: statusOf(e) === 404 ? 'not found' : statusOf(e) === 403 ? 'forbidden' : apiError(`get ${kind} ${namespace}/${name}`, e).message });
        return undefined;
      }
    };
    for (const name of names.secrets ?? []) {
      const s = await get('Secret', name, () => core.readNamespacedSecret({ namespace, name }));
      if (s) items.push(fromSecret(s));
    }
    for (const name of names.configMaps ?? []) {
      const c = await get('ConfigMap', name, () => core.readNamespacedConfigMap({ namespace, name }));
      if (c) items.push(fromConfigMap(c));
    }
    return { namespace, items, missing };
  };
}

function fromSecret(s: V1Secret): CompanionItem {
  return {
    kind: 'Secret',
    name: s.metadata!.name!,
    ...(s.type ? { type: s.type } : {}),
    ...(s.data ? { data: s.data } : {}),
    ...(s.metadata?.labels ? { labels: s.metadata.labels } : {}),
  };
}

function fromConfigMap(c: V1ConfigMap): CompanionItem {
  return {
    kind: 'ConfigMap',
    name: c.metadata!.name!,
    ...(c.binaryData ? { data: c.binaryData } : {}),
    ...(c.data ? { stringData: c.data } : {}),
    ...(c.metadata?.labels ? { labels: c.metadata.labels } : {}),
  };
}

/** Creates and (only when asked) replaces companions in the cluster's namespace, marking where they came from. */
export function kubeCompanionSink(kc: KubeConfig, namespace: string, backup: string): CompanionSink {
  const core = kc.makeApiClient(CoreV1Api);
  const metadata = (i: CompanionItem) => ({ name: i.name, namespace, ...(i.labels ? { labels: i.labels } : {}), annotations: { [RESTORED_FROM_ANNOTATION]: backup } });
  const secret = (i: CompanionItem): V1Secret => ({ metadata: metadata(i), ...(i.type ? { type: i.type } : {}), ...(i.data ? { data: i.data } : {}) });
  const configMap = (i: CompanionItem): V1ConfigMap => ({ metadata: metadata(i), ...(i.stringData ? { data: i.stringData } : {}), ...(i.data ? { binaryData: i.data } : {}) });
  const call = async <T>(what: string, fn: () => Promise<T>, notFoundOk = false): Promise<T | undefined> => {
    try {
      return await fn();
    } catch (e) {
      if (notFoundOk && statusOf(e) === 404) return undefined;
      throw apiError(what, e);
    }
  };
  return {
    async read(kind, name) {
      if (kind === 'Secret') {
        const s = await call(`get secret ${namespace}/${name}`, () => core.readNamespacedSecret({ namespace, name }), true);
        return s ? fromSecret(s) : undefined;
      }
      const c = await call(`get configmap ${namespace}/${name}`, () => core.readNamespacedConfigMap({ namespace, name }), true);
      return c ? fromConfigMap(c) : undefined;
    },
    async create(i) {
      if (i.kind === 'Secret') await call(`create secret ${namespace}/${i.name}`, () => core.createNamespacedSecret({ namespace, body: secret(i) }));
      else await call(`create configmap ${namespace}/${i.name}`, () => core.createNamespacedConfigMap({ namespace, body: configMap(i) }));
    },
    async replace(i) {
      if (i.kind === 'Secret') await call(`replace secret ${namespace}/${i.name}`, () => core.replaceNamespacedSecret({ namespace, name: i.name, body: secret(i) }));
      else await call(`replace configmap ${namespace}/${i.name}`, () => core.replaceNamespacedConfigMap({ namespace, name: i.name, body: configMap(i) }));
    },
  };
}
