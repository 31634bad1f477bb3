import { request as httpRequest, type IncomingMessage, type RequestOptions } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { EtcdRecoverError } from '../errors.js';
import type { HostedCronJob, HostedJob, HostedPod } from '../recovery/after-restore.js';
import type { HostedCluster } from '../recovery/ports.js';
import { apiError, statusOf } from './kube-cluster.js';

/** One call to the hosted API server may take this long. */
const CALL_TIMEOUT_MS = 10_000;

/**
 * The hosted cluster's API server from the kubeconfig in a Secret of the management cluster's
 * namespace (what HyperShift calls the admin kubeconfig). Refuses with PRECONDITION when the Secret or
 * its key is missing, CONFIG when it is not a kubeconfig. The kubeconfig's content never reaches a
 * message.
 */
export async function hostedClusterFromSecret(kc: KubeConfig, namespace: string, ref: { secretName: string; key: string }): Promise<HostedCluster> {
  let secret;
  try {
    secret = await kc.makeApiClient(CoreV1Api).readNamespacedSecret({ namespace, name: ref.secretName });
  } catch (e) {
    if (statusOf(e) === 404) throw new EtcdRecoverError('PRECONDITION', `Secret ${namespace}/${ref.secretName} (afterRestore.hostedKubeconfig) does not exist`);
    throw apiError(`get secret ${namespace}/${ref.secretName}`, e);
  }
  const data = secret.data?.[ref.key];
  if (!data) throw new EtcdRecoverError('PRECONDITION', `Secret ${namespace}/${ref.secretName} has no key ${ref.key} (afterRestore.hostedKubeconfig)`);
  return hostedClusterFromKubeconfig(Buffer.from(data, 'base64').toString('utf8'), `key ${ref.key} of Secret ${namespace}/${ref.secretName}`);
}

/** The hosted API server a kubeconfig names (its current context); `where` names the kubeconfig in errors. */
export function hostedClusterFromKubeconfig(text: string, where: string): HostedCluster {
  const hosted = new KubeConfig();
  try {
    hosted.loadFromString(text);
  } catch {
    throw new EtcdRecoverError('CONFIG', `${where} is not a kubeconfig`);
  }
  const server = hosted.getCurrentCluster()?.server;
  if (!server) throw new EtcdRecoverError('CONFIG', `the kubeconfig in ${where} has no current cluster`);
  return new HostedApi(hosted, server);
}

interface List<T> {
  items?: T[];
  metadata?: { continue?: string };
}

/** The few REST calls the after-restore steps make, each bounded by CALL_TIMEOUT_MS and the caller's signal. */
class HostedApi implements HostedCluster {
  constructor(
    private readonly kc: KubeConfig,
    private readonly server: string,
  ) {}

  describe(): string {
    return `the hosted API server ${this.server}`;
  }

  private async call<T>(method: string, path: string, o: { body?: unknown; contentType?: string; signal?: AbortSignal; notFoundOk?: boolean } = {}): Promise<T | undefined> {
    const url = new URL(this.server.replace(/\/$/, '') + path);
    const body = o.body === undefined ? undefined : JSON.stringify(o.body);
    const opts: RequestOptions = { method, headers: { accept: 'application/json', ...(body !== undefined ? { 'content-type': o.contentType ?? 'application/json' } : {}) } };
    // The kubeconfig's CA / client certificate / insecure-skip-tls-verify (the agent) and its token.
    await this.kc.applyToHTTPSOptions(opts as Parameters<KubeConfig['applyToHTTPSOptions']>[0]);
    const signal = o.signal ? AbortSignal.any([o.signal, AbortSignal.timeout(CALL_TIMEOUT_MS)]) : AbortSignal.timeout(CALL_TIMEOUT_MS);
    const what = `${method} ${url.pathname} on ${this.describe()}`;
    const { status, text } = await new Promise<{ status: number; text: string }>((resolve, reject) => {
      const onResponse = (res: IncomingMessage) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (text += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
        res.on('error', reject);
      };
      // A plain-http server (a local proxy) takes no TLS agent.
      const { agent, ...plain } = opts;
      const req = url.protocol === 'http:' ? httpRequest(url, { ...plain, signal }, onResponse) : httpsRequest(url, { ...plain, ...(agent ? { agent } : {}), signal }, onResponse);
      req.on('error', (e) => {
        if (o.signal?.aborted) reject(new EtcdRecoverError('ABORTED', 'interrupted', { cause: e }));
        else if (signal.aborted) reject(new EtcdRecoverError('TIMEOUT', `${what}: no answer within ${CALL_TIMEOUT_MS / 1000} s`, { cause: e }));
        else reject(new EtcdRecoverError('KUBERNETES_ERROR', `${what}: ${(e as NodeJS.ErrnoException).code ?? e.message}`, { cause: e }));
      });
      req.end(body);
    });
    if (status === 404 && o.notFoundOk) return undefined;
    if (status >= 300) {
      let message = text.slice(0, 300);
      try {
        message = (JSON.parse(text) as { message?: string }).message ?? message;
      } catch {
        /* not a Status */
      }
      const code = status === 401 || status === 403 ? 'FORBIDDEN' : 'KUBERNETES_ERROR';
      throw new EtcdRecoverError(code, `${what}: ${status} ${message}`, { ...(status === 409 ? { hint: 'changed meanwhile' } : {}) });
    }
    return text ? (JSON.parse(text) as T) : undefined;
  }

  private async listAll<T>(path: string, signal?: AbortSignal): Promise<T[]> {
    const out: T[] = [];
    let cont: string | undefined;
    do {
      const page = await this.call<List<T>>('GET', `${path}?limit=500${cont ? `&continue=${encodeURIComponent(cont)}` : ''}`, signal ? { signal } : {});
      out.push(...(page?.items ?? []));
      cont = page?.metadata?.continue || undefined;
    } while (cont);
    return out;
  }

  async listCronJobs(signal?: AbortSignal): Promise<HostedCronJob[]> {
    const items = await this.listAll<any>('/apis/batch/v1/cronjobs', signal);
    return items.map((c) => ({
      namespace: c.metadata.namespace,
      name: c.metadata.name,
      suspended: c.spec?.suspend === true,
      active: (c.status?.active ?? []).map((a: any) => ({ name: a.name, ...(a.namespace ? { namespace: a.namespace } : {}), ...(a.uid ? { uid: a.uid } : {}) })),
      ...(c.status?.lastScheduleTime ? { lastScheduleTime: c.status.lastScheduleTime } : {}),
      ...(c.metadata.resourceVersion ? { resourceVersion: c.metadata.resourceVersion } : {}),
    }));
  }

  async listJobs(signal?: AbortSignal): Promise<HostedJob[]> {
    const items = await this.listAll<any>('/apis/batch/v1/jobs', signal);
    return items.map((j) => ({ namespace: j.metadata.namespace, name: j.metadata.name, ...(j.metadata.uid ? { uid: j.metadata.uid } : {}) }));
  }

  async listPods(signal?: AbortSignal): Promise<HostedPod[]> {
    const items = await this.listAll<any>('/api/v1/pods', signal);
    return items.map((p) => {
      const inits: any[] = p.status?.initContainerStatuses ?? [];
      return {
        namespace: p.metadata.namespace,
        name: p.metadata.name,
        phase: p.status?.phase ?? 'Unknown',
        ...(p.spec?.nodeName ? { nodeName: p.spec.nodeName } : {}),
        ...(p.metadata.creationTimestamp ? { createdAt: p.metadata.creationTimestamp } : {}),
        deleting: Boolean(p.metadata.deletionTimestamp),
        initContainers: (p.spec?.initContainers ?? []).length,
        initDone: inits.filter((s) => s.state?.terminated?.exitCode === 0).length,
        waiting: (p.status?.containerStatuses ?? []).map((s: any) => s.state?.waiting?.reason).filter(Boolean),
      };
    });
  }

  async patchCronJobStatus(namespace: string, name: string, patch: Record<string, unknown>, signal?: AbortSignal): Promise<void> {
    await this.call('PATCH', `/apis/batch/v1/namespaces/${namespace}/cronjobs/${name}/status`, { body: patch, contentType: 'application/merge-patch+json', ...(signal ? { signal } : {}) });
  }

  async deletePod(namespace: string, name: string, signal?: AbortSignal): Promise<void> {
    await this.call('DELETE', `/api/v1/namespaces/${namespace}/pods/${name}`, { notFoundOk: true, ...(signal ? { signal } : {}) });
  }
}
