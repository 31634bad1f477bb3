import { CoreV1Api, KubeConfig, KubernetesObjectApi, PatchStrategy, type KubernetesObject } from '@kubernetes/client-node';
import { EtcdRecoverError } from '../errors.js';
import type { StepContext } from '../recovery/target.js';
import { apiError, pollDelay } from './kube-cluster.js';

/** Annotation remembering a workload's replicas while a recovery holds it at zero. */
export const REPLICAS_ANNOTATION = 'etcd-recover.io/replicas-before';

/** A workload (or any object) as read through the API server. */
export type KubeObject = KubernetesObject & { spec?: any; status?: any };

/** Names one object of any kind. */
export interface ObjectRef {
  apiVersion: string;
  kind: string;
  name: string;
  namespace: string;
}

/**
 * Workloads scaled and patched through the API server, each step safe to repeat: a scale to zero
 * remembers the replicas in an annotation, so a rerun (or a crash between two steps) scales back to
 * what the owner had, never to zero or to a guess.
 */
export class Workloads {
  private readonly core: CoreV1Api;
  private readonly objects: KubernetesObjectApi;

  /** `stopMs`: how long pods may take to terminate after a scale to zero. */
  constructor(kc: KubeConfig, private readonly stopMs: number) {
    this.core = kc.makeApiClient(CoreV1Api);
    this.objects = KubernetesObjectApi.makeApiClient(kc);
  }

  async read(r: ObjectRef): Promise<KubeObject> {
    try {
      return (await this.objects.read({ apiVersion: r.apiVersion, kind: r.kind, metadata: { name: r.name, namespace: r.namespace } })) as KubeObject;
    } catch (e) {
      throw apiError(`get ${r.kind.toLowerCase()} ${r.namespace}/${r.name}`, e);
    }
  }

  async mergePatch(r: ObjectRef, patch: Record<string, unknown>): Promise<void> {
    try {
      await this.objects.patch({ apiVersion: r.apiVersion, kind: r.kind, metadata: { name: r.name, namespace: r.namespace }, ...patch } as KubernetesObject, undefined, undefined, 'etcd-recover', undefined, PatchStrategy.MergePatch);
    } catch (e) {
      throw apiError(`patch ${r.kind.toLowerCase()} ${r.namespace}/${r.name}`, e);
    }
  }

  /** Scales a workload to zero, remembering its replicas in an annotation (idempotent). Returns it as read. */
  async scaleDown(r: ObjectRef): Promise<KubeObject> {
    const o = await this.read(r);
    const replicas = o.spec?.replicas ?? 1;
    if (replicas > 0) {
      await this.mergePatch(r, { metadata: { name: r.name, namespace: r.namespace, annotations: { [REPLICAS_ANNOTATION]: String(replicas) } }, spec: { replicas: 0 } });
    }
    return o;
  }

  /** Scales a workload back to what the annotation remembers (or `fallback`), and forgets it. */
  async scaleUp(r: ObjectRef, fallback: number): Promise<number> {
    const o = await this.read(r);
    const remembered = Number(o.metadata?.annotations?.[REPLICAS_ANNOTATION]);
    const replicas = Number.isInteger(remembered) && remembered > 0 ? remembered : (o.spec?.replicas || fallback);
    await this.mergePatch(r, { metadata: { name: r.name, namespace: r.namespace, annotations: { [REPLICAS_ANNOTATION]: null } }, spec: { replicas } });
    return replicas;
  }

  /** The workload's pods that still run or hold something (not Jobs' pods, not terminated ones). */
  async podsOf(o: { spec?: any }, namespace: string): Promise<string[]> {
    const match = o.spec?.selector?.matchLabels as Record<string, string> | undefined;
    if (!match) return [];
    const labelSelector = Object.entries(match).map(([k, v]) => `${k}=${v}`).join(',');
    try {
      return (await this.core.listNamespacedPod({ namespace, labelSelector })).items
        // A terminated pod (Succeeded/Failed, kept until garbage-collected) runs nothing and holds nothing.
        .filter((p) => !p.metadata?.labels?.['job-name'] && p.status?.phase !== 'Succeeded' && p.status?.phase !== 'Failed')
        .map((p) => p.metadata!.name!);
    } catch (e) {
      throw apiError(`list pods in ${namespace}`, e);
    }
  }

  /** Waits (up to stopMs) until the workload has no pods left. */
  async waitNoPods(what: string, o: { spec?: any }, namespace: string, ctx: StepContext): Promise<void> {
    const deadline = Date.now() + this.stopMs;
    for (;;) {
      const left = await this.podsOf(o, namespace);
      if (!left.length) return;
      if (Date.now() > deadline) {
        throw new EtcdRecoverError('TIMEOUT', `${what}: pods ${left.join(', ')} still exist ${Math.round(this.stopMs / 1000)} s after scaling to zero`, {
          hint: `kubectl -n ${namespace} get pods ${left.join(' ')}; rerun to resume`,
        });
      }
      await pollDelay(ctx.signal);
    }
  }
}

/** Whether `o` already holds every field of a merge patch (null = absent). */
export function holdsPatch(o: unknown, patch: unknown): boolean {
  if (patch === null) return o === undefined || o === null;
  if (typeof patch !== 'object' || Array.isArray(patch)) return JSON.stringify(o) === JSON.stringify(patch);
  if (typeof o !== 'object' || o === null) return false;
  return Object.entries(patch as Record<string, unknown>).every(([k, v]) => holdsPatch((o as Record<string, unknown>)[k], v));
}
