import { Config, execute, Plugin, type Command, type Interfaces } from '@oclif/core';
import { prepareProcess } from './launch.js';

/**
 * The CLI without a package folder: the bundle (scripts/bundle.mjs) and the single executable
 * carry package.json's oclif section, the oclif manifest and every command class inside one
 * script, so nothing is read from disk or resolved at start-up.
 *
 * oclif has no public way to hand it an in-memory manifest and command classes, so the root
 * plugin's two loaders are replaced here (and only for the root plugin): `_manifest` returns the
 * embedded manifest and `findCommand` the embedded class. @oclif/core is pinned; every CLI test
 * runs the single executable built on this (test/support/cli.ts), so they fail if either seam moves.
 */
export interface StaticCli {
  pjson: Interfaces.PJSON;
  manifest: Interfaces.Manifest;
  /** Command id → its class, loaded on first use (the bundle keeps each command's module lazy). */
  commands: Record<string, () => Command.Class>;
}

interface RootPluginInternals {
  isRoot: boolean;
  commandIDs: string[];
  _manifest(): Promise<Interfaces.Manifest>;
  findCommand(id: string, opts?: { must?: boolean }): Promise<Command.Class | undefined>;
}

export async function runStatic(cli: StaticCli, argv = process.argv.slice(2)): Promise<void> {
  prepareProcess();
  // The single executable runs no Worker: a large file's hash runs in a second process of it
  // (file-hasher.ts); and its native modules are assets in it (native-assets.ts). The bundle finds
  // the age opener beside it.
  const sea = process.getBuiltinModule('node:sea') as typeof import('node:sea');
  if (sea.isSea()) {
    const [h, natives] = await Promise.all([import('./file-hasher.js'), import('./native-assets.js')]);
    natives.useEmbeddedNatives(sea);
    if (argv[0] === h.HASH_WORD) return h.answerHash(argv[1]);
    h.useHashProcess();
  } else {
    (await import('./native-assets.js')).useBundledAgeOpener(process.argv[1]);
  }
  const proto = Plugin.prototype as unknown as RootPluginInternals;
  const manifest = proto._manifest;
  const find = proto.findCommand;
  proto._manifest = async function (this: RootPluginInternals) {
    if (!this.isRoot) return manifest.call(this);
    this.commandIDs = Object.keys(cli.manifest.commands);
    return cli.manifest;
  };
  proto.findCommand = async function (this: RootPluginInternals, id, opts) {
    if (!this.isRoot) return find.call(this, id, opts);
    const load = cli.commands[id];
    if (!load) {
      if (opts?.must) throw new Error(`command ${id} not found`);
      return undefined;
    }
    const cmd = load();
    cmd.id = id;
    cmd.plugin = this as unknown as Plugin;
    return cmd;
  };
  // The root is where the executable is (oclif reads nothing there: package.json and the manifest are given).
  const config = await Config.load({ root: process.execPath, pjson: cli.pjson });
  await execute({ args: argv, loadOptions: config });
}
