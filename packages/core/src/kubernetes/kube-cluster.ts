import { parseEtcdMetrics } from '../etcd/metrics.js';
import { BatchV1Api, CoreV1Api, KubeConfig, type V1Job } from '@kubernetes/client-node';
import { setTimeout as sleep } from 'node:timers/promises';
import { EtcdRecoverError } from '../errors.js';
import { CONTRACT_KEY, CONTRACT_LABEL, CLUSTER_LABEL, SSE_C_SECRET_KEY, parseContract, type RecoveryContract } from '../contract/recovery-contract.js';

/** Label a recovery puts on the Jobs it runs (they are never drained as a CronJob's runs). */
export const RECOVERY_LABEL = 'etcd-recover.io/recovery';

export interface KubeTargetOptions {
  kubeconfig?: string;
  context?: string;
  namespace?: string;
}

/** kubectl's rules: --kubeconfig, else KUBECONFIG / ~/.kube/config; --context; -n, else the context's namespace, else "default". */
export function loadKubeConfig(o: KubeTargetOptions): { kc: KubeConfig; namespace: string } {
  const kc = new KubeConfig();
  try {
    if (o.kubeconfig) kc.loadFromFile(o.kubeconfig);
    else kc.loadFromDefault();
  } catch (e) {
    throw new EtcdRecoverError('CONFIG', `cannot load kubeconfig${o.kubeconfig ? ` ${o.kubeconfig}` : ''}: ${(e as Error).message}`, { cause: e });
  }
  if (o.context) {
    if (!kc.getContexts().some((c) => c.name === o.context)) {
      throw new EtcdRecoverError('CONFIG', `context "${o.context}" does not exist in the kubeconfig`, {
        hint: `contexts: ${kc.getContexts().map((c) => c.name).join(', ') || 'none'}`,
      });
    }
    kc.setCurrentContext(o.context);
  }
  if (!kc.getCurrentCluster()) throw new EtcdRecoverError('CONFIG', 'the kubeconfig has no current cluster', { hint: 'pass --kubeconfig or --context' });
  const ctx = kc.getContextObject(kc.getCurrentContext());
  return { kc, namespace: o.namespace ?? ctx?.namespace ?? 'default' };
}

export interface DeclaredCluster {
  namespace: string;
  configMap: string;
  contract: RecoveryContract;
}

/** The HTTP status of a failed API call (client-node puts it in `code`). */
export function statusOf(e: unknown): number | undefined {
  return (e as { code?: number }).code;
}

/** The pause between two polls of the API server (aborted with the signal). */
export function pollDelay(signal?: AbortSignal): Promise<void> {
  return sleep(500, undefined, signal ? { signal } : undefined);
}

/** Whether a Job has given up (its Failed condition: retries per backoffLimit come first). */
export function jobFailed(j: V1Job): boolean {
  return Boolean(j.status?.conditions?.some((c) => c.type === 'Failed' && c.status === 'True'));
}

export function apiError(what: string, e: unknown): EtcdRecoverError {
  const code = statusOf(e);
  const body = (e as { body?: unknown }).body;
  let msg = (e as Error).message;
  if (typeof body === 'string') {
    try {
      msg = (JSON.parse(body) as { message?: string }).message ?? msg;
    } catch {
      /* keep */
    }
  }
  if (code === 403) return new EtcdRecoverError('FORBIDDEN', `Kubernetes denied ${what}: ${msg}`, { cause: e, hint: 'ask for the permission named (docs/recovery-contract.md lists what each command needs)' });
  if (code === 401) return new EtcdRecoverError('ACCESS_DENIED', `Kubernetes rejected the credentials for ${what}`, { cause: e, hint: 'check --kubeconfig / --context' });
  if (/ECONNREFUSED|ENOTFOUND|ETIMEDOUT|EHOSTUNREACH/.test(msg)) return new EtcdRecoverError('KUBERNETES_ERROR', `the Kubernetes API is unreachable (${what}): ${msg}`, { cause: e, retryable: true });
  return new EtcdRecoverError('KUBERNETES_ERROR', `Kubernetes: ${what} failed: ${msg}`, { cause: e });
}

/** The clusters the component declared (recovery-contract ConfigMaps), in one namespace or all. */
export async function findDeclaredClusters(kc: KubeConfig, namespace: string | undefined, cluster?: string): Promise<DeclaredCluster[]> {
  const core = kc.makeApiClient(CoreV1Api);
  const labelSelector = cluster ? `${CONTRACT_LABEL},${CLUSTER_LABEL}=${cluster}` : CONTRACT_LABEL;
  let items;
  try {
    items = namespace ? (await core.listNamespacedConfigMap({ namespace, labelSelector })).items : (await core.listConfigMapForAllNamespaces({ labelSelector })).items;
  } catch (e) {
    throw apiError(`list configmaps${namespace ? ` in ${namespace}` : ' in all namespaces'}`, e);
  }
  return items.map((cm) => ({
    namespace: cm.metadata!.namespace!,
    configMap: cm.metadata!.name!,
    contract: parseContract(cm.data?.[CONTRACT_KEY] ?? '', `configmap ${cm.metadata!.namespace}/${cm.metadata!.name}`),
  }));
}

/** Exactly one declared cluster: by name, or the only one in the namespace. */
export async function resolveDeclaredCluster(kc: KubeConfig, namespace: string, cluster?: string): Promise<DeclaredCluster> {
  const found = await findDeclaredClusters(kc, namespace, cluster);
  if (found.length === 1) return found[0]!;
  if (!found.length) {
    throw new EtcdRecoverError('CONFIG', cluster ? `no etcd cluster "${cluster}" is declared in namespace ${namespace}` : `no etcd cluster is declared in namespace ${namespace} (no ConfigMap labelled ${CONTRACT_LABEL})`, {
      hint: 'pass -n NAMESPACE (or --all-namespaces with status); clusters are declared by the EtcdCluster Pulumi component',
    });
  }
  throw new EtcdRecoverError('USAGE', `namespace ${namespace} declares ${found.length} etcd clusters (${found.map((f) => f.contract.cluster).join(', ')})`, { hint: 'pick one with --cluster NAME' });
}

/** S3 credentials from the contract's Secret, when the operator may read it. */
export async function readBackupCredentials(kc: KubeConfig, c: RecoveryContract): Promise<{ accessKeyId: string; secretAccessKey: string } | undefined> {
  if (!c.backup.credentialsSecret) return undefined;
  try {
    const s = await kc.makeApiClient(CoreV1Api).readNamespacedSecret({ namespace: c.namespace, name: c.backup.credentialsSecret });
    const d = (k: string) => (s.data?.[k] ? Buffer.from(s.data[k]!, 'base64').toString('utf8') : undefined);
    const id = d('AWS_ACCESS_KEY_ID');
    const key = d('AWS_SECRET_ACCESS_KEY');
    return id && key ? { accessKeyId: id, secretAccessKey: key } : undefined;
  } catch (e) {
    if (statusOf(e) === 403 || statusOf(e) === 404) return undefined;
    throw apiError(`get secret ${c.namespace}/${c.backup.credentialsSecret}`, e);
  }
}

/**
 * The age keys from the Secret the contract names (`recipients`, `identity`), for the plugin on an
 * operator's machine; undefined when the contract names none. A Secret that cannot be read is an
 * error, never a silent fall back to plain backups. The identity is returned only to be parsed.
 */
export async function readAgeKeySecret(kc: KubeConfig, c: RecoveryContract): Promise<{ recipients?: string; identities?: string; source: string } | undefined> {
  const name = c.backup.encryption?.secretName;
  if (!name) return undefined;
  const where = `Secret ${c.namespace}/${name}`;
  let s;
  try {
    s = await kc.makeApiClient(CoreV1Api).readNamespacedSecret({ namespace: c.namespace, name });
  } catch (e) {
    const code = statusOf(e);
    if (code === 404 || code === 403) {
      throw new EtcdRecoverError('ENCRYPTION_KEY', `backups are encrypted, but the key ${where} ${code === 404 ? 'does not exist' : 'cannot be read with your credentials (forbidden)'}`, {
        hint: 'pass the key with --age-identity-file (your break-glass copy), or get read access to that Secret',
      });
    }
    throw apiError(`get secret ${c.namespace}/${name}`, e);
  }
  const d = (k: string) => (s.data?.[k] ? Buffer.from(s.data[k]!, 'base64').toString('utf8') : undefined);
  const recipients = d('recipients');
  const identities = d('identity');
  if (!recipients && !identities) {
    throw new EtcdRecoverError('ENCRYPTION_KEY', `the key ${where} has neither a "recipients" nor an "identity" key`, { hint: 'see docs/runbooks/backups.md, "Encryption"' });
  }
  return { ...(recipients ? { recipients } : {}), ...(identities ? { identities } : {}), source: where };
}

/**
 * The SSE-C key (base64) from the Secret the contract names (backup.sse.customerKeySecret, key
 * `sse-c-key`), for the plugin on an operator's machine; undefined when the contract uses no SSE-C.
 * A Secret that cannot be read is an error naming it; the key itself is never in a message.
 */
export async function readSseCustomerKey(kc: KubeConfig, c: RecoveryContract): Promise<string | undefined> {
  const name = c.backup.sse?.mode === 'SSE-C' ? c.backup.sse.customerKeySecret : undefined;
  if (!name) return undefined;
  const where = `Secret ${c.namespace}/${name}`;
  const hint = 'pass the key with --s3-sse-c-key-file (your break-glass copy), or get read access to that Secret';
  let s;
  try {
    s = await kc.makeApiClient(CoreV1Api).readNamespacedSecret({ namespace: c.namespace, name });
  } catch (e) {
    const code = statusOf(e);
    if (code === 404 || code === 403) {
      throw new EtcdRecoverError('ENCRYPTION_KEY', `the bucket uses SSE-C, but the key ${where} ${code === 404 ? 'does not exist' : 'cannot be read with your credentials (forbidden)'}`, { hint });
    }
    throw apiError(`get secret ${c.namespace}/${name}`, e);
  }
  const key = s.data?.[SSE_C_SECRET_KEY] ? Buffer.from(s.data[SSE_C_SECRET_KEY]!, 'base64').toString('utf8').trim() : '';
  if (!key) throw new EtcdRecoverError('ENCRYPTION_KEY', `the SSE-C key ${where} has no "${SSE_C_SECRET_KEY}" key`, { hint: 'see docs/runbooks/backups.md, "Server-side encryption"' });
  return key;
}

export interface KubeMemberStatus {
  name: string;
  pod: { phase: string; ready: boolean; restarts: number; reason?: string } | undefined;
  pvc: { phase: string; deleting: boolean } | undefined;
  etcd?: { hasLeader: boolean; isLeader: boolean; isLearner: boolean; revision: number; raftIndex: number; dbSize: number };
  error?: string;
}

/**
 * Per member: the pod, its PVC, and etcd's own view from the pod's metrics
 * port through the API server's pod proxy — no port-forward, no exec, no
 * network path from the operator's machine to the pods.
 */
export async function kubeMemberStatus(kc: KubeConfig, c: RecoveryContract): Promise<KubeMemberStatus[]> {
  const core = kc.makeApiClient(CoreV1Api);
  const ns = c.namespace;
  return Promise.all(
    c.etcd.members.map(async (m): Promise<KubeMemberStatus> => {
      const out: KubeMemberStatus = { name: m.name, pod: undefined, pvc: undefined };
      try {
        const p = await core.readNamespacedPod({ namespace: ns, name: m.name });
        const waiting = [...(p.status?.initContainerStatuses ?? []), ...(p.status?.containerStatuses ?? [])].find((s) => s.state?.waiting)?.state?.waiting?.reason;
        out.pod = {
          phase: p.status?.phase ?? 'Unknown',
          ready: p.status?.conditions?.some((x) => x.type === 'Ready' && x.status === 'True') ?? false,
          restarts: (p.status?.containerStatuses ?? []).reduce((a, s) => a + (s.restartCount ?? 0), 0),
          ...(waiting ? { reason: waiting } : {}),
        };
      } catch (e) {
        if (statusOf(e) !== 404) throw apiError(`get pod ${ns}/${m.name}`, e);
      }
      try {
        const v = await core.readNamespacedPersistentVolumeClaim({ namespace: ns, name: m.pvc });
        out.pvc = { phase: v.status?.phase ?? 'Unknown', deleting: Boolean(v.metadata?.deletionTimestamp) };
      } catch (e) {
        if (statusOf(e) !== 404) throw apiError(`get persistentvolumeclaim ${ns}/${m.pvc}`, e);
      }
      if (out.pod?.phase === 'Running') {
        try {
          const text = await core.connectGetNamespacedPodProxyWithPath({ namespace: ns, name: `${m.name}:2381`, path: 'metrics' });
          out.etcd = parseEtcdMetrics(String(text));
        } catch (e) {
          out.error = `metrics unreachable: ${(e as Error).message.split('\n')[0]}`;
        }
      }
      return out;
    }),
  );
}

/**
 * A Job spec from one of the declared CronJobs' templates (as `kubectl create job --from=cronjob/…`),
 * a copy the caller may change; `args` replace the first container's arguments.
 */
export async function jobSpecFromCronJob(kc: KubeConfig, namespace: string, cronJob: string, args?: string[]): Promise<NonNullable<V1Job['spec']>> {
  let cron;
  try {
    cron = await kc.makeApiClient(BatchV1Api).readNamespacedCronJob({ namespace, name: cronJob });
  } catch (e) {
    throw apiError(`get cronjob ${namespace}/${cronJob}`, e);
  }
  const spec = structuredClone(cron.spec!.jobTemplate.spec!);
  if (args) spec.template.spec!.containers[0]!.args = args;
  return spec;
}

/** The jobs of the component (packages/pulumi/src/jobs.ts) whose CronJobs a recovery suspends. */
export const COMPONENT_JOBS = ['backup', 'prune', 'verify', 'heal', 'defrag', 'drill'] as const;

/** The names of the component's CronJobs (`<cluster>-<job>`; those not declared simply do not exist). */
export function componentCronJobs(c: RecoveryContract): string[] {
  return COMPONENT_JOBS.map((j) => `${c.cluster}-${j}`);
}

/** A Job name unique to one recovery and step (a rerun finds the same Job), within 63 characters. */
export function recoveryJobName(cluster: string, recoveryId: string, what: string): string {
  const id = recoveryId.toLowerCase().replace(/^rec-/, '').replace(/[^a-z0-9]+/g, '');
  const tail = `-${id}-${what}`.replace(/[^a-z0-9-]+/g, '-');
  return `${cluster.slice(0, 63 - tail.length)}${tail}`.replace(/^-+|-+$/g, '');
}

/** The exit code and last log lines of a Job's newest pod (best effort: the log needs pods/log). */
export async function jobOutcome(kc: KubeConfig, namespace: string, job: string): Promise<{ exitCode?: number; log?: string }> {
  const core = kc.makeApiClient(CoreV1Api);
  try {
    const pods = await core.listNamespacedPod({ namespace, labelSelector: `job-name=${job}` });
    const newest = pods.items.sort((a, b) => String(b.metadata?.creationTimestamp ?? '').localeCompare(String(a.metadata?.creationTimestamp ?? '')))[0];
    if (!newest) return {};
    const exitCode = newest.status?.containerStatuses?.[0]?.state?.terminated?.exitCode;
    let log: string | undefined;
    try {
      const text = await core.readNamespacedPodLog({ namespace, name: newest.metadata!.name!, tailLines: 8 });
      log = String(text).trim().split('\n').filter(Boolean).slice(-4).join(' | ') || undefined;
    } catch {
      /* no pods/log */
    }
    return { ...(exitCode !== undefined ? { exitCode } : {}), ...(log ? { log } : {}) };
  } catch {
    return {};
  }
}

/** Whether a pod is certainly not running any more (absent, or Succeeded/Failed). False when it cannot be told. */
export async function podIsGone(kc: KubeConfig, namespace: string, name: string): Promise<boolean> {
  try {
    const p = await kc.makeApiClient(CoreV1Api).readNamespacedPod({ namespace, name });
    return p.status?.phase === 'Succeeded' || p.status?.phase === 'Failed';
  } catch (e) {
    return statusOf(e) === 404;
  }
}

export async function createJob(kc: KubeConfig, namespace: string, body: V1Job): Promise<void> {
  try {
    await kc.makeApiClient(BatchV1Api).createNamespacedJob({ namespace, body });
  } catch (e) {
    throw apiError(`create job ${namespace}/${body.metadata?.name}`, e);
  }
}

/** Waits until a Job succeeds or fails (its Failed condition: retries per backoffLimit come first). */
export async function awaitJob(kc: KubeConfig, namespace: string, name: string, timeoutMs: number, signal?: AbortSignal): Promise<{ succeeded: boolean }> {
  const batch = kc.makeApiClient(BatchV1Api);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    signal?.throwIfAborted();
    let j;
    try {
      j = await batch.readNamespacedJob({ namespace, name });
    } catch (e) {
      if (statusOf(e) === 404) throw new EtcdRecoverError('STEP_FAILED', `job ${namespace}/${name} disappeared while it ran`, { hint: 'rerun the command' });
      throw apiError(`get job ${namespace}/${name}`, e);
    }
    if ((j.status?.succeeded ?? 0) > 0) return { succeeded: true };
    if (jobFailed(j)) return { succeeded: false };
    if (Date.now() > deadline) throw new EtcdRecoverError('TIMEOUT', `job ${namespace}/${name} did not finish within ${Math.round(timeoutMs / 1000)} s`, { hint: `kubectl -n ${namespace} describe job ${name}` });
    await pollDelay(signal);
  }
}

/**
 * Runs one of the declared CronJobs now (as `kubectl create job --from=cronjob/…`), optionally with
 * other arguments, and waits for it. Returns the Job's name, whether it succeeded and, when it failed,
 * the agent's own error line (or the log's tail): the cause, without a trip to `kubectl logs`.
 */
export async function runJobFromCronJob(
  kc: KubeConfig,
  c: RecoveryContract,
  cronJob: string,
  args: string[] | undefined,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<{ job: string; succeeded: boolean; cause?: string }> {
  const ns = c.namespace;
  const spec = await jobSpecFromCronJob(kc, ns, cronJob, args);
  const name = `${cronJob}-manual-${Date.now().toString(36)}`;
  const body: V1Job = { metadata: { name, namespace: ns, labels: { 'etcd-recover.io/manual': 'true' }, annotations: { 'cronjob.kubernetes.io/instantiate': 'manual' } }, spec };
  try {
    await kc.makeApiClient(BatchV1Api).createNamespacedJob({ namespace: ns, body });
  } catch (e) {
    throw apiError(`create job in ${ns}`, e);
  }
  const { succeeded } = await awaitJob(kc, ns, name, timeoutMs, signal);
  if (succeeded) return { job: name, succeeded };
  const { log } = await jobOutcome(kc, ns, name);
  const errorLine = log?.split(' | ').find((l) => l.startsWith('error: '))?.slice('error: '.length);
  const cause = errorLine ?? log;
  return { job: name, succeeded, ...(cause ? { cause } : {}) };
}

export interface ClusterOverview {
  namespace: string;
  cluster: string;
  members: number;
  ready: number;
  pods: { name: string; ready: boolean; phase: string }[];
}

/**
 * Every declared cluster with its members' readiness, in two API calls however many clusters
 * there are (one list of contracts, one list of etcd pods): fast for a management cluster that
 * hosts hundreds of control planes.
 */
export async function overviewAllNamespaces(kc: KubeConfig): Promise<{ declared: DeclaredCluster[]; rows: ClusterOverview[] }> {
  const core = kc.makeApiClient(CoreV1Api);
  const [declared, pods] = await Promise.all([
    findDeclaredClusters(kc, undefined),
    core.listPodForAllNamespaces({ labelSelector: 'app.kubernetes.io/managed-by=etcd-recover,app.kubernetes.io/name=etcd' }).catch((e) => {
      throw apiError('list pods in all namespaces', e);
    }),
  ]);
  const rows = declared.map((d) => {
    const mine = pods.items.filter((p) => p.metadata?.namespace === d.namespace && p.metadata?.labels?.['app.kubernetes.io/instance'] === d.contract.cluster);
    const list = d.contract.etcd.members.map((m) => {
      const p = mine.find((x) => x.metadata?.name === m.name);
      return { name: m.name, phase: p?.status?.phase ?? 'Missing', ready: Boolean(p?.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True')) };
    });
    return { namespace: d.namespace, cluster: d.contract.cluster, members: list.length, ready: list.filter((x) => x.ready).length, pods: list };
  });
  return { declared, rows };
}

export interface Permission {
  verb: string;
  resource: string;
  group?: string;
  namespace: string;
  name?: string;
  subresource?: string;
}

/**
 * Asks the API server (SelfSubjectAccessReview) whether the current user may do each thing a command
 * is about to do, BEFORE it changes anything; throws FORBIDDEN naming every missing permission.
 */
export async function requirePermissions(kc: KubeConfig, what: string, perms: Permission[]): Promise<void> {
  const { AuthorizationV1Api } = await import('@kubernetes/client-node');
  const authz = kc.makeApiClient(AuthorizationV1Api);
  const missing: string[] = [];
  await Promise.all(
    perms.map(async (p) => {
      try {
        const r = await authz.createSelfSubjectAccessReview({
          body: { spec: { resourceAttributes: { verb: p.verb, resource: p.resource, group: p.group ?? '', namespace: p.namespace, ...(p.name ? { name: p.name } : {}), ...(p.subresource ? { subresource: p.subresource } : {}) } } },
        });
        if (!r.status?.allowed) missing.push(describePermission(p));
      } catch (e) {
        throw apiError('create selfsubjectaccessreview', e);
      }
    }),
  );
  if (missing.length) {
    missing.sort();
    throw new EtcdRecoverError('FORBIDDEN', `${what} needs permissions you do not have: ${missing.join('; ')}. Nothing was changed.`, {
      hint: 'ask a cluster admin for a Role with these verbs in the namespace (docs/recovery-contract.md lists what each command needs)',
    });
  }
}

function describePermission(p: Permission): string {
  const res = `${p.resource}${p.subresource ? `/${p.subresource}` : ''}${p.group ? `.${p.group}` : ''}`;
  return `${p.verb} ${res}${p.name ? ` "${p.name}"` : ''} in namespace ${p.namespace}`;
}
