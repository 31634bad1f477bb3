import { Flags } from '@oclif/core';
import { Sandbox, defaultSandboxDir, type SandboxState } from '@etcd-recover/core';
import { BaseCommand } from '../../base-command.js';
import { outputFlag, quietFlag } from '../../flags.js';
import { table } from '../../render.js';

export default class SandboxUp extends BaseCommand {
  static override summary = 'Start the local sandbox: an etcd cluster and a MinIO bucket as processes on loopback.';
  static override description = `The embedded default target. All state lives under one folder (default ${'$XDG_STATE_HOME'}/etcd-recover/sandbox, or --sandbox-dir / ETCD_RECOVER_SANDBOX); every other command finds it there. Running it again starts whatever stopped. etcd runs with --unsafe-no-fsync: a sandbox is for practice and demos, not for data.
With --tls the members serve https on client and peer URLs and require client certificates (client-cert-auth, peer-client-cert-auth), from a throwaway CA made with the openssl CLI under <folder>/tls; every command that targets the sandbox presents its client certificate (<folder>/tls/client, an --etcd-tls-dir) by itself.`;
  static override examples = [
    '<%= config.bin %> sandbox up',
    '<%= config.bin %> sandbox up --members 5 --sandbox-dir /tmp/sb',
    { description: 'With TLS on client and peer traffic (needs the openssl CLI)', command: '<%= config.bin %> sandbox up --tls' },
    { description: 'With encrypted backups (age)', command: '<%= config.bin %> sandbox up --encrypt' },
  ];
  static override flags = {
    ...outputFlag,
    ...quietFlag,
    'sandbox-dir': Flags.string({ description: 'State folder.', env: 'ETCD_RECOVER_SANDBOX' }),
    members: Flags.integer({ description: 'Number of etcd members.', default: 3, min: 1, max: 7 }),
    cluster: Flags.string({ description: 'Logical cluster name (the folder of its backups).', default: 'sandbox' }),
    encrypt: Flags.boolean({ description: 'A new sandbox encrypts its backups with age (a throwaway key under <folder>/age/identity.txt, used by every command that targets the sandbox).' }),
    tls: Flags.boolean({ description: 'A new sandbox serves https with client and peer certificate auth (a throwaway CA; needs the openssl CLI).' }),
  };

  async run(): Promise<SandboxState> {
    const { flags } = await this.parse(SandboxUp);
    this.setup(flags);
    const sb = await Sandbox.up({
      dir: flags['sandbox-dir'] ?? defaultSandboxDir(),
      members: flags.members,
      cluster: flags.cluster,
      tls: flags.tls,
      encrypt: flags.encrypt,
      onProgress: (m) => this.progress.step(m),
    });
    const state = redact(sb.state);
    this.render(state, () =>
      [
        table(sb.state.members, [
          { header: 'Member', get: (m) => m.name },
          { header: 'Client URL', get: (m) => m.clientURL },
          { header: 'Peer URL', get: (m) => m.peerURL },
          { header: 'PID', get: (m) => m.pid },
        ]),
        `bucket s3://${sb.state.minio?.bucket} at ${sb.state.minio?.url}; state in ${sb.dir}`,
        ...(sb.state.encryption ? [`backups encrypted with age for ${sb.state.encryption.recipient} (identity ${sb.state.encryption.identityFile}; open one by hand: age -d -i ${sb.state.encryption.identityFile})`] : []),
        ...(sb.state.tls ? [`TLS: CA ${sb.state.tls.caFile}; client certificate in ${sb.state.tls.clientDir} (for other tools: --etcd-tls-dir ${sb.state.tls.clientDir})`] : []),
      ].join('\n'),
    );
    return state;
  }
}

/** The state without the MinIO secret. */
export function redact(s: SandboxState): SandboxState {
  return s.minio ? { ...s, minio: { ...s.minio, secretKey: '***' } } : s;
}
