import type * as pulumi from '@pulumi/pulumi';
import type * as k8s from '@pulumi/kubernetes';
import { bucketNameProblem, clusterNameProblem, parseDuration } from '@etcd-recover/core';
import type { BackupArgs, EtcdClusterArgs, PauseArgs, RetentionArgs, TlsArgs, WorkloadRef } from './args.js';
import { cronProblem } from './cron.js';

/*
 * EtcdClusterArgs (args.ts) resolved: every default applied, every contradictory or invalid argument
 * refused before any resource exists, each message naming the argument.
 */

/**
 * How far a bucket lifecycle expiry must outlast the longest retention window: the time an
 * operator has to notice that backups stopped (or turned suspect) before the expiry deletes the
 * last good one, which retention would have kept forever.
 */
export const EXPIRY_GRACE_DAYS = 7;

const DAY_MS = 86_400_000;

/** Arguments with every default applied. */
export interface ResolvedArgs {
  name: string;
  namespace: string;
  members: number;
  image: string;
  /** Written into the contract: given, or read from the default image's tag. */
  etcdVersion: string | undefined;
  agentImage: string;
  storageSize: string;
  storageClassName: string | undefined;
  antiAffinity: 'required' | 'preferred' | 'none';
  resources: pulumi.Input<k8s.types.input.core.v1.ResourceRequirements> | undefined;
  tls: TlsArgs | undefined;
  scheme: 'http' | 'https';
  peerScheme: 'http' | 'https';
  quotaBackendBytes: number | undefined;
  extraArgs: string[];
  backup: BackupArgs & { prefix: string; region: string; schedule: string; verifySchedule: string; verifyCount: number; checksumMode: 'when_supported' | 'when_required' };
  retention: Required<Omit<RetentionArgs, 'maxCount'>> & { maxCount?: number };
  heal: { enabled: boolean; schedule: string };
  defrag: { schedule: string } | undefined;
  dependents: Required<WorkloadRef>[];
  pause: PauseArgs | undefined;
  afterRestore: { hostedKubeconfig?: { secretName: string; key: string }; rolloutDeployments: string[]; stuckPodSeconds: number } | undefined;
  peerWaitSeconds: number;
  autoRestore: boolean;
  drill: { schedule: string; members: number; ephemeralStorage: string } | undefined;
  archive: { intervalMs: number; rebaseSeconds: number; keep: string; maxBufferMiB: number; resources: pulumi.Input<k8s.types.input.core.v1.ResourceRequirements> } | undefined;
  monitoring: { exporter: boolean; serviceMonitor: boolean; prometheusRule: boolean; rpo: string | undefined; runbookBaseUrl: string };
  /** The companions each backup saves (declared ones plus the component's own Secrets), or undefined. */
  companions: { secrets: string[]; configMaps: string[] } | undefined;
  /** Pulumi customTimeouts form ("90s", "10m"). */
  readyTimeout: string;
}

/** backup.sse: one of the three modes, each with only its own fields; SSE-C only over https (when the endpoint is a plain string). */
function sseProblem(sse: NonNullable<BackupArgs['sse']>, endpoint: BackupArgs['endpoint'], fail: (arg: string, problem: string) => never): void {
  const s = sse as { mode?: unknown; kmsKeyId?: unknown; customerKeySecret?: unknown; key?: unknown };
  if (s.mode !== 'SSE-S3' && s.mode !== 'SSE-KMS' && s.mode !== 'SSE-C') fail('backup.sse.mode', `${JSON.stringify(s.mode)} is not one of SSE-S3, SSE-KMS, SSE-C`);
  // Never quotes what it finds there: it may be a key.
  if (s.key !== undefined) fail('backup.sse.key', 'an SSE-C key is never given inline: put it in a Secret (key sse-c-key) and name it in backup.sse.customerKeySecret');
  if (s.kmsKeyId !== undefined) {
    if (s.mode !== 'SSE-KMS') fail('backup.sse.kmsKeyId', `is for SSE-KMS, but the mode is ${s.mode}`);
    if (typeof s.kmsKeyId !== 'string' || !s.kmsKeyId.trim()) fail('backup.sse.kmsKeyId', "is empty: name a KMS key id, key ARN or alias, or leave it out for the bucket's default KMS key");
  }
  if (s.customerKeySecret !== undefined && s.mode !== 'SSE-C') fail('backup.sse.customerKeySecret', `is for SSE-C, but the mode is ${s.mode}`);
  if (s.mode !== 'SSE-C') return;
  if (typeof s.customerKeySecret !== 'string' || !/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(s.customerKeySecret)) {
    fail('backup.sse.customerKeySecret', `${s.customerKeySecret === undefined ? 'is required for SSE-C' : `"${String(s.customerKeySecret)}" is not a Secret name`} (an existing Secret with key sse-c-key, the base64 of 32 bytes)`);
  }
  if (typeof endpoint === 'string' && /^http:\/\//i.test(endpoint.trim())) {
    fail('backup.sse', `SSE-C needs an https endpoint: S3 refuses customer keys over plain HTTP, and backup.endpoint is "${endpoint}"`);
  }
}

/**
 * Applies defaults and rejects contradictory or invalid arguments before any
 * resource exists; every message names the argument.
 */
export function resolveArgs(name: string, a: EtcdClusterArgs): ResolvedArgs {
  const fail = (arg: string, problem: string): never => {
    throw new Error(`EtcdCluster "${name}": ${arg}: ${problem}`);
  };
  const np = clusterNameProblem(name);
  if (np || !/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(name) || name.length > 40) fail('name', np ?? 'must be a DNS label of at most 40 characters (it prefixes every resource)');
  if (!a.namespace) fail('namespace', 'is required');
  const members = a.members ?? 3;
  if (!Number.isInteger(members) || members < 1) fail('members', `must be an odd number ≥ 1 (got ${members})`);
  if (members % 2 === 0) fail('members', `must be odd (got ${members}): an even count adds no fault tolerance over ${members - 1} and needs a larger quorum`);
  const tls = a.tls;
  if (tls && Boolean(tls.serverSecret) !== Boolean(tls.clientSecret)) {
    fail('tls', 'serverSecret and clientSecret go together: with only one, either etcd serves TLS that jobs cannot authenticate to, or jobs present certificates to a plain-HTTP etcd');
  }
  const b = a.backup;
  if (!b) fail('backup', 'is required: a cluster without backups is not recoverable');
  const bucketName = 'create' in b.bucket ? b.bucket.create.name : b.bucket.existing;
  const bp = bucketNameProblem(bucketName ?? '');
  if (bp) fail('backup.bucket', `"${bucketName}" ${bp}`);
  if ('create' in b.bucket) {
    const c = b.bucket.create;
    if (c.expirationDays !== undefined && !(c.expirationDays > 0)) fail('backup.bucket.create.expirationDays', 'must be a positive number of days');
    if (c.objectLock && !(c.objectLock.days > 0)) fail('backup.bucket.create.objectLock.days', 'must be a positive number of days');
    if (c.objectLock && c.versioning === false) fail('backup.bucket.create.objectLock', 'needs versioning');
  }
  if (b.encryption && !/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(b.encryption.secretName ?? '')) {
    fail('backup.encryption.secretName', `"${b.encryption.secretName}" is not a Secret name`);
  }
  if (b.sse !== undefined) sseProblem(b.sse, b.endpoint, fail);
  const schedule = b.schedule ?? '*/30 * * * *';
  const verifySchedule = b.verifySchedule ?? '15 * * * *';
  for (const [arg, s] of [['backup.schedule', schedule], ['backup.verifySchedule', verifySchedule], ['autoHeal.schedule', a.autoHeal?.schedule ?? '*/5 * * * *'], ['defrag.schedule', a.defrag?.schedule]] as const) {
    if (s === undefined) continue;
    const p = cronProblem(s);
    if (p) fail(arg, p);
  }
  const r = b.retention ?? {};
  const retention = {
    keepLast: r.keepLast ?? 3,
    keepWithin: r.keepWithin ?? '6h',
    hourly: r.hourly ?? '24h',
    daily: r.daily ?? '7d',
    weekly: r.weekly ?? '30d',
    ...(r.maxCount !== undefined ? { maxCount: r.maxCount } : {}),
  };
  for (const k of ['keepWithin', 'hourly', 'daily', 'weekly'] as const) {
    try {
      parseDuration(retention[k]);
    } catch {
      fail(`backup.retention.${k}`, `"${retention[k]}" is not a duration (e.g. 6h, 7d, 4w)`);
    }
  }
  if (!Number.isInteger(retention.keepLast) || retention.keepLast < 0) fail('backup.retention.keepLast', 'must be a whole number ≥ 0');
  if (retention.maxCount !== undefined && !(retention.maxCount >= 1)) fail('backup.retention.maxCount', `must be at least 1 (got ${retention.maxCount}): a retention of zero deletes every backup`);
  const keepsNothing = retention.keepLast === 0 && ['keepWithin', 'hourly', 'daily', 'weekly'].every((k) => parseDuration(retention[k as 'hourly']) === 0);
  if (keepsNothing) fail('backup.retention', 'keeps nothing (keepLast 0 and every window 0): a retention of zero deletes every backup');
  if ('create' in b.bucket && b.bucket.create.expirationDays !== undefined) {
    // The rule deletes by age alone; retention keeps the newest of each window up to its end.
    const days = b.bucket.create.expirationDays;
    const [longest, window] = (['keepWithin', 'hourly', 'daily', 'weekly'] as const)
      .map((k) => [k, parseDuration(retention[k])] as const)
      .reduce((m, x) => (x[1] > m[1] ? x : m));
    const need = Math.ceil(window / DAY_MS) + EXPIRY_GRACE_DAYS;
    if (days < need) {
      fail(
        'backup.bucket.create.expirationDays',
        `${days} days would delete backups that backup.retention.${longest} ("${retention[longest]}") keeps: a lifecycle expiry must exceed the longest ` +
          `retention window by at least ${EXPIRY_GRACE_DAYS} days (expirationDays ≥ ${need}), because once backups stop it also deletes the newest verified ` +
          'backup, which retention always keeps; raise it, shorten the retention, or leave expiry to prune (omit expirationDays)',
      );
    }
  }
  const peerWaitSeconds = a.peerWaitSeconds ?? 30;
  if (!Number.isInteger(peerWaitSeconds) || peerWaitSeconds < 0) fail('peerWaitSeconds', `must be a whole number of seconds ≥ 0 (got ${peerWaitSeconds})`);
  if (a.monitoring?.rpo !== undefined) {
    try {
      parseDuration(a.monitoring.rpo);
    } catch {
      fail('monitoring.rpo', `"${a.monitoring.rpo}" is not a duration (e.g. 45m, 2h)`);
    }
  }
  const readyTimeout = a.readyTimeout ?? '10m';
  if (!/^[1-9][0-9]*(s|m|h)$/.test(readyTimeout)) fail('readyTimeout', `"${readyTimeout}" is not a duration in seconds, minutes or hours (e.g. 90s, 10m)`);
  const verifyCount = b.verifyCount ?? 3;
  if (!Number.isInteger(verifyCount) || verifyCount < 1) fail('backup.verifyCount', 'must be at least 1');
  if (a.quotaBackendBytes !== undefined && !(a.quotaBackendBytes > 0)) fail('quotaBackendBytes', 'must be positive');
  for (const x of a.extraArgs ?? []) {
    if (!x.startsWith('--')) fail('extraArgs', `"${x}" is not a flag (--name=value)`);
    if (/^--(name|data-dir|initial-cluster|initial-cluster-state|initial-cluster-token|listen-client-urls|listen-peer-urls|advertise-client-urls|initial-advertise-peer-urls)(=|$)/.test(x)) {
      fail('extraArgs', `"${x}" is set by the component (it defines the member topology the recovery contract records)`);
    }
  }
  const seen = new Set<string>();
  const dependents = (a.dependents ?? []).map((d) => {
    const full = { kind: d.kind, name: d.name, namespace: d.namespace ?? a.namespace, replicas: d.replicas ?? 1 };
    const key = `${full.kind}/${full.namespace}/${full.name}`;
    if (seen.has(key)) fail('dependents', `${key} is listed twice`);
    seen.add(key);
    if (!(full.replicas >= 1)) fail('dependents', `${key}: replicas must be ≥ 1`);
    return full;
  });
  const etcdVersion = a.etcdVersion;
  if (etcdVersion !== undefined) {
    const m = /^3\.(\d+)\.(\d+)$/.exec(etcdVersion);
    if (!m || Number(m[1]) < 5 || (Number(m[1]) === 5 && Number(m[2]) < 10)) fail('etcdVersion', `"${etcdVersion}" is not an etcd version this tool restores (3.5.10 or newer, e.g. "3.6.16")`);
    if (Number(m![1]) > 7) fail('etcdVersion', `etcd ${etcdVersion} is newer than any tested here (3.5, 3.6, 3.7)`);
  }
  return {
    name,
    namespace: a.namespace,
    members,
    image: a.image ?? `registry.k8s.io/etcd:${etcdVersion ?? '3.6.16'}-0`,
    etcdVersion: etcdVersion ?? (a.image ? undefined : '3.6.16'),
    agentImage: a.agentImage ?? 'ghcr.io/etcd-recover/agent:0.1.0',
    storageSize: a.storage?.size ?? '8Gi',
    storageClassName: a.storage?.storageClassName,
    antiAffinity: a.antiAffinity ?? 'preferred',
    resources: a.resources,
    tls,
    scheme: tls?.serverSecret ? 'https' : 'http',
    peerScheme: tls?.peerSecret ? 'https' : 'http',
    quotaBackendBytes: a.quotaBackendBytes,
    extraArgs: a.extraArgs ?? [],
    backup: {
      ...b,
      prefix: b.prefix ?? '',
      region: b.region ?? 'us-east-1',
      schedule,
      verifySchedule,
      verifyCount,
      checksumMode: b.checksumMode ?? 'when_supported',
    },
    retention,
    heal: { enabled: a.autoHeal?.enabled ?? true, schedule: a.autoHeal?.schedule ?? '*/5 * * * *' },
    defrag: a.defrag,
    dependents,
    pause: a.pause,
    afterRestore: afterRestoreOf(a, fail),
    peerWaitSeconds,
    autoRestore: a.autoRestore === true,
    companions: companionsOf(name, a, fail),
    drill: drillOf(a, fail),
    archive: archiveOf(a, fail, 'create' in b.bucket ? b.bucket.create.expirationDays : undefined),
    monitoring: {
      exporter: a.monitoring?.exporter ?? true,
      serviceMonitor: a.monitoring?.serviceMonitor ?? false,
      prometheusRule: a.monitoring?.prometheusRule ?? false,
      rpo: a.monitoring?.rpo,
      runbookBaseUrl: a.monitoring?.runbookBaseUrl ?? 'https://github.com/etcd-recover/etcd-recover/blob/main/docs/runbooks',
    },
    readyTimeout,
  };
}

function afterRestoreOf(a: EtcdClusterArgs, fail: (arg: string, problem: string) => never): ResolvedArgs['afterRestore'] {
  const r = a.afterRestore;
  if (!r) return undefined;
  const name = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;
  if (r.hostedKubeconfigSecret !== undefined && !name.test(r.hostedKubeconfigSecret)) fail('afterRestore.hostedKubeconfigSecret', `"${r.hostedKubeconfigSecret}" is not a Secret name`);
  if (r.hostedKubeconfigKey !== undefined && (!r.hostedKubeconfigSecret || !r.hostedKubeconfigKey)) fail('afterRestore.hostedKubeconfigKey', 'needs afterRestore.hostedKubeconfigSecret (and a non-empty key)');
  const rollouts = r.rolloutDeployments ?? [];
  for (const d of rollouts) if (!name.test(d ?? '')) fail('afterRestore.rolloutDeployments', `"${d}" is not a Deployment name`);
  if (new Set(rollouts).size !== rollouts.length) fail('afterRestore.rolloutDeployments', 'a Deployment is listed twice');
  const stuckPodSeconds = r.stuckPodSeconds ?? 300;
  if (!Number.isInteger(stuckPodSeconds) || stuckPodSeconds < 0) fail('afterRestore.stuckPodSeconds', 'must be a whole number of seconds ≥ 0');
  return {
    ...(r.hostedKubeconfigSecret ? { hostedKubeconfig: { secretName: r.hostedKubeconfigSecret, key: r.hostedKubeconfigKey ?? 'kubeconfig' } } : {}),
    rolloutDeployments: rollouts,
    stuckPodSeconds,
  };
}

function companionsOf(name: string, a: EtcdClusterArgs, fail: (arg: string, problem: string) => never): ResolvedArgs['companions'] {
  const c = a.companions;
  if (!c) return undefined;
  const listed = [...(c.secrets ?? []), ...(c.configMaps ?? [])];
  if (!listed.length) return undefined;
  for (const x of listed) if (!/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(x ?? '')) fail('companions', `"${x}" is not a Secret or ConfigMap name`);
  if (!a.backup?.encryption) fail('companions', 'companion resources hold the cluster\'s keys and are never stored unencrypted: set backup.encryption');
  const own = [a.tls?.serverSecret, a.tls?.clientSecret, a.tls?.peerSecret, `${name}-backup-credentials`, a.backup.encryption!.secretName].filter((x): x is string => Boolean(x));
  return { secrets: [...new Set([...(c.secrets ?? []), ...own])], configMaps: [...new Set(c.configMaps ?? [])] };
}

function archiveOf(a: EtcdClusterArgs, fail: (arg: string, problem: string) => never, expirationDays: number | undefined): ResolvedArgs['archive'] {
  const c = a.archive ?? {};
  if (c.enabled === false) return undefined;
  const interval = c.interval ?? '1s';
  const m = /^(\d+)(ms|s)$/.exec(interval);
  const intervalMs = m ? Number(m[1]) * (m[2] === 's' ? 1000 : 1) : NaN;
  if (!(intervalMs >= 50 && intervalMs <= 60_000)) fail('archive.interval', `"${interval}" must be 50ms to 60s (e.g. 1s, 500ms): it is the RPO`);
  let rebaseSeconds = NaN;
  try {
    rebaseSeconds = Math.round(parseDuration(c.rebaseEvery ?? '1h') / 1000);
  } catch {
    /* reported below */
  }
  if (!(rebaseSeconds >= 60)) fail('archive.rebaseEvery', `"${c.rebaseEvery}" must be a duration of at least 1 minute (e.g. 30m, 1h, 6h)`);
  const keep = c.keep ?? '7d';
  let keepMs = NaN;
  try {
    keepMs = parseDuration(keep);
  } catch {
    /* reported below */
  }
  if (!(keepMs >= 3_600_000)) fail('archive.keep', `"${keep}" must be a duration of at least 1h (e.g. 24h, 7d)`);
  // The lifecycle rule deletes segments by age alone, as it does backups: within archive.keep it
  // would cut the point-in-time window (and, once the archiver stops, its newest chain).
  const need = Math.ceil(keepMs / DAY_MS) + EXPIRY_GRACE_DAYS;
  if (expirationDays !== undefined && expirationDays < need) {
    fail(
      'backup.bucket.create.expirationDays',
      `${expirationDays} days would delete archive segments that archive.keep ("${keep}") keeps: a lifecycle expiry must exceed archive.keep by at least ` +
        `${EXPIRY_GRACE_DAYS} days (expirationDays ≥ ${need}), because once the archiver stops it also deletes the newest chain; raise it, shorten archive.keep, ` +
        'or leave expiry to prune (omit expirationDays)',
    );
  }
  const maxBufferMiB = c.maxBufferMiB ?? 64;
  if (!Number.isInteger(maxBufferMiB) || maxBufferMiB < 1) fail('archive.maxBufferMiB', `must be a whole number of MiB >= 1 (got ${maxBufferMiB})`);
  return { intervalMs, rebaseSeconds, keep, maxBufferMiB, resources: c.resources ?? { requests: { cpu: '50m', memory: '128Mi' }, limits: { memory: '512Mi' } } };
}

function drillOf(a: EtcdClusterArgs, fail: (arg: string, problem: string) => never): ResolvedArgs['drill'] {
  const d = a.drill ?? {};
  if (d.enabled === false) return undefined;
  const schedule = d.schedule ?? '30 4 * * *';
  const p = cronProblem(schedule);
  if (p) fail('drill.schedule', p);
  const members = d.members ?? 3;
  if (!Number.isInteger(members) || members < 1 || members > 7) fail('drill.members', `must be 1 to 7 (got ${members})`);
  const ephemeralStorage = d.ephemeralStorage ?? '4Gi';
  if (!/^[1-9][0-9]*(Mi|Gi|M|G)$/.test(ephemeralStorage)) fail('drill.ephemeralStorage', `"${ephemeralStorage}" is not a size like 4Gi`);
  return { schedule, members, ephemeralStorage };
}
