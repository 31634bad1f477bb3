import { createdAtOf, isSuspect, isTrusted, isVerified, keysOf, type CatalogListing, type SnapshotRecord } from '../snapshot/catalog.js';
import type { MetricFamily, MetricType, Sample } from './exposition.js';

/**
 * The exporter's metrics as a pure function of what the collector saw (see docs/metrics.md):
 * catalog records and member statuses in, metric families out. No I/O, no clock of its own.
 */

export type BackupState = 'trusted' | 'suspect' | 'unverified' | 'failed';
export const BACKUP_STATES: readonly BackupState[] = ['trusted', 'suspect', 'unverified', 'failed'];
export type MetricJob = 'backup' | 'verify' | 'heal' | 'defrag' | 'drill';
export const METRIC_JOBS: readonly MetricJob[] = ['backup', 'verify', 'heal', 'defrag', 'drill'];
export type ScrapeSource = 'bucket' | 'etcd';

/** An upload without its record younger than this may still be finishing (the record is written last). */
export const INCOMPLETE_GRACE_MS = 10 * 60_000;

/** What the catalog says, reduced to what the metrics need (times in ms since the epoch). */
export interface BackupSummary {
  newest?: { at: number; revision: number; dbSize: number; keys: number };
  newestVerifiedAt?: number;
  newestTrustedAt?: number;
  /** The newest verification run after creation (`backup verify`, a restore's check). */
  lastVerification?: { at: number; ok: boolean };
  states: Record<BackupState, number>;
  /** Failures in a row the catalog itself shows (see catalogFailures). */
  failures: { backup: number; verify: number };
}

export function backupState(r: SnapshotRecord): BackupState {
  if (r.verification && !r.verification.ok) return 'failed';
  if (isSuspect(r)) return 'suspect';
  if (isVerified(r)) return 'trusted';
  return 'unverified';
}

/**
 * Reduces a catalog listing (snapshots newest first). Failures in a row, as far as the bucket shows
 * them: for verify, the newest later verifications (by verification time) that failed, up to the
 * newest one that passed; for backup, uploads left without a record (a backup that died between
 * upload and record) newer than the newest complete backup — a backup that fails earlier leaves
 * nothing in the bucket, so other sources (job statuses, Kubernetes Jobs) count those.
 */
export function summarizeBackups(listing: Pick<CatalogListing, 'snapshots' | 'incomplete'>, now: number): BackupSummary {
  const s = listing.snapshots;
  const states = { trusted: 0, suspect: 0, unverified: 0, failed: 0 };
  for (const r of s) states[backupState(r)]++;
  const newest = s[0];
  const verified = s.find(isVerified);
  const trusted = s.find(isTrusted);
  const checks = s
    .filter((r) => r.verification && r.verification.by !== 'create')
    .map((r) => ({ at: Date.parse(r.verification!.at), ok: isVerified(r) }))
    .sort((a, b) => b.at - a.at);
  let verifyFailures = 0;
  while (verifyFailures < checks.length && !checks[verifyFailures]!.ok) verifyFailures++;
  const newestAt = newest ? Date.parse(newest.createdAt) : -Infinity;
  const backupFailures = listing.incomplete.filter((o) => {
    const created = createdAtOf(o.name)?.getTime();
    if (created === undefined || created <= newestAt) return false;
    return now - (o.lastModified?.getTime() ?? created) > INCOMPLETE_GRACE_MS;
  }).length;
  return {
    ...(newest ? { newest: { at: newestAt, revision: newest.revision, dbSize: newest.dbSize, keys: keysOf(newest) } } : {}),
    ...(verified ? { newestVerifiedAt: Date.parse(verified.createdAt) } : {}),
    ...(trusted ? { newestTrustedAt: Date.parse(trusted.createdAt) } : {}),
    ...(checks[0] ? { lastVerification: checks[0] } : {}),
    states,
    failures: { backup: backupFailures, verify: verifyFailures },
  };
}

export interface MemberView {
  name: string;
  up: boolean;
  leader: boolean;
  /** The last size it reported (kept while it is down). */
  dbSize?: number;
}

/** Everything one scrape renders. Bucket-derived parts are the last good ones (see bucketAt). */
export interface ExporterState {
  cluster: string;
  now: number;
  rpoTargetSeconds: number;
  bucketUp: boolean;
  /** When the bucket was last read completely; absent: never. */
  bucketAt?: number;
  backups?: BackupSummary;
  /** The recovery lock's holder when it was last read. */
  recovery?: { kind: string };
  etcdUp: boolean;
  etcdAt?: number;
  members: MemberView[];
  quorum: boolean;
  leaderChanges: number;
  scrapeErrors: Record<ScrapeSource, number>;
  /** Failures in a row per job, from every source that knows (the most of them). */
  jobFailures: Partial<Record<MetricJob, number>>;
  /** Continuous archiving, when an archiver reports for this cluster (archive/lag.ts). */
  archive?: { lastRevision: number; lastAt: number; lagSeconds: number; lagRevisions: number; stale: boolean; alarm?: string };
}

const sec = (ms: number) => ms / 1000;
const bool = (b: boolean) => (b ? 1 : 0);

/** The metric families of one scrape, in a stable order. */
export function metricFamilies(st: ExporterState): MetricFamily[] {
  const c = { cluster: st.cluster };
  const fams: MetricFamily[] = [];
  const fam = (name: string, type: MetricType, help: string, samples: (Sample | undefined)[]) =>
    fams.push({ name: `etcd_recover_${name}`, type, help, samples: samples.filter((x): x is Sample => x !== undefined) });
  const one = (value: number | undefined, labels: Record<string, string> = {}): Sample | undefined =>
    value === undefined ? undefined : { labels: { ...c, ...labels }, value };
  const b = st.backups;

  fam('backup_last_timestamp_seconds', 'gauge', 'Point in time of the newest complete backup (its createdAt).', [one(b?.newest && sec(b.newest.at))]);
  fam('backup_last_revision', 'gauge', 'etcd store revision of the newest complete backup.', [one(b?.newest?.revision)]);
  fam('backup_last_size_bytes', 'gauge', 'etcd DB size (bbolt) of the newest complete backup, as its record states.', [one(b?.newest?.dbSize)]);
  fam('backup_last_keys', 'gauge', 'Keys etcd serves in the newest complete backup.', [one(b?.newest?.keys)]);
  fam('backup_last_verified_timestamp_seconds', 'gauge', 'Point in time of the newest verified backup.', [one(b?.newestVerifiedAt !== undefined ? sec(b.newestVerifiedAt) : undefined)]);
  fam('verification_last_success', 'gauge', '1 when the newest verification of a backup after its creation passed, 0 when it failed.', [one(b?.lastVerification && bool(b.lastVerification.ok))]);
  fam('verification_last_timestamp_seconds', 'gauge', 'When the newest verification of a backup after its creation ran.', [one(b?.lastVerification && sec(b.lastVerification.at))]);
  fam('backups', 'gauge', 'Complete backups in the bucket by state: trusted (verified, not suspect), suspect, unverified, failed (its verification failed).', b ? BACKUP_STATES.map((s) => one(b.states[s], { state: s })) : []);
  fam('job_consecutive_failures', 'gauge', 'Runs of the job that failed in a row, up to its newest run (the most any source shows).', METRIC_JOBS.map((j) => one(st.jobFailures[j], { job: j })));
  fam('rpo_target_seconds', 'gauge', 'Recovery point objective: the newest trusted backup must be younger than this.', [one(st.rpoTargetSeconds)]);
  const trustedAge = b?.newestTrustedAt !== undefined ? st.now - b.newestTrustedAt : undefined;
  const a = st.archive;
  const archiveMeets = a !== undefined && !a.stale && !a.alarm && a.lagSeconds <= st.rpoTargetSeconds;
  fam('rpo_met', 'gauge', '1 when the newest trusted backup is younger than the RPO target, or the archive is behind by less than it.', [one(bool((trustedAge !== undefined && trustedAge <= st.rpoTargetSeconds * 1000) || archiveMeets))]);
  fam('archive_up', 'gauge', '1 when the archiver reports in time and without an alarm (continuous archiving).', [a ? one(bool(!a.stale && !a.alarm)) : undefined]);
  fam('archive_last_revision', 'gauge', 'The newest revision in the archive.', [one(a?.lastRevision)]);
  fam('archive_last_timestamp_seconds', 'gauge', 'When the archiver saw the newest archived revision.', [one(a && sec(a.lastAt))]);
  fam('archive_lag_seconds', 'gauge', 'How old the oldest write not yet archived can be (0: caught up): the RPO continuous archiving gives now.', [one(a?.lagSeconds)]);
  fam('archive_lag_revisions', 'gauge', 'Revisions etcd holds that the archive does not yet.', [one(a?.lagRevisions)]);
  fam('member_up', 'gauge', '1 when the member answered the exporter\'s status call.', st.members.map((m) => one(bool(m.up), { member: m.name })));
  fam('member_is_leader', 'gauge', '1 when the member reported itself the raft leader.', st.members.map((m) => one(bool(m.up && m.leader), { member: m.name })));
  fam('member_db_size_bytes', 'gauge', 'The member\'s DB size (bbolt file), as last reported.', st.members.map((m) => one(m.dbSize, { member: m.name })));
  fam('leader_changes_total', 'counter', 'Leader changes the exporter observed between its scrapes since it started.', [one(st.leaderChanges)]);
  fam('quorum', 'gauge', '1 when more than half of the voting members answered and have a leader.', [one(bool(st.quorum))]);
  fam('recovery_in_progress', 'gauge', '1 while the cluster\'s recovery lock is held (label kind: the recovery\'s kind).', [st.recovery ? one(1, { kind: st.recovery.kind }) : st.bucketAt !== undefined ? one(0) : undefined]);
  fam('bucket_up', 'gauge', '1 when the last read of the backup bucket succeeded.', [one(bool(st.bucketUp))]);
  fam('bucket_last_success_timestamp_seconds', 'gauge', 'When the bucket was last read completely: the age of every bucket-derived value.', [one(st.bucketAt !== undefined ? sec(st.bucketAt) : undefined)]);
  fam('etcd_up', 'gauge', '1 when at least one etcd member answered the last status round.', [one(bool(st.etcdUp))]);
  fam('etcd_last_success_timestamp_seconds', 'gauge', 'When an etcd member last answered.', [one(st.etcdAt !== undefined ? sec(st.etcdAt) : undefined)]);
  fam('exporter_scrape_errors_total', 'counter', 'Refreshes in which a source could not be read (bucket: any read failed; etcd: no member answered).', (['bucket', 'etcd'] as const).map((s) => one(st.scrapeErrors[s], { source: s })));
  return fams;
}
