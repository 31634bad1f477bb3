import { EtcdRecoverError, collectStatuses } from '@etcd-recover/core';
import { BaseCommand } from '../../base-command.js';
import { outputFlag, quietFlag, targetFlags } from '../../flags.js';

/** Scheduled defragmentation: only when every member is healthy; followers first, the leader last, one at a time. */
export default class AgentDefrag extends BaseCommand {
  static override hidden = true;
  static override summary = 'Defragment every member, followers first (the optional defrag CronJob runs this).';
  static override flags = { ...targetFlags, ...outputFlag, ...quietFlag };

  async run(): Promise<{ defragmented: { endpoint: string; before: number; after: number }[] }> {
    const { flags } = await this.parse(AgentDefrag);
    this.setup(flags);
    this.reportAs('defrag');
    const gw = (await this.openTarget(flags)).gateway();
    const statuses = await collectStatuses(gw, this.abort.signal);
    const bad = statuses.filter((s) => !s.status || s.status.leaderId === '0');
    if (bad.length) throw new EtcdRecoverError('PRECONDITION', `not defragmenting: ${bad.map((b) => b.endpoint).join(', ')} unhealthy`);
    const order = [...statuses].sort((a, b) => Number(a.status!.isLeader) - Number(b.status!.isLeader));
    const defragmented: { endpoint: string; before: number; after: number }[] = [];
    for (const s of order) {
      this.progress.step(`defragmenting ${s.endpoint}${s.status!.isLeader ? ' (leader)' : ''}`);
      await gw.defragment(s.endpoint, this.abort.signal);
      const after = await gw.status(s.endpoint, this.abort.signal);
      defragmented.push({ endpoint: s.endpoint, before: s.status!.dbSize, after: after.dbSize });
    }
    const result = { defragmented };
    this.render(result, () => defragmented.map((d) => `${d.endpoint}: ${d.before} → ${d.after} bytes`).join('\n'));
    return result;
  }
}
