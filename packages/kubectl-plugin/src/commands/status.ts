import { Flags } from '@oclif/core';
import { Journal, RecoveryLock, S3ObjectStore, describeHolder, describeOpenJournal, isTrusted, isVerified, layout, mapLimit, parseDuration, parseSnapshotName, type LockHolder, type SnapshotRecord } from '@etcd-recover/core';
import { BaseCommand } from '../base-command.js';
import { outputFlag, storeFlags, targetFlags } from '../flags.js';
import { age, bytes, table } from '../render.js';

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

export interface StatusResult {
  cluster: string;
  target: string;
  quorum: boolean;
  healthy: number;
  members: MemberRow[];
  backups: { latest: Pick<SnapshotRecord, 'name' | 'createdAt' | 'revision'>[]; latestVerified?: Pick<SnapshotRecord, 'name' | 'createdAt' | 'revision'>; withinRpo: boolean; rpoSeconds: number; error?: string };
  /** Who holds the recovery lock right now, and whether that holder looks gone. */
  lock?: { holder: LockHolder; gone: boolean };
  /** An unfinished recovery (what `quorum` / `member replace` would resume). */
  unfinished?: { id: string; kind: string; status: string; summary: string };
}

export default class Status extends BaseCommand {
  static override summary = 'Health of every member and of the backups: leader, revision, raft index, DB size, alarms, RPO.';
  static override description = `On the sandbox and with --endpoints, etcd is asked directly. On Kubernetes (-n NAMESPACE, --context, --kubeconfig) the declared cluster is found through its recovery contract; pods and PVCs come from the API, and etcd's own view (leader, revision, raft index, DB size) from each member's metrics port through the API server's pod proxy — no port-forward, no exec.`;
  static override examples = ['<%= config.bin %> status', '<%= config.bin %> status -n hcp-demo', '<%= config.bin %> status -o json', '<%= config.bin %> status --rpo 15m'];
  static override flags = {
    ...targetFlags,
    ...storeFlags,
    ...outputFlag,
    rpo: Flags.string({ description: 'Recovery point objective: the newest verified backup must be younger than this.', default: '1h' }),
    'all-namespaces': Flags.boolean({ char: 'A', description: 'Kubernetes: one line per declared cluster in every namespace.' }),
  };

  async run(): Promise<StatusResult | { clusters: OverviewRow[] }> {
    const { flags } = await this.parse(Status);
    this.setup({ ...flags, quiet: true });
    if (flags['all-namespaces']) return this.allNamespaces(flags);
    const target = await this.openTarget(flags);
    const rpoMs = parseDuration(flags.rpo);
    let members: MemberRow[];
    let quorum: boolean;
    if (target.kind === 'kubernetes') {
      const { kubeMemberStatus } = await import('@etcd-recover/core/kubernetes');
      const ms = await kubeMemberStatus(target.kube!.kc, target.contract!);
      members = ms.map((m) => ({
        name: m.name,
        endpoint: target.contract!.etcd.members.find((x) => x.name === m.name)!.clientURL,
        running: m.pod?.phase === 'Running',
        healthy: Boolean(m.etcd?.hasLeader && !m.etcd.isLearner),
        leader: Boolean(m.etcd?.isLeader),
        learner: Boolean(m.etcd?.isLearner),
        ...(m.etcd ? { revision: m.etcd.revision, raftIndex: m.etcd.raftIndex, dbSize: m.etcd.dbSize } : {}),
        alarms: [],
        pod: m.pod ? `${m.pod.phase}${m.pod.ready ? '' : ' (not ready)'}${m.pod.reason ? ` ${m.pod.reason}` : ''}${m.pod.restarts ? `, ${m.pod.restarts} restarts` : ''}` : 'missing',
        pvc: m.pvc ? `${m.pvc.phase}${m.pvc.deleting ? ' (deleting)' : ''}` : 'missing',
        ...(m.error ? { error: m.error } : !m.pod ? { error: 'pod missing' } : {}),
      }));
      quorum = members.filter((m) => m.healthy).length > members.length / 2;
    } else if (target.sandbox) {
      const o = await (await target.recoveryTarget()).observe(this.abort.signal);
      quorum = o.quorum;
      members = o.members.map((m) => row(m.name, m.clientURL, m.status, m.error, m.running));
    } else {
      const gw = target.gateway();
      const sts = await Promise.all(gw.endpoints.map(async (ep) => {
        try {
          return { ep, s: await gw.status(ep, this.abort.signal) };
        } catch (e) {
          return { ep, e: (e as Error).message };
        }
      }));
      members = sts.map((x) => row(x.ep, x.ep, x.s, x.e));
      quorum = members.filter((m) => m.healthy).length > members.length / 2;
    }
    let backups: StatusResult['backups'];
    try {
      const { snapshots } = await target.catalog().list(this.abort.signal);
      const pick = (s: SnapshotRecord) => ({ name: s.name, createdAt: s.createdAt, revision: s.revision });
      // The RPO counts only what a restore would pick on its own: verified and not suspect.
      const lv = snapshots.find(isTrusted) ?? snapshots.find(isVerified);
      backups = {
        latest: snapshots.slice(0, 3).map(pick),
        ...(lv ? { latestVerified: pick(lv) } : {}),
        withinRpo: Boolean(lv && Date.now() - Date.parse(lv.createdAt) <= rpoMs),
        rpoSeconds: rpoMs / 1000,
      };
    } catch (e) {
      backups = { latest: [], withinRpo: false, rpoSeconds: rpoMs / 1000, error: (e as Error).message };
    }
    const recovery: Pick<StatusResult, 'lock' | 'unfinished'> = {};
    if (!backups.error) {
      const store = target.catalog().store;
      const lock = new RecoveryLock(store, target.cluster);
      const [held, open] = await Promise.all([lock.read(this.abort.signal).catch(() => undefined), Journal.findOpen(store, target.cluster).catch(() => undefined)]);
      if (held) recovery.lock = { holder: held.holder, gone: await lock.holderIsGone(held.holder, this.abort.signal).catch(() => false) };
      if (open) recovery.unfinished = { id: open.id, kind: open.doc.plan.kind, status: open.doc.status, summary: describeOpenJournal(open) };
    }
    const result: StatusResult = { cluster: target.cluster, target: target.describe(), quorum, healthy: members.filter((m) => m.healthy).length, members, backups, ...recovery };
    this.render(result, () => {
      const lines = [
        `cluster ${result.cluster} (${result.target}): ${result.healthy}/${members.length} healthy, quorum ${quorum ? 'holds' : 'LOST'}`,
        table(members, [
          { header: 'Member', get: (m) => m.name },
          { header: 'Health', get: (m) => (m.healthy ? 'healthy' : m.error ? 'unreachable' : 'no leader') },
          { header: 'Role', get: (m) => (m.leader ? 'leader' : m.learner ? 'learner' : m.healthy ? 'follower' : '') },
          { header: 'Revision', get: (m) => m.revision, align: 'right' },
          { header: 'Raft-Index', get: (m) => m.raftIndex, align: 'right' },
          { header: 'DB-Size', get: (m) => bytes(m.dbSize), align: 'right' },
          ...(target.kind === 'kubernetes'
            ? [
                { header: 'Pod', get: (m: MemberRow) => m.pod },
                { header: 'PVC', get: (m: MemberRow) => m.pvc },
              ]
            : [{ header: 'Alarms', get: (m: MemberRow) => m.alarms.join(',') || '-' }]),
          { header: 'Endpoint', get: (m) => m.endpoint, wide: true },
          { header: 'Version', get: (m) => m.version, wide: true },
        ], { wide: this.format === 'wide' }),
      ];
      // Why a member is unreachable (a TLS mismatch reads very differently from a dead member).
      for (const m of members) if (!m.healthy && m.error) lines.push(`${m.name}: ${m.error}`);
      const b = result.backups;
      if (b.error) lines.push(`backups: ${b.error}`);
      else if (!b.latestVerified) lines.push(`backups: no verified backup — RPO ${flags.rpo} NOT met`);
      else lines.push(`backups: newest verified ${b.latestVerified.name} (${age(b.latestVerified.createdAt)} ago, revision ${b.latestVerified.revision}) — RPO ${flags.rpo} ${b.withinRpo ? 'met' : 'NOT met'}`);
      if (result.lock) lines.push(`lock: held by ${describeHolder(result.lock.holder)}${result.lock.gone ? ' — holder looks gone: the next recovery takes it over' : ''}`);
      if (result.unfinished) lines.push(`recovery: ${result.unfinished.summary} — rerun the same command to resume, or --abandon "REASON"`);
      return lines.join('\n');
    });
    return result;
  }

  private async allNamespaces(flags: { kubeconfig?: string | undefined; context?: string | undefined; rpo: string }): Promise<{ clusters: OverviewRow[] }> {
    const result = await overview.call(this, flags);
    this.render(result, () =>
      result.clusters.length
        ? table(result.clusters, [
            { header: 'Namespace', get: (r) => r.namespace },
            { header: 'Cluster', get: (r) => r.cluster },
            { header: 'Ready', get: (r) => r.ready },
            { header: 'Quorum', get: (r) => (r.quorum ? 'yes' : 'LOST') },
            { header: 'Newest-Backup', get: (r) => r.backupAge ?? (r.error ? 'error' : 'none') },
            { header: 'RPO', get: (r) => (r.withinRpo ? 'met' : 'NOT met') },
          ])
        : 'No etcd clusters are declared in any namespace.',
    );
    return result;
  }
}

interface OverviewRow {
  namespace: string;
  cluster: string;
  ready: string;
  quorum: boolean;
  newestBackup?: string;
  backupAge?: string;
  withinRpo: boolean;
  error?: string;
}

async function overview(this: Status, flags: { kubeconfig?: string | undefined; context?: string | undefined; rpo: string }): Promise<{ clusters: OverviewRow[] }> {
  const k = await import('@etcd-recover/core/kubernetes');
  const { kc } = k.loadKubeConfig({ ...(flags.kubeconfig ? { kubeconfig: flags.kubeconfig } : {}), ...(flags.context ? { context: flags.context } : {}) });
  const { declared, rows } = await k.overviewAllNamespaces(kc);
  const rpoMs = parseDuration(flags.rpo);
  const clusters = await mapLimit(rows, 16, async (r, i): Promise<OverviewRow> => {
    const d = declared[i]!;
    const out: OverviewRow = { namespace: r.namespace, cluster: r.cluster, ready: `${r.ready}/${r.members}`, quorum: r.ready > r.members / 2, withinRpo: false };
    try {
      // The newest complete backup from the listing alone: names are timestamps, records mark completion.
      const creds = await k.readBackupCredentials(kc, d.contract);
      const b = d.contract.backup;
      const store = new S3ObjectStore({ bucket: b.bucket, prefix: b.prefix, ...(b.endpoint ? { endpoint: b.endpoint } : {}), ...(b.region ? { region: b.region } : {}), ...(b.forcePathStyle !== undefined ? { forcePathStyle: b.forcePathStyle } : {}), ...(creds ? { credentials: creds } : {}), maxAttempts: 2 });
      try {
        let newest: string | undefined;
        for await (const o of store.list(layout.snapshotsPrefix(d.contract.cluster))) {
          const n = o.key.split('/').pop()!;
          if (n.endsWith('.json') && (!newest || n > newest)) newest = n.slice(0, -5);
        }
        const at = newest ? parseSnapshotName(newest)?.createdAt : undefined;
        if (newest) out.newestBackup = newest;
        if (at) {
          out.backupAge = age(at);
          out.withinRpo = Date.now() - at.getTime() <= rpoMs;
        }
      } finally {
        store.destroy();
      }
    } catch (e) {
      out.error = (e as Error).message;
    }
    return out;
  });
  return { clusters };
}

function row(name: string, endpoint: string, s: import('@etcd-recover/core').MemberStatus | undefined, error: string | undefined, running?: boolean): MemberRow {
  return {
    name,
    endpoint,
    ...(running !== undefined ? { running } : {}),
    healthy: Boolean(s && s.leaderId !== '0'),
    leader: Boolean(s?.isLeader),
    learner: Boolean(s?.isLearner),
    ...(s ? { revision: s.revision, raftIndex: s.raftIndex, raftTerm: s.raftTerm, dbSize: s.dbSize, version: s.version } : {}),
    alarms: s?.errors ?? [],
    ...(error ? { error } : {}),
  };
}
