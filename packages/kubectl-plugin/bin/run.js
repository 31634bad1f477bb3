#!/usr/bin/env node
import { execute } from '@oclif/core';

// In containers running as a uid with no passwd entry, oclif's os.userInfo() (for SHELL) and
// os.homedir() would throw: give them values.
process.env.SHELL ??= '/bin/sh';
process.env.HOME ??= '/tmp';

// A closed pipe (`kubectl etcd-recover backup list | head`) is not an error.
process.stdout.on('error', (e) => {
  if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw e;
});
await execute({ dir: import.meta.url });
