import { Args, Flags } from '@oclif/core';
import { EtcdRecoverError, rekeyBackup, type RekeyResult } from '@etcd-recover/core';
import { BaseCommand } from '../../base-command.js';
import { outputFlag, quietFlag, storeFlags, targetFlags, yesFlag } from '../../flags.js';
import { table } from '../../render.js';

export default class BackupRekey extends BaseCommand {
  static override summary = 'Re-encrypt backups for the current age recipients (key rotation), or encrypt plain ones.';
  static override description = `After a key rotation new backups are encrypted for the new recipients; the old ones still open only with the old identity. \`backup rekey\` reads each backup, decrypts it with the identities given, verifies it natively on the way (sha256 against its record), encrypts it for the current recipients into a staging object, reads that back to prove it, copies the old object aside, replaces it, proves the replacement, and only then rewrites the record and removes the copy. Interrupted, a rerun finishes from where it stopped; a backup that does not verify is left untouched.
Recipients: --age-recipients-file (the new public keys); identities: --age-identity-file (a key that opens the old backups). Backups already encrypted for exactly these recipients are skipped.`;
  static override examples = [
    { description: 'Rotate: new recipients, the old identity to open the old backups', command: '<%= config.bin %> backup rekey --all --age-recipients-file new.pub --age-identity-file old.key --yes' },
    { description: 'Encrypt one plain backup after turning encryption on', command: '<%= config.bin %> backup rekey full-20261121T073355123Z --age-recipients-file keys.pub --yes' },
  ];
  static override args = { name: Args.string({ description: 'The backup to re-encrypt (or --all).' }) };
  static override flags = {
    ...targetFlags,
    ...storeFlags,
    ...outputFlag,
    ...quietFlag,
    ...yesFlag,
    all: Flags.boolean({ description: 'Every backup of the cluster that is not yet encrypted for exactly these recipients.' }),
    'dry-run': Flags.boolean({ description: 'List what would be re-encrypted; change nothing.' }),
  };

  async run(): Promise<{ results: RekeyResult[]; dryRun: boolean }> {
    const { args, flags } = await this.parse(BackupRekey);
    this.setup(flags);
    if (!args.name && !flags.all) throw new EtcdRecoverError('USAGE', 'name a backup or pass --all', { hint: '`backup list` shows the backups and how each is encrypted' });
    const target = await this.openTarget(flags);
    const catalog = target.catalog();
    const to = catalog.keys?.recipients ?? [];
    if (!to.length) {
      throw new EtcdRecoverError('ENCRYPTION_KEY', 'backup rekey needs the new age recipients', { hint: 'pass --age-recipients-file (the new public keys) and --age-identity-file (a key that opens the old backups)' });
    }
    const records = args.name ? [await catalog.get(args.name, this.abort.signal)] : (await catalog.list(this.abort.signal)).snapshots;
    const todo = records.filter((r) => !(r.encryption && r.encryption.recipients.length === to.length && r.encryption.recipients.every((x) => to.includes(x))));
    const results: RekeyResult[] = [];
    const failures: EtcdRecoverError[] = [];
    if (flags['dry-run']) {
      for (const r of todo) results.push({ name: r.name, outcome: 'rekeyed', from: r.encryption?.recipients ?? 'plain', to: [...to] });
    } else {
      if (todo.length) await this.confirm(`Re-encrypt ${todo.length} backup(s) for ${to.join(', ')}.`, String(todo.length), flags.yes);
      for (const r of todo) {
        this.progress.step(`rekey ${r.name}`);
        try {
          results.push(await rekeyBackup(catalog, r.name, { signal: this.abort.signal, progress: (m) => this.progress.step(`      ${m}`) }));
        } catch (e) {
          // One backup that cannot be re-encrypted (corrupt, or no key opens it) stops neither the others nor is changed.
          if (!(e instanceof EtcdRecoverError) || ['ABORTED', 'LOCK_LOST', 'ACCESS_DENIED', 'STORE_UNREACHABLE'].includes(e.code)) throw e;
          failures.push(e);
          results.push({ name: r.name, outcome: 'failed', from: r.encryption?.recipients ?? 'plain', to: [...to], error: e.message });
        }
      }
      if (args.name && !todo.length) results.push({ name: args.name, outcome: 'already', from: [...to], to: [...to] });
    }
    this.render({ results, dryRun: Boolean(flags['dry-run']) }, () =>
      results.length
        ? table(results, [
            { header: 'Backup', get: (r) => r.name },
            { header: flags['dry-run'] ? 'Would' : 'Result', get: (r) => (flags['dry-run'] ? 're-encrypt' : r.outcome) },
            { header: 'From', get: (r) => (r.from === 'plain' ? 'plain' : r.from.map((x) => `${x.slice(0, 12)}…`).join(',')) },
            { header: 'To', get: (r) => r.to.map((x) => `${x.slice(0, 12)}…`).join(',') },
          ]) + results.filter((r) => r.error).map((r) => `\n${r.name}: ${r.error} (left as it was)`).join('')
        : `every backup of ${target.cluster} is already encrypted for these recipients`,
    );
    if (failures.length) {
      const first = failures[0]!;
      process.exitCode = first.exitCode;
      if (this.format === 'table' || this.format === 'wide') process.stderr.write(`error: ${failures.length} of ${todo.length} backup(s) could not be re-encrypted and were left as they were; first: ${first.message}\n  next: ${first.hint ?? '`backup verify` them'}\n`);
    }
    return { results, dryRun: Boolean(flags['dry-run']) };
  }
}
