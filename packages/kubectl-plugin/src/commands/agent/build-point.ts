import { Flags } from '@oclif/core';
import { EtcdRecoverError, buildPointInTime, resolvePoint } from '@etcd-recover/core';
import { BaseCommand } from '../../base-command.js';
import { outputFlag, quietFlag, storeFlags, targetFlags } from '../../flags.js';

/** A recovery's build-point-in-time step where etcd runs (the Job a Kubernetes recovery starts). */
export default class AgentBuildPoint extends BaseCommand {
  static override hidden = true;
  static override summary = 'Rebuild a point in time of an archive chain in a temporary etcd and write its snapshot to the bucket.';
  static override flags = {
    ...targetFlags,
    ...storeFlags,
    ...outputFlag,
    ...quietFlag,
    chain: Flags.string({ description: 'The archive chain the plan names.', required: true }),
    'to-revision': Flags.integer({ description: 'The revision to rebuild.', required: true, min: 1 }),
    label: Flags.string({ description: 'k=v labels for the new backup record.', multiple: true }),
  };

  async run(): Promise<{ name: string; revision: number }> {
    const { flags } = await this.parse(AgentBuildPoint);
    this.setup(flags);
    const catalog = (await this.openTarget(flags)).catalog();
    await catalog.store.probe(this.abort.signal);
    const point = await resolvePoint(catalog, { revision: flags['to-revision'] }, this.abort.signal);
    if (point.chain.record.chain !== flags.chain) {
      throw new EtcdRecoverError('PRECONDITION', `revision ${flags['to-revision']} is now restored from chain ${point.chain.record.chain}, not ${flags.chain} as planned`);
    }
    const labels = Object.fromEntries((flags.label ?? []).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
    const built = await buildPointInTime({ catalog, point, labels, signal: this.abort.signal, progress: (m) => this.progress.step(m) });
    const out = { name: built.record.name, revision: built.record.revision };
    this.render({ ...out, point: built.point }, () => `built ${out.name} at revision ${out.revision} (${built.point.replayed} revisions replayed in ${built.point.seconds.toFixed(1)} s)`);
    return out;
  }
}
