import { Flags } from '@oclif/core';
import { Etcd3ChangeSource, runArchiver } from '@etcd-recover/core';
import { BaseCommand } from '../../base-command.js';
import { quietFlag, storeFlags, targetFlags } from '../../flags.js';

/** The continuous archiver (the component's archiver Deployment runs this; so can the sandbox). */
export default class AgentArchive extends BaseCommand {
  static override hidden = true;
  static override summary = "Continuous archiving: follow etcd's watch and write every revision to the bucket as segments (point-in-time restore).";
  static override description = `Runs until stopped (SIGTERM/SIGINT flush what it holds first). Starts a chain from a fresh verified backup, then writes a segment every --interval (or at --max-segment-mib). One archiver per cluster: a second one waits while the first holds the fence (archive-owner.json). While a recovery holds the cluster's lock it only waits. After a restart it resumes from the last archived revision; if etcd compacted that away meanwhile, or the cluster was restored, it starts a new chain (the gap shows in \`backup list\`).
See docs/archive.md.`;
  static override examples = [{ description: 'Archive the sandbox, flushing every second', command: '<%= config.bin %> agent archive' }];
  static override flags = {
    ...targetFlags,
    ...storeFlags,
    ...quietFlag,
    interval: Flags.integer({ description: 'Milliseconds between flushes (the RPO).', default: 1000, min: 50 }),
    'max-segment-mib': Flags.integer({ description: 'A segment holds about this many MiB of keys and values at most.', default: 8, min: 1 }),
    'rebase-every': Flags.integer({ description: 'Seconds between new chains from a fresh base (bounds the replay of a point-in-time restore; 0: never).', default: 3600, min: 0 }),
    'max-buffer-mib': Flags.integer({ description: 'Unflushed MiB past which the archiver stops reading etcd (the bucket is down) and raises an alarm.', default: 64, min: 1 }),
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(AgentArchive);
    this.setup(flags);
    const target = await this.openTarget(flags);
    const catalog = target.catalog();
    await catalog.store.probe(this.abort.signal);
    const source = new Etcd3ChangeSource(target.connection());
    try {
      await runArchiver({
        catalog,
        gateway: target.gateway(),
        source,
        intervalMs: flags.interval,
        maxSegmentBytes: flags['max-segment-mib'] * 1024 * 1024,
        maxBufferBytes: flags['max-buffer-mib'] * 1024 * 1024,
        rebaseMs: flags['rebase-every'] * 1000,
        signal: this.abort.signal,
        log: (m) => process.stderr.write(`${new Date().toISOString()} ${m}\n`),
      });
    } finally {
      source.close();
    }
  }
}
