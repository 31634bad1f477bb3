import { Args } from '@oclif/core';
import { exportBackup, type ExportResult } from '@etcd-recover/core';
import { BaseCommand } from '../../base-command.js';
import { outputFlag, quietFlag, storeFlags, targetFlags } from '../../flags.js';
import { bytes } from '../../render.js';

export default class BackupExport extends BaseCommand {
  static override summary = 'Write a backup as a plain etcd snapshot file that bare `etcdutl snapshot restore` takes.';
  static override description = `Streams the backup from the bucket, decrypts it when it is encrypted (with --age-identity-file or the configured key), and writes the snapshot exactly as etcd streamed it — with its sha256 trailer — verified on the way (bbolt walk, trailer, the record's sha256). It goes to FILE.part and is renamed to FILE only once proven; an existing FILE is never overwritten. No lock-in: \`etcdutl snapshot restore FILE\` restores it without this tool.
A backup imported from a raw member/snap/db copy has no trailer: it is written as it is, and etcdutl needs --skip-hash-check for it.
Exit codes: 0 written; 3 the backup is corrupt; 4 no such backup; 9 FILE exists; 13 no key opens it.`;
  static override examples = [
    '<%= config.bin %> backup export full-20261121T073355123Z ./snapshot.db',
    { description: 'Then, without this tool', command: 'etcdutl snapshot restore ./snapshot.db --data-dir /var/lib/etcd-restored' },
  ];
  static override args = {
    name: Args.string({ description: 'Backup name (see `backup list`).', required: true }),
    file: Args.string({ description: 'File to write (must not exist).', required: true }),
  };
  static override flags = { ...targetFlags, ...storeFlags, ...outputFlag, ...quietFlag };

  async run(): Promise<ExportResult> {
    const { args, flags } = await this.parse(BackupExport);
    this.setup(flags);
    const catalog = (await this.openTarget(flags)).catalog();
    const result = await exportBackup(catalog, args.name, args.file, { signal: this.abort.signal, onProgress: (b) => this.progress.transfer(`exporting ${args.name}`, b) });
    this.render(result, () =>
      [`exported ${result.name} to ${result.file}: ${bytes(result.bytes)}, revision ${result.revision}, ${result.totalKeys} keys, verified${result.hasTrailer ? ' (sha256 trailer)' : ' (no trailer: a raw copy)'}`, `  restore with: ${result.restoreWith}`].join('\n'),
    );
    return result;
  }
}
