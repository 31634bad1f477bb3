import { Flags } from '@oclif/core';
import { EtcdRecoverError, healOnce, type HealResult } from '@etcd-recover/core';
import { BaseCommand } from '../../base-command.js';
import { outputFlag, quietFlag, targetFlags } from '../../flags.js';

/** The auto-heal job: replace exactly one failing member while quorum holds; never act without quorum. */
export default class AgentHeal extends BaseCommand {
  static override hidden = true;
  static override summary = 'Auto-heal pass (the component\'s heal CronJob runs this in the cluster).';
  static override flags = {
    ...targetFlags,
    ...outputFlag,
    ...quietFlag,
    checks: Flags.integer({ default: 3, min: 1, description: 'Consecutive failed checks before a member counts as failing.' }),
    interval: Flags.integer({ default: 10, min: 1, description: 'Seconds between checks.' }),
    member: Flags.string({ description: 'Replace this member (what `member replace` runs in the cluster).' }),
  };

  async run(): Promise<HealResult> {
    const { flags } = await this.parse(AgentHeal);
    this.setup(flags);
    const target = await this.openTarget(flags);
    if (!target.contract) throw new EtcdRecoverError('CONFIG', 'agent heal needs --contract-file (ETCD_RECOVER_CONTRACT)');
    const { ClientNodeGateway } = await import('@etcd-recover/core/kubernetes');
    const result = await healOnce({
      contract: target.contract,
      etcd: target.gateway(),
      kube: ClientNodeGateway.inCluster(),
      checks: flags.checks,
      intervalMs: flags.interval * 1000,
      ...(flags.member ? { member: flags.member } : {}),
      log: (m) => this.progress.step(m),
      signal: this.abort.signal,
    });
    this.render(result, () => `heal: ${result.action}: ${result.message}`);
    if (result.action === 'refused') process.exitCode = 9;
    return result;
  }
}
