import { Flags } from '@oclif/core';
import { DEFAULT_RETENTION, captureSnapshot, parseDuration, pruneSnapshots, type PruneResult, type SnapshotRecord } from '@etcd-recover/core';
import { BaseCommand } from '../../base-command.js';
import { outputFlag, quietFlag, storeFlags, targetFlags } from '../../flags.js';

/** The scheduled backup job: create a verified backup, then prune by the retention policy. */
export default class AgentBackup extends BaseCommand {
  static override hidden = true;
  static override summary = 'Scheduled backup: backup create, then backup prune (the component\'s backup CronJob runs this).';
  static override flags = {
    ...targetFlags,
    ...storeFlags,
    ...outputFlag,
    ...quietFlag,
    'keep-last': Flags.integer({ default: DEFAULT_RETENTION.keepLast, min: 0 }),
    'keep-within': Flags.string({ default: '6h' }),
    hourly: Flags.string({ default: '24h' }),
    daily: Flags.string({ default: '7d' }),
    weekly: Flags.string({ default: '30d' }),
    'max-count': Flags.integer({ min: 1 }),
  };

  async run(): Promise<{ backup: SnapshotRecord; prune: PruneResult }> {
    const { flags } = await this.parse(AgentBackup);
    this.setup(flags);
    const target = await this.openTarget(flags);
    const catalog = target.catalog();
    await catalog.store.probe(this.abort.signal);
    const backup = await captureSnapshot({ gateway: target.gateway(), catalog, signal: this.abort.signal, labels: { reason: 'scheduled' }, onProgress: (p) => p.message && this.progress.step(p.message) });
    const prune = await pruneSnapshots(catalog, {
      policy: {
        keepLast: flags['keep-last'],
        keepAllWithin: parseDuration(flags['keep-within']),
        hourlyWithin: parseDuration(flags.hourly),
        dailyWithin: parseDuration(flags.daily),
        weeklyWithin: parseDuration(flags.weekly),
        ...(flags['max-count'] ? { maxCount: flags['max-count'] } : {}),
      },
      dryRun: false,
      signal: this.abort.signal,
    });
    const result = { backup, prune };
    this.render(result, () => `backup ${backup.name}: revision ${backup.revision}, ${backup.totalKeys} keys, verified; pruned ${prune.deleted.length}, kept ${prune.kept}`);
    return result;
  }
}
