#!/usr/bin/env node
// Node's compile cache (in the OS temp folder; silently off when it cannot be written) saves V8
// from compiling oclif and the commands again on every start.
import module from 'node:module';
module.enableCompileCache?.();
const { prepareProcess } = await import('../dist/launch.js');
prepareProcess();
const { execute } = await import('@oclif/core');
await execute({ dir: import.meta.url });
