import { Flags } from '@oclif/core';
import { DEFAULT_RETENTION, parseDuration, pruneSnapshots, type PruneResult, type RetentionPolicy } from '@etcd-recover/core';
import { BaseCommand } from '../../base-command.js';
import { outputFlag, quietFlag, storeFlags, targetFlags, yesFlag } from '../../flags.js';
import { age, table } from '../../render.js';

const d = (ms: number) => (ms % 86_400_000 === 0 ? `${ms / 86_400_000}d` : `${ms / 3_600_000}h`);

export default class BackupPrune extends BaseCommand {
  static override summary = 'Delete backups outside the retention policy (never the newest trusted one).';
  static override description = `Keeps the N newest, every backup inside the keep-all window, the newest of each hour, day and week inside their windows, and caps the total with --max-count. The newest trusted backup (verified, not an unconfirmed suspect) is always kept, and so is the newest verified one. Snapshot objects without a record (interrupted uploads) older than an hour are removed too. Review with --dry-run; deleting asks for confirmation unless --yes.
While a SUSPECT backup (keys or DB size collapsed, see \`backup list\`) is newer than every trusted backup, every trusted backup is kept, whatever the policy and --max-count say: they may be the only good data. \`backup confirm NAME\` accepts the suspect backup; prune then applies the policy again.`;
  static override examples = [
    { description: 'See what the default ladder would delete', command: '<%= config.bin %> backup prune --dry-run' },
    { description: 'Keep 6 h of everything, hourly for 2 days, daily for 2 weeks, at most 50 in all', command: '<%= config.bin %> backup prune --keep-within 6h --hourly 48h --daily 14d --max-count 50 --yes' },
    { description: 'After a suspect backup: see what is held back, accept the collapse, then prune', command: '<%= config.bin %> backup prune --dry-run && <%= config.bin %> backup confirm full-20261121T073355123Z --yes && <%= config.bin %> backup prune --yes' },
  ];
  static override flags = {
    ...targetFlags,
    ...storeFlags,
    ...outputFlag,
    ...quietFlag,
    ...yesFlag,
    'dry-run': Flags.boolean({ description: 'Show the decisions; delete nothing.' }),
    'keep-last': Flags.integer({ description: `Always keep the N newest (default ${DEFAULT_RETENTION.keepLast}).`, min: 0 }),
    'keep-within': Flags.string({ description: `Keep every backup younger than this (default ${d(DEFAULT_RETENTION.keepAllWithin)}; 0 = off).` }),
    hourly: Flags.string({ description: `Keep the newest of each hour for this long (default ${d(DEFAULT_RETENTION.hourlyWithin)}).` }),
    daily: Flags.string({ description: `Keep the newest of each day for this long (default ${d(DEFAULT_RETENTION.dailyWithin)}).` }),
    weekly: Flags.string({ description: `Keep the newest of each week for this long (default ${d(DEFAULT_RETENTION.weeklyWithin)}).` }),
    'max-count': Flags.integer({ description: 'Keep at most this many backups in all.', min: 1 }),
    'archive-keep': Flags.string({ description: 'Continuous archiving: the point-in-time window. Archive chains whose newest point is older are removed (never the newest chain); the base snapshot of every other chain is kept whatever the policy says.', default: '7d' }),
  };

  async run(): Promise<PruneResult> {
    const { flags } = await this.parse(BackupPrune);
    this.setup(flags);
    const policy: RetentionPolicy = {
      keepLast: flags['keep-last'] ?? DEFAULT_RETENTION.keepLast,
      keepAllWithin: flags['keep-within'] !== undefined ? parseDuration(flags['keep-within']) : DEFAULT_RETENTION.keepAllWithin,
      hourlyWithin: flags.hourly !== undefined ? parseDuration(flags.hourly) : DEFAULT_RETENTION.hourlyWithin,
      dailyWithin: flags.daily !== undefined ? parseDuration(flags.daily) : DEFAULT_RETENTION.dailyWithin,
      weeklyWithin: flags.weekly !== undefined ? parseDuration(flags.weekly) : DEFAULT_RETENTION.weeklyWithin,
      ...(flags['max-count'] !== undefined ? { maxCount: flags['max-count'] } : {}),
    };
    const target = await this.openTarget(flags);
    const catalog = target.catalog();
    // Decide first (a dry run), confirm, then delete exactly what was shown.
    const archiveKeepMs = parseDuration(flags['archive-keep']);
    const plan = await pruneSnapshots(catalog, { policy, dryRun: true, archiveKeepMs, signal: this.abort.signal });
    let result = plan;
    if (!flags['dry-run'] && (plan.deleted.length || plan.incompleteDeleted.length || plan.chains.length)) {
      await this.confirm(`About to delete ${plan.deleted.length} backup(s), ${plan.incompleteDeleted.length} incomplete upload(s) and ${plan.chains.length} archive chain(s) of cluster ${target.cluster}.`, target.cluster, flags.yes);
      result = await pruneSnapshots(catalog, { policy, dryRun: false, archiveKeepMs, signal: this.abort.signal, onDelete: (n) => this.progress.step(`deleted ${n}`) });
    }
    this.render(result, () =>
      [
        table(result.decisions, [
          { header: 'Name', get: (r) => (r.suspect ? `${r.name} (SUSPECT)` : r.name) },
          { header: 'Age', get: (r) => age(r.createdAt) },
          { header: result.dryRun ? 'Would' : 'Action', get: (r) => (r.keep ? 'keep' : 'delete') },
          { header: 'Why', get: (r) => r.reasons.join('; ') },
        ]),
        `${result.dryRun ? 'would delete' : 'deleted'} ${result.deleted.length}, kept ${result.kept}` +
          (result.incompleteDeleted.length ? `, ${result.dryRun ? 'would remove' : 'removed'} ${result.incompleteDeleted.length} incomplete upload(s)` : ''),
        ...result.chains.map((c) => `${result.dryRun ? 'would remove' : 'removed'} archive chain ${c.chain} (${c.segments} segments, newest point revision ${c.to} at ${c.toAt}: past the --archive-keep window)`),
        ...suspectNotice(result),
      ].join('\n'),
    );
    return result;
  }
}

function suspectNotice(result: PruneResult): string[] {
  if (!result.suspects.length) return [];
  return [
    `SUSPECT backup(s) newer than every trusted one: ${result.suspects.join(', ')}; every trusted backup is kept until one is confirmed ` +
      `(\`kubectl etcd-recover backup confirm ${result.suspects[0]}\` if the collapse is the cluster's true state).`,
  ];
}
