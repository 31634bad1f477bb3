import { CoreV1Api, KubeConfig, type V1Pod } from '@kubernetes/client-node';
import { EtcdRecoverError } from '../errors.js';
import type { KubeGateway, PodInfo, PvcInfo } from '../recovery/ports.js';

/** KubeGateway over @kubernetes/client-node 2.x; errors mapped to EtcdRecoverError naming the verb and resource. */
export class ClientNodeGateway implements KubeGateway {
  private readonly core: CoreV1Api;

  constructor(readonly kc: KubeConfig) {
    this.core = kc.makeApiClient(CoreV1Api);
  }

  /** In a pod: the ServiceAccount's token and CA. */
  static inCluster(): ClientNodeGateway {
    const kc = new KubeConfig();
    kc.loadFromCluster();
    return new ClientNodeGateway(kc);
  }

  private async call<T>(what: string, fn: () => Promise<T>, notFoundOk = false): Promise<T | undefined> {
    try {
      return await fn();
    } catch (e) {
      const code = (e as { code?: number }).code;
      if (code === 404 && notFoundOk) return undefined;
      if (code === 403) {
        throw new EtcdRecoverError('FORBIDDEN', `Kubernetes denied ${what}: ${bodyMessage(e)}`, { cause: e, hint: 'grant the permission named, or run as a user who has it' });
      }
      throw new EtcdRecoverError('KUBERNETES_ERROR', `Kubernetes: ${what} failed: ${bodyMessage(e)}`, { cause: e });
    }
  }

  async getPod(namespace: string, name: string): Promise<PodInfo | undefined> {
    const p = await this.call(`get pod ${namespace}/${name}`, () => this.core.readNamespacedPod({ namespace, name }), true);
    return p ? podInfo(p) : undefined;
  }

  async listPods(namespace: string, labelSelector: string): Promise<PodInfo[]> {
    const l = await this.call(`list pods in ${namespace}`, () => this.core.listNamespacedPod({ namespace, labelSelector }));
    return (l?.items ?? []).map(podInfo);
  }

  async deletePod(namespace: string, name: string): Promise<void> {
    await this.call(`delete pod ${namespace}/${name}`, () => this.core.deleteNamespacedPod({ namespace, name }), true);
  }

  async getPvc(namespace: string, name: string): Promise<PvcInfo | undefined> {
    const p = await this.call(`get persistentvolumeclaim ${namespace}/${name}`, () => this.core.readNamespacedPersistentVolumeClaim({ namespace, name }), true);
    if (!p) return undefined;
    return {
      name,
      phase: p.status?.phase ?? 'Unknown',
      deleting: Boolean(p.metadata?.deletionTimestamp),
      ...(p.spec?.volumeName ? { volumeName: p.spec.volumeName } : {}),
    };
  }

  async deletePvc(namespace: string, name: string): Promise<void> {
    await this.call(`delete persistentvolumeclaim ${namespace}/${name}`, () => this.core.deleteNamespacedPersistentVolumeClaim({ namespace, name }), true);
  }

  async getConfigMap(namespace: string, name: string): Promise<Record<string, string> | undefined> {
    const c = await this.call(`get configmap ${namespace}/${name}`, () => this.core.readNamespacedConfigMap({ namespace, name }), true);
    return c ? (c.data ?? {}) : undefined;
  }
}

function podInfo(p: V1Pod): PodInfo {
  const statuses = p.status?.containerStatuses ?? [];
  const waiting = statuses.find((s) => s.state?.waiting)?.state?.waiting?.reason;
  return {
    name: p.metadata?.name ?? '',
    ...(p.metadata?.uid ? { uid: p.metadata.uid } : {}),
    phase: p.status?.phase ?? 'Unknown',
    ready: Boolean(p.status?.conditions?.find((c) => c.type === 'Ready')?.status === 'True'),
    restarts: statuses.reduce((a, s) => a + (s.restartCount ?? 0), 0),
    ...(p.status?.podIP ? { podIP: p.status.podIP } : {}),
    deleting: Boolean(p.metadata?.deletionTimestamp),
    ...(waiting ? { waitingReason: waiting } : {}),
  };
}

function bodyMessage(e: unknown): string {
  const body = (e as { body?: unknown }).body;
  if (typeof body === 'string') {
    try {
      return (JSON.parse(body) as { message?: string }).message ?? body;
    } catch {
      return body;
    }
  }
  if (body && typeof body === 'object' && 'message' in body) return String((body as { message: unknown }).message);
  return (e as Error).message;
}
