import { hostname, userInfo } from 'node:os';
import { Args, Flags } from '@oclif/core';
import { SUSPECT_THRESHOLDS as T, isSuspect, isTrusted, pendingSuspects, type SnapshotRecord } from '@etcd-recover/core';
import { BaseCommand } from '../../base-command.js';
import { outputFlag, quietFlag, storeFlags, targetFlags, yesFlag } from '../../flags.js';

export default class BackupConfirm extends BaseCommand {
  static override summary = 'Accept a SUSPECT backup as the cluster\'s true state (its keys or DB size collapsed).';
  static override description = `\`backup create\` marks a backup SUSPECT when its keys fall below ${T.keysRatio * 100}% of the previous trusted backup's (which had at least ${T.minBaselineKeys}) or its DB size below ${T.dbSizeRatio * 100}% (of at least ${T.minBaselineDbSize / 1048576} MiB): an emptied or re-bootstrapped cluster looks exactly like that. A suspect backup is never the restore point of latest/auto, and while one is newer than every trusted backup, prune keeps all trusted backups.
Confirm it only when the collapse was intended (keys deleted on purpose, a planned reset): the confirmation is recorded in its catalog record (suspect.confirmed: who, when, why), it becomes the restore point, later backups are compared with it, and prune applies the retention policy again, so older backups will be deleted. Asks for the backup's name unless --yes.`;
  static override examples = [
    { description: 'See why a backup is suspect', command: '<%= config.bin %> backup list' },
    { description: 'Accept it, with the reason recorded', command: '<%= config.bin %> backup confirm full-20261121T073355123Z --reason "tenant namespaces deleted on purpose (CHG-1234)" --yes' },
  ];
  static override args = { name: Args.string({ description: 'The suspect backup to accept.', required: true }) };
  static override flags = {
    ...targetFlags,
    ...storeFlags,
    ...outputFlag,
    ...quietFlag,
    ...yesFlag,
    reason: Flags.string({ description: 'Why the collapse is expected; recorded with the confirmation.' }),
  };

  async run(): Promise<SnapshotRecord> {
    const { args, flags } = await this.parse(BackupConfirm);
    this.setup(flags);
    const target = await this.openTarget(flags);
    const catalog = target.catalog();
    const record = await catalog.get(args.name, this.abort.signal);
    if (isSuspect(record)) {
      await this.confirm(
        `Backup ${record.name} is SUSPECT: ${record.suspect!.reasons.join('; ')}. Confirming makes it the restore point and lets prune delete older backups by the retention policy.`,
        record.name,
        flags.yes,
      );
    }
    const confirmed = await catalog.confirmSuspect(args.name, { by: whoAmI(), ...(flags.reason ? { reason: flags.reason } : {}) }, this.abort.signal);
    const still = pendingSuspects((await catalog.list(this.abort.signal)).snapshots).map((s) => s.name);
    this.render(confirmed, () =>
      [
        `confirmed ${confirmed.name} (by ${confirmed.suspect!.confirmed!.by} at ${confirmed.suspect!.confirmed!.at}); ${isTrusted(confirmed) ? 'it is trusted now' : 'it is not verified, so still not a restore point'}`,
        ...(still.length ? [`still unconfirmed and newer than every trusted backup: ${still.join(', ')}`] : []),
      ].join('\n'),
    );
    return confirmed;
  }
}

function whoAmI(): string {
  let user = process.env['USER'] ?? 'unknown';
  try {
    user = userInfo().username;
  } catch {
    // no passwd entry (a container running as an arbitrary uid)
  }
  return `${user}@${hostname()}`;
}
