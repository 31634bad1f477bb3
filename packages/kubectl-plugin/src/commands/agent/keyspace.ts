import { Flags } from '@oclif/core';
import { EtcdRecoverError, keyspaceReportKey, measureKeyspace, type Keyspace } from '@etcd-recover/core';
import { BaseCommand } from '../../base-command.js';
import { outputFlag, quietFlag, storeFlags, targetFlags } from '../../flags.js';

/** In-cluster check after a restore: key count and every member's HashKV, reported to the bucket. */
export default class AgentKeyspace extends BaseCommand {
  static override hidden = true;
  static override summary = 'Key count and HashKV of every member (a Job of `quorum` runs this in the cluster).';
  static override flags = {
    ...targetFlags,
    ...storeFlags,
    ...outputFlag,
    ...quietFlag,
    'recovery-id': Flags.string({ description: 'Write the result to the recovery\'s folder in the bucket.' }),
    'count-at': Flags.integer({ min: 1, description: 'Count the keys as of this revision.' }),
  };

  async run(): Promise<Keyspace> {
    const { flags } = await this.parse(AgentKeyspace);
    this.setup(flags);
    const target = await this.openTarget(flags);
    if (!target.contract) throw new EtcdRecoverError('CONFIG', 'agent keyspace needs the recovery contract (--contract-file / ETCD_RECOVER_CONTRACT)');
    const ks = await measureKeyspace(target.gateway(), target.contract.etcd.members, this.abort.signal, flags['count-at']);
    if (flags['recovery-id']) {
      const catalog = target.catalog();
      await catalog.store.put(keyspaceReportKey(catalog.cluster, flags['recovery-id']), JSON.stringify(ks, null, 2), { contentType: 'application/json' });
    }
    this.render(ks, () => `${ks.keys} keys; hashKV at revision ${ks.revision}: ${ks.members.map((m) => `${m.name}=${m.hash}`).join(', ')}`);
    return ks;
  }
}
