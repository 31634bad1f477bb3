import { appendFileSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { hostname as osHostname, release } from 'node:os';
import { join } from 'node:path';
import type { Slot } from './net.js';
import type { CertPaths } from './pki.js';
import { PodWorker, type KubeletContext } from './pod-worker.js';
import { Reflector, Rest, isConflict, isNotFound } from './rest.js';
import { sleep } from './util.js';
import type { ImageSpec } from './images.js';

export { defaultImages, type ImageSpec } from './images.js';

/**
 * A kubelet that runs pods as host processes. See docs/k8s-harness.md for what it does and does not do.
 *
 * Identity: it talks to the API as `system:node:<nodeName>` (group system:nodes), so the Node
 * authorizer and the NodeRestriction admission plugin apply to it like to a real kubelet. Only the
 * cluster-DNS stand-in (services and EndpointSlices → per-pod /etc/hosts) reads with the admin
 * identity, as CoreDNS would with its own RBAC.
 */
export interface KubeletOptions {
  nodeName: string;
  dir: string;
  slot: Slot;
  server: string;
  caFile: string;
  client: CertPaths;
  serving: CertPaths;
  adminClient: CertPaths;
  /** Port of the kubelet API (container logs), on the node address. */
  port: number;
  images: Record<string, ImageSpec>;
  /** Container restart back-off: initial delay and cap (a real kubelet: 10 s, 300 s). */
  backoffInitialMs: number;
  backoffMaxMs: number;
  /** Advertised capacity (nothing is enforced). */
  capacity: Record<string, string>;
  leaseRenewMs: number;
  clusterDomain: string;
}

interface DnsRecord { ns: string; rel: string; ips: string[] }

const microTime = () => new Date().toISOString().replace(/Z$/, '000Z');
const nowTime = () => new Date().toISOString().replace(/\.\d+Z$/, 'Z');

export class ProcessKubelet {
  readonly opts: KubeletOptions;
  readonly nodeName: string;
  private readonly rest: Rest;
  private readonly admin: Rest;
  private readonly workers = new Map<string, PodWorker>();
  private readonly logIndex = new Map<string, { worker: PodWorker }>();
  private pods: Reflector | undefined;
  private services: Reflector | undefined;
  private slices: Reflector | undefined;
  private server: Server | undefined;
  private timers: NodeJS.Timeout[] = [];
  private dns: DnsRecord[] = [];
  private dnsTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  private nodeUid = '';
  private readonly logFile: string;
  private readonly ctx: KubeletContext;

  constructor(opts: Partial<KubeletOptions> & Pick<KubeletOptions, 'nodeName' | 'dir' | 'slot' | 'server' | 'caFile' | 'client' | 'serving' | 'adminClient' | 'port' | 'images'>) {
    this.opts = {
      backoffInitialMs: 10_000,
      backoffMaxMs: 300_000,
      capacity: { cpu: '16', memory: '64Gi', pods: '250', 'ephemeral-storage': '100Gi' },
      leaseRenewMs: 10_000,
      clusterDomain: 'cluster.local',
      ...opts,
    } as KubeletOptions;
    this.nodeName = this.opts.nodeName;
    mkdirSync(this.opts.dir, { recursive: true });
    this.logFile = join(this.opts.dir, 'kubelet.log');
    this.rest = new Rest({ server: this.opts.server, caFile: this.opts.caFile, certFile: this.opts.client.cert, keyFile: this.opts.client.key });
    this.admin = new Rest({ server: this.opts.server, caFile: this.opts.caFile, certFile: this.opts.adminClient.cert, keyFile: this.opts.adminClient.key });
    const self = this;
    this.ctx = {
      nodeName: this.nodeName,
      hostIP: this.opts.slot.hostIP,
      apiPort: Number(new URL(this.opts.server).port),
      rest: this.rest,
      slot: this.opts.slot,
      dir: this.opts.dir,
      images: this.opts.images,
      backoffInitialMs: this.opts.backoffInitialMs,
      backoffMaxMs: this.opts.backoffMaxMs,
      allocatable: this.opts.capacity,
      log: (m) => self.log(m),
      hostsFileFor: (pod, ip) => self.hostsFileFor(pod, ip),
      forget: (uid) => self.workers.delete(uid),
    };
  }

  log(msg: string): void {
    try { appendFileSync(this.logFile, `${new Date().toISOString()} ${msg}\n`); } catch { /* dir gone */ }
  }

  // ---------------------------------------------------------------- start / stop
  async start(): Promise<void> {
    await this.registerNode();
    await this.renewLease();
    this.timers.push(setInterval(() => void this.renewLease().catch((e) => this.log(`lease: ${e.message}`)), this.opts.leaseRenewMs));
    this.timers.push(setInterval(() => void this.postNodeStatus().catch((e) => this.log(`node status: ${e.message}`)), 60_000));
    await this.startServer();
    this.services = new Reflector(this.admin, '/api/v1/services', '', () => this.dnsChanged(), (e) => this.log(`services watch: ${(e as Error).message}`));
    this.slices = new Reflector(this.admin, '/apis/discovery.k8s.io/v1/endpointslices', '', () => this.dnsChanged(), (e) => this.log(`endpointslices watch: ${(e as Error).message}`));
    await Promise.all([this.services.start(), this.slices.start()]);
    this.recomputeDns();
    this.pods = new Reflector(
      this.rest,
      '/api/v1/pods',
      `fieldSelector=${encodeURIComponent(`spec.nodeName=${this.nodeName}`)}`,
      (type, pod) => { if (pod) this.onPod(type, pod); },
      (e) => this.log(`pods watch: ${(e as Error).message}`),
    );
    await this.pods.start();
    this.log(`kubelet ${this.nodeName} started`);
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const t of this.timers) clearInterval(t);
    if (this.dnsTimer) clearTimeout(this.dnsTimer);
    this.pods?.stop();
    this.services?.stop();
    this.slices?.stop();
    // Harness shutdown: no grace (the API server is going away too).
    for (const w of this.workers.values()) w.killSync();
    await new Promise<void>((r) => {
      if (!this.server) return r();
      this.server.close(() => r());
      this.server.closeAllConnections();
    });
    this.rest.close();
    this.admin.close();
  }

  killAllSync(): void {
    for (const w of this.workers.values()) w.killSync();
  }

  // ---------------------------------------------------------------- node + lease
  private nodeStatus(): any {
    const cap = this.opts.capacity;
    const t = nowTime();
    const cond = (type: string, status: string, reason: string, message: string) => ({ type, status, reason, message, lastHeartbeatTime: t, lastTransitionTime: t });
    return {
      capacity: cap,
      allocatable: cap,
      conditions: [
        cond('MemoryPressure', 'False', 'KubeletHasSufficientMemory', 'kubelet has sufficient memory available'),
        cond('DiskPressure', 'False', 'KubeletHasNoDiskPressure', 'kubelet has no disk pressure'),
        cond('PIDPressure', 'False', 'KubeletHasSufficientPID', 'kubelet has sufficient PID available'),
        cond('Ready', 'True', 'KubeletReady', 'process kubelet is posting ready status'),
      ],
      addresses: [
        { type: 'InternalIP', address: this.opts.slot.hostIP },
        { type: 'Hostname', address: this.nodeName },
      ],
      daemonEndpoints: { kubeletEndpoint: { Port: this.opts.port } },
      nodeInfo: {
        machineID: 'process-kubelet',
        systemUUID: 'process-kubelet',
        bootID: 'process-kubelet',
        kernelVersion: release(),
        osImage: `process kubelet on ${osHostname()}`,
        containerRuntimeVersion: 'process://0.1.0',
        kubeletVersion: 'v1.34.4',
        kubeProxyVersion: '',
        operatingSystem: 'linux',
        architecture: 'amd64',
      },
    };
  }

  private async registerNode(): Promise<void> {
    const body = {
      apiVersion: 'v1',
      kind: 'Node',
      metadata: {
        name: this.nodeName,
        labels: {
          'kubernetes.io/hostname': this.nodeName,
          'kubernetes.io/os': 'linux',
          'kubernetes.io/arch': 'amd64',
          'beta.kubernetes.io/os': 'linux',
          'beta.kubernetes.io/arch': 'amd64',
        },
      },
      spec: {},
    };
    let node: any;
    try {
      node = await this.rest.post('/api/v1/nodes', body);
    } catch (e) {
      if (!isConflict(e)) throw e;
      node = await this.rest.get(`/api/v1/nodes/${this.nodeName}`);
    }
    this.nodeUid = node.metadata.uid;
    await this.postNodeStatus();
  }

  private async postNodeStatus(): Promise<void> {
    await this.rest.strategicPatch(`/api/v1/nodes/${this.nodeName}/status`, { status: this.nodeStatus() });
  }

  private async renewLease(): Promise<void> {
    const path = `/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/${this.nodeName}`;
    const spec = { holderIdentity: this.nodeName, leaseDurationSeconds: 40, renewTime: microTime() };
    try {
      await this.rest.mergePatch(path, { spec });
    } catch (e) {
      if (!isNotFound(e)) throw e;
      await this.rest.post('/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases', {
        apiVersion: 'coordination.k8s.io/v1',
        kind: 'Lease',
        metadata: {
          name: this.nodeName,
          namespace: 'kube-node-lease',
          ownerReferences: [{ apiVersion: 'v1', kind: 'Node', name: this.nodeName, uid: this.nodeUid }],
        },
        spec,
      });
    }
  }

  // ---------------------------------------------------------------- pods
  private onPod(type: string, pod: any): void {
    if (this.stopped || type === 'SYNC') return;
    const uid: string = pod.metadata.uid;
    let w = this.workers.get(uid);
    if (type === 'DELETED') {
      if (w) {
        w.vanished();
        this.workers.delete(uid);
        this.dnsChanged();
      }
      return;
    }
    if (pod.spec?.nodeName !== this.nodeName) return;
    if (w) {
      w.update(pod);
      return;
    }
    const phase = pod.status?.phase;
    if (pod.metadata.deletionTimestamp || phase === 'Succeeded' || phase === 'Failed') {
      // Never started here (or finished before): nothing to stop; let the API finish deletion.
      if (pod.metadata.deletionTimestamp) {
        void this.rest
          .del(`/api/v1/namespaces/${pod.metadata.namespace}/pods/${pod.metadata.name}`, { apiVersion: 'v1', kind: 'DeleteOptions', gracePeriodSeconds: 0, preconditions: { uid } })
          .catch(() => {});
      }
      return;
    }
    w = new PodWorker(this.ctx, pod);
    this.workers.set(uid, w);
    this.logIndex.set(`${pod.metadata.namespace}/${pod.metadata.name}`, { worker: w });
    this.log(`pod ${w.key} (${uid}) admitted`);
    void w.run().finally(() => this.dnsChanged());
  }

  // ---------------------------------------------------------------- cluster DNS stand-in
  private dnsChanged(): void {
    if (this.dnsTimer || this.stopped) return;
    this.dnsTimer = setTimeout(() => {
      this.dnsTimer = undefined;
      this.recomputeDns();
      for (const w of this.workers.values()) w.refreshHosts();
    }, 50);
  }

  private recomputeDns(): void {
    const records: DnsRecord[] = [];
    const slicesBySvc = new Map<string, any[]>();
    for (const s of this.slices?.items.values() ?? []) {
      const svc = s.metadata.labels?.['kubernetes.io/service-name'];
      if (!svc) continue;
      const k = `${s.metadata.namespace}/${svc}`;
      slicesBySvc.set(k, [...(slicesBySvc.get(k) ?? []), s]);
    }
    for (const svc of this.services?.items.values() ?? []) {
      const { namespace: ns, name } = svc.metadata;
      if (svc.spec?.type === 'ExternalName') continue;
      const ips: string[] = [];
      for (const sl of slicesBySvc.get(`${ns}/${name}`) ?? []) {
        if (sl.addressType !== 'IPv4') continue;
        for (const ep of sl.endpoints ?? []) {
          if (ep.conditions?.ready === false) continue;
          const ip = ep.addresses?.[0];
          if (!ip) continue;
          if (!ips.includes(ip)) ips.push(ip);
          if (ep.hostname && svc.spec?.clusterIP === 'None') records.push({ ns, rel: `${ep.hostname}.${name}`, ips: [ip] });
        }
      }
      // No kube-proxy: a Service name resolves to its ready endpoints' pod IPs, never the ClusterIP.
      if (ips.length) records.push({ ns, rel: name, ips });
    }
    records.sort((a, b) => (a.ns + a.rel).localeCompare(b.ns + b.rel));
    this.dns = records;
  }

  hostsFileFor(pod: any, podIP: string): string {
    const d = this.opts.clusterDomain;
    const ns = pod.metadata.namespace;
    const host = (pod.spec.hostname || pod.metadata.name).slice(0, 63);
    const lines = [
      '# Kubernetes-managed hosts file (process kubelet: stands in for cluster DNS).',
      '127.0.0.1\tlocalhost',
      '::1\tlocalhost ip6-localhost ip6-loopback',
      pod.spec.subdomain ? `${podIP}\t${host}.${pod.spec.subdomain}.${ns}.svc.${d}\t${host}` : `${podIP}\t${host}`,
    ];
    if (pod.spec.hostAliases?.length) {
      lines.push('# Entries added by HostAliases.');
      for (const a of pod.spec.hostAliases) lines.push(`${a.ip}\t${(a.hostnames ?? []).join(' ')}`);
    }
    for (const r of this.dns) {
      const names = [`${r.rel}.${r.ns}.svc.${d}`, `${r.rel}.${r.ns}.svc`, `${r.rel}.${r.ns}`];
      if (r.ns === ns) names.push(r.rel);
      for (const ip of r.ips) lines.push(`${ip}\t${names.join(' ')}`);
    }
    return lines.join('\n') + '\n';
  }

  // ---------------------------------------------------------------- logs
  private logFiles(namespace: string, pod: string, container?: string): { files: string[]; container: string; worker: PodWorker } {
    const entry = this.logIndex.get(`${namespace}/${pod}`);
    if (!entry) throw new Error(`process kubelet never ran pod ${namespace}/${pod}`);
    const w = entry.worker;
    const c = container ?? w.containerNames()[0];
    if (!c || !w.runner(c)) throw new Error(`pod ${namespace}/${pod} has no container ${container}`);
    const dir = join(w.logDir, c);
    const files = existsSync(dir)
      ? readdirSync(dir).filter((f) => f.endsWith('.log')).sort((a, b) => Number.parseInt(a) - Number.parseInt(b)).map((f) => join(dir, f))
      : [];
    return { files, container: c, worker: w };
  }

  /** Log of the latest pod with that name: the current run of the container, or the previous one. */
  logsOf(namespace: string, pod: string, container?: string, previous = false): string {
    const { files } = this.logFiles(namespace, pod, container);
    const f = previous ? files[files.length - 2] : files[files.length - 1];
    return f ? readFileSync(f, 'utf8') : '';
  }

  /** Kubelet API subset for the API server's pods/log proxy (GET /containerLogs/...). */
  private async startServer(): Promise<void> {
    this.server = createServer(
      {
        key: readFileSync(this.opts.serving.key),
        cert: readFileSync(this.opts.serving.cert),
        ca: readFileSync(this.opts.caFile),
        requestCert: true,
        rejectUnauthorized: true,
      },
      (req, res) => void this.serve(req, res).catch((e) => {
        if (!res.headersSent) res.writeHead(500);
        res.end(String(e?.message ?? e));
      }),
    );
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(this.opts.port, this.opts.slot.hostIP, () => resolve());
    });
  }

  private async serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'https://kubelet');
    if (url.pathname === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('ok');
      return;
    }
    const m = /^\/containerLogs\/([^/]+)\/([^/]+)\/([^/]+)$/.exec(url.pathname);
    if (!m || req.method !== 'GET') {
      res.writeHead(501, { 'content-type': 'text/plain' });
      res.end(`the process kubelet does not implement ${req.method} ${url.pathname} (no exec, attach, port-forward)\n`);
      return;
    }
    const [, ns, pod, container] = m.map(decodeURIComponent) as [string, string, string, string];
    let found;
    try {
      found = this.logFiles(ns, pod, container);
    } catch (e) {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end((e as Error).message);
      return;
    }
    const previous = url.searchParams.get('previous') === 'true';
    const file = previous ? found.files[found.files.length - 2] : found.files[found.files.length - 1];
    if (!file) {
      res.writeHead(previous ? 400 : 200, { 'content-type': 'text/plain' });
      res.end(previous ? `previous terminated container "${found.container}" in pod "${pod}" not found` : '');
      return;
    }
    let text = readFileSync(file, 'utf8');
    const tailLines = url.searchParams.get('tailLines');
    if (tailLines) {
      const lines = text.split('\n');
      const hasNl = text.endsWith('\n');
      const body = hasNl ? lines.slice(0, -1) : lines;
      text = body.slice(-Number(tailLines)).join('\n') + (hasNl && Number(tailLines) > 0 ? '\n' : '');
    }
    const limit = url.searchParams.get('limitBytes');
    if (limit) text = text.slice(0, Number(limit));
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.write(text);
    if (url.searchParams.get('follow') !== 'true' || previous) {
      res.end();
      return;
    }
    // follow: stream appended bytes until the container stops running and the file stops growing.
    let offset = statSync(file).size;
    let closed = false;
    req.on('close', () => (closed = true));
    const runner = found.worker.runner(found.container)!;
    while (!closed) {
      await sleep(250);
      const size = existsSync(file) ? statSync(file).size : offset;
      if (size > offset) {
        const buf = readFileSync(file).subarray(offset, size);
        offset = size;
        res.write(buf);
        continue;
      }
      if (!('running' in runner.state)) break;
    }
    res.end();
  }
}
