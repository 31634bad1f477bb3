import { Flags } from '@oclif/core';
import { isVerified, type CatalogListing } from '@etcd-recover/core';
import { BaseCommand } from '../../base-command.js';
import { outputFlag, storeFlags, targetFlags } from '../../flags.js';
import { age, bytes, table } from '../../render.js';

export default class BackupList extends BaseCommand {
  static override summary = 'List the backups of a cluster, newest first.';
  static override description = 'Reads the catalog records in the bucket (every page, past 1,000 objects). A snapshot object without a record (an interrupted or running upload) is not a backup: it is shown only with --all.';
  static override examples = [
    '<%= config.bin %> backup list',
    '<%= config.bin %> backup list -o json | jq -r \'.snapshots[0].name\'',
    '<%= config.bin %> backup list --bucket etcd-backups --s3-endpoint http://minio:9000 --cluster prod-eu1 --limit 5',
  ];
  static override flags = {
    ...targetFlags,
    ...storeFlags,
    ...outputFlag,
    limit: Flags.integer({ description: 'Show at most this many backups.', min: 1 }),
    all: Flags.boolean({ description: 'Also show incomplete uploads and unreadable records.' }),
  };

  async run(): Promise<CatalogListing> {
    const { flags } = await this.parse(BackupList);
    this.setup({ ...flags, quiet: true });
    const target = await this.openTarget(flags);
    const listing = await target.catalog().list(this.abort.signal);
    const result: CatalogListing = {
      snapshots: flags.limit ? listing.snapshots.slice(0, flags.limit) : listing.snapshots,
      incomplete: flags.all ? listing.incomplete : [],
      unreadable: flags.all ? listing.unreadable : [],
    };
    this.render(result, () => {
      if (!result.snapshots.length && !result.incomplete.length) return `No backups for cluster ${target.cluster} in ${target.store().description}.`;
      const lines = [
        table(result.snapshots, [
          { header: 'Name', get: (r) => r.name },
          { header: 'Age', get: (r) => age(r.createdAt) },
          { header: 'Revision', get: (r) => r.revision, align: 'right' },
          { header: 'Keys', get: (r) => r.totalKeys, align: 'right' },
          { header: 'Size', get: (r) => bytes(r.dbSize), align: 'right' },
          { header: 'Verified', get: (r) => (isVerified(r) ? `yes (${r.verification!.by}, ${age(r.verification!.at)} ago)` : r.verification ? 'FAILED' : 'no') },
          { header: 'Member', get: (r) => r.sourceMember.name ?? r.sourceMember.endpoint, wide: true },
          { header: 'Cluster-ID', get: (r) => r.clusterId, wide: true },
          { header: 'SHA256', get: (r) => r.sha256.slice(0, 16), wide: true },
        ], { wide: this.format === 'wide' }),
      ];
      for (const i of result.incomplete) lines.push(`incomplete upload (not a backup): ${i.name} ${bytes(i.size)} ${age(i.lastModified)} old`);
      for (const u of result.unreadable) lines.push(`unreadable record: ${u.key}: ${u.error}`);
      return lines.join('\n');
    });
    return result;
  }
}
