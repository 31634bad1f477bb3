import type { Catalog } from '../snapshot/catalog.js';
import type { EtcdGateway, MemberStatus } from '../etcd/etcd-gateway.js';
import { RecoveryLock } from '../lock.js';
import { archiveLag } from '../archive/lag.js';
import { readJobStatuses } from './job-status.js';
import { formatExposition } from './exposition.js';
import { METRIC_JOBS, metricFamilies, summarizeBackups, type BackupSummary, type ExporterState, type MemberView, type MetricJob, type ScrapeSource } from './metrics.js';

type JobCounts = Partial<Record<MetricJob, number>>;

/** Another place that knows how jobs went (e.g. the CronJobs' Jobs on Kubernetes). Optional. */
export interface JobFailureSource {
  readonly name: string;
  consecutiveFailures(signal: AbortSignal): Promise<JobCounts>;
}

export interface CollectorOptions {
  cluster: string;
  /** Opened on each refresh: a bucket that cannot even be configured counts as down. */
  catalog: () => Catalog;
  etcd: () => EtcdGateway;
  /** The members by name (sandbox, contract); else names from etcd's member list, else the endpoints. */
  members?: { name: string; endpoint: string }[];
  rpoTargetSeconds: number;
  /** Results younger than this are served again (0: every scrape reads afresh). */
  refreshMs: number;
  /** Limit of one refresh's reads (default 5 s). */
  timeoutMs?: number;
  jobSources?: JobFailureSource[];
  /** A source went down (with why) or came back. */
  log?: (line: string) => void;
  now?: () => number;
}

const maxInto = (into: JobCounts, from: JobCounts) => {
  for (const j of METRIC_JOBS) if (from[j] !== undefined) into[j] = Math.max(into[j] ?? 0, from[j]!);
};

/**
 * Reads the catalog, the recovery lock, the jobs' recorded statuses and every member's status; keeps
 * the last good bucket-derived values when the bucket does not answer (bucket_up 0 says so), counts
 * leader changes between refreshes, and never throws: a source that fails is a metric, not an error.
 */
export class MetricsCollector {
  private readonly now: () => number;
  private cached: { at: number; state: ExporterState } | undefined;
  private inflight: Promise<ExporterState> | undefined;
  private bucket: { at: number; backups: BackupSummary; recovery?: { kind: string }; jobs: JobCounts } | undefined;
  private bucketUp = false;
  private etcdAt: number | undefined;
  private readonly dbSizes = new Map<string, number>();
  private readonly names = new Map<string, string>();
  private leader: string | undefined;
  private leaderChanges = 0;
  private readonly errors: Record<ScrapeSource, number> = { bucket: 0, etcd: 0 };
  private readonly down = new Set<string>();
  private readonly extraJobs = new Map<string, JobCounts>();

  constructor(private readonly opts: CollectorOptions) {
    this.now = opts.now ?? Date.now;
  }

  /** The exposition text of the current (or cached) state. */
  async render(): Promise<string> {
    return formatExposition(metricFamilies(await this.scrape()));
  }

  async scrape(): Promise<ExporterState> {
    if (this.cached && this.now() - this.cached.at < this.opts.refreshMs) return this.cached.state;
    this.inflight ??= this.refresh().finally(() => (this.inflight = undefined));
    return this.inflight;
  }

  private async refresh(): Promise<ExporterState> {
    const signal = AbortSignal.timeout(this.opts.timeoutMs ?? 5_000);
    const [etcd] = await Promise.all([this.readEtcd(signal), this.readBucket(signal), this.readJobSources(signal)]);
    const lag = this.bucketUp ? await archiveLag(this.opts.catalog().store, this.opts.cluster, { liveRevision: etcd.maxRevision, now: new Date(this.now()), signal }).catch(() => undefined) : undefined;
    const jobFailures: JobCounts = {};
    if (this.bucket) {
      maxInto(jobFailures, this.bucket.jobs);
      maxInto(jobFailures, this.bucket.backups.failures);
    }
    for (const c of this.extraJobs.values()) maxInto(jobFailures, c);
    const now = this.now();
    const state: ExporterState = {
      cluster: this.opts.cluster,
      now,
      rpoTargetSeconds: this.opts.rpoTargetSeconds,
      bucketUp: this.bucketUp,
      ...(this.bucket ? { bucketAt: this.bucket.at, backups: this.bucket.backups, ...(this.bucket.recovery ? { recovery: this.bucket.recovery } : {}) } : {}),
      etcdUp: etcd.up,
      ...(this.etcdAt !== undefined ? { etcdAt: this.etcdAt } : {}),
      members: etcd.members,
      quorum: etcd.quorum,
      leaderChanges: this.leaderChanges,
      scrapeErrors: { ...this.errors },
      jobFailures,
      ...(lag ? { archive: { lastRevision: lag.lastRevision, lastAt: lag.lastAt, lagSeconds: lag.lagSeconds, lagRevisions: lag.lagRevisions, stale: lag.stale, ...(lag.alarm ? { alarm: lag.alarm } : {}) } } : {}),
    };
    this.cached = { at: now, state };
    return state;
  }

  private mark(source: string, ok: boolean, why?: unknown): void {
    if (ok && this.down.delete(source)) this.opts.log?.(`${source}: reachable again`);
    if (!ok && !this.down.has(source)) {
      this.down.add(source);
      this.opts.log?.(`${source}: ${(why as Error)?.message ?? String(why)}`);
    }
  }

  private async readBucket(signal: AbortSignal): Promise<void> {
    try {
      const catalog = this.opts.catalog();
      const [listing, lock, statuses] = await Promise.all([
        catalog.list(signal),
        new RecoveryLock(catalog.store, this.opts.cluster).read(signal),
        readJobStatuses(catalog.store, this.opts.cluster, signal),
      ]);
      const jobs: JobCounts = {};
      for (const s of statuses) if ((METRIC_JOBS as readonly string[]).includes(s.job)) jobs[s.job as MetricJob] = s.consecutiveFailures;
      const now = this.now();
      this.bucket = { at: now, backups: summarizeBackups(listing, now), ...(lock ? { recovery: { kind: lock.holder.kind ?? 'unknown' } } : {}), jobs };
      this.bucketUp = true;
      this.mark('bucket', true);
    } catch (e) {
      this.bucketUp = false;
      this.errors.bucket++;
      this.mark('bucket', false, e);
    }
  }

  private async readJobSources(signal: AbortSignal): Promise<void> {
    await Promise.all((this.opts.jobSources ?? []).map(async (s) => {
      try {
        this.extraJobs.set(s.name, await s.consecutiveFailures(signal));
        this.mark(s.name, true);
      } catch (e) {
        this.mark(s.name, false, e); // its last good counts stay
      }
    }));
  }

  private async readEtcd(signal: AbortSignal): Promise<{ up: boolean; members: MemberView[]; quorum: boolean; maxRevision?: number }> {
    let gw: EtcdGateway | undefined;
    try {
      gw = this.opts.etcd();
    } catch (e) {
      this.mark('etcd', false, e);
    }
    const endpoints = this.opts.members ?? (gw?.endpoints ?? []).map((endpoint) => ({ endpoint, name: '' }));
    const [statuses] = await Promise.all([
      Promise.all(endpoints.map((m) => (gw ? gw.status(m.endpoint, signal).catch(() => undefined) : Promise.resolve(undefined)))),
      !this.opts.members && gw ? this.learnNames(gw, signal) : undefined,
    ]);
    const members = endpoints.map((m, i): MemberView => {
      const name = m.name || this.names.get(m.endpoint) || m.endpoint;
      const s = statuses[i];
      if (s) this.dbSizes.set(name, s.dbSize);
      const db = this.dbSizes.get(name);
      return { name, up: Boolean(s), leader: Boolean(s?.isLeader), ...(db !== undefined ? { dbSize: db } : {}) };
    });
    const answered = statuses.filter((s): s is MemberStatus => s !== undefined);
    const up = answered.length > 0;
    if (up) {
      this.etcdAt = this.now();
      this.mark('etcd', true);
    } else {
      this.errors.etcd++;
      if (gw) this.mark('etcd', false, new Error(`no etcd member answered (${endpoints.map((m) => m.endpoint).join(', ')})`));
    }
    const voters = endpoints.length - answered.filter((s) => s.isLearner).length;
    const healthy = answered.filter((s) => !s.isLearner && s.leaderId !== '0').length;
    const leader = answered.find((s) => s.isLeader)?.memberId ?? answered.find((s) => s.leaderId !== '0')?.leaderId;
    if (leader) {
      if (this.leader && leader !== this.leader) this.leaderChanges++;
      this.leader = leader;
    }
    const revs = answered.map((s) => s.revision);
    return { up, members, quorum: voters > 0 && healthy > voters / 2, ...(revs.length ? { maxRevision: Math.max(...revs) } : {}) };
  }

  /** Member names by client URL, from etcd's member list (which needs quorum: the last one is kept). */
  private async learnNames(gw: EtcdGateway, signal: AbortSignal): Promise<void> {
    try {
      for (const m of (await gw.list(signal)).members) for (const u of m.clientURLs) if (m.name) this.names.set(u, m.name);
    } catch {
      /* no quorum: keep the names seen before */
    }
  }
}

