import { Args, Flags } from '@oclif/core';
import { prepareMemberReplace, type RecoveryPlan, type RecoveryReport } from '@etcd-recover/core';
import { BaseCommand } from '../../base-command.js';
import { outputFlag, quietFlag, storeFlags, targetFlags, yesFlag } from '../../flags.js';
import { describePlan } from '../../plan-view.js';

export default class MemberReplace extends BaseCommand {
  static override summary = 'Replace one failed member while quorum holds: remove, set its data aside, re-add as a learner, promote.';
  static override description = `The automated form of kube-aws' "etcdadm replace" and HyperShift's single-member recovery. Refuses unless the other members form a quorum (use \`quorum\` otherwise). Nothing is lost: the new member copies the data from the quorum. Its old data is moved aside, not deleted.
Journaled and resumable like \`quorum\`. Exit codes: 0 replaced; 9 no quorum without this member; 7 locked; 8 not confirmed; 10 a step failed (rerun to resume).`;
  static override examples = [
    { description: 'Preview', command: '<%= config.bin %> member replace etcd-2 --dry-run' },
    { description: 'Replace without a prompt', command: '<%= config.bin %> member replace etcd-2 --yes' },
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
    const rt = target.recoveryTarget();
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
}
