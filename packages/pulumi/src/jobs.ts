import * as pulumi from '@pulumi/pulumi';
import * as k8s from '@pulumi/kubernetes';
import type { ResolvedArgs } from './resolve-args.js';
import { podLabels } from './contract.js';
import { SSE_C_SECRET_KEY } from '@etcd-recover/core';
import { AGE_DIR, AGE_VOLUME, SSE_C_DIR, SSE_C_VOLUME, TLS_DIR, namesFor } from './names.js';

type PolicyRule = k8s.types.input.rbac.v1.PolicyRule;

/**
 * What each job may do through the Kubernetes API, and nothing more. Backup,
 * verification and defragmentation talk only to etcd and the bucket: their
 * ServiceAccounts have no Role and no token mounted. Auto-heal replaces a
 * member the way HyperShift does — delete its pod and PVC — and reads the
 * StatefulSet; it takes the cluster's recovery lock and writes its journal in
 * the bucket (with the bucket credentials every job gets, no Kubernetes right);
 * restore Jobs (created by `kubectl etcd-recover quorum`) only mount volumes.
 */
export type JobKind = 'backup' | 'verify' | 'heal' | 'defrag' | 'drill' | 'restore' | 'exporter' | 'archive';

export function jobRules(r: ResolvedArgs): Record<JobKind, PolicyRule[]> {
  const n = namesFor(r.name);
  const pvcs = Array.from({ length: r.members }, (_, i) => n.pvc(n.pod(i)));
  const pods = Array.from({ length: r.members }, (_, i) => n.pod(i));
  // With companions the backup job reads exactly those Secrets and ConfigMaps, nothing else.
  const c = r.companions;
  const backup: PolicyRule[] = [
    ...(c?.secrets.length ? [{ apiGroups: [''], resources: ['secrets'], resourceNames: c.secrets, verbs: ['get'] }] : []),
    ...(c?.configMaps.length ? [{ apiGroups: [''], resources: ['configmaps'], resourceNames: c.configMaps, verbs: ['get'] }] : []),
  ];
  // Every job reports its outcome: an Event on the recovery contract, its entry in the status
  // ConfigMap (created by the first report: RBAC cannot scope `create` to a name; get/patch are).
  const reporting: PolicyRule[] = [
    { apiGroups: [''], resources: ['events'], verbs: ['create'] },
    { apiGroups: [''], resources: ['configmaps'], resourceNames: [n.status], verbs: ['get', 'patch'] },
    { apiGroups: [''], resources: ['configmaps'], resourceNames: [n.contract], verbs: ['get'] },
    { apiGroups: [''], resources: ['configmaps'], verbs: ['create'] },
  ];
  return {
    backup: [...backup, ...reporting],
    verify: reporting,
    defrag: reporting,
    drill: reporting,
    restore: [],
    // The archiver talks to etcd and the bucket only.
    archive: [],
    // Its consecutive-failure metric reads the CronJobs' Jobs; the backup schedule gives the RPO default.
    exporter: [
      { apiGroups: ['batch'], resources: ['jobs'], verbs: ['list'] },
      { apiGroups: ['batch'], resources: ['cronjobs'], verbs: ['get'] },
    ],
    heal: [
      ...reporting,
      { apiGroups: [''], resources: ['pods'], verbs: ['get', 'list'] },
      { apiGroups: [''], resources: ['pods'], resourceNames: pods, verbs: ['delete'] },
      { apiGroups: [''], resources: ['persistentvolumeclaims'], resourceNames: pvcs, verbs: ['get', 'delete'] },
      { apiGroups: ['apps'], resources: ['statefulsets'], resourceNames: [n.statefulSet], verbs: ['get'] },
    ],
  };
}

/**
 * The SSE-C key (backup.sse SSE-C) for a container that talks to the bucket: the Secret's one key,
 * read-only, and ETCD_RECOVER_S3_SSE_C_KEY_FILE naming it. Nothing for other modes: the contract says it all.
 */
export function sseCustomerKeyMount(r: ResolvedArgs): { volumes: k8s.types.input.core.v1.Volume[]; mounts: k8s.types.input.core.v1.VolumeMount[]; env: k8s.types.input.core.v1.EnvVar[] } {
  const sse = r.backup.sse;
  if (sse?.mode !== 'SSE-C') return { volumes: [], mounts: [], env: [] };
  return {
    volumes: [{ name: SSE_C_VOLUME, secret: { secretName: sse.customerKeySecret, defaultMode: 0o440, items: [{ key: SSE_C_SECRET_KEY, path: SSE_C_SECRET_KEY }] } }],
    mounts: [{ name: SSE_C_VOLUME, mountPath: SSE_C_DIR, readOnly: true }],
    env: [{ name: 'ETCD_RECOVER_S3_SSE_C_KEY_FILE', value: `${SSE_C_DIR}/${SSE_C_SECRET_KEY}` }],
  };
}

interface Deps {
  contract: k8s.core.v1.ConfigMap;
  credentials: k8s.core.v1.Secret;
}

export function createJobs(name: string, r: ResolvedArgs, deps: Deps, opts: pulumi.CustomResourceOptions) {
  const n = namesFor(name);
  // Not the etcd pods' labels: a Job pod carrying them would match etcd's Services, its
  // PodDisruptionBudget and its StatefulSet's selector.
  const labels = { ...podLabels(r), 'app.kubernetes.io/name': 'etcd-recover-agent' };
  const rules = jobRules(r);
  const serviceAccounts: Record<string, k8s.core.v1.ServiceAccount> = {};
  for (const job of ['backup', 'verify', 'heal', 'defrag', 'drill', 'restore', 'exporter', 'archive'] as const) {
    if (job === 'archive' && !r.archive) continue;
    if (job === 'defrag' && !r.defrag) continue;
    if (job === 'heal' && !r.heal.enabled) continue;
    if (job === 'drill' && !r.drill) continue;
    if (job === 'exporter' && !r.monitoring.exporter) continue;
    const sa = new k8s.core.v1.ServiceAccount(
      `${name}-${job}`,
      { metadata: { name: n.sa(job), namespace: r.namespace, labels }, automountServiceAccountToken: rules[job].length > 0 },
      opts,
    );
    serviceAccounts[job] = sa;
    if (!rules[job].length) continue;
    const role = new k8s.rbac.v1.Role(`${name}-${job}`, { metadata: { name: n.sa(job), namespace: r.namespace, labels }, rules: rules[job] }, opts);
    new k8s.rbac.v1.RoleBinding(
      `${name}-${job}`,
      {
        metadata: { name: n.sa(job), namespace: r.namespace, labels },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: role.metadata.name },
        subjects: [{ kind: 'ServiceAccount', name: sa.metadata.name, namespace: r.namespace }],
      },
      opts,
    );
  }

  // The agent writes nothing locally (snapshots stream to the bucket), so the root filesystem stays
  // read-only and no writable volume is needed; HOME only has to name a directory.
  const volumes: k8s.types.input.core.v1.Volume[] = [{ name: 'contract', configMap: { name: deps.contract.metadata.name } }];
  const mounts: k8s.types.input.core.v1.VolumeMount[] = [{ name: 'contract', mountPath: '/etc/etcd-recover', readOnly: true }];
  if (r.tls?.clientSecret) {
    volumes.push({ name: 'tls-client', secret: { secretName: r.tls.clientSecret, defaultMode: 0o400 } });
    mounts.push({ name: 'tls-client', mountPath: `${TLS_DIR}/client`, readOnly: true });
  }
  const env: k8s.types.input.core.v1.EnvVar[] = [
    { name: 'AWS_ACCESS_KEY_ID', valueFrom: { secretKeyRef: { name: deps.credentials.metadata.name, key: 'AWS_ACCESS_KEY_ID' } } },
    { name: 'AWS_SECRET_ACCESS_KEY', valueFrom: { secretKeyRef: { name: deps.credentials.metadata.name, key: 'AWS_SECRET_ACCESS_KEY' } } },
    { name: 'ETCD_RECOVER_CONTRACT', value: '/etc/etcd-recover/contract.json' },
    { name: 'HOME', value: '/tmp' },
    ...(r.tls?.clientSecret ? [{ name: 'ETCD_RECOVER_ETCD_TLS_DIR', value: `${TLS_DIR}/client` }] : []),
  ];
  // The age key, least privilege: the backup job encrypts, so it sees the public recipients only;
  // the verify job (and the restore Jobs made from the backup job's template) opens backups.
  const enc = r.backup.encryption;
  const age = (job: string) => {
    if (!enc || (job !== 'backup' && job !== 'verify' && job !== 'drill' && job !== 'archive')) return { volumes, mounts, env };
    // The archiver, like the backup job, only encrypts (its segments and chain bases).
    const full = job !== 'backup' && job !== 'archive';
    return {
      volumes: [...volumes, { name: AGE_VOLUME, secret: { secretName: enc.secretName, defaultMode: 0o440, ...(full ? {} : { items: [{ key: 'recipients', path: 'recipients' }] }) } }],
      mounts: [...mounts, { name: AGE_VOLUME, mountPath: AGE_DIR, readOnly: true }],
      env: [
        ...env,
        { name: 'ETCD_RECOVER_AGE_RECIPIENTS_FILE', value: `${AGE_DIR}/recipients` },
        ...(full ? [{ name: 'ETCD_RECOVER_AGE_IDENTITY_FILE', value: `${AGE_DIR}/identity` }] : []),
      ],
    };
  };
  // Every job but defrag (etcd only) reads or writes the bucket, and so needs an SSE-C key; the
  // restore Jobs a recovery makes from the backup job's template inherit it.
  const pod = (job: string) => {
    const a = age(job);
    const k = sseCustomerKeyMount(r);
    if (job === 'defrag' || !k.volumes.length) return a;
    return { volumes: [...a.volumes, ...k.volumes], mounts: [...a.mounts, ...k.mounts], env: [...a.env, ...k.env] };
  };
  const cron = (
    job: string,
    schedule: string,
    args: string[],
    deadlineSeconds: number,
    extra: { volumes?: k8s.types.input.core.v1.Volume[]; mounts?: k8s.types.input.core.v1.VolumeMount[]; env?: k8s.types.input.core.v1.EnvVar[]; backoffLimit?: number } = {},
  ) =>
    new k8s.batch.v1.CronJob(
      `${name}-${job}`,
      {
        metadata: { name: n.cron(job), namespace: r.namespace, labels: { ...labels, 'etcd-recover.io/job': job } },
        spec: {
          schedule,
          concurrencyPolicy: 'Forbid',
          startingDeadlineSeconds: 300,
          successfulJobsHistoryLimit: 3,
          failedJobsHistoryLimit: 3,
          jobTemplate: {
            metadata: { labels: { ...labels, 'etcd-recover.io/job': job } },
            spec: {
              backoffLimit: extra.backoffLimit ?? 2,
              activeDeadlineSeconds: deadlineSeconds,
              ttlSecondsAfterFinished: 86_400,
              template: {
                metadata: { labels: { ...labels, 'etcd-recover.io/job': job } },
                spec: {
                  serviceAccountName: serviceAccounts[job]!.metadata.name,
                  automountServiceAccountToken: rules[job as keyof typeof rules].length > 0,
                  restartPolicy: 'Never',
                  // fsGroup: mounted Secrets (etcd's client TLS key, 0400) are group-readable by the agent's group, as on every kubelet.
                  securityContext: { runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532, fsGroup: 65532 },
                  containers: [
                    {
                      name: job,
                      image: r.agentImage,
                      command: ['kubectl-etcd_recover'],
                      args,
                      // ETCD_RECOVER_JOB: the run reports its outcome as this job (Event, status, the bucket's job status).
                      env: [...pod(job).env, { name: 'ETCD_RECOVER_JOB', value: job }, ...(extra.env ?? [])],
                      volumeMounts: [...pod(job).mounts, ...(extra.mounts ?? [])],
                      terminationMessagePolicy: 'FallbackToLogsOnError',
                      securityContext: { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } },
                    },
                  ],
                  volumes: [...pod(job).volumes, ...(extra.volumes ?? [])],
                },
              },
            },
          },
        },
      },
      opts,
    );

  const ret = r.retention;
  const cronJobs: Record<string, k8s.batch.v1.CronJob> = {
    backup: cron(
      'backup',
      r.backup.schedule,
      ['agent', 'backup', '--quiet', '--keep-last', String(ret.keepLast), '--keep-within', ret.keepWithin, '--hourly', ret.hourly, '--daily', ret.daily, '--weekly', ret.weekly, ...(ret.maxCount !== undefined ? ['--max-count', String(ret.maxCount)] : []), ...(r.archive ? ['--archive-keep', r.archive.keep] : [])],
      3600,
    ),
    verify: cron('verify', r.backup.verifySchedule, ['backup', 'verify', '--latest', String(r.backup.verifyCount), '--quiet'], 3600),
  };
  if (r.heal.enabled) cronJobs['heal'] = cron('heal', r.heal.schedule, ['agent', 'heal'], 900);
  if (r.defrag) cronJobs['defrag'] = cron('defrag', r.defrag.schedule, ['agent', 'defrag'], 1800);
  if (r.drill) {
    // The throwaway cluster lives in the pod's own emptyDir (bounded; no PVC), torn down with the pod.
    cronJobs['drill'] = cron('drill', r.drill.schedule, ['backup', 'drill', '--quiet', '--members', String(r.drill.members)], 1800, {
      volumes: [{ name: 'drill', emptyDir: { sizeLimit: r.drill.ephemeralStorage } }],
      mounts: [{ name: 'drill', mountPath: '/var/tmp/drill' }],
      env: [{ name: 'TMPDIR', value: '/var/tmp/drill' }],
      // A failed drill is a finding, not a hiccup: no retry (a retry would no longer see the backup it
      // just marked failed, and report something else); the next schedule drills again.
      backoffLimit: 0,
    });
  }
  return { serviceAccounts, cronJobs, agentPod: pod('exporter'), archivePod: pod('archive'), labels };
}
