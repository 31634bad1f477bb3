#!/usr/bin/env node
// Writes packages/kubectl-plugin/oclif.manifest.json (what `oclif manifest` does) with @oclif/core
// alone: with a manifest, oclif loads only the command that runs instead of importing every command
// to discover them (faster start-up, less memory). Run after the TypeScript build.
import { writeFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Config } from '@oclif/core';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', 'packages', 'kubectl-plugin');
const file = join(root, 'oclif.manifest.json');
rmSync(file, { force: true });
const config = await Config.load(root);
const plugin = config.plugins.get(config.pjson.name);
writeFileSync(file, JSON.stringify(plugin.manifest, null, 2) + '\n');
console.error(`oclif manifest: ${Object.keys(plugin.manifest.commands).length} commands`);
