import { Flags } from '@oclif/core';
import { EtcdRecoverError, Journal, RecoveryLock, S3ObjectStore, archiveLag, assessHealth, backupResult, describeOpenJournal, isEtcdRecoverError, layout, mapLimit, parseDuration, parseSnapshotName, rpoBackup, type SnapshotRecord } from '@etcd-recover/core';
import { BaseCommand } from '../base-command.js';
import { outputFlag, storeFlags, targetFlags } from '../flags.js';
import { age, formatStructured } from '../render.js';
import type { Target } from '../target.js';
import { renderOverview, renderStatus, type MemberRow, type OverviewRow, type StatusResult } from '../status-view.js';

export type { MemberRow, StatusResult } from '../status-view.js';

/** One observation: what -o json|yaml prints, the table, and the exit code it calls for. */
interface Snapshot {
  result: StatusResult | { clusters: OverviewRow[] };
  text: () => string;
  exitCode: number;
}

interface StatusFlags {
  rpo: string;
  kubeconfig?: string | undefined;
  context?: string | undefined;
}

export default class Status extends BaseCommand {
  static override summary = 'Health of every member and of the backups: leader, revision, raft index, DB size, alarms, RPO; exits non-zero when something is wrong.';
  static override description = `On the sandbox and with --endpoints, etcd is asked directly. On Kubernetes (-n NAMESPACE, --context, --kubeconfig) the declared cluster is found through its recovery contract; pods and PVCs come from the API, and etcd's own view (leader, revision, raft index, DB size) from each member's metrics port through the API server's pod proxy — no port-forward, no exec.

Exit codes (docs/exit-codes.md, "status"): 0 healthy; 20 RPO breached (no verified backup younger than --rpo, or the backups could not be read); 21 the newest verification failed (the newest backup with a verification result did not pass it); 22 a member is down (no leader or unreachable; all members unreachable is one finding). When several hold, the most severe wins (22 > 21 > 20) and all are listed: in the table under "health:", in -o json|yaml as health.findings [{code, exitCode, message}]. Errors (bad flags, TLS, an unreachable API) keep their usual codes. --no-fail exits 0 on findings.

The table ends with the newest backups at a glance, newest first, e.g. "backups (newest first): ✓12m ✓42m ✗1h12m S1h42m ·2h": ✓ verified, ✗ verification failed, S suspect (not confirmed), · not verified yet. Without a UTF-8 locale, or with NO_COLOR set, the marks are words: ok:12m FAIL:1h12m SUSPECT:1h42m new:2h.

--watch re-renders every --interval seconds until interrupted (Ctrl-C); the exit code is that of the last observation. On a terminal the table is redrawn in place, otherwise each snapshot follows the previous one after a blank line; -o json prints one JSON document per line (NDJSON), -o yaml one document per snapshot (---).`;
  static override examples = [
    '<%= config.bin %> status',
    '<%= config.bin %> status -n hcp-demo',
    '<%= config.bin %> status -o json',
    '<%= config.bin %> status --rpo 15m',
    { description: 'CI: the findings as JSON; with `set -o pipefail` the job fails on any of them (exit 22 a member down, 21 verification failed, 20 RPO breached)', command: '<%= config.bin %> status --rpo 30m -o json | jq .health' },
    { description: 'CI: fail on the findings without minding which (jq -e exits 1 on false)', command: '<%= config.bin %> status --no-fail -o json | jq -e .health.ok' },
    { description: 'CI: branch on the exit code', command: '<%= config.bin %> status >/dev/null; case $? in 0) echo ok;; 20) echo "RPO breached";; 21) echo "verification failed";; 22) echo "member down";; *) echo "status failed";; esac' },
    { description: 'A human glance that never fails the shell', command: '<%= config.bin %> status --no-fail' },
    { description: 'Watch it, every 2 seconds; NDJSON for a log shipper', command: '<%= config.bin %> status -w --interval 2 -o json' },
  ];
  static override flags = {
    ...targetFlags,
    ...storeFlags,
    ...outputFlag,
    rpo: Flags.string({ description: 'Recovery point objective: the newest verified backup must be younger than this (else exit 20).', default: '1h' }),
    'all-namespaces': Flags.boolean({ char: 'A', description: 'Kubernetes: one line per declared cluster in every namespace (no health exit codes).' }),
    fail: Flags.boolean({ description: 'Exit 20/21/22 when the RPO is breached, the newest verification failed or a member is down; --no-fail exits 0 on those findings (errors keep their codes).', default: true, allowNo: true }),
    watch: Flags.boolean({ char: 'w', description: 'Re-render every --interval seconds until interrupted; exits with the code of the last observation.' }),
    interval: Flags.integer({ description: 'Seconds between observations with --watch.', default: 5, min: 1 }),
  };

  async run(): Promise<StatusResult | { clusters: OverviewRow[] } | undefined> {
    const { flags } = await this.parse(Status);
    this.setup({ ...flags, quiet: true });
    const rpoMs = parseDuration(flags.rpo);
    let observe: () => Promise<Snapshot>;
    if (flags['all-namespaces']) {
      observe = async () => {
        const result = await overview.call(this, flags);
        return { result, text: () => renderOverview(result.clusters), exitCode: 0 };
      };
    } else {
      const target = await this.openTarget(flags);
      observe = async () => {
        const result = await this.observeCluster(target, flags, rpoMs);
        return { result, text: () => renderStatus(result, { kubernetes: target.kind === 'kubernetes', wide: this.format === 'wide', rpo: flags.rpo }), exitCode: result.health.exitCode };
      };
    }
    if (!flags.watch) {
      const s = await observe();
      this.render(s.result, s.text);
      if (flags.fail && s.exitCode) process.exitCode = s.exitCode;
      return s.result;
    }
    return this.watch(observe, flags.interval * 1000, flags.fail);
  }

  /** Observes until interrupted; the exit code is that of the last observation (an error's, or the findings'). */
  private async watch(observe: () => Promise<Snapshot>, intervalMs: number, fail: boolean): Promise<undefined> {
    const signal = this.abort.signal;
    const tty = Boolean(process.stdout.isTTY) && (this.format === 'table' || this.format === 'wide');
    let last: number | undefined;
    for (let n = 0; !signal.aborted; n++) {
      let out: string;
      try {
        const s = await observe();
        last = fail ? s.exitCode : 0;
        out = this.format === 'json' ? JSON.stringify(s.result) : this.format === 'yaml' ? `---\n${formatStructured(s.result, 'yaml')}` : s.text();
      } catch (e) {
        if (signal.aborted) break;
        if (!isEtcdRecoverError(e)) throw e;
        last = e.exitCode;
        out = this.format === 'json' ? JSON.stringify({ error: e.toJSON() }) : this.format === 'yaml' ? `---\n${formatStructured({ error: e.toJSON() }, 'yaml')}` : `error: ${e.message}${e.hint ? `\n  next: ${e.hint}` : ''}`;
      }
      if (tty) out = `\x1b[H\x1b[2J${out}\n\nevery ${intervalMs / 1000}s, ${new Date().toLocaleTimeString()} — Ctrl-C to stop`;
      else if (n > 0 && this.format !== 'json' && this.format !== 'yaml') out = `\n${out}`;
      process.stdout.write(`${out}\n`);
      await sleep(intervalMs, signal);
    }
    if (last === undefined) throw new EtcdRecoverError('ABORTED', 'interrupted before the first observation');
    process.exitCode = last;
    return undefined;
  }

  private async observeCluster(target: Target, flags: StatusFlags, rpoMs: number): Promise<StatusResult> {
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
    let snapshots: SnapshotRecord[] | undefined;
    try {
      snapshots = (await target.catalog().list(this.abort.signal)).snapshots;
      const pick = (s: SnapshotRecord) => ({ name: s.name, createdAt: s.createdAt, revision: s.revision });
      // The RPO counts what a restore would pick on its own: verified and not suspect (else the newest verified).
      const lv = rpoBackup(snapshots);
      backups = {
        latest: snapshots.slice(0, 3).map(pick),
        ...(lv ? { latestVerified: pick(lv) } : {}),
        withinRpo: Boolean(lv && Date.now() - Date.parse(lv.createdAt) <= rpoMs),
        rpoSeconds: rpoMs / 1000,
        timeline: snapshots.slice(0, 10).map((s) => ({ name: s.name, createdAt: s.createdAt, result: backupResult(s) })),
      };
    } catch (e) {
      if (this.abort.signal.aborted) throw e;
      backups = { latest: [], withinRpo: false, rpoSeconds: rpoMs / 1000, timeline: [], error: (e as Error).message };
    }
    const recovery: Pick<StatusResult, 'lock' | 'unfinished' | 'archive' | 'archiveMissing'> = {};
    if (!backups.error) {
      const store = target.catalog().store;
      const lock = new RecoveryLock(store, target.cluster);
      const [held, open] = await Promise.all([lock.read(this.abort.signal).catch(() => undefined), Journal.findOpen(store, target.cluster).catch(() => undefined)]);
      if (held) recovery.lock = { holder: held.holder, gone: await lock.holderIsGone(held.holder, this.abort.signal).catch(() => false) };
      if (open) recovery.unfinished = { id: open.id, kind: open.doc.plan.kind, status: open.doc.status, summary: describeOpenJournal(open) };
    }
    // Continuous archiving: how far behind the archive is (the RPO it gives).
    if (!backups.error) {
      const live = Math.max(0, ...members.map((m) => m.revision ?? 0)) || undefined;
      const lag = await archiveLag(target.catalog().store, target.cluster, { liveRevision: live, signal: this.abort.signal }).catch(() => undefined);
      if (lag) recovery.archive = lag;
      else if (target.contract?.archive) recovery.archiveMissing = `the component declares an archiver (Deployment ${target.contract.archive.deployment}) but none has reported: is it running? (kubectl -n ${target.kube?.namespace ?? '?'} logs deploy/${target.contract.archive.deployment})`;
    }
    const health = assessHealth({
      archive: recovery.archive,
      members: members.map((m) => ({ name: m.name, healthy: m.healthy, detail: m.error ?? (m.learner ? 'a learner, not yet promoted' : 'no leader') })),
      snapshots,
      backupsError: backups.error,
      rpoMs,
      rpo: flags.rpo,
      now: new Date(),
    });
    return { cluster: target.cluster, target: target.describe(), quorum, healthy: members.filter((m) => m.healthy).length, members, backups, ...recovery, health };
  }
}

/** Resolves after ms, or at once when the signal aborts. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}

async function overview(this: Status, flags: StatusFlags): Promise<{ clusters: OverviewRow[] }> {
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
