import { Args, Flags } from '@oclif/core';
import { S3ObjectStore, bucketHistory, importBackup, openSource, parseS3Url, type ImportResult, type S3Config } from '@etcd-recover/core';
import type { Target } from '../../target.js';
import { BaseCommand } from '../../base-command.js';
import { outputFlag, quietFlag, storeFlags, targetFlags } from '../../flags.js';
import { bytes } from '../../render.js';

export default class BackupImport extends BaseCommand {
  static override summary = 'Import a backup made by another tool (etcdctl, a raw db copy, CSM, OKD, k3s/rke2, Gardener, kops) as an ordinary backup.';
  static override description = `SOURCE is a local file or folder, or s3://bucket/key (a key ending in "/" is a folder) in another bucket, on the same endpoint and credentials as the backup bucket unless --source-s3-endpoint / --source-s3-credentials-file say otherwise.
What it is comes from its bytes, never its name alone: a bbolt database (an \`etcdctl snapshot save\` file with its sha256 trailer, or a raw member/snap/db copy without); a tar (CSM's etcd-backup-<timestamp>.tar.gz holding <name>/etcd-dump.bin), zip (k3s/rke2) or a gzip, zlib, Go-LZW or Unix compress (.Z) stream (Gardener's full snapshots, kops' etcd.backup.gz); a folder (OKD's snapshot_<ts>.db + static_kuberesources_<ts>.tar.gz; kops' etcd.backup.gz + _etcd_backup.meta — what comes with the snapshot is kept beside it, encrypted when backups are).
It is unpacked in one stream (bounded memory), verified natively, encrypted when the catalog's backups are, uploaded, and recorded with its provenance (tool, original name and time, compression, notes such as "no trailer: integrity not proven"). Then \`backup list/verify/drill\` and \`quorum --snapshot NAME\` treat it like any other backup.
The etcd cluster ID comes from the snapshot's member list (etcd derives it from its members' IDs); a snapshot of another cluster than the catalog's backups is refused unless --force-foreign, as \`quorum\` refuses it. An archive holding two snapshots, a damaged or truncated one, or a source holding no snapshot is refused, naming what it holds; nothing is left behind.
Exit codes: 0 imported (or already there); 2 usage; 3 damaged or foreign; 4 no snapshot in SOURCE.`;
  static override examples = [
    { description: 'Import an etcdctl snapshot file', command: '<%= config.bin %> backup import ./snapshot.db' },
    { description: "See what a CSM tarball holds; write nothing", command: '<%= config.bin %> backup import ./etcd-backup-2020-02-04-18-50-03.tar.gz --dry-run' },
    { description: 'An OKD backup folder', command: '<%= config.bin %> backup import /home/core/backup' },
    { description: 'A kops etcd-manager backup in its own bucket', command: '<%= config.bin %> backup import s3://kops-state/prod/backups/etcd/main/2021-04-14T12:30:40Z/ -o json' },
  ];
  static override args = { source: Args.string({ description: 'File, folder or s3://bucket/key to import.', required: true }) };
  static override flags = {
    ...targetFlags,
    ...storeFlags,
    ...outputFlag,
    ...quietFlag,
    'dry-run': Flags.boolean({ description: 'Say what SOURCE holds (layout, inner file, sizes, revision, keys, cluster ID); write nothing.' }),
    'force-foreign': Flags.boolean({ description: 'Import a snapshot whose etcd cluster is not the one of the catalog\'s backups (or cannot be told).' }),
    'cluster-id': Flags.string({ description: 'The source etcd cluster ID (hex), when its member list changed since it was bootstrapped.' }),
    'source-s3-endpoint': Flags.string({ description: 'S3 endpoint of an s3:// SOURCE (default: the backup bucket\'s).', helpGroup: 'SOURCE' }),
    'source-s3-credentials-file': Flags.string({ description: 'Credentials for an s3:// SOURCE (default: the backup bucket\'s).', helpGroup: 'SOURCE' }),
  };

  async run(): Promise<ImportResult> {
    const { args, flags } = await this.parse(BackupImport);
    this.setup(flags);
    const target = await this.openTarget(flags);
    const catalog = target.catalog();
    await catalog.store.probe(this.abort.signal);
    const stores: S3ObjectStore[] = [];
    const s3 = parseS3Url(args.source)
      ? (bucket: string) => {
          const base: Partial<S3Config> = !flags.bucket && target.sandbox ? target.sandbox.s3Config() : {};
          const cfg: S3Config = {
            ...base,
            bucket,
            prefix: '',
            ...(flags['s3-endpoint'] ? { endpoint: flags['s3-endpoint'] } : {}),
            ...(flags['source-s3-endpoint'] ? { endpoint: flags['source-s3-endpoint'] } : {}),
            ...(flags['s3-region'] ? { region: flags['s3-region'] } : {}),
            ...(flags['s3-path-style'] !== undefined ? { forcePathStyle: flags['s3-path-style'] } : {}),
            ...(flags['s3-ca-file'] ? { caFile: flags['s3-ca-file'] } : {}),
            ...(flags['s3-profile'] ? { profile: flags['s3-profile'] } : {}),
            ...(flags['s3-checksum'] ? { checksumMode: flags['s3-checksum'] } : {}),
          };
          delete cfg.sse;
          const creds = flags['source-s3-credentials-file'] ?? flags['s3-credentials-file'];
          if (creds) {
            delete cfg.credentials;
            cfg.credentialsFile = creds;
          }
          const st = new S3ObjectStore(cfg);
          stores.push(st);
          return st;
        }
      : undefined;
    try {
      const source = await openSource(args.source, s3, this.abort.signal);
      // The IDs this cluster had besides its backups': its recoveries' (a restore changes it), its live members'.
      const lineage = [...(await bucketHistory({ catalog, signal: this.abort.signal })).clusterIds, ...(await liveClusterId(target))];
      const result = await importBackup({
        catalog,
        source,
        ...(flags['dry-run'] ? { dryRun: true } : {}),
        ...(flags['force-foreign'] ? { forceForeign: true } : {}),
        ...(flags['cluster-id'] ? { clusterId: flags['cluster-id'] } : {}),
        lineage,
        signal: this.abort.signal,
        onProgress: (p) => (p.bytes !== undefined ? this.progress.transfer('importing', p.bytes) : p.message && this.progress.step(p.message)),
      });
      this.render(result, () => describe(result));
      return result;
    } finally {
      for (const st of stores) st.destroy();
    }
  }
}

/** The live cluster's etcd ID when a member answers within a few seconds (none: nothing to add). */
async function liveClusterId(target: Target): Promise<string[]> {
  if (target.kind === 'kubernetes') return [];
  let gateway;
  try {
    gateway = target.gateway();
  } catch {
    return [];
  }
  const signal = AbortSignal.timeout(3_000);
  try {
    return [(await Promise.any(gateway.endpoints.map((e) => gateway.status(e, signal)))).clusterId];
  } catch {
    return [];
  }
}

function describe(r: ImportResult): string {
  const head = r.dryRun
    ? `would import ${r.layout} (${r.tool})`
    : r.alreadyImportedAs
      ? `${r.layout} (${r.tool}) is already in the catalog as ${r.alreadyImportedAs}: nothing written`
      : `imported ${r.layout} (${r.tool}) as ${r.record!.name}`;
  return [
    head,
    `  source:    ${r.source}${r.innerName ? ` → ${r.innerName}` : ''}${r.compression ? ` (${r.compression})` : ''}`,
    `  snapshot:  ${bytes(r.snapshotBytes)} (db ${bytes(r.dbSize)}), revision ${r.revision}, ${r.userKeys} keys, ${r.hasTrailer ? 'sha256 trailer verified' : 'NO trailer: integrity not proven'}`,
    `  cluster:   ${r.clusterId || '(unknown)'} (${r.clusterIdFrom})${r.members ? `, members ${r.members.join(', ')}` : ''}`,
    ...(r.originalTime ? [`  taken:     ${r.originalTime}`] : []),
    ...r.extras.map((x) => `  kept:      ${x.name}${x.objectKey ? ` → ${x.objectKey}` : ''}`),
    ...r.notes.map((n) => `  note:      ${n}`),
    ...(r.dryRun ? ['nothing was written (--dry-run)'] : []),
  ].join('\n');
}
