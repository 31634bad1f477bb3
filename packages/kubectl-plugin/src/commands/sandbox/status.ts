import { Flags } from '@oclif/core';
import { EtcdRecoverError, Sandbox, defaultSandboxDir, isAlive } from '@etcd-recover/core';
import { BaseCommand } from '../../base-command.js';
import { outputFlag } from '../../flags.js';
import { table } from '../../render.js';

interface ProcRow {
  name: string;
  url: string;
  pid?: number;
  running: boolean;
  log: string;
}

export default class SandboxStatus extends BaseCommand {
  static override summary = 'Show the sandbox processes (for etcd health use `status`).';
  static override examples = [
    { description: 'Which sandbox processes run, their URLs and logs', command: '<%= config.bin %> sandbox status' },
    { description: 'With the log paths, as JSON', command: '<%= config.bin %> sandbox status -o json' },
  ];
  static override flags = {
    ...outputFlag,
    'sandbox-dir': Flags.string({ description: 'State folder.', env: 'ETCD_RECOVER_SANDBOX' }),
  };

  async run(): Promise<{ dir: string; processes: ProcRow[]; tls?: { caFile: string; clientDir: string } }> {
    const { flags } = await this.parse(SandboxStatus);
    this.setup({ ...flags, quiet: true });
    const dir = flags['sandbox-dir'] ?? defaultSandboxDir();
    const sb = Sandbox.load(dir);
    if (!sb) throw new EtcdRecoverError('CONFIG', `no sandbox at ${dir}`, { hint: 'start one with `kubectl etcd-recover sandbox up`' });
    const processes: ProcRow[] = [
      ...sb.state.members.map((m) => ({ name: m.name, url: m.clientURL, ...(m.pid ? { pid: m.pid } : {}), running: isAlive(m.pid), log: m.logFile })),
    ];
    const mi = sb.state.minio;
    if (mi) processes.push({ name: 'minio', url: mi.url, ...(mi.pid ? { pid: mi.pid } : {}), running: isAlive(mi.pid), log: mi.logFile });
    const tls = sb.state.tls;
    const result = { dir, processes, ...(tls ? { tls: { caFile: tls.caFile, clientDir: tls.clientDir } } : {}) };
    this.render(result, () =>
      (tls ? `TLS: CA ${tls.caFile}, client certificate ${tls.clientDir}\n` : '') +
      table(processes, [
        { header: 'Process', get: (p) => p.name },
        { header: 'URL', get: (p) => p.url },
        { header: 'PID', get: (p) => p.pid },
        { header: 'Running', get: (p) => (p.running ? 'yes' : 'no') },
        { header: 'Log', get: (p) => p.log, wide: true },
      ], { wide: this.format === 'wide' }),
    );
    return result;
  }
}
