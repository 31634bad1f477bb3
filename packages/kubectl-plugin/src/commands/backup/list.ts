import { Flags } from '@oclif/core';
import { isPointInTime, isSuspect, isTrusted, isVerified, listChains, type CatalogListing, type ChainInfo, type SnapshotRecord } from '@etcd-recover/core';
import { BaseCommand } from '../../base-command.js';
import { outputFlag, storeFlags, targetFlags } from '../../flags.js';
import { age, bytes, table } from '../../render.js';

export default class BackupList extends BaseCommand {
  static override summary = 'List the backups of a cluster, newest first.';
  static override description = `Reads the catalog records in the bucket (every page, past 1,000 objects). A snapshot object without a record (an interrupted or running upload) is not a backup: it is shown only with --all.
A backup whose keys or DB size collapsed against the previous trusted one is SUSPECT (its record's "suspect" field says why): it is no restore point for latest/auto and prune keeps every older trusted backup until it is confirmed with \`backup confirm NAME\`. In json/yaml each backup also carries "trusted" (computed by this command: verified and not an unconfirmed suspect); "suspect.confirmed" records a confirmation.`;
  static override examples = [
    '<%= config.bin %> backup list',
    '<%= config.bin %> backup list -o json | jq -r \'.snapshots[0].name\'',
    { description: 'The newest backup the tool would restore on its own (trusted)', command: '<%= config.bin %> backup list -o json | jq -r \'[.snapshots[] | select(.trusted)][0].name\'' },
    '<%= config.bin %> backup list --bucket etcd-backups --s3-endpoint http://minio:9000 --cluster prod-eu1 --limit 5',
  ];
  static override flags = {
    ...targetFlags,
    ...storeFlags,
    ...outputFlag,
    limit: Flags.integer({ description: 'Show at most this many backups.', min: 1 }),
    all: Flags.boolean({ description: 'Also show incomplete uploads and unreadable records.' }),
  };

  async run(): Promise<ListOutput> {
    const { flags } = await this.parse(BackupList);
    this.setup({ ...flags, quiet: true });
    const target = await this.openTarget(flags);
    const catalog = target.catalog();
    const [listing, chains] = await Promise.all([catalog.list(this.abort.signal), listChains(catalog.store, catalog.cluster, this.abort.signal)]);
    const shown = flags.limit ? listing.snapshots.slice(0, flags.limit) : listing.snapshots;
    const result: ListOutput = {
      snapshots: shown.map((r) => ({ ...r, trusted: isTrusted(r) })),
      archive: chains.map((c, i) => chainRow(c, chains[i - 1])),
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
          { header: 'Verified', get: verifiedCell },
          { header: 'Encrypted', get: (r) => (r.encryption ? `age (${r.encryption.recipients.length})` : 'no') },
          { header: 'Recipients', get: (r) => r.encryption?.recipients.map((x) => `${x.slice(0, 12)}…`).join(',') ?? '', wide: true },
          { header: 'Member', get: (r) => r.sourceMember.name ?? r.sourceMember.endpoint, wide: true },
          { header: 'Cluster-ID', get: (r) => r.clusterId, wide: true },
          { header: 'SHA256', get: (r) => r.sha256.slice(0, 16), wide: true },
        ], { wide: this.format === 'wide' }),
      ];
      for (const r of result.snapshots.filter(isSuspect)) {
        lines.push(`SUSPECT ${r.name}: ${r.suspect!.reasons.join('; ')}; not a restore point for latest/auto, and prune keeps the older trusted backups. If this is the cluster's true state: kubectl etcd-recover backup confirm ${r.name}`);
      }
      if (result.archive.length) {
        lines.push('', 'Archive (point-in-time restore: quorum --to-revision R | --to-time T):');
        lines.push(
          table(result.archive, [
            { header: 'Chain', get: (c) => c.chain },
            { header: 'Restorable revisions', get: (c) => `${c.from}-${c.to}` },
            { header: 'From', get: (c) => c.fromAt },
            { header: 'To', get: (c) => c.toAt },
            { header: 'Segments', get: (c) => c.segments, align: 'right' },
            { header: 'Size', get: (c) => bytes(c.bytes), align: 'right' },
            { header: 'Base', get: (c) => c.base, wide: true },
            { header: 'Started', get: (c) => c.reason, wide: true },
          ], { wide: this.format === 'wide' }),
        );
        for (const c of result.archive) {
          if (c.gapBefore) lines.push(`gap before chain ${c.chain}: revisions ${c.gapBefore.after + 1} to ${c.from - 1} are not archived (${c.reason})`);
          if (c.hole) lines.push(`HOLE in chain ${c.chain}: revisions ${c.hole.after + 1}-${c.hole.next - 1} are missing; ${c.stranded} later segment(s) cannot be restored from this chain`);
        }
      }
      for (const i of result.incomplete) lines.push(`incomplete upload (not a backup): ${i.name} ${bytes(i.size)} ${age(i.lastModified)} old`);
      for (const u of result.unreadable) lines.push(`unreadable record: ${u.key}: ${u.error}`);
      return lines.join('\n');
    });
    return result;
  }
}

type ChainRow = { chain: string; from: number; to: number; fromAt: string; toAt: string; segments: number; bytes: number; base: string; reason: string; gapBefore?: { after: number }; hole?: { after: number; next: number }; stranded: number };
type ListOutput = Omit<CatalogListing, 'snapshots'> & { snapshots: (SnapshotRecord & { trusted: boolean })[]; archive: ChainRow[] };

function chainRow(c: ChainInfo, before: ChainInfo | undefined): ChainRow {
  return {
    chain: c.record.chain,
    from: c.record.base.revision,
    to: c.to,
    fromAt: c.record.base.createdAt,
    toAt: new Date(c.toAt).toISOString(),
    segments: c.segments.length,
    bytes: c.segments.reduce((n, s) => n + s.size, 0),
    base: c.record.base.snapshot,
    reason: c.record.reason,
    // A gap: revisions between the chain before's last archived one and this chain's base that no point restores.
    ...(before && before.to < c.record.base.revision - 1 ? { gapBefore: { after: before.to } } : {}),
    ...(c.hole ? { hole: c.hole } : {}),
    stranded: c.stranded,
  };
}

function verifiedCell(r: SnapshotRecord): string {
  if (!isVerified(r)) return r.verification ? 'FAILED' : 'no';
  const v = `yes (${r.verification!.by}, ${age(r.verification!.at)} ago)${isPointInTime(r) ? `, point in time (revision ${r.labels?.['to-revision']})` : r.labels?.['reason'] === 'archive-base' ? ', archive base' : ''}`;
  if (isSuspect(r)) return `SUSPECT, ${v}`;
  return r.suspect?.confirmed ? `${v}, confirmed` : v;
}
