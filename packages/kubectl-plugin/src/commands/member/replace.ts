import { Args, Flags } from '@oclif/core';
import { randomBytes } from 'node:crypto';
import {
  DEFAULT_STALE_AFTER_MS,
  EtcdRecoverError,
  abandonRecovery,
  type JournalDoc,
  Journal,
  RecoveryLock,
  lockedError,
  describeOpenJournal,
  newRecoveryId,
  planInPlaceMemberReplace,
  prepareMemberReplace,
  type Catalog,
  type RecoveryPlan,
  type RecoveryReport,
} from '@etcd-recover/core';
import { BaseCommand } from '../../base-command.js';
import type { Target } from '../../target.js';
import { outputFlag, quietFlag, storeFlags, targetFlags, yesFlag } from '../../flags.js';
import { describePlan, describeReport } from '../../plan-view.js';

export default class MemberReplace extends BaseCommand {
  static override summary = 'Replace one failed member while quorum holds: remove, set its data aside, re-add as a learner, promote.';
  static override description = `The automated form of kube-aws' "etcdadm replace" and HyperShift's single-member recovery. Refuses unless the other members form a quorum (use \`quorum\` otherwise). Nothing is lost: the new member copies the data from the quorum. Its old data is moved aside, not deleted.
Journaled and resumable like \`quorum\` (on Kubernetes too: the Job that runs it takes the recovery lock and writes the journal; rerun the same command to resume). Exit codes: 0 replaced; 9 no quorum without this member; 7 locked; 8 not confirmed; 10 a step failed (rerun to resume).`;
  static override examples = [
    { description: 'Preview', command: '<%= config.bin %> member replace etcd-2 --dry-run' },
    { description: 'Replace without a prompt', command: '<%= config.bin %> member replace etcd-2 --yes' },
    { description: 'Close an unfinished replacement you do not want resumed', command: '<%= config.bin %> member replace etcd-2 --abandon "disk replaced by hand"' },
    { description: 'On Kubernetes: the declared cluster in a namespace (runs as a Job in the cluster)', command: '<%= config.bin %> member replace etcd-2 -n hcp-demo --yes' },
  ];
  static override args = { member: Args.string({ description: 'Member name (e.g. etcd-2).', required: true }) };
  static override flags = {
    ...targetFlags,
    ...storeFlags,
    ...outputFlag,
    ...quietFlag,
    ...yesFlag,
    'dry-run': Flags.boolean({ description: 'Print the plan; change nothing.' }),
    restart: Flags.boolean({ description: 'Abandon an unfinished replacement instead of resuming it.' }),
    abandon: Flags.string({ description: 'Close the unfinished recovery without running anything, recording this reason (its set-aside data is kept).', exclusive: ['restart'] }),
    timeout: Flags.integer({ description: 'Seconds to wait for the new member to catch up.', default: 120, min: 5 }),
  };

  async run(): Promise<RecoveryPlan | RecoveryReport | JournalDoc> {
    const { args, flags } = await this.parse(MemberReplace);
    this.setup(flags);
    const target = await this.openTarget(flags);
    if (flags.abandon !== undefined) return this.abandon(target.catalog(), flags.abandon);
    if (target.kind === 'kubernetes') return this.onKubernetes(target, args.member, flags);
    const rt = await target.recoveryTarget();
    const catalog = target.catalog();
    const prepared = await prepareMemberReplace({ target: rt, catalog, member: args.member, ...(flags.restart ? { restart: true } : {}), signal: this.abort.signal });
    const { plan } = prepared;
    if (flags['dry-run']) {
      this.render(plan, () => describePlan(plan, Boolean(prepared.resume)));
      return plan;
    }
    this.progress.step(describePlan(plan, Boolean(prepared.resume)));
    await this.confirm(`This removes ${args.member} from ${plan.cluster} and rebuilds it empty.`, args.member, flags.yes);
    const report = await this.executeRecovery(rt, catalog, prepared, ['member', 'replace', ...this.argv].join(' '), flags);
    return report;
  }

  private async abandon(catalog: Catalog, reason: string): Promise<JournalDoc> {
    if (!reason.trim()) throw new EtcdRecoverError('USAGE', '--abandon needs a reason (it is recorded in the journal)');
    const doc = await abandonRecovery({ catalog, reason, by: ['member', 'replace', ...this.argv].join(' '), signal: this.abort.signal });
    if (!doc) throw new EtcdRecoverError('PRECONDITION', `no unfinished recovery of cluster ${catalog.cluster} to abandon`);
    this.render(doc, () => `Abandoned ${doc.plan.kind} recovery ${doc.plan.id} (${reason}). Its set-aside data, if any, is kept.`);
    return doc;
  }

  /**
   * On Kubernetes the replacement runs in the cluster, as a Job of the declared auto-heal CronJob
   * (its ServiceAccount may delete exactly the member pods and PVCs, and it has the bucket): the Job
   * takes the cluster's recovery lock, journals a member-replace plan under the recovery id chosen
   * here and executes it, each destructive step fenced — remove the member, add it back as a learner,
   * restart its pod (member-init sets the old data aside inside the volume and joins empty), promote
   * it once caught up. A rerun of this command resumes the unfinished journal; a second run while one
   * holds the lock is refused (LOCKED, exit 7).
   */
  private async onKubernetes(target: Target, member: string, flags: { yes: boolean; timeout: number; 'dry-run': boolean; restart?: boolean }): Promise<RecoveryPlan | RecoveryReport> {
    const c = target.contract!;
    if (!c.etcd.members.some((m) => m.name === member)) {
      throw new EtcdRecoverError('USAGE', `no member named ${member} (members: ${c.etcd.members.map((m) => m.name).join(', ')})`);
    }
    const ns = target.kube!.namespace;
    const kc = target.kube!.kc;
    const cron = `${c.cluster}-heal`;
    const k = await import('@etcd-recover/core/kubernetes');
    if (!flags['dry-run']) {
      await k.requirePermissions(kc, `member replace ${member}`, [
        { verb: 'get', resource: 'cronjobs', group: 'batch', namespace: ns, name: cron },
        { verb: 'create', resource: 'jobs', group: 'batch', namespace: ns },
        { verb: 'get', resource: 'jobs', group: 'batch', namespace: ns },
      ]);
    }
    const catalog = target.catalog();
    const store = catalog.store;
    const open = flags.restart ? undefined : await Journal.findOpen(store, c.cluster);
    if (open && (open.doc.plan.kind !== 'member-replace' || open.doc.plan.member !== member)) {
      throw new EtcdRecoverError('RESUME_CONFLICT', `${describeOpenJournal(open)} must finish first`, {
        hint: open.doc.plan.kind === 'quorum' ? 'resume it with `kubectl etcd-recover quorum`, or close it with --abandon' : `rerun \`member replace ${open.doc.plan.member}\` to resume it, or pass --restart`,
      });
    }
    await this.refuseIfLocked(k, kc, ns, store, c.cluster, open?.id);
    const id = open?.id ?? newRecoveryId(new Date(), randomBytes(2).toString('hex'));
    const pvc = c.etcd.members.find((m) => m.name === member)!.pvc;
    let plan: RecoveryPlan;
    if (open) {
      plan = open.doc.plan;
      this.progress.step(`resuming the ${describeOpenJournal(open)}`);
    } else {
      const krt = await target.recoveryTarget();
      const observation = await krt.observe(this.abort.signal);
      plan = planInPlaceMemberReplace({ id, cluster: c.cluster, target: `kubernetes ${ns}/${c.etcd.statefulSet} (in the cluster, as a Job of cronjob ${cron})`, members: krt.members(), observation, member, pvc });
    }
    if (flags['dry-run']) {
      this.render(plan, () => describePlan(plan, Boolean(open)));
      return plan;
    }
    this.progress.step(describePlan(plan, Boolean(open)));
    await this.confirm(`This removes ${member} from ${ns}/${c.cluster}, restarts its pod empty and rebuilds it from the quorum.`, member, flags.yes);
    const t0 = Date.now();
    const command = ['member', 'replace', ...this.argv].join(' ');
    const args = ['agent', 'heal', '--member', member, '--recovery-id', id, '--checks', '1', '--join-timeout', String(Math.max(flags.timeout, 240)), '--command', command, '-o', 'json', ...(flags.restart ? ['--restart'] : [])];
    const job = await this.startReplaceJob(k, kc, c, ns, cron, id, member, args);
    this.progress.step(`the replacement runs in the cluster as job ${ns}/${job} (recovery ${id}; journal ${Journal.key(c.cluster, id)})`);
    const { succeeded } = await k.awaitJob(kc, ns, job, flags.timeout * 1000 + 900_000, this.abort.signal);
    const journal = await Journal.load(store, c.cluster, id);
    if (!succeeded) {
      const out = await k.jobOutcome(kc, ns, job);
      const why = journal?.doc.error?.message ?? out.log ?? 'see its log';
      if (out.exitCode === 7) throw new EtcdRecoverError('LOCKED', `the replacement job ${ns}/${job} was refused: ${why}`, { hint: 'another recovery of this cluster is running; wait for it, then rerun' });
      if (out.exitCode === 9) throw new EtcdRecoverError('QUORUM_LOST', `the replacement job ${ns}/${job} refused: ${why}`, { hint: 'restore the whole cluster with `kubectl etcd-recover quorum`' });
      throw new EtcdRecoverError(out.exitCode === 2 ? 'USAGE' : 'STEP_FAILED', `the replacement job ${ns}/${job} failed: ${why}`, {
        hint: `kubectl -n ${ns} logs job/${job}; ${journal ? `fix the cause and rerun the same command: it resumes recovery ${id}` : 'rerun the same command'}`,
      });
    }
    const report = journal?.doc.facts['report'] as RecoveryReport | undefined;
    if (!report || journal?.doc.status !== 'completed') {
      const out = await k.jobOutcome(kc, ns, job);
      throw new EtcdRecoverError('STEP_FAILED', `the replacement job ${ns}/${job} ended without completing recovery ${id}${out.log ? `: ${out.log}` : ''}`, { hint: `kubectl -n ${ns} logs job/${job}; rerun the same command to resume` });
    }
    const out = { ...report, namespace: ns, member, job, rtoMs: Date.now() - t0 };
    this.render(out, () => `${describeReport(report)}\n(in the cluster: job ${ns}/${job})`);
    return out as RecoveryReport;
  }

  /**
   * LOCKED when a live run holds the cluster's lock. A holder that is the unfinished journal's own
   * run whose pod is gone (a crashed replacement Job) is waited out until the bucket's clock calls its
   * lock stale, so that a rerun after a crash simply resumes.
   */
  private async refuseIfLocked(k: typeof import('@etcd-recover/core/kubernetes'), kc: import('@kubernetes/client-node').KubeConfig, ns: string, store: Catalog['store'], cluster: string, resuming: string | undefined): Promise<void> {
    const lock = new RecoveryLock(store, cluster);
    const deadline = Date.now() + 2 * DEFAULT_STALE_AFTER_MS + 30_000;
    for (let said = false; ; said = true) {
      const cur = await lock.read(this.abort.signal);
      if (!cur || (await lock.holderIsGone(cur.holder, this.abort.signal))) return;
      const dead = resuming !== undefined && cur.holder.recoveryId === resuming && (await k.podIsGone(kc, ns, cur.holder.host));
      if (!dead || Date.now() > deadline) {
        throw lockedError(cluster, cur.holder);
      }
      if (!said) this.progress.step(`the lock is still held by the crashed run of ${resuming} (pod ${cur.holder.host} is gone); waiting until the bucket's clock calls it stale`);
      await new Promise((r) => setTimeout(r, 3_000));
    }
  }

  /** Creates the replacement Job from the heal CronJob's template (a fresh name when an earlier one failed). */
  private async startReplaceJob(k: typeof import('@etcd-recover/core/kubernetes'), kc: import('@kubernetes/client-node').KubeConfig, c: NonNullable<Target['contract']>, ns: string, cron: string, id: string, member: string, args: string[]): Promise<string> {
    const spec = await k.jobSpecFromCronJob(kc, ns, cron, args);
    spec.backoffLimit = 0;
    const labels = { ...(spec.template.metadata?.labels ?? {}), 'etcd-recover.io/manual': 'true', [k.RECOVERY_LABEL]: id };
    spec.template.metadata = { ...(spec.template.metadata ?? {}), labels };
    // Test seam of the executor (die right after a step): passed on to the Job that runs the steps.
    const fault = process.env['ETCD_RECOVER_FAULT_AFTER_STEP'];
    if (fault) {
      const ct = spec.template.spec!.containers[0]!;
      ct.env = [...(ct.env ?? []), { name: 'ETCD_RECOVER_FAULT_AFTER_STEP', value: fault }];
    }
    const name = k.recoveryJobName(c.cluster, id, `replace-${member}-${Date.now().toString(36)}`);
    await k.createJob(kc, ns, { metadata: { name, namespace: ns, labels, annotations: { 'cronjob.kubernetes.io/instantiate': 'manual' } }, spec });
    return name;
  }
}
