import { Args, Flags } from '@oclif/core';
import { keyHistory, type HistoryRow } from '@etcd-recover/core';
import { BaseCommand } from '../../base-command.js';
import { outputFlag, storeFlags, targetFlags } from '../../flags.js';
import { bytes, table } from '../../render.js';

export default class BackupHistory extends BaseCommand {
  static override summary = 'When a key was created, changed and deleted, from the archive: the revision just before a mistake.';
  static override description = `Reads the archive's segments (continuous archiving, \`agent archive\`) and lists every change of KEY (or of every key under it with --key-prefix): its revision, when the archiver saw it, and the value's size. To undo a deletion, restore to the revision before it: \`quorum --to-revision R-1\` (or prove it first with \`backup drill --to-revision R-1\`).
Exit 0 (also when the key never changed in the archive: the list is empty).`;
  static override examples = [
    { description: 'Who deleted the kube-system namespace, and when', command: '<%= config.bin %> backup history /registry/namespaces/kube-system' },
    { description: 'Every change under a prefix, as JSON', command: '<%= config.bin %> backup history /registry/secrets/prod/ --key-prefix -o json' },
    { description: 'The revision to restore to: just before the last deletion', command: "<%= config.bin %> backup history /registry/configmaps/default/app -o json | jq '[.[] | select(.change==\"deleted\")][-1].revision - 1'" },
  ];
  static override args = { key: Args.string({ description: 'The key (or, with --key-prefix, the prefix).', required: true }) };
  static override flags = {
    ...targetFlags,
    ...storeFlags,
    ...outputFlag,
    'key-prefix': Flags.boolean({ description: 'KEY is a prefix: every key under it. (--prefix is the bucket\'s key prefix, as on every command.)' }),
    limit: Flags.integer({ description: 'Only the newest N changes.', min: 1 }),
  };

  async run(): Promise<HistoryRow[]> {
    const { args, flags } = await this.parse(BackupHistory);
    this.setup({ ...flags, quiet: true });
    const catalog = (await this.openTarget(flags)).catalog();
    const unreadable: string[] = [];
    const rows = await keyHistory({ unreadable, catalog, key: args.key, ...(flags['key-prefix'] ? { prefix: true } : {}), ...(flags.limit ? { limit: flags.limit } : {}), signal: this.abort.signal });
    // A damaged segment hides its revisions' changes, not the others': said on stderr, always.
    for (const u of unreadable) process.stderr.write(`warning: segment ${u}: the changes it holds are not listed\n`);
    this.render(rows, () => {
      if (!rows.length) return `No change of ${args.key}${flags['key-prefix'] ? ' (prefix)' : ''} in the archive of cluster ${catalog.cluster}.`;
      const lines = [
        table(rows, [
          { header: 'Revision', get: (r) => r.revision, align: 'right' },
          { header: 'Time', get: (r) => r.at },
          { header: 'Change', get: (r) => r.change },
          ...(flags['key-prefix'] ? [{ header: 'Key', get: (r: HistoryRow) => r.key }] : []),
          { header: 'Size', get: (r) => (r.change === 'deleted' ? '' : bytes(r.size)), align: 'right' },
          { header: 'Chain', get: (r) => r.chain, wide: true },
        ], { wide: this.format === 'wide' }),
      ];
      const del = [...rows].reverse().find((r) => r.change === 'deleted');
      if (del) lines.push(`To restore ${del.key} as it was before its deletion at revision ${del.revision}: kubectl etcd-recover quorum --to-revision ${del.revision - 1} --dry-run`);
      return lines.join('\n');
    });
    return rows;
  }
}
