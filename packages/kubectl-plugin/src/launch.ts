/**
 * What every way of starting the CLI does first (bin/run.js, the bundle, the single executable):
 * values oclif needs that a container may lack, and a closed pipe that is not an error.
 */
export function prepareProcess(): void {
  // In containers running as a uid with no passwd entry, oclif's os.userInfo() (for SHELL) and
  // os.homedir() would throw: give them values.
  process.env.SHELL ??= '/bin/sh';
  process.env.HOME ??= '/tmp';
  // A closed pipe (`kubectl etcd-recover backup list | head`) is not an error.
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw e;
  });
}
