import { Args, Flags } from '@oclif/core';
import { EtcdRecoverError, prepareMemberReplace, type RecoveryPlan, type RecoveryReport } from '@etcd-recover/core';
import { BaseCommand } from '../../base-command.js';
import type { Target } from '../../target.js';
import { outputFlag, quietFlag, storeFlags, targetFlags, yesFlag } from '../../flags.js';
import { describePlan } from '../../plan-view.js';

export default class MemberReplace extends BaseCommand {
  static override summary = 'Replace one failed member while quorum holds: remove, set its data aside, re-add as a learner, promote.';
  static override description = `The automated form of kube-aws' "etcdadm replace" and HyperShift's single-member recovery. Refuses unless the other members form a quorum (use \`quorum\` otherwise). Nothing is lost: the new member copies the data from the quorum. Its old data is moved aside, not deleted.
Journaled and resumable like \`quorum\`. Exit codes: 0 replaced; 9 no quorum without this member; 7 locked; 8 not confirmed; 10 a step failed (rerun to resume).`;
  static override examples = [
    { description: 'Preview', command: '<%= config.bin %> member replace etcd-2 --dry-run' },
    { description: 'Replace without a prompt', command: '<%= config.bin %> member replace etcd-2 --yes' },
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
    timeout: Flags.integer({ description: 'Seconds to wait for the new member to catch up.', default: 120, min: 5 }),
  };

  async run(): Promise<RecoveryPlan | RecoveryReport> {
    const { args, flags } = await this.parse(MemberReplace);
    this.setup(flags);
    const target = await this.openTarget(flags);
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

  /**
   * On Kubernetes the replacement runs in the cluster, as a Job of the declared auto-heal CronJob
   * (its ServiceAccount may delete exactly the member pods and PVCs): remove the member, add it back
   * as a learner, delete its PVC and pod (the protection finalizer holds the PVC until the pod is
   * gone), let the StatefulSet recreate both, and promote it once caught up.
   */
  private async onKubernetes(target: Target, member: string, flags: { yes: boolean; timeout: number; 'dry-run': boolean }): Promise<RecoveryReport> {
    const c = target.contract!;
    if (!c.etcd.members.some((m) => m.name === member)) {
      throw new EtcdRecoverError('USAGE', `no member named ${member} (members: ${c.etcd.members.map((m) => m.name).join(', ')})`);
    }
    const ns = target.kube!.namespace;
    const steps = [`remove ${member} from the etcd membership`, `add it back as a learner`, `delete PVC ${c.etcd.members.find((m) => m.name === member)!.pvc} and pod ${member}; the StatefulSet recreates them`, `promote ${member} once caught up`];
    if (flags['dry-run']) {
      const plan = { kind: 'member-replace', cluster: c.cluster, namespace: ns, member, runsAs: `job from cronjob ${ns}/${c.cluster}-heal`, steps };
      this.render(plan, () => [`Replace member ${member} of ${ns}/${c.cluster} (in the cluster, as a Job of cronjob ${c.cluster}-heal):`, ...steps.map((s, i) => `  ${i + 1}. ${s}`)].join('\n'));
      return plan as unknown as RecoveryReport;
    }
    const { runJobFromCronJob, requirePermissions } = await import('@etcd-recover/core/kubernetes');
    await requirePermissions(target.kube!.kc, `member replace ${member}`, [
      { verb: 'get', resource: 'cronjobs', group: 'batch', namespace: ns, name: `${c.cluster}-heal` },
      { verb: 'create', resource: 'jobs', group: 'batch', namespace: ns },
      { verb: 'get', resource: 'jobs', group: 'batch', namespace: ns },
    ]);
    await this.confirm(`This removes ${member} from ${ns}/${c.cluster}, deletes its pod and PVC and rebuilds it empty.`, member, flags.yes);
    const t0 = Date.now();
    this.progress.step(`running the replacement as a Job of cronjob ${ns}/${c.cluster}-heal`);
    const r = await runJobFromCronJob(target.kube!.kc, c, `${c.cluster}-heal`, ['agent', 'heal', '--member', member, '--checks', '1', '-o', 'json'], flags.timeout * 1000 + 300_000, this.abort.signal);
    if (!r.succeeded) {
      throw new EtcdRecoverError('STEP_FAILED', `the replacement job ${ns}/${r.job} failed (quorum may not hold without ${member})`, { hint: `kubectl -n ${ns} logs job/${r.job}` });
    }
    const report = { kind: 'member-replace', cluster: c.cluster, namespace: ns, member, job: r.job, status: 'completed', rtoMs: Date.now() - t0 };
    this.render(report, () => `Replaced ${member} of ${ns}/${c.cluster} in ${Math.round(report.rtoMs / 1000)} s (job ${r.job}).`);
    return report as unknown as RecoveryReport;
  }
}
