#!/usr/bin/env node
import { execute } from '@oclif/core';

// A closed pipe (`kubectl etcd-recover backup list | head`) is not an error.
process.stdout.on('error', (e) => {
  if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw e;
});
await execute({ dir: import.meta.url });
