import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { KubeConfig } from '@kubernetes/client-node';
import { ensureBinaries } from '../binaries.js';
import { acquireSlot, type Slot } from './net.js';
import { Pki, type CertPaths } from './pki.js';
import { ProcessKubelet, defaultImages, type ImageSpec, type KubeletOptions } from './process-kubelet.js';
import { Rest, RestError } from './rest.js';
import { freePort, spawnManaged, stopManaged, tail, waitFor, type Managed } from './util.js';

const here = dirname(fileURLToPath(import.meta.url));
export const repoRoot = join(here, '..', '..', '..');
export const pluginBin = join(repoRoot, 'packages', 'kubectl-plugin', 'bin', 'kubectl-etcd_recover');
export const KUBE_VERSION = 'v1.34.4';

export interface ControlPlane {
  /** Temp dir holding PKI, kubeconfigs, etcd data, component logs (`logs/`), pod dirs and pod logs. */
  dir: string;
  /** https://<bridge-ip>:<port> — reachable from the host and from pods. */
  server: string;
  /** Admin kubeconfig (client cert, O=system:masters). */
  kubeconfigPath: string;
  nodeName: string;
  binDirs: { etcd: string; kube: string };
  /** Node address (bridge address on the host), pod CIDR, service CIDR, etcd endpoint of the control plane itself. */
  network: { hostIP: string; podCIDR: string; serviceCIDR: string };
  etcdEndpoint: string;
  /** Ready time of startControlPlane, ms. */
  readyMs: number;
  kubeConfig(): KubeConfig;
  kubeconfigForServiceAccount(namespace: string, name: string, opts?: { expirationSeconds?: number; audiences?: string[] }): Promise<string>;
  logsOf(namespace: string, pod: string, container?: string, opts?: { previous?: boolean }): string;
  podIP(namespace: string, pod: string): Promise<string>;
  /**
   * What a person debugging a failed test wants to see about the pods a selector matches:
   * phase, reason, each container's state, its log tail, and the kubelet's own lines about them.
   */
  describePods(namespace: string, labelSelector: string): Promise<string>;
  /** Waits for a Job's Complete or Failed condition (retries per backoffLimit happen in between). */
  waitForJob(namespace: string, name: string, timeoutMs?: number): Promise<{ succeeded: boolean; job: any; diagnostics: string }>;
  /** The process kubelet, when started. */
  kubelet: ProcessKubelet | undefined;
  stop(): Promise<void>;
}

export interface ControlPlaneOptions {
  /** Start the process kubelet (default true). */
  kubelet?: boolean;
  /** Extra/overriding image → host binaries mappings for the kubelet (merged over the defaults). */
  images?: Record<string, ImageSpec>;
  /** Kubelet tuning (restart backoff, advertised capacity, ...). */
  kubeletOptions?: Partial<KubeletOptions>;
  /** Keep the temp dir after stop() (also: ETCD_RECOVER_KEEP_KUBE_DIR=1). */
  keepDir?: boolean;
  /** Extra flags per component, appended last (e.g. { 'kube-apiserver': ['--v=4'] }). */
  extraArgs?: Partial<Record<'etcd' | 'kube-apiserver' | 'kube-controller-manager' | 'kube-scheduler', string[]>>;
  /** Echo progress to stderr (also: ETCD_RECOVER_KUBE_DEBUG=1). */
  verbose?: boolean;
}

/** Fails early and clearly when the machine cannot run the harness. */
function preflight(): void {
  if (process.getuid?.() !== 0) throw new Error('startControlPlane needs root (network namespaces, bridge, mount namespaces)');
  const missing = ['ip', 'unshare', 'nsenter', 'setpriv', 'mount', 'openssl'].filter((t) => {
    try {
      execFileSync('sh', ['-c', `command -v ${t}`], { stdio: 'ignore' });
      return false;
    } catch {
      return true;
    }
  });
  if (missing.length) throw new Error(`startControlPlane needs ${missing.join(', ')} on PATH (Debian packages: iproute2, util-linux, mount, openssl)`);
}

export function kubeBinaries(): { etcd: string; kube: string } {
  const env = ensureBinaries(['etcd', 'kubernetes'], (e) => [
    join(e['ETCD_BIN_DIR'] ?? '', 'etcd'),
    ...['kube-apiserver', 'kube-controller-manager', 'kube-scheduler'].map((b) => join(e['KUBE_BIN_DIR'] ?? '', b)),
  ]);
  return { etcd: env['ETCD_BIN_DIR']!, kube: env['KUBE_BIN_DIR']! };
}

function kubeconfigYaml(server: string, caFile: string, user: { cert?: CertPaths; token?: string }, name = 'etcd-recover-test'): string {
  const b64 = (f: string) => readFileSync(f).toString('base64');
  const userLines = user.cert
    ? [`    client-certificate-data: ${b64(user.cert.cert)}`, `    client-key-data: ${b64(user.cert.key)}`]
    : [`    token: ${user.token}`];
  return [
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    `- name: ${name}`,
    '  cluster:',
    `    server: ${server}`,
    `    certificate-authority-data: ${b64(caFile)}`,
    'users:',
    `- name: ${name}`,
    '  user:',
    ...userLines,
    'contexts:',
    `- name: ${name}`,
    '  context:',
    `    cluster: ${name}`,
    `    user: ${name}`,
    '    namespace: default',
    `current-context: ${name}`,
    '',
  ].join('\n');
}

// Last resort: if the test process exits without stop() (failed before hook, process.exit), kill
// everything synchronously and delete the network. setpriv --pdeathsig covers SIGKILL of the test process.
const live = new Set<{ killAllSync: () => void }>();
let exitHooked = false;
function hookExit(): void {
  if (exitHooked) return;
  exitHooked = true;
  process.on('exit', () => {
    for (const cp of live) cp.killAllSync();
  });
}

export async function startControlPlane(opts: ControlPlaneOptions = {}): Promise<ControlPlane> {
  const t0 = Date.now();
  const verbose = opts.verbose ?? process.env['ETCD_RECOVER_KUBE_DEBUG'] === '1';
  const log = (m: string) => { if (verbose) process.stderr.write(`[kube-harness +${Date.now() - t0}ms] ${m}\n`); };
  preflight();
  const bins = kubeBinaries();
  const dir = mkdtempSync(join(tmpdir(), 'etcd-recover-kube-'));
  const logs = join(dir, 'logs');
  mkdirSync(logs, { recursive: true });
  const procs: Managed[] = [];
  let slot: Slot | undefined;
  let kubelet: ProcessKubelet | undefined;
  let admin: Rest | undefined;
  let stopped = false;
  const keep = !!opts.keepDir || process.env['ETCD_RECOVER_KEEP_KUBE_DIR'] === '1';

  const handle = {
    killAllSync() {
      kubelet?.killAllSync();
      for (const p of procs) if (p.exitCode === undefined) try { process.kill(-p.pid, 'SIGKILL'); } catch { /* gone */ }
      slot?.release();
      if (!keep) rmSync(dir, { recursive: true, force: true });
    },
  };
  hookExit();
  live.add(handle);

  const stop = async () => {
    if (stopped) return;
    stopped = true;
    try {
      // Remove hostPath-provisioned PV directories of this cluster (the provisioner writes /tmp/hostpath_pv/<uuid>).
      if (admin) {
        try {
          const pvs = await admin.get('/api/v1/persistentvolumes');
          for (const pv of pvs.items) {
            const p: string | undefined = pv.spec?.hostPath?.path;
            if (p && p.startsWith('/tmp/hostpath_pv/')) slot?.recordPath('rm-rf', p);
          }
        } catch { /* apiserver gone */ }
      }
      if (kubelet) await kubelet.stop();
      const order = ['kube-scheduler', 'kube-controller-manager', 'kube-apiserver', 'etcd'];
      for (const name of order) {
        const p = procs.find((x) => x.name === name);
        if (p) await stopManaged(p, 5_000);
      }
      admin?.close();
    } finally {
      handle.killAllSync();
      live.delete(handle);
    }
  };

  const start = (name: string, bin: string, args: string[]) => {
    const m = spawnManaged(name, bin, [...args, ...(opts.extraArgs?.[name as keyof NonNullable<ControlPlaneOptions['extraArgs']>] ?? [])], join(logs, `${name}.log`), {
      PATH: process.env['PATH'] ?? '/usr/bin:/bin',
      HOME: process.env['HOME'] ?? '/root',
    });
    procs.push(m);
    slot?.recordPid(m.pid);
    log(`started ${name} pid ${m.pid}`);
    return m;
  };
  const mustRun = (m: Managed) => {
    if (m.exitCode !== undefined) throw new Error(`${m.name} exited with ${m.exitCode}:\n${tail(m.logFile, 40)}`);
  };

  try {
    slot = await acquireSlot();
    if (!keep) slot.recordPath('rm-rf', dir);
    log(`slot ${slot.index}: bridge ${slot.bridge} ${slot.hostIP}`);
    const hostIP = slot.hostIP;
    const nodeName = 'process-node';

    // --- PKI
    const pki = await Pki.create(join(dir, 'pki'));
    const [apiserverCert, adminCert, cmCert, schedCert, kubeletClient, kubeletServing, apiKubeletClient, sa] = await Promise.all([
      pki.issue('apiserver', {
        cn: 'kube-apiserver', usage: 'server',
        ips: ['127.0.0.1', hostIP, slot.firstServiceIP],
        dns: ['localhost', 'kubernetes', 'kubernetes.default', 'kubernetes.default.svc', 'kubernetes.default.svc.cluster.local'],
      }),
      pki.issue('admin', { cn: 'kubernetes-admin', o: ['system:masters'], usage: 'client' }),
      pki.issue('controller-manager', { cn: 'system:kube-controller-manager', usage: 'client' }),
      pki.issue('scheduler', { cn: 'system:kube-scheduler', usage: 'client' }),
      pki.issue('kubelet-client', { cn: `system:node:${nodeName}`, o: ['system:nodes'], usage: 'client' }),
      pki.issue('kubelet-serving', { cn: nodeName, usage: 'server', ips: [hostIP], dns: [nodeName] }),
      pki.issue('apiserver-kubelet-client', { cn: 'kube-apiserver-kubelet-client', o: ['system:masters'], usage: 'client' }),
      pki.serviceAccountKeys(),
    ]);
    log('pki ready');

    const [etcdPort, etcdPeerPort, apiPort, cmPort, schedPort, kubeletPort] = await Promise.all([
      freePort(), freePort(), freePort(), freePort(), freePort(), freePort(),
    ]);
    const server = `https://${hostIP}:${apiPort}`;
    const etcdEndpoint = `http://127.0.0.1:${etcdPort}`;

    // --- etcd
    const etcd = start('etcd', join(bins.etcd, 'etcd'), [
      '--name=default',
      `--data-dir=${join(dir, 'etcd')}`,
      `--listen-client-urls=${etcdEndpoint}`,
      `--advertise-client-urls=${etcdEndpoint}`,
      `--listen-peer-urls=http://127.0.0.1:${etcdPeerPort}`,
      `--initial-advertise-peer-urls=http://127.0.0.1:${etcdPeerPort}`,
      `--initial-cluster=default=http://127.0.0.1:${etcdPeerPort}`,
      '--unsafe-no-fsync',
      '--log-level=warn',
    ]);
    await waitFor('etcd /health', async () => {
      mustRun(etcd);
      const r = await fetch(`${etcdEndpoint}/health`);
      return r.ok && ((await r.json()) as any).health === 'true';
    }, 30_000, 100);
    log('etcd healthy');

    // --- kube-apiserver
    const apiserver = start('kube-apiserver', join(bins.kube, 'kube-apiserver'), [
      `--etcd-servers=${etcdEndpoint}`,
      `--bind-address=${hostIP}`,
      `--advertise-address=${hostIP}`,
      `--secure-port=${apiPort}`,
      `--cert-dir=${join(dir, 'apiserver-certs')}`,
      `--tls-cert-file=${apiserverCert.cert}`,
      `--tls-private-key-file=${apiserverCert.key}`,
      `--client-ca-file=${pki.ca.cert}`,
      '--authorization-mode=Node,RBAC',
      '--enable-admission-plugins=NodeRestriction',
      '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
      `--service-account-key-file=${sa.pub}`,
      `--service-account-signing-key-file=${sa.key}`,
      `--service-cluster-ip-range=${slot.serviceCIDR}`,
      '--allow-privileged=true',
      `--kubelet-client-certificate=${apiKubeletClient.cert}`,
      `--kubelet-client-key=${apiKubeletClient.key}`,
      `--kubelet-certificate-authority=${pki.ca.cert}`,
      '--kubelet-preferred-address-types=InternalIP,Hostname',
      '--profiling=false',
      '--enable-priority-and-fairness=false',
      '--event-ttl=1h',
      '--v=1',
    ]);
    admin = new Rest({ server, caFile: pki.ca.cert, certFile: adminCert.cert, keyFile: adminCert.key });
    const adminRest = admin;
    await waitFor('kube-apiserver /readyz', async () => {
      mustRun(apiserver);
      await adminRest.req('GET', '/readyz');
      return true;
    }, 60_000, 200);
    log('kube-apiserver ready');

    // --- kubeconfigs
    const kubeconfigPath = join(dir, 'admin.kubeconfig');
    writeFileSync(kubeconfigPath, kubeconfigYaml(server, pki.ca.cert, { cert: adminCert }), { mode: 0o600 });
    const cmKubeconfig = join(dir, 'controller-manager.kubeconfig');
    writeFileSync(cmKubeconfig, kubeconfigYaml(server, pki.ca.cert, { cert: cmCert }), { mode: 0o600 });
    const schedKubeconfig = join(dir, 'scheduler.kubeconfig');
    writeFileSync(schedKubeconfig, kubeconfigYaml(server, pki.ca.cert, { cert: schedCert }), { mode: 0o600 });

    // --- controller-manager and scheduler
    const cm = start('kube-controller-manager', join(bins.kube, 'kube-controller-manager'), [
      `--kubeconfig=${cmKubeconfig}`,
      `--authentication-kubeconfig=${cmKubeconfig}`,
      `--authorization-kubeconfig=${cmKubeconfig}`,
      '--bind-address=127.0.0.1',
      `--secure-port=${cmPort}`,
      `--cert-dir=${join(dir, 'controller-manager-certs')}`,
      '--leader-elect=false',
      '--use-service-account-credentials=true',
      `--service-account-private-key-file=${sa.key}`,
      `--root-ca-file=${pki.ca.cert}`,
      `--cluster-signing-cert-file=${pki.ca.cert}`,
      `--cluster-signing-key-file=${pki.ca.key}`,
      '--enable-hostpath-provisioner=true',
      '--controllers=*',
      `--service-cluster-ip-range=${slot.serviceCIDR}`,
      '--pvclaimbinder-sync-period=5s',
      '--terminated-pod-gc-threshold=100',
      '--v=1',
    ]);
    const sched = start('kube-scheduler', join(bins.kube, 'kube-scheduler'), [
      `--kubeconfig=${schedKubeconfig}`,
      `--authentication-kubeconfig=${schedKubeconfig}`,
      `--authorization-kubeconfig=${schedKubeconfig}`,
      '--bind-address=127.0.0.1',
      `--secure-port=${schedPort}`,
      `--cert-dir=${join(dir, 'scheduler-certs')}`,
      '--leader-elect=false',
      '--v=1',
    ]);

    // --- default StorageClass (hostPath provisioner of the controller-manager)
    await adminRest.post('/apis/storage.k8s.io/v1/storageclasses', {
      apiVersion: 'storage.k8s.io/v1',
      kind: 'StorageClass',
      metadata: { name: 'standard', annotations: { 'storageclass.kubernetes.io/is-default-class': 'true' } },
      provisioner: 'kubernetes.io/host-path',
      reclaimPolicy: 'Delete',
      volumeBindingMode: 'Immediate',
    });

    // --- kubelet
    if (opts.kubelet !== false) {
      kubelet = new ProcessKubelet({
        nodeName,
        dir: join(dir, 'kubelet'),
        slot,
        server,
        caFile: pki.ca.cert,
        client: kubeletClient,
        serving: kubeletServing,
        adminClient: adminCert,
        port: kubeletPort,
        images: { ...defaultImages({ etcdBinDir: bins.etcd, kubeBinDir: bins.kube, pluginBin }), ...(opts.images ?? {}) },
        ...(opts.kubeletOptions ?? {}),
      });
      await kubelet.start();
      log('kubelet started');
    }

    // The cluster is usable once the components are healthy, a default ServiceAccount exists
    // (pods are refused before) and, with a kubelet, the node is Ready.
    await waitFor('default/default ServiceAccount and kube-root-ca.crt', async () => {
      mustRun(cm);
      mustRun(sched);
      await adminRest.get('/api/v1/namespaces/default/serviceaccounts/default');
      await adminRest.get('/api/v1/namespaces/default/configmaps/kube-root-ca.crt');
      return true;
    }, 60_000, 200);
    log('default ServiceAccount and kube-root-ca.crt present');
    if (kubelet) {
      await waitFor(`node ${nodeName} Ready and untainted`, async () => {
        const n = await adminRest.get(`/api/v1/nodes/${nodeName}`);
        const ready = n.status?.conditions?.find((c: any) => c.type === 'Ready')?.status === 'True';
        return ready && !(n.spec?.taints ?? []).some((t: any) => t.effect === 'NoSchedule' || t.effect === 'NoExecute');
      }, 60_000, 200);
    }
    const readyMs = Date.now() - t0;
    log(`ready in ${readyMs} ms`);

    const cp: ControlPlane = {
      dir,
      server,
      kubeconfigPath,
      nodeName,
      binDirs: bins,
      network: { hostIP, podCIDR: slot.podCIDR, serviceCIDR: slot.serviceCIDR },
      etcdEndpoint,
      readyMs,
      kubelet,
      kubeConfig() {
        const kc = new KubeConfig();
        kc.loadFromFile(kubeconfigPath);
        return kc;
      },
      async kubeconfigForServiceAccount(namespace, name, o = {}) {
        const tr = await adminRest.post(`/api/v1/namespaces/${namespace}/serviceaccounts/${name}/token`, {
          apiVersion: 'authentication.k8s.io/v1',
          kind: 'TokenRequest',
          spec: { expirationSeconds: o.expirationSeconds ?? 3600, ...(o.audiences ? { audiences: o.audiences } : {}) },
        });
        const path = join(dir, `sa-${namespace}-${name}-${Date.now()}.kubeconfig`);
        writeFileSync(path, kubeconfigYaml(server, pki.ca.cert, { token: tr.status.token }).replace('namespace: default', `namespace: ${namespace}`), { mode: 0o600 });
        return path;
      },
      logsOf(namespace, pod, container, o = {}) {
        if (!kubelet) throw new Error('logsOf: no kubelet in this control plane');
        return kubelet.logsOf(namespace, pod, container, o.previous);
      },
      async describePods(namespace, labelSelector) {
        const list = await adminRest.get(`/api/v1/namespaces/${namespace}/pods?labelSelector=${encodeURIComponent(labelSelector)}`);
        const out: string[] = [];
        for (const p of list.items ?? []) {
          const name = p.metadata.name as string;
          out.push(`pod ${namespace}/${name}: phase ${p.status?.phase}${p.status?.reason ? `, ${p.status.reason}: ${p.status.message ?? ''}` : ''}`);
          for (const c of [...(p.status?.initContainerStatuses ?? []), ...(p.status?.containerStatuses ?? [])]) {
            out.push(`  container ${c.name}: restarts ${c.restartCount ?? 0}, state ${JSON.stringify(c.state)}`);
            let log = '';
            try { log = kubelet?.logsOf(namespace, name, c.name) ?? ''; } catch { /* no log yet */ }
            if (log) out.push(...log.trimEnd().split('\n').slice(-30).map((l) => `    | ${l}`));
          }
          const kubeletLines = tail(join(dir, 'kubelet', 'kubelet.log'), 2000).split('\n').filter((l) => l.includes(name));
          if (kubeletLines.length) out.push('  kubelet:', ...kubeletLines.slice(-15).map((l) => `    | ${l}`));
        }
        return out.join('\n') || `no pods match ${labelSelector} in ${namespace}`;
      },
      async waitForJob(namespace, name, timeoutMs = 180_000) {
        const job = await waitFor(`Job ${namespace}/${name} Complete or Failed`, async () => {
          const j = await adminRest.get(`/apis/batch/v1/namespaces/${namespace}/jobs/${name}`);
          const done = (j.status?.conditions ?? []).some((c: any) => (c.type === 'Complete' || c.type === 'Failed') && c.status === 'True');
          return done ? j : undefined;
        }, timeoutMs, 500);
        const succeeded = (job.status?.conditions ?? []).some((c: any) => c.type === 'Complete' && c.status === 'True');
        const diagnostics = `Job ${namespace}/${name}: ${JSON.stringify(job.status?.conditions?.map((c: any) => `${c.type}=${c.status} ${c.reason ?? ''} ${c.message ?? ''}`.trim()))}\n`
          + await this.describePods(namespace, `job-name=${name}`);
        return { succeeded, job, diagnostics };
      },
      async podIP(namespace, pod) {
        return waitFor(`IP of pod ${namespace}/${pod}`, async () => {
          const p = await adminRest.get(`/api/v1/namespaces/${namespace}/pods/${pod}`);
          return (p.status?.podIP as string | undefined) || undefined;
        }, 60_000);
      },
      stop,
    };
    return cp;
  } catch (e) {
    const msg = e instanceof RestError || e instanceof Error ? e.message : String(e);
    const diag = procs.map((p) => `--- ${p.name} (${p.exitCode === undefined ? 'running' : `exit ${p.exitCode}`}):\n${tail(p.logFile, 15)}`).join('\n');
    await stop().catch(() => {});
    throw new Error(`startControlPlane failed: ${msg}\n${diag}`);
  }
}


