import { describeHolder, type ArchiveLag, type BackupResult, type HealthReport, type LockHolder, type SnapshotRecord } from '@etcd-recover/core';
import { age, bytes, table } from './render.js';

export interface MemberRow {
  name: string;
  endpoint: string;
  running?: boolean;
  healthy: boolean;
  leader: boolean;
  learner: boolean;
  revision?: number;
  raftIndex?: number;
  raftTerm?: number;
  dbSize?: number;
  version?: string;
  alarms: string[];
  /** Kubernetes: the member's pod and PVC. */
  pod?: string;
  pvc?: string;
  error?: string;
}

type BackupRef = Pick<SnapshotRecord, 'name' | 'createdAt' | 'revision'>;

export interface StatusResult {
  cluster: string;
  target: string;
  quorum: boolean;
  healthy: number;
  members: MemberRow[];
  backups: {
    latest: BackupRef[];
    latestVerified?: BackupRef;
    withinRpo: boolean;
    rpoSeconds: number;
    /** The newest backups (newest first) and how each stands. */
    timeline: { name: string; createdAt: string; result: BackupResult }[];
    error?: string;
  };
  /** Who holds the recovery lock right now, and whether that holder looks gone. */
  lock?: { holder: LockHolder; gone: boolean };
  /** An unfinished recovery (what `quorum` / `member replace` would resume). */
  unfinished?: { id: string; kind: string; status: string; summary: string };
  /** Continuous archiving: the archiver's last report and how far behind etcd it is. */
  archive?: ArchiveLag;
  /** The contract declares an archiver, but none has reported. */
  archiveMissing?: string;
  /** What is wrong, for machines: `status` exits with `health.exitCode` (docs/exit-codes.md). */
  health: HealthReport;
}

export interface OverviewRow {
  namespace: string;
  cluster: string;
  ready: string;
  quorum: boolean;
  newestBackup?: string;
  backupAge?: string;
  withinRpo: boolean;
  error?: string;
}

/** Timeline marks: symbols on a UTF-8 terminal, words under NO_COLOR or another locale. */
export function timelineMarks(env: NodeJS.ProcessEnv = process.env): Record<BackupResult, string> {
  const locale = env['LC_ALL'] || env['LC_CTYPE'] || env['LANG'] || '';
  return /utf-?8/i.test(locale) && !env['NO_COLOR']
    ? { verified: '✓', failed: '✗', unverified: '·', suspect: 'S' }
    : { verified: 'ok:', failed: 'FAIL:', unverified: 'new:', suspect: 'SUSPECT:' };
}

/** A compact age: 45s, 12m, 1h12m, 3d4h. */
export function shortAge(from: string, now = new Date()): string {
  const s = Math.max(0, Math.floor((now.getTime() - Date.parse(from)) / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 48) return m % 60 ? `${h}h${m % 60}m` : `${h}h`;
  return h % 24 ? `${Math.floor(h / 24)}d${h % 24}h` : `${Math.floor(h / 24)}d`;
}

export function renderStatus(result: StatusResult, opts: { kubernetes: boolean; wide: boolean; rpo: string; now?: Date }): string {
  const { members } = result;
  const lines = [
    `cluster ${result.cluster} (${result.target}): ${result.healthy}/${members.length} healthy, quorum ${result.quorum ? 'holds' : 'LOST'}`,
    table(members, [
      { header: 'Member', get: (m) => m.name },
      { header: 'Health', get: (m) => (m.healthy ? 'healthy' : m.error ? 'unreachable' : 'no leader') },
      { header: 'Role', get: (m) => (m.leader ? 'leader' : m.learner ? 'learner' : m.healthy ? 'follower' : '') },
      { header: 'Revision', get: (m) => m.revision, align: 'right' },
      { header: 'Raft-Index', get: (m) => m.raftIndex, align: 'right' },
      { header: 'DB-Size', get: (m) => bytes(m.dbSize), align: 'right' },
      ...(opts.kubernetes
        ? [
            { header: 'Pod', get: (m: MemberRow) => m.pod },
            { header: 'PVC', get: (m: MemberRow) => m.pvc },
          ]
        : [{ header: 'Alarms', get: (m: MemberRow) => m.alarms.join(',') || '-' }]),
      { header: 'Endpoint', get: (m) => m.endpoint, wide: true },
      { header: 'Version', get: (m) => m.version, wide: true },
    ], { wide: opts.wide }),
  ];
  // Why a member is unreachable (a TLS mismatch reads very differently from a dead member).
  for (const m of members) if (!m.healthy && m.error) lines.push(`${m.name}: ${m.error}`);
  const b = result.backups;
  if (b.error) lines.push(`backups: ${b.error}`);
  else if (!b.latestVerified) lines.push(`backups: no verified backup — RPO ${opts.rpo} NOT met`);
  else lines.push(`backups: newest verified ${b.latestVerified.name} (${age(b.latestVerified.createdAt)} ago, revision ${b.latestVerified.revision}) — RPO ${opts.rpo} ${b.withinRpo ? 'met' : 'NOT met'}`);
  if (b.timeline.length) {
    const mark = timelineMarks();
    lines.push(`backups (newest first): ${b.timeline.map((t) => `${mark[t.result]}${shortAge(t.createdAt, opts.now)}`).join(' ')}`);
  }
  const a = result.archive;
  if (result.archiveMissing) lines.push(`archive: ${result.archiveMissing}`);
  if (a) {
    const where = `chain ${a.chain}, revision ${a.lastRevision}`;
    if (a.stale) lines.push(`archive: NOT REPORTING since ${a.flushedAt} (${where}): is the archiver running? RPO by the archive not met`);
    else if (a.alarm) lines.push(`archive: ALARM: ${a.alarm} (${where})`);
    else lines.push(`archive: ${a.lagRevisions ? `${a.lagRevisions} revisions, ${a.lagSeconds.toFixed(1)} s behind` : 'caught up'} (${where}) — point-in-time restore to any revision since the chain's base`);
  }
  if (result.lock) lines.push(`lock: held by ${describeHolder(result.lock.holder)}${result.lock.gone ? ' — holder looks gone: the next recovery takes it over' : ''}`);
  if (result.unfinished) lines.push(`recovery: ${result.unfinished.summary} — rerun the same command to resume, or --abandon "REASON"`);
  const h = result.health;
  if (h.ok) lines.push('health: ok');
  else {
    lines.push(`health: ${h.findings.length} finding(s), exit ${h.exitCode}`);
    for (const f of h.findings) lines.push(`  ${f.exitCode} ${f.code}: ${f.message}`);
  }
  return lines.join('\n');
}

export function renderOverview(clusters: OverviewRow[]): string {
  return clusters.length
    ? table(clusters, [
        { header: 'Namespace', get: (r) => r.namespace },
        { header: 'Cluster', get: (r) => r.cluster },
        { header: 'Ready', get: (r) => r.ready },
        { header: 'Quorum', get: (r) => (r.quorum ? 'yes' : 'LOST') },
        { header: 'Newest-Backup', get: (r) => r.backupAge ?? (r.error ? 'error' : 'none') },
        { header: 'RPO', get: (r) => (r.withinRpo ? 'met' : 'NOT met') },
      ])
    : 'No etcd clusters are declared in any namespace.';
}
