import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { request } from 'node:https';
import { connect, createServer, type Socket } from 'node:net';
import { CoreV1Api } from '@kubernetes/client-node';
import { KUBE_VERSION, waitFor, type ControlPlane } from './kube/index.js';

/**
 * A hosted kube-apiserver (as HyperShift runs one) storing its objects in the declared etcd, with
 * what a restore cannot do without: a service-account signing key and (unless `encryptSecrets` is
 * false) an encryption configuration that encrypts Secrets at rest (aescbc) — both in Secrets of the
 * namespace. A static admin token.
 */
export function hostedApiserverManifests(o: { namespace: string; members: string[]; token: string; encryptSecrets?: boolean }): Record<string, any>[] {
  const encrypt = o.encryptSecrets !== false;
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048, publicKeyEncoding: { type: 'spki', format: 'pem' }, privateKeyEncoding: { type: 'pkcs8', format: 'pem' } });
  const aescbc = randomBytes(32).toString('base64');
  const encryption = [
    'apiVersion: apiserver.config.k8s.io/v1',
    'kind: EncryptionConfiguration',
    'resources:',
    '  - resources: [secrets]',
    '    providers:',
    '      - aescbc:',
    '          keys:',
    '            - name: key1',
    `              secret: ${aescbc}`,
    '      - identity: {}',
    '',
  ].join('\n');
  const labels = { app: 'kube-apiserver' };
  const ns = o.namespace;
  return [
    { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'hosted-sa', namespace: ns }, stringData: { 'sa.pub': publicKey, 'sa.key': privateKey, 'tokens.csv': `${o.token},admin,admin,system:masters\n` } },
    ...(encrypt ? [{ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'hosted-encryption', namespace: ns }, stringData: { 'config.yaml': encryption } }] : []),
    {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'kube-apiserver', namespace: ns, labels },
      spec: {
        replicas: 1,
        selector: { matchLabels: labels },
        template: {
          metadata: { labels },
          spec: {
            containers: [
              {
                name: 'kube-apiserver',
                image: `registry.k8s.io/kube-apiserver:${KUBE_VERSION}`,
                command: ['kube-apiserver'],
                args: [
                  `--etcd-servers=${o.members.map((m) => `http://${m}.etcd-discovery.${ns}.svc:2379`).join(',')}`,
                  '--secure-port=6443',
                  '--advertise-address=$(POD_IP)',
                  '--cert-dir=/var/run/kube-apiserver',
                  '--service-account-issuer=https://kubernetes.default.svc',
                  '--service-account-key-file=/etc/hosted-sa/sa.pub',
                  '--service-account-signing-key-file=/etc/hosted-sa/sa.key',
                  ...(encrypt ? ['--encryption-provider-config=/etc/hosted-encryption/config.yaml'] : []),
                  '--service-cluster-ip-range=10.96.0.0/16',
                  '--authorization-mode=AlwaysAllow',
                  '--token-auth-file=/etc/hosted-sa/tokens.csv',
                  '--enable-priority-and-fairness=false',
                  '--profiling=false',
                  '--v=1',
                ],
                env: [{ name: 'POD_IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } }],
                ports: [{ name: 'https', containerPort: 6443 }],
                // With AlwaysAllow the API server refuses anonymous requests (401): the probe presents the token.
                readinessProbe: { httpGet: { path: '/readyz', port: 6443, scheme: 'HTTPS', httpHeaders: [{ name: 'Authorization', value: `Bearer ${o.token}` }] }, periodSeconds: 2 },
                volumeMounts: [
                  { name: 'sa', mountPath: '/etc/hosted-sa', readOnly: true },
                  ...(encrypt ? [{ name: 'encryption', mountPath: '/etc/hosted-encryption', readOnly: true }] : []),
                  { name: 'certs', mountPath: '/var/run/kube-apiserver' },
                ],
              },
            ],
            volumes: [
              { name: 'sa', secret: { secretName: 'hosted-sa' } },
              ...(encrypt ? [{ name: 'encryption', secret: { secretName: 'hosted-encryption' } }] : []),
              { name: 'certs', emptyDir: {} },
            ],
          },
        },
      },
    },
  ];
}

/** A request to the hosted kube-apiserver (static admin token) at its pod's address. */
export async function hostedRequest(cp: ControlPlane, namespace: string, token: string, method: string, path: string, body?: unknown): Promise<any> {
  const pods = await cp.kubeConfig().makeApiClient(CoreV1Api).listNamespacedPod({ namespace, labelSelector: 'app=kube-apiserver' });
  const pod = pods.items.find((p) => p.status?.phase === 'Running' && !p.metadata?.deletionTimestamp && p.status.podIP);
  if (!pod) throw new Error('no running hosted kube-apiserver pod');
  return new Promise((resolve, reject) => {
    const req = request(
      { host: pod.status!.podIP!, port: 6443, path, method, rejectUnauthorized: false, headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` }, timeout: 10_000 },
      (res) => {
        let text = '';
        res.on('data', (d) => (text += d));
        res.on('end', () => {
          if ((res.statusCode ?? 500) >= 300) reject(new Error(`${method} ${path}: ${res.statusCode} ${text.slice(0, 300)}`));
          else resolve(text.startsWith('{') ? JSON.parse(text) : text);
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${method} ${path}: timeout`)));
    req.on('error', reject);
    req.end(body ? JSON.stringify(body) : undefined);
  });
}

/** Until the hosted kube-apiserver answers /readyz (its pod's description in the error otherwise). */
export async function waitHostedReady(cp: ControlPlane, namespace: string, token: string, timeoutMs = 240_000): Promise<void> {
  let last = '';
  try {
    await waitFor('hosted kube-apiserver ready', () => hostedRequest(cp, namespace, token, 'GET', '/readyz').then(() => true, (e: Error) => ((last = e.message), false)), timeoutMs, 1_000);
  } catch (e) {
    throw new Error(`${(e as Error).message} (last: ${last})\n${await cp.describePods(namespace, 'app=kube-apiserver')}`);
  }
}

/** A kubeconfig for the hosted kube-apiserver at `server` with the static admin token (its serving certificate is self-signed). */
export function hostedKubeconfig(server: string, token: string): string {
  return JSON.stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'hosted', cluster: { server, 'insecure-skip-tls-verify': true } }],
    users: [{ name: 'admin', user: { token } }],
    contexts: [{ name: 'hosted', context: { cluster: 'hosted', user: 'admin' } }],
    'current-context': 'hosted',
  });
}

/**
 * The hosted API server's stable address for clients outside the cluster — what a LoadBalancer or a
 * Route in front of the kube-apiserver Service is in HyperShift: a TCP forwarder on 127.0.0.1 to the
 * ready hosted kube-apiserver pod of the moment (looked up per connection, so it follows the pod
 * across a restore). `setDown(true)` drops every connection: the API server unreachable.
 */
export async function hostedFrontDoor(cp: ControlPlane, namespace: string): Promise<{ url: string; setDown: (down: boolean) => void; close: () => Promise<void> }> {
  let down = false;
  const open = new Set<Socket>();
  const server = createServer((client) => {
    open.add(client);
    client.on('close', () => open.delete(client));
    client.on('error', () => client.destroy());
    if (down) {
      client.destroy();
      return;
    }
    client.pause();
    cp.kubeConfig()
      .makeApiClient(CoreV1Api)
      .listNamespacedPod({ namespace, labelSelector: 'app=kube-apiserver' })
      .then((pods) => {
        const pod = pods.items.find((p) => p.status?.phase === 'Running' && !p.metadata?.deletionTimestamp && p.status.podIP && p.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'));
        if (!pod || down) return client.destroy();
        const up = connect(6443, pod.status!.podIP!);
        open.add(up);
        up.on('close', () => open.delete(up));
        up.on('error', () => client.destroy());
        client.on('close', () => up.destroy());
        up.on('close', () => client.destroy());
        client.pipe(up).pipe(client);
        client.resume();
      }, () => client.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  return {
    url: `https://127.0.0.1:${port}`,
    setDown: (d) => {
      down = d;
      if (d) for (const s of open) s.destroy();
    },
    close: () => new Promise((r) => { for (const s of open) s.destroy(); server.close(() => r()); }),
  };
}
