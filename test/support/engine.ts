import { mkdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { LocalWorkspace, PulumiCommand, type ConfigMap, type Stack } from '@pulumi/pulumi/automation/index.js';
import type { S3Config } from '@etcd-recover/core';
import { ensureBinaries, repoRoot } from './binaries.js';

/** The npm SDK version of @pulumi/kubernetes the locally built provider is stamped with. */
export const KUBERNETES_PROVIDER_VERSION = '4.25.0';

/**
 * The real Pulumi engine (CLI) and Kubernetes provider, built from the Go module proxy by
 * scripts/ensure-binaries.sh (cached; PULUMI_BIN_DIR / PULUMI_KUBERNETES_BIN_DIR point at existing ones).
 */
export function pulumiBinaries(): { cli: string; provider: string } {
  const env = ensureBinaries(['pulumi', 'pulumi_kubernetes'], (e) => [
    join(e['PULUMI_BIN_DIR'] ?? '', 'pulumi'),
    join(e['PULUMI_BIN_DIR'] ?? '', 'pulumi-resource-pulumi-nodejs'),
    join(e['PULUMI_KUBERNETES_BIN_DIR'] ?? '', 'pulumi-resource-kubernetes'),
  ]);
  return { cli: env['PULUMI_BIN_DIR']!, provider: env['PULUMI_KUBERNETES_BIN_DIR']! };
}

export interface EngineStackOptions {
  /** Stack (and state folder) name. */
  name: string;
  /** The Pulumi program, run in this process (the Automation API's inline program). */
  program: () => Promise<Record<string, unknown>>;
  /** Stack config, e.g. { 'kubernetes:kubeconfig': { value, secret: true }, 'etcd-recover-hosted-control-plane:bucket': { value } }. */
  config: ConfigMap;
  /** Project name (the config namespace of the program's own keys). */
  project: string;
}

export interface EngineStack {
  stack: Stack;
  /** Work dir (Pulumi.yaml, Pulumi.<stack>.yaml), state (file backend) and PULUMI_HOME live under it. */
  dir: string;
  /** Removes the stack's folder (state included); call after destroy. */
  cleanup(): void;
}

/**
 * A stack on a local file backend, driven by the real engine with no network: no plugin downloads,
 * no update check, no ambient plugins. The Kubernetes provider is the locally built binary (a
 * `plugins.providers` entry of the project); the dynamic provider's launcher ships beside the CLI.
 * The work dir is under the repository so that the engine's Node processes (the dynamic provider)
 * resolve this workspace's node_modules.
 */
export async function engineStack(o: EngineStackOptions): Promise<EngineStack> {
  const bins = pulumiBinaries();
  const dir = join(repoRoot, 'test', '.engine', `${o.name}-${process.pid}`);
  rmSync(dir, { recursive: true, force: true });
  for (const d of ['work', 'state', 'home', 'root/bin']) mkdirSync(join(dir, d), { recursive: true });
  // PulumiCommand wants <root>/bin/pulumi, the layout of Pulumi's installer.
  for (const f of ['pulumi', 'pulumi-resource-pulumi-nodejs']) symlinkSync(join(bins.cli, f), join(dir, 'root', 'bin', f));
  const pulumiCommand = await PulumiCommand.get({ root: join(dir, 'root') });
  const nodeBin = join(repoRoot, 'node_modules', '.bin');
  const stack = await LocalWorkspace.createOrSelectStack(
    { stackName: o.name, projectName: o.project, program: o.program },
    {
      workDir: join(dir, 'work'),
      pulumiHome: join(dir, 'home'),
      pulumiCommand,
      projectSettings: {
        name: o.project,
        runtime: 'nodejs',
        backend: { url: `file://${join(dir, 'state')}` },
        // Not in the SDK's ProjectSettings type, but Pulumi.yaml's own schema: use this binary for the provider.
        plugins: { providers: [{ name: 'kubernetes', version: KUBERNETES_PROVIDER_VERSION, path: bins.provider }] },
      } as never,
      envVars: {
        PULUMI_CONFIG_PASSPHRASE: 'etcd-recover-engine-test',
        PULUMI_SKIP_UPDATE_CHECK: 'true',
        PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION: 'true',
        PULUMI_IGNORE_AMBIENT_PLUGINS: 'true',
        PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK: 'true',
        // The dynamic provider's launcher runs `node`: this workspace's Node (>= 22), not the machine's.
        PATH: `${nodeBin}:${process.env['PATH'] ?? ''}`,
      },
    },
  );
  await stack.setAllConfig(o.config);
  return { stack, dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** The engine's own words when an operation fails: the message without the Automation API's wrapper noise. */
export function engineMessage(e: unknown): string {
  const err = e as { stderr?: string; stdout?: string; message?: string };
  return [err.message ?? '', err.stderr ?? '', err.stdout ?? ''].join('\n');
}

/** The Pulumi project of examples/hosted-control-plane (Pulumi.yaml): the namespace of its config keys. */
export const EXAMPLE_PROJECT = 'etcd-recover-hosted-control-plane';

/**
 * The example's stack config for one namespace of the harness, as a user would set it with
 * `pulumi config set`: the harness's kubeconfig, the namespace (made beforehand, with its Secrets),
 * the bucket on the test's MinIO, small volumes, one hosted API server. `extra` adds or overrides
 * the example's keys (values as strings; keys containing "Secret" or "Key" are set as secrets).
 */
export function exampleConfig(o: { kubeconfigPath: string; s3: S3Config; namespace: string; bucket: string; extra?: Record<string, string> }): ConfigMap {
  const key = (k: string) => (k.includes(':') ? k : `${EXAMPLE_PROJECT}:${k}`);
  const plain: Record<string, string> = {
    namespace: o.namespace,
    createNamespace: 'false',
    bucket: o.bucket,
    s3Endpoint: o.s3.endpoint!,
    storageSize: '1Gi',
    apiserverReplicas: '1',
    ...o.extra,
  };
  return {
    'kubernetes:kubeconfig': { value: readFileSync(o.kubeconfigPath, 'utf8'), secret: true },
    [key('s3AccessKeyId')]: { value: o.s3.credentials!.accessKeyId, secret: true },
    [key('s3SecretAccessKey')]: { value: o.s3.credentials!.secretAccessKey, secret: true },
    ...Object.fromEntries(Object.entries(plain).map(([k, value]) => [key(k), { value, secret: /Secret|Key/.test(k) }])),
  };
}
