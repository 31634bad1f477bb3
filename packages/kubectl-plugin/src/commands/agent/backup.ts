import { Flags } from '@oclif/core';
import { DEFAULT_RETENTION, captureSnapshot, isSuspect, parseDuration, pruneSnapshots, type PruneResult, type SnapshotRecord } from '@etcd-recover/core';
import { BaseCommand } from '../../base-command.js';
import { outputFlag, quietFlag, storeFlags, targetFlags } from '../../flags.js';

/** The scheduled backup job: create a verified backup, then prune by the retention policy. */
export default class AgentBackup extends BaseCommand {
  static override hidden = true;
  static override summary = 'Scheduled backup: backup create, then backup prune (the component\'s backup CronJob runs this).';
  static override description = 'A backup whose keys or DB size collapsed against the previous trusted one is kept but marked SUSPECT (a warning on stderr); while it is unconfirmed, the prune keeps every trusted backup (see `backup confirm`).';
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
    'archive-keep': Flags.string({ description: 'The point-in-time window: archive chains whose newest point is older are pruned (their bases then follow the backup retention).', default: '7d' }),
    member: Flags.string({ description: 'Member to snapshot (client URL or hex member ID); default: chosen automatically.' }),
  };

  async run(): Promise<{ backup: SnapshotRecord; prune: PruneResult }> {
    const { flags } = await this.parse(AgentBackup);
    this.setup(flags);
    this.reportAs('backup');
    const target = await this.openTarget(flags);
    const catalog = target.catalog();
    await catalog.store.probe(this.abort.signal);
    const backup = await captureSnapshot({
      ...(flags.member ? { member: flags.member } : {}),
      ...(await target.companionSource().then((c) => (c ? { companions: c } : {}))), gateway: target.gateway(), catalog, signal: this.abort.signal, labels: { reason: 'scheduled' }, onProgress: (p) => p.message && this.progress.step(p.message) });
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
      archiveKeepMs: parseDuration(flags['archive-keep']),
      signal: this.abort.signal,
    });
    if (isSuspect(backup)) {
      // Always on stderr, even with --quiet: the job's log is where an operator looks.
      process.stderr.write(`warning: backup ${backup.name} is SUSPECT: ${backup.suspect!.reasons.join('; ')}; it is no restore point for latest/auto and older trusted backups are kept; if this is the cluster's true state run \`kubectl etcd-recover backup confirm ${backup.name}\`\n`);
    }
    const result = { backup, prune };
    this.job!.message = `backup ${backup.name}: revision ${backup.revision}, ${backup.userKeys ?? backup.totalKeys} keys, ${backup.dbSize} bytes, verified${isSuspect(backup) ? ', SUSPECT' : ''}${backup.encryption ? ', encrypted' : ''}; pruned ${prune.deleted.length}${prune.chains.length ? `, ${prune.chains.length} archive chain(s) past the window` : ''}`;
    this.job!.details = { backup: backup.name, revision: backup.revision };
    this.render(result, () => `backup ${backup.name}: revision ${backup.revision}, ${backup.totalKeys} keys, verified${isSuspect(backup) ? ', SUSPECT' : ''}; pruned ${prune.deleted.length}, kept ${prune.kept}`);
    return result;
  }
}
