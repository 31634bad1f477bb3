import { Flags } from '@oclif/core';
import { EtcdRecoverError, healOnce, type HealResult } from '@etcd-recover/core';
import { BaseCommand } from '../../base-command.js';
import { outputFlag, quietFlag, storeFlags, targetFlags } from '../../flags.js';

/**
 * The auto-heal job: replace exactly one failing member while quorum holds; never act without quorum,
 * and never while another recovery holds the cluster's recovery lock (it skips, exit 0, changing
 * nothing). With --member it is what `member replace` runs in the cluster: journaled under
 * --recovery-id (a rerun resumes it), LOCKED (exit 7) when another recovery runs.
 */
export default class AgentHeal extends BaseCommand {
  static override hidden = true;
  static override summary = 'Auto-heal pass (the component\'s heal CronJob runs this in the cluster).';
  static override flags = {
    ...targetFlags,
    ...storeFlags,
    ...outputFlag,
    ...quietFlag,
    checks: Flags.integer({ default: 3, min: 1, description: 'Consecutive failed checks before a member counts as failing.' }),
    interval: Flags.integer({ default: 10, min: 1, description: 'Seconds between checks.' }),
    member: Flags.string({ description: 'Replace this member (what `member replace` runs in the cluster).' }),
    'recovery-id': Flags.string({ description: 'Journal the replacement under this id (member replace picks it; a rerun resumes it).' }),
    restart: Flags.boolean({ description: 'Abandon an unfinished recovery instead of refusing (with --member).' }),
    command: Flags.string({ description: 'The operator\'s command, recorded in the lock and the journal.' }),
    'join-timeout': Flags.integer({ default: 240, min: 5, description: 'Seconds to wait for the replacement to catch up and be promoted.' }),
  };

  async run(): Promise<HealResult> {
    const { flags } = await this.parse(AgentHeal);
    this.setup(flags);
    this.reportAs('heal');
    const target = await this.openTarget(flags);
    if (!target.contract) throw new EtcdRecoverError('CONFIG', 'agent heal needs --contract-file (ETCD_RECOVER_CONTRACT)');
    const { ClientNodeGateway } = await import('@etcd-recover/core/kubernetes');
    const result = await healOnce({
      contract: target.contract,
      etcd: target.gateway(),
      kube: ClientNodeGateway.inCluster(),
      catalog: target.catalog(),
      checks: flags.checks,
      intervalMs: flags.interval * 1000,
      joinTimeoutMs: flags['join-timeout'] * 1000,
      ...(flags.member ? { member: flags.member } : {}),
      ...(flags['recovery-id'] ? { recoveryId: flags['recovery-id'] } : {}),
      ...(flags.restart ? { restart: true } : {}),
      ...(flags.command ? { command: flags.command } : {}),
      log: (m) => this.progress.step(m),
      signal: this.abort.signal,
    });
    this.render(result, () => `heal: ${result.action}: ${result.message}`);
    if (result.action === 'skipped') process.stderr.write(`heal: ${result.message}\n`);
    if (result.action === 'refused') process.exitCode = 9;
    return result;
  }
}
