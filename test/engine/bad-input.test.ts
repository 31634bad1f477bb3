import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AppsV1Api, CoreV1Api } from '@kubernetes/client-node';
import type { Sandbox } from '@etcd-recover/core';
import { hostedControlPlane } from '../../examples/hosted-control-plane/program.js';
import { runCli } from '../support/cli.js';
import { EXAMPLE_PROJECT as PROJECT, engineMessage, engineStack, exampleConfig, pulumiBinaries, type EngineStack } from '../support/engine.js';
import { createHcpSecrets } from '../support/hcp-secrets.js';
import { startControlPlane, type ControlPlane } from '../support/kube/index.js';
import { Pki } from '../support/kube/pki.js';
import { startSandbox, stopSandbox } from '../support/sandbox.js';


/**
 * What `pulumi up` of the example does with bad input, through the real engine on the real control
 * plane: it fails in bounded time with the reason (never hangs), and a certificate from another CA
 * is one clear line from the job that meets it.
 */
describe('pulumi up for real: bad input fails clearly and in bounded time (real engine, real control plane)', function () {
  this.timeout(900_000);
  let cp: ControlPlane;
  let store: Sandbox;
  const stacks: EngineStack[] = [];

  before(async function () {
    this.timeout(2_400_000); // a cold cache builds the engine here (or waits for setup's background build)
    pulumiBinaries();
    cp = await startControlPlane();
    store = await startSandbox({ members: 1, cluster: 'store-only', storeHost: cp.network.hostIP });
  });
  after(async () => {
    for (const s of stacks) s.cleanup();
    await cp?.stop();
    await stopSandbox(store);
  });

  /** A one-member TLS stack of the example in its own namespace (the Secrets made first). */
  async function stackFor(ns: string, extra: Record<string, string>, secrets: Parameters<typeof createHcpSecrets>[2] = {}) {
    const pki = await createHcpSecrets(cp, ns, secrets);
    const s3 = store.s3Config();
    const eng = await engineStack({
      name: ns,
      project: PROJECT,
      program: async () => ({ ...hostedControlPlane() }),
      config: exampleConfig({ kubeconfigPath: cp.kubeconfigPath, s3, namespace: ns, bucket: `${ns}-backups`, extra: { members: '1', readyTimeout: '75s', ...extra } }),
    });
    stacks.push(eng);
    return { eng, pki };
  }

  async function upFails(eng: EngineStack): Promise<{ message: string; seconds: number }> {
    const t0 = Date.now();
    const message = await eng.stack.up().then(
      () => assert.fail('up succeeded'),
      (e: unknown) => engineMessage(e),
    );
    return { message, seconds: (Date.now() - t0) / 1000 };
  }

  it('a StatefulSet that cannot become ready (a bad etcd flag): `up` fails with the provider\'s reason, not a hang', async () => {
    const { eng } = await stackFor('bad-arg', { etcdExtraArgs: JSON.stringify(['--heartbeat-interval=often']) });
    const { message, seconds } = await upFails(eng);
    assert.ok(seconds < 300, `failed after ${seconds} s`);
    assert.match(message, /etcd-statefulset/);
    assert.match(message, /StatefulSet|ready|Ready/);
    // The etcd container's own words reach the pod status (terminationMessagePolicy FallbackToLogsOnError).
    const pod = await cp.kubeConfig().makeApiClient(CoreV1Api).readNamespacedPod({ namespace: 'bad-arg', name: 'etcd-0' });
    const etcd = pod.status?.containerStatuses?.find((c) => c.name === 'etcd');
    const said = etcd?.lastState?.terminated?.message ?? etcd?.state?.terminated?.message ?? '';
    assert.match(said, /heartbeat|often|unmarshal/i, JSON.stringify(etcd));
  });

  it('wrong bucket credentials: `up` fails naming the bucket and the cause, before any member starts', async () => {
    const { eng } = await stackFor('bad-creds', { s3SecretAccessKey: 'not-the-secret-key' });
    const { message, seconds } = await upFails(eng);
    assert.ok(seconds < 180, `failed after ${seconds} s`);
    assert.match(message, /bad-creds-backups/);
    assert.match(message, /SignatureDoesNotMatch|InvalidAccessKeyId|AccessDenied|credentials/i);
    assert.doesNotMatch(message, /not-the-secret-key/, 'the secret is never printed');
    const sets = await cp.kubeConfig().makeApiClient(AppsV1Api).listNamespacedStatefulSet({ namespace: 'bad-creds' });
    assert.equal(sets.items.length, 0, 'no member was started against a bucket it cannot use');
  });

  it('a TLS Secret missing a key: `up` fails, and the member says which Secret lacks which key', async () => {
    const { eng } = await stackFor('bad-tls', {}, { omit: { secret: 'etcd-server-tls', key: 'tls.key' } });
    const { message, seconds } = await upFails(eng);
    assert.ok(seconds < 300, `failed after ${seconds} s`);
    const pod = await cp.kubeConfig().makeApiClient(CoreV1Api).readNamespacedPod({ namespace: 'bad-tls', name: 'etcd-0' });
    const init = pod.status?.initContainerStatuses?.find((c) => c.name === 'member-init');
    const said = `${message}\n${init?.lastState?.terminated?.message ?? ''}${init?.state?.terminated?.message ?? ''}`;
    assert.match(said, /server TLS Secret \(tls\.serverSecret\) \(mounted at \/etc\/etcd\/tls\/server\) has no tls\.key/, said);
  });

  it('a client certificate signed by another CA: the backup Job fails with one line naming the endpoint and the cause', async () => {
    const { eng } = await stackFor('other-ca', { readyTimeout: '5m' });
    const up = await eng.stack.up();
    assert.equal(up.summary.result, 'succeeded');
    // The platform rotates the jobs' client certificate to one from a different CA.
    const other = await Pki.create(join(cp.dir, 'pki-other'), 'someone-elses-ca');
    const cert = await other.issue('client', { cn: 'etcd-recover', usage: 'client' });
    const core = cp.kubeConfig().makeApiClient(CoreV1Api);
    const secret = await core.readNamespacedSecret({ namespace: 'other-ca', name: 'etcd-client-tls' });
    secret.data = { ...secret.data, 'tls.crt': readFileSync(cert.cert).toString('base64'), 'tls.key': readFileSync(cert.key).toString('base64') };
    await core.replaceNamespacedSecret({ namespace: 'other-ca', name: 'etcd-client-tls', body: secret });
    const r = await runCli(['backup', 'create', '--kubeconfig', cp.kubeconfigPath, '-n', 'other-ca', '-q'], { timeoutMs: 600_000 });
    assert.notEqual(r.code, 0, r.stdout);
    const line = r.stderr.split('\n').find((l) => /^error:/.test(l)) ?? r.stderr;
    assert.match(r.stderr, /https:\/\/etcd-0\.etcd-discovery\.other-ca\.svc:2379/, r.stderr);
    assert.match(r.stderr, /certificate/i, line);
  });
});
