#!/usr/bin/env node
// Bundles the kubectl plugin into ONE CommonJS script with esbuild:
//   packages/kubectl-plugin/dist-bundle/kubectl-etcd_recover.cjs   (run: node kubectl-etcd_recover.cjs ARGS)
// It embeds package.json's oclif section, the oclif manifest and every command (each command's
// module stays lazy: only the one that runs is evaluated), so start-up resolves and reads nothing.
// The single executable (scripts/release-binary.mjs) and the agent image run this script.
// Needs the TypeScript build and the manifest first (npm run build).
import { build } from 'esbuild';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..');
const plugin = join(repo, 'packages', 'kubectl-plugin');
export const bundleFile = join(plugin, 'dist-bundle', 'kubectl-etcd_recover.cjs');

export async function bundle({ quiet = false, snapshot = false, preload = false, outfile = bundleFile } = {}) {
  const manifestFile = join(plugin, 'oclif.manifest.json');
  if (!existsSync(manifestFile)) throw new Error(`${manifestFile} is missing: run \`npm run build\` first`);
  const manifest = JSON.parse(readFileSync(manifestFile, 'utf8'));
  const pkg = JSON.parse(readFileSync(join(plugin, 'package.json'), 'utf8'));
  const pjson = { name: pkg.name, version: pkg.version, type: 'commonjs', oclif: { ...pkg.oclif, commands: undefined } };
  const commands = Object.entries(manifest.commands)
    .map(([id, c]) => `  ${JSON.stringify(id)}: () => require(${JSON.stringify('./' + c.relativePath.join('/'))}).default,`)
    .join('\n');
  const entry = [
    `import { runStatic } from './dist/static-cli.js';`,
    `const pjson = ${JSON.stringify(pjson)};`,
    `const manifest = ${JSON.stringify(manifest)};`,
    `const commands = {\n${commands}\n};`,
    snapshot
      ? // A startup snapshot (the single executable): the entry's modules evaluated now, at build time.
        // preload (the executable's default) evaluates every command module into the snapshot too (node:tls/
        // http/https/http2 then load on first use: lazyNetBuiltins): commands start ~30 ms sooner. A Worker
        // started from such an executable aborts in Node (crypto key-object and shutdown-wrap template
        // assertions), so the executable starts none: a large file's hash runs in a second process of it
        // (packages/kubectl-plugin/src/file-hasher.ts).
        `${preload ? "for (const load of Object.values(commands)) load();\n" : ''}require('node:v8').startupSnapshot.setDeserializeMainFunction(() => runStatic({ pjson, manifest, commands }).catch((e) => { console.error(e); process.exitCode = 1; }));`
      : `runStatic({ pjson, manifest, commands }).catch((e) => { console.error(e); process.exitCode = 1; });`,
  ].join('\n');
  const result = await build({
    stdin: { contents: entry, resolveDir: plugin, sourcefile: 'bundle-entry.js', loader: 'js' },
    bundle: true,
    platform: 'node',
    target: 'node22',
    format: 'cjs',
    outfile,
    define: { __ETCD_RECOVER_VERSION__: JSON.stringify(pkg.version) },
    // Optional native speed-ups load from disk when present; without them the JS paths run.
    external: ['@node-rs/crc32', 'typescript'],
    // Smaller source, smaller heap in the snapshot; names kept (errors and oclif use class names).
    minify: true,
    keepNames: true,
    legalComments: 'eof',
    logLevel: quiet ? 'error' : 'warning',
    metafile: true,
    write: false,
    plugins: [embedEtcdProtos],
  });
  // A single executable has no dynamic import(), and Node builtins are not bundled: `import('node:os')`
  // (ours, and the AWS SDK's) becomes require(), which loads builtins everywhere.
  const [output] = result.outputFiles;
  const text = output.text.replace(/\bimport\(("|')(node:[a-z_/]+)\1\)/g, (_m, q, id) => `Promise.resolve().then(()=>{const m=require(${q}${id}${q});return{...m,default:m}})`);
  const out = snapshot && preload ? lazyNetBuiltins(text) : text;
  mkdirSync(dirname(outfile), { recursive: true });
  writeFileSync(outfile, out);
  const bytes = Buffer.byteLength(out);
  if (!quiet) console.error(`bundle: ${bundleFile} (${(bytes / 1048576).toFixed(1)} MB)`);
  return bundleFile;
}

/**
 * node:tls, and node:http, node:https and node:http2 that load it, cannot be in a V8 startup snapshot
 * (CheckGlobalAndEternalHandles fails). With the commands evaluated into the snapshot, every require
 * of them returns a stand-in that loads the real module on first use (a property read), at run time:
 * nothing reads one while the snapshot is built, so none is in the heap. The build fails if one is.
 */
const NET_BUILTIN = /\brequire\(("|')((?:node:)?(?:tls|https?|http2))\1\)/g;
function lazyNetBuiltins(text) {
  const helper = `var __lazyNet=(id)=>{let m;const real=()=>m??=require(id);return new Proxy({},{get:(_,k)=>real()[k],has:(_,k)=>k in real(),ownKeys:()=>Reflect.ownKeys(real()),getOwnPropertyDescriptor:(_,k)=>{const d=Reflect.getOwnPropertyDescriptor(real(),k);return d&&{...d,configurable:true}},set:(_,k,v)=>(real()[k]=v,true)})};`;
  const body = text.replace(NET_BUILTIN, (_m, _q, id) => `__lazyNet(${JSON.stringify(id)})`);
  // After the "use strict" prologue, if any.
  const prologue = /^(#![^\n]*\n)?(\s*(["'])use strict\3;?)?/.exec(body)[0];
  return prologue + helper + body.slice(prologue.length);
}

/**
 * etcd3 reads its .proto files from its own folder when it loads (proto-loader's loadSync), which a
 * bundle does not have: parse them now and hand proto-loader the same definitions as JSON
 * (fromJSON, same options). Fails the bundle if etcd3 stops loading them that way.
 */
const embedEtcdProtos = {
  name: 'embed-etcd3-protos',
  setup(b) {
    b.onLoad({ filter: /[\\/]etcd3[\\/]lib[\\/]connection-pool\.js$/ }, (args) => {
      const source = readFileSync(args.path, 'utf8');
      const call = '(0, proto_loader_1.loadSync)(`${__dirname}/../proto/rpc.proto`,';
      if (!source.includes(call)) throw new Error(`${args.path}: etcd3 no longer loads its protos with ${call} — update scripts/bundle.mjs`);
      const req = createRequire(createRequire(args.path).resolve('@grpc/proto-loader'));
      const protobuf = req('protobufjs');
      const root = new protobuf.Root();
      root.loadSync(join(dirname(args.path), '..', 'proto', 'rpc.proto'), { keepCase: true });
      return { contents: source.replace(call, `(0, proto_loader_1.fromJSON)(${JSON.stringify(root.toJSON())},`), loader: 'js' };
    });
  },
};

if (process.argv[1] === fileURLToPath(import.meta.url)) await bundle({ snapshot: process.argv.includes('--snapshot'), ...(process.argv.includes('--snapshot') ? { outfile: bundleFile.replace(/\.cjs$/, '.snapshot.cjs') } : {}) });
