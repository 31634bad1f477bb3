import { createServer, type Server } from 'node:http';
import { Flags } from '@oclif/core';
import { EXPOSITION_CONTENT_TYPE, EtcdRecoverError, METRIC_JOBS, MetricsCollector, parseDuration, rpoFromSchedule, type JobFailureSource, type MetricJob, type RecoveryContract } from '@etcd-recover/core';
import { BaseCommand } from '../../base-command.js';
import { quietFlag, storeFlags, targetFlags } from '../../flags.js';
import { Target } from '../../target.js';

const DEFAULT_RPO_SECONDS = 3600;

/**
 * The metrics agent: serves GET /metrics (Prometheus text format 0.0.4) and GET /healthz until
 * SIGTERM. Every scrape is computed from the bucket's catalog, the recovery lock and each member's
 * status, cached for --refresh seconds; a source that does not answer never fails a scrape: its
 * `*_up` gauge says so and the last good values stay (docs/metrics.md).
 */
export default class AgentExporter extends BaseCommand {
  static override hidden = true;
  static override summary = 'Serve Prometheus metrics of the cluster and its backups (a long-running agent).';
  static override flags = {
    ...targetFlags,
    ...storeFlags,
    ...quietFlag,
    listen: Flags.string({ default: ':9479', description: 'Address to serve on: [HOST]:PORT.' }),
    refresh: Flags.integer({ default: 30, min: 0, description: 'Seconds a computed scrape is served again before the bucket and etcd are read afresh.' }),
    rpo: Flags.string({ description: 'RPO target (e.g. 1h, 90m). Default: 1.5× the longest gap of the backup CronJob\'s schedule when it can be read, else 1h.' }),
    timeout: Flags.integer({ default: 5, min: 1, description: 'Seconds one refresh may wait for the bucket and etcd.' }),
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(AgentExporter);
    this.setup({ quiet: true });
    const log = (m: string) => !flags.quiet && process.stderr.write(`${new Date().toISOString()} exporter: ${m}\n`);
    if (!flags.endpoints && !flags['contract-file'] && (flags.kubeconfig || flags.context || flags.namespace)) {
      throw new EtcdRecoverError('USAGE', 'the exporter reads etcd directly: run it in the cluster (--contract-file), against the sandbox, or with --endpoints');
    }
    // Not Target.open: the exporter reads records, never snapshot bytes, so it needs no age key.
    const target = new Target(flags);
    try {
      const kube = target.contract && process.env['KUBERNETES_SERVICE_HOST']
        ? await KubeJobs.inCluster(target.contract).catch((e: Error) => void log(`not reading Kubernetes Jobs: ${e.message}`))
        : undefined;
      const schedule = !flags.rpo && kube ? await kube.backupSchedule().catch(() => undefined) : undefined;
      const rpo = flags.rpo ? parseDuration(flags.rpo) / 1000 : (schedule && rpoFromSchedule(schedule)) || DEFAULT_RPO_SECONDS;
      const members = target.sandbox
        ? target.sandbox.state.members.map((m) => ({ name: m.name, endpoint: m.clientURL }))
        : target.contract && !flags.endpoints
          ? target.contract.etcd.members.map((m) => ({ name: m.name, endpoint: m.clientURL }))
          : undefined;
      const collector = new MetricsCollector({
        cluster: target.cluster,
        catalog: () => target.catalog(),
        etcd: () => target.gateway(),
        ...(members ? { members } : {}),
        rpoTargetSeconds: rpo,
        refreshMs: flags.refresh * 1000,
        timeoutMs: flags.timeout * 1000,
        ...(kube ? { jobSources: [kube] } : {}),
        log,
      });
      const server = serve(collector);
      const { host, port } = parseListen(flags.listen);
      await new Promise<void>((resolve, reject) => {
        server.once('error', (e) => reject(new EtcdRecoverError('CONFIG', `cannot listen on ${flags.listen}: ${e.message}`, { cause: e })));
        server.listen(port, host, resolve);
      });
      log(`serving ${flags.listen} /metrics for cluster ${target.cluster} (${target.describe()}), refresh ${flags.refresh} s, RPO target ${rpo} s${kube ? ', Kubernetes Jobs read' : ''}`);
      await new Promise((r) => (this.abort.signal.aborted ? r(undefined) : this.abort.signal.addEventListener('abort', r, { once: true })));
      await new Promise((r) => server.close(r));
      server.closeAllConnections();
    } finally {
      target.close();
    }
  }
}

function serve(collector: MetricsCollector): Server {
  return createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
    } else if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    } else if (path === '/metrics') {
      collector.render().then(
        (text) => res.writeHead(200, { 'content-type': EXPOSITION_CONTENT_TYPE }).end(req.method === 'HEAD' ? undefined : text),
        (e) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${(e as Error).message}\n`),
      );
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: see /metrics and /healthz\n');
    }
  });
}

export function parseListen(text: string): { host: string | undefined; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(text.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || !(port >= 0 && port < 65536)) throw new EtcdRecoverError('USAGE', `--listen ${text}: expected [HOST]:PORT, e.g. :9479 or 127.0.0.1:9479`);
  return { host: m[1] ?? (m[2] || undefined), port };
}

/**
 * In the cluster: the component's CronJobs' Jobs (`<cluster>-<job>`), newest first, failed ones in a
 * row up to the newest that succeeded (bounded by the CronJobs' history limits). Needs `list` on
 * batch/jobs and, for the RPO default, `get` on batch/cronjobs in the contract's namespace.
 */
class KubeJobs implements JobFailureSource {
  readonly name = 'kubernetes jobs';

  private constructor(
    private readonly batch: import('@kubernetes/client-node').BatchV1Api,
    private readonly contract: RecoveryContract,
  ) {}

  static async inCluster(contract: RecoveryContract): Promise<KubeJobs> {
    const k = await import('@kubernetes/client-node');
    const kc = new k.KubeConfig();
    kc.loadFromCluster();
    return new KubeJobs(kc.makeApiClient(k.BatchV1Api), contract);
  }

  async backupSchedule(): Promise<string | undefined> {
    const cj = await this.batch.readNamespacedCronJob({ namespace: this.contract.namespace, name: `${this.contract.cluster}-backup` });
    return cj.spec?.schedule;
  }

  async consecutiveFailures(): Promise<Partial<Record<MetricJob, number>>> {
    const { items } = await this.batch.listNamespacedJob({ namespace: this.contract.namespace, labelSelector: 'etcd-recover.io/job' });
    const out: Partial<Record<MetricJob, number>> = {};
    for (const job of METRIC_JOBS) {
      const cron = `${this.contract.cluster}-${job}`;
      const runs = items
        .filter((j) => j.metadata?.ownerReferences?.some((r) => r.kind === 'CronJob' && r.name === cron))
        .map((j) => ({
          at: new Date(j.status?.startTime ?? j.metadata?.creationTimestamp ?? 0).getTime(),
          failed: Boolean(j.status?.conditions?.some((c) => c.type === 'Failed' && c.status === 'True')),
          done: (j.status?.succeeded ?? 0) > 0 || Boolean(j.status?.conditions?.some((c) => c.type === 'Complete' && c.status === 'True')),
        }))
        .filter((r) => r.failed || r.done)
        .sort((a, b) => b.at - a.at);
      if (!runs.length) continue;
      let n = 0;
      while (n < runs.length && runs[n]!.failed) n++;
      out[job] = n;
    }
    return out;
  }
}
