import { parseQuantity } from './quantity.js';

/*
 * What a container's environment and arguments are made of, as the kubelet makes them: $(VAR)
 * expansion, the downward API's field references and resource references.
 */

/** Kubernetes $(VAR) expansion: $$ escapes, unknown references stay as written. */
export function expand(input: string, env: Record<string, string>): string {
  let out = '';
  for (let i = 0; i < input.length; i++) {
    const c = input[i]!;
    if (c === '$' && i + 1 < input.length) {
      const n = input[i + 1];
      if (n === '$') { out += '$'; i++; continue; }
      if (n === '(') {
        const close = input.indexOf(')', i + 2);
        if (close >= 0) {
          const name = input.slice(i + 2, close);
          out += name in env ? env[name] : `$(${name})`;
          i = close;
          continue;
        }
      }
    }
    out += c;
  }
  return out;
}

/** Downward API field paths. */
export function fieldValue(pod: any, path: string, podIP: string, hostIP: string): string {
  const m = /^metadata\.(labels|annotations)\['(.+)'\]$/.exec(path);
  if (m) return pod.metadata[m[1]!]?.[m[2]!] ?? '';
  switch (path) {
    case 'metadata.name': return pod.metadata.name;
    case 'metadata.namespace': return pod.metadata.namespace;
    case 'metadata.uid': return pod.metadata.uid;
    case 'metadata.labels':
    case 'metadata.annotations':
      return Object.entries(pod.metadata[path.slice(9)] ?? {}).map(([k, v]) => `${k}=${JSON.stringify(v)}`).sort().join('\n');
    case 'spec.nodeName': return pod.spec.nodeName ?? '';
    case 'spec.serviceAccountName': return pod.spec.serviceAccountName ?? 'default';
    case 'status.podIP':
    case 'status.podIPs': return podIP;
    case 'status.hostIP':
    case 'status.hostIPs': return hostIP;
    default: throw new Error(`unsupported downward API fieldPath ${path}`);
  }
}

export function resourceValue(pod: any, ref: any, defaultContainer: string | undefined, allocatable: Record<string, string>): string {
  const cname = ref.containerName || defaultContainer;
  const c = [...(pod.spec.containers ?? []), ...(pod.spec.initContainers ?? [])].find((x: any) => x.name === cname);
  const [kind, res] = String(ref.resource).split('.') as [string, string];
  const fromSpec = c?.resources?.[kind]?.[res] ?? (kind === 'requests' ? c?.resources?.limits?.[res] : undefined);
  const value = parseQuantity(fromSpec) ?? (kind === 'limits' ? parseQuantity(allocatable[res]) : 0) ?? 0;
  const divisor = parseQuantity(ref.divisor) || 1;
  return String(Math.ceil(value / divisor));
}
