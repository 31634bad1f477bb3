import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CoreV1Api } from '@kubernetes/client-node';
import { Etcd3 } from 'etcd3';
import type { ControlPlane } from './kube/index.js';
import { Pki } from './kube/pki.js';

/** What the platform provides before `pulumi up` of the hosted-control-plane example: its PKI as Secrets. */
export interface HcpPki {
  ca: Pki;
  /** PEM material of the client certificate jobs and the plugin use (ca.crt, tls.crt, tls.key). */
  client: { ca: Buffer; cert: Buffer; key: Buffer };
}

const read = (f: string) => readFileSync(f);

/**
 * A throwaway CA and etcd's server, peer and client certificates for namespace `ns` (SANs: every
 * member's stable name through the headless Service, the client Service, localhost), stored as the
 * Secrets the example names by default (etcd-server-tls, etcd-peer-tls, etcd-client-tls), plus
 * the hosted API server's PKI Secret (kube-apiserver-pki: its client CA and service-account keys).
 */
export async function createHcpSecrets(cp: ControlPlane, ns: string, opts: { cluster?: string; omit?: { secret: string; key: string } } = {}): Promise<HcpPki> {
  const name = opts.cluster ?? 'etcd';
  const ca = await Pki.create(join(cp.dir, `pki-${ns}`), `${ns}-etcd-ca`);
  const dns = [
    `*.${name}-discovery.${ns}.svc`,
    `*.${name}-discovery.${ns}.svc.cluster.local`,
    `${name}-client.${ns}.svc`,
    `${name}-client.${ns}.svc.cluster.local`,
    'localhost',
  ];
  const server = await ca.issue('server', { cn: `${name}-server`, dns, ips: ['127.0.0.1'], usage: 'server' });
  const peer = await ca.issue('peer', { cn: `${name}-peer`, dns, ips: ['127.0.0.1'], usage: 'both' });
  const client = await ca.issue('client', { cn: 'etcd-recover', usage: 'client' });
  const sa = await ca.serviceAccountKeys();
  const tlsSecret = (secret: string, c: { cert: string; key: string }) => ({
    metadata: { name: secret, namespace: ns },
    type: 'Opaque',
    data: Object.fromEntries(
      Object.entries({ 'ca.crt': read(ca.ca.cert), 'tls.crt': read(c.cert), 'tls.key': read(c.key) })
        .filter(([k]) => !(opts.omit?.secret === secret && opts.omit.key === k))
        .map(([k, v]) => [k, v.toString('base64')]),
    ),
  });
  const core = cp.kubeConfig().makeApiClient(CoreV1Api);
  await core.createNamespace({ body: { metadata: { name: ns } } });
  for (const body of [
    tlsSecret('etcd-server-tls', server),
    tlsSecret('etcd-peer-tls', peer),
    tlsSecret('etcd-client-tls', client),
    {
      metadata: { name: 'kube-apiserver-pki', namespace: ns },
      type: 'Opaque',
      data: { 'ca.crt': read(ca.ca.cert).toString('base64'), 'sa.pub': read(sa.pub).toString('base64'), 'sa.key': read(sa.key).toString('base64') },
    },
  ]) {
    await core.createNamespacedSecret({ namespace: ns, body });
  }
  return { ca, client: { ca: read(ca.ca.cert), cert: read(client.cert), key: read(client.key) } };
}

/**
 * An etcd client over TLS to the members' pod IPs, checking the server certificate against the
 * name the pods are reached by inside the cluster (the host cannot resolve cluster names).
 */
export function tlsClient(pki: HcpPki, ips: string[], serverName: string): Etcd3 {
  return new Etcd3({
    hosts: ips.map((ip) => `https://${ip}:2379`),
    credentials: { rootCertificate: pki.client.ca, certChain: pki.client.cert, privateKey: pki.client.key },
    grpcOptions: { 'grpc.ssl_target_name_override': serverName, 'grpc.default_authority': serverName },
  });
}

/** Writes n keys `${prefix}NNNNN` over TLS, 50 at a time. */
export async function writeKeysTls(client: Etcd3, prefix: string, n: number): Promise<void> {
  for (let i = 0; i < n; i += 50) {
    await Promise.all(Array.from({ length: Math.min(50, n - i) }, (_, j) => client.put(`${prefix}${String(i + j).padStart(5, '0')}`).value(`v${i + j}`)));
  }
}
