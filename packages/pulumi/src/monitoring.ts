import * as pulumi from '@pulumi/pulumi';
import * as k8s from '@pulumi/kubernetes';
import type { ResolvedArgs } from './resolve-args.js';
import { namesFor } from './names.js';
import { agentDeployment } from './agent-deployment.js';

type Volume = k8s.types.input.core.v1.Volume;
type VolumeMount = k8s.types.input.core.v1.VolumeMount;
type EnvVar = k8s.types.input.core.v1.EnvVar;

export const EXPORTER_PORT = 9479;

/**
 * The exporter (`agent exporter`): one replica, Recreate, a Service with the usual prometheus.io
 * scrape annotations; a ServiceMonitor and a PrometheusRule only when asked (they need the
 * Prometheus Operator's CRDs, so a cluster without them still applies). docs/metrics.md lists it all.
 */
export function createMonitoring(
  name: string,
  r: ResolvedArgs,
  deps: { serviceAccount: k8s.core.v1.ServiceAccount | undefined; pod: { volumes: Volume[]; mounts: VolumeMount[]; env: EnvVar[] }; labels: Record<string, string> },
  opts: pulumi.CustomResourceOptions,
) {
  const m = r.monitoring;
  if (!m.exporter || !deps.serviceAccount) return {};
  const n = namesFor(name);
  const labels = { ...deps.labels, 'etcd-recover.io/job': 'exporter' };
  // `up` does not wait for it: metrics are not what makes the cluster recoverable (status and the Events say if it runs).
  const deployment = agentDeployment(
    `${name}-exporter`,
    r,
    {
      name: n.exporter,
      labels,
      serviceAccount: deps.serviceAccount,
      automountServiceAccountToken: true,
      container: {
        name: 'exporter',
        args: ['agent', 'exporter', '--listen', `:${EXPORTER_PORT}`, ...(m.rpo ? ['--rpo', m.rpo] : [])],
        env: deps.pod.env,
        volumeMounts: deps.pod.mounts,
        ports: [{ name: 'metrics', containerPort: EXPORTER_PORT }],
        readinessProbe: { httpGet: { path: '/healthz', port: EXPORTER_PORT }, periodSeconds: 10 },
        resources: { requests: { cpu: '10m', memory: '64Mi' }, limits: { memory: '256Mi' } },
      },
      volumes: deps.pod.volumes,
    },
    opts,
  );
  const service = new k8s.core.v1.Service(
    `${name}-exporter`,
    {
      metadata: {
        name: n.exporter,
        namespace: r.namespace,
        labels,
        annotations: { 'prometheus.io/scrape': 'true', 'prometheus.io/port': String(EXPORTER_PORT), 'prometheus.io/path': '/metrics', 'pulumi.com/skipAwait': 'true' },
      },
      spec: { selector: labels, ports: [{ name: 'metrics', port: EXPORTER_PORT, targetPort: 'metrics' }] },
    },
    opts,
  );
  if (m.serviceMonitor) {
    new k8s.apiextensions.CustomResource(
      `${name}-exporter`,
      {
        apiVersion: 'monitoring.coreos.com/v1',
        kind: 'ServiceMonitor',
        metadata: { name: n.exporter, namespace: r.namespace, labels },
        spec: { selector: { matchLabels: labels }, endpoints: [{ port: 'metrics', interval: '30s' }] },
      } as never,
      opts,
    );
  }
  if (m.prometheusRule) {
    new k8s.apiextensions.CustomResource(
      `${name}-alerts`,
      { apiVersion: 'monitoring.coreos.com/v1', kind: 'PrometheusRule', metadata: { name: `${name}-etcd-recover`, namespace: r.namespace, labels }, spec: { groups: [{ name: 'etcd-recover', rules: alertRules(name, r) }] } } as never,
      opts,
    );
  }
  return { deployment, service };
}

/** The alerts, each with a runbook link (docs/metrics.md lists them; the expressions are tested there). */
export function alertRules(name: string, r: ResolvedArgs): Record<string, unknown>[] {
  const c = `cluster="${name}"`;
  const rb = (page: string) => `${r.monitoring.runbookBaseUrl}/${page}`;
  const alert = (alertName: string, expr: string, forD: string, severity: string, summary: string, page: string) => ({
    alert: alertName,
    expr,
    for: forD,
    labels: { severity, cluster: name },
    annotations: { summary, runbook_url: rb(page) },
  });
  return [
    alert('EtcdRecoverBackupStale', `etcd_recover_rpo_met{${c}} == 0`, '10m', 'critical', `no trusted backup of ${name} within the RPO`, 'backups.md'),
    alert('EtcdRecoverBackupJobFailing', `etcd_recover_job_consecutive_failures{${c},job="backup"} >= 2`, '0m', 'warning', `the backup job of ${name} failed twice in a row`, 'backups.md'),
    alert('EtcdRecoverVerificationFailed', `etcd_recover_verification_last_success{${c}} == 0`, '0m', 'critical', `the newest verification of a ${name} backup failed`, 'backups.md'),
    alert('EtcdRecoverDrillFailed', `etcd_recover_job_consecutive_failures{${c},job="drill"} >= 1`, '0m', 'critical', `the scheduled restore drill of ${name} failed: the backups may not restore`, 'backups.md'),
    alert('EtcdRecoverMemberDown', `etcd_recover_member_up{${c}} == 0`, '5m', 'warning', `an etcd member of ${name} is down`, 'member-replace.md'),
    alert(
      'EtcdRecoverQuorumAtRisk',
      `sum(etcd_recover_member_up{${c}}) <= floor(count(etcd_recover_member_up{${c}}) / 2) + 1 and etcd_recover_quorum{${c}} == 1`,
      '5m',
      'critical',
      `${name} is one member failure away from losing quorum`,
      'member-replace.md',
    ),
    alert('EtcdRecoverQuorumLost', `etcd_recover_quorum{${c}} == 0`, '1m', 'critical', `${name} has lost quorum`, 'quorum-loss.md'),
    alert('EtcdRecoverBucketUnreachable', `etcd_recover_bucket_up{${c}} == 0`, '10m', 'warning', `the backup bucket of ${name} is unreachable from the exporter`, 'backups.md'),
    // Continuous archiving (docs/archive.md): without it the point-in-time window and the RPO of seconds are gone.
    ...(r.archive
      ? [
          alert('EtcdRecoverArchiveDown', `etcd_recover_archive_up{${c}} == 0`, '5m', 'warning', `the continuous archive of ${name} is not reporting or has an alarm: the RPO falls back to the backup schedule`, 'point-in-time.md'),
          alert('EtcdRecoverArchiveLagging', `etcd_recover_archive_lag_seconds{${c}} > ${archiveLagThreshold(r.archive.intervalMs)}`, '5m', 'warning', `the continuous archive of ${name} is behind etcd`, 'point-in-time.md'),
        ]
      : []),
  ];
}

/** Seconds of archive lag that count as behind: ten flush intervals, at least 5 s. */
export const archiveLagThreshold = (intervalMs: number) => Math.max(5, Math.ceil((10 * intervalMs) / 1000));
