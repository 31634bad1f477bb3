import * as pulumi from '@pulumi/pulumi';
import type { RecordedResource } from './pulumi-mocks.js';

/** Unwraps Pulumi's RPC secret markers everywhere in a value. */
export function unwrapSecrets(v: unknown): unknown {
  if (pulumi.runtime.isRpcSecret(v)) return unwrapSecrets(pulumi.runtime.unwrapRpcSecret(v));
  if (Array.isArray(v)) return v.map(unwrapSecrets);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, unwrapSecrets(x)]));
  return v;
}

/**
 * The Kubernetes manifests a Pulumi program declared, as captured by the
 * recording mocks: every `kubernetes:*` resource's inputs, which carry
 * apiVersion and kind, with secrets unwrapped. What `pulumi up` would send.
 */
export function kubernetesManifests(resources: RecordedResource[]): Record<string, any>[] {
  return resources
    .filter((r) => r.type.startsWith('kubernetes:') && r.custom)
    .map((r) => {
      const o = unwrapSecrets(r.inputs) as Record<string, any>;
      if (!o['apiVersion'] || !o['kind']) throw new Error(`${r.type} ${r.name} has no apiVersion/kind in its inputs`);
      return o;
    });
}
