import { KubeConfig, KubernetesObjectApi, PatchStrategy, type KubernetesObject } from '@kubernetes/client-node';
import { parseAllDocuments } from 'yaml';
import { waitFor } from './util.js';

const FIELD_MANAGER = 'etcd-recover-test';

/** Namespaces and CRDs go first so that what lives in them can be applied in the same call. */
const rank = (o: KubernetesObject) => (o.kind === 'Namespace' ? 0 : o.kind === 'CustomResourceDefinition' ? 1 : 2);

/**
 * Server-side apply (field manager "etcd-recover-test", force) of objects or a multi-document YAML
 * string, in order: Namespaces, CRDs (waited for Established), then the rest as given.
 */
export async function applyManifests(kc: KubeConfig, objects: object[] | string): Promise<KubernetesObject[]> {
  const list: KubernetesObject[] =
    typeof objects === 'string'
      ? parseAllDocuments(objects).map((d) => d.toJS()).filter((o) => o && typeof o === 'object')
      : (objects as KubernetesObject[]);
  const sorted = list.map((o, i) => ({ o, i })).sort((a, b) => rank(a.o) - rank(b.o) || a.i - b.i).map((x) => x.o);
  const client = KubernetesObjectApi.makeApiClient(kc);
  const out: KubernetesObject[] = [];
  for (const o of sorted) {
    if (!o.metadata?.name) throw new Error(`applyManifests: object without metadata.name: ${JSON.stringify(o).slice(0, 200)}`);
    const applied = await client.patch(o, undefined, undefined, FIELD_MANAGER, true, PatchStrategy.ServerSideApply);
    out.push(applied);
    if (o.kind === 'CustomResourceDefinition') {
      await waitFor(`CRD ${o.metadata.name} Established`, async () => {
        const crd: any = await client.read({ apiVersion: o.apiVersion!, kind: o.kind!, metadata: { name: o.metadata!.name! } });
        return (crd.status?.conditions ?? []).some((c: any) => c.type === 'Established' && c.status === 'True');
      }, 30_000);
    }
  }
  return out;
}
