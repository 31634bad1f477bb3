import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect } from 'node:net';
import { constants as osConstants } from 'node:os';
import { dirname, join, normalize, relative, isAbsolute, sep } from 'node:path';
import type { Slot } from './net.js';
import { HOST_PATH, imageSpecFor, resolveCommand, type ImageSpec } from './images.js';
import { parseQuantity } from './quantity.js';
import { rootfsScript, type RootfsMount } from './rootfs.js';
import { isNotFound, type Rest, RestError } from './rest.js';
import { sleep } from './util.js';

/** What a pod worker needs from its kubelet. */
export interface KubeletContext {
  nodeName: string;
  hostIP: string;
  apiPort: number;
  rest: Rest;
  slot: Slot;
  dir: string;
  images: Record<string, ImageSpec>;
  backoffInitialMs: number;
  backoffMaxMs: number;
  allocatable: Record<string, string>;
  log(msg: string): void;
  hostsFileFor(pod: any, podIP: string): string;
  /** Called when a worker is finished with a pod (deleted from the API). */
  forget(uid: string): void;
}

const now = () => new Date().toISOString().replace(/\.\d+Z$/, 'Z');
const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** Kubernetes $(VAR) expansion: $$ escapes, unknown references stay as written. */
export function expand(input: string, env: Record<string, string>): string {
  let out = '';
  for (let i = 0; i < input.length; i++) {
    const c = input[i]!;
    if (c === '$' && i + 1 < input.length) {
      const n = input[i + 1];
      if (n === '$') { out += '$'; i++; continue; }
      if (n === '(') {
        const close = input.indexOf(')', i + 2);
        if (close >= 0) {
          const name = input.slice(i + 2, close);
          out += name in env ? env[name] : `$(${name})`;
          i = close;
          continue;
        }
      }
    }
    out += c;
  }
  return out;
}

/** Downward API field paths. */
function fieldValue(pod: any, path: string, podIP: string, hostIP: string): string {
  const m = /^metadata\.(labels|annotations)\['(.+)'\]$/.exec(path);
  if (m) return pod.metadata[m[1]!]?.[m[2]!] ?? '';
  switch (path) {
    case 'metadata.name': return pod.metadata.name;
    case 'metadata.namespace': return pod.metadata.namespace;
    case 'metadata.uid': return pod.metadata.uid;
    case 'metadata.labels':
    case 'metadata.annotations':
      return Object.entries(pod.metadata[path.slice(9)] ?? {}).map(([k, v]) => `${k}=${JSON.stringify(v)}`).sort().join('\n');
    case 'spec.nodeName': return pod.spec.nodeName ?? '';
    case 'spec.serviceAccountName': return pod.spec.serviceAccountName ?? 'default';
    case 'status.podIP':
    case 'status.podIPs': return podIP;
    case 'status.hostIP':
    case 'status.hostIPs': return hostIP;
    default: throw new Error(`unsupported downward API fieldPath ${path}`);
  }
}

function resourceValue(pod: any, ref: any, defaultContainer: string | undefined, allocatable: Record<string, string>): string {
  const cname = ref.containerName || defaultContainer;
  const c = [...(pod.spec.containers ?? []), ...(pod.spec.initContainers ?? [])].find((x: any) => x.name === cname);
  const [kind, res] = String(ref.resource).split('.') as [string, string];
  const fromSpec = c?.resources?.[kind]?.[res] ?? (kind === 'requests' ? c?.resources?.limits?.[res] : undefined);
  const value = parseQuantity(fromSpec) ?? (kind === 'limits' ? parseQuantity(allocatable[res]) : 0) ?? 0;
  const divisor = parseQuantity(ref.divisor) || 1;
  return String(Math.ceil(value / divisor));
}

type CState =
  | { waiting: { reason: string; message?: string } }
  | { running: { startedAt: string } }
  | { terminated: { exitCode: number; signal?: number; reason: string; message?: string; startedAt?: string; finishedAt: string; containerID?: string } };

interface Probe {
  exec?: { command: string[] };
  httpGet?: { path?: string; port: number | string; host?: string; scheme?: string; httpHeaders?: { name: string; value: string }[] };
  tcpSocket?: { port: number | string; host?: string };
  grpc?: unknown;
  initialDelaySeconds?: number;
  periodSeconds?: number;
  timeoutSeconds?: number;
  successThreshold?: number;
  failureThreshold?: number;
}

/** One container: start, watch, probe, restart with backoff. */
class ContainerRunner {
  state: CState = { waiting: { reason: 'PodInitializing' } };
  lastState: CState | undefined;
  restartCount = 0;
  ready = false;
  started = false;
  pid: number | undefined;
  containerID: string | undefined;
  env: Record<string, string> = {};
  /** The image this container last started from. */
  image?: ImageSpec;
  private child: ChildProcess | undefined;
  private exited: Promise<number> | undefined;
  private stopping = false;
  private wake: (() => void) | undefined;
  private probeCtl: AbortController | undefined;
  private runStartedAt = 0;
  private backoffMs: number;
  /** Resolves once the container will not run again (terminal per its restart policy, or stopped). */
  readonly done: Promise<void>;
  private markDone!: () => void;
  /** Resolves when the container has started (startup probe passed), or is done. */
  readonly startedOnce: Promise<void>;
  private markStarted!: () => void;

  constructor(readonly w: PodWorker, readonly spec: any, readonly kind: 'init' | 'sidecar' | 'main') {
    this.backoffMs = 0;
    this.done = new Promise((r) => (this.markDone = r));
    this.startedOnce = new Promise((r) => (this.markStarted = r));
  }

  get name(): string { return this.spec.name; }

  private policy(): 'Always' | 'OnFailure' | 'Never' {
    if (this.kind === 'sidecar') return 'Always';
    const p = this.w.pod.spec.restartPolicy ?? 'Always';
    if (this.kind === 'init') return p === 'Never' ? 'Never' : 'OnFailure';
    return p;
  }

  exitCode(): number | undefined {
    return 'terminated' in this.state ? this.state.terminated.exitCode : undefined;
  }

  /** Runs until done. */
  async loop(): Promise<void> {
    try {
      for (;;) {
        if (this.stopping || this.w.deleting) return;
        let code: number;
        try {
          code = await this.startOnce();
        } catch (e) {
          // Config errors (missing ConfigMap key, unknown image...): report and retry, like a kubelet.
          const reason = (e as any).reason ?? 'CreateContainerConfigError';
          this.state = { waiting: { reason, message: (e as Error).message } };
          this.w.k.log(`${this.w.key}/${this.name}: ${reason}: ${(e as Error).message}`);
          this.w.statusChanged();
          await this.sleepInterruptible(2_000);
          continue;
        }
        this.w.statusChanged();
        if (this.stopping || this.w.deleting) return;
        const p = this.policy();
        if (p === 'Never' || (p === 'OnFailure' && code === 0)) return;
        // Restart like a kubelet: the first restart at once, then back-off (initial, doubling, capped);
        // the back-off is forgotten after a run longer than twice the cap.
        if (Date.now() - this.runStartedAt > 2 * this.w.k.backoffMaxMs) this.backoffMs = 0;
        const delay = this.backoffMs;
        this.backoffMs = delay === 0 ? this.w.k.backoffInitialMs : Math.min(delay * 2, this.w.k.backoffMaxMs);
        this.lastState = this.state;
        if (delay > 0) {
          this.state = { waiting: { reason: 'CrashLoopBackOff', message: `back-off ${Math.round(delay / 1000)}s restarting failed container=${this.name} pod=${this.w.pod.metadata.name}_${this.w.pod.metadata.namespace}(${this.w.uid})` } };
          this.w.statusChanged();
          await this.sleepInterruptible(delay);
          if (this.stopping || this.w.deleting) return;
        }
        this.restartCount++;
      }
    } finally {
      this.markStarted();
      this.markDone();
    }
  }

  private sleepInterruptible(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(() => { this.wake = undefined; resolve(); }, ms);
      this.wake = () => { clearTimeout(t); this.wake = undefined; resolve(); };
    });
  }

  logFile(restart = this.restartCount): string {
    return join(this.w.logDir, this.name, `${restart}.log`);
  }

  /** Builds env, command and mount script, spawns, waits for exit; returns the exit code. */
  private async startOnce(): Promise<number> {
    const w = this.w;
    const image = imageSpecFor(w.k.images, this.spec.image ?? '');
    if (!image) {
      const e = new Error(`process-kubelet: no host mapping for image "${this.spec.image}" (startControlPlane({ images }))`);
      (e as any).reason = 'ErrImagePull';
      throw e;
    }
    const env = await w.buildEnv(this.spec, image);
    this.env = env;
    this.image = image;
    let argv: string[];
    if (this.spec.command?.length) argv = [...this.spec.command, ...(this.spec.args ?? [])].map((s: string) => expand(s, env));
    else argv = [...(image.entrypoint ?? []), ...(this.spec.args ? this.spec.args.map((s: string) => expand(s, env)) : image.cmd ?? [])];
    if (!argv.length) throw new Error(`container ${this.name}: no command and image ${this.spec.image} has no entrypoint`);
    // A real image's command is looked up on its own PATH, inside its root.
    if (!image.rootfs) argv[0] = resolveCommand(image, argv[0]!);
    const script = image.rootfs ? w.rootfsMountScript(this.spec, image, this.name) : w.mountScript(this.spec, image);
    if (this.stopping || w.deleting) return 137; // deleted while env and volumes were being read
    mkdirSync(dirname(this.logFile()), { recursive: true });
    const fd = openSync(this.logFile(), 'a');
    const prefix = w.hostNetwork
      ? ['unshare', '--mount', '--propagation', 'private', '--']
      : ['nsenter', `--net=/run/netns/${w.netns}`, '--', 'unshare', '--mount', '--uts', '--propagation', 'private', '--'];
    const child = spawn('setpriv', ['--pdeathsig', 'KILL', '--', ...prefix, '/bin/sh', '-c', script, 'container-init', ...argv], {
      detached: true,
      stdio: ['ignore', fd, fd],
      env,
      cwd: '/',
    });
    closeSync(fd);
    this.child = child;
    this.pid = child.pid;
    if (this.pid) w.k.slot.recordPid(this.pid);
    this.containerID = `process://${w.uid.slice(0, 8)}-${this.name}-${this.restartCount}-${this.pid}`;
    const startedAt = now();
    this.runStartedAt = Date.now();
    this.state = { running: { startedAt } };
    this.ready = false;
    this.started = !this.spec.startupProbe;
    if (this.started) this.markStarted();
    this.exited = new Promise<number>((resolve) => {
      child.on('exit', (code, signal) => {
        const sig = signal ? (osConstants.signals as Record<string, number>)[signal] : undefined;
        const exitCode = code ?? (sig !== undefined ? 128 + sig : 255);
        const terminated: any = {
          exitCode,
          reason: exitCode === 0 ? 'Completed' : 'Error',
          startedAt,
          finishedAt: now(),
          containerID: this.containerID,
        };
        if (sig !== undefined) terminated.signal = sig;
        if (exitCode !== 0 && this.spec.terminationMessagePolicy === 'FallbackToLogsOnError') {
          try { terminated.message = readFileSync(this.logFile(), 'utf8').split('\n').slice(-80).join('\n').slice(-4096); } catch { /* none */ }
        }
        this.state = { terminated };
        this.ready = false;
        this.pid = undefined;
        this.probeCtl?.abort();
        resolve(exitCode);
      });
      child.on('error', (e) => {
        this.state = { terminated: { exitCode: 128, reason: 'StartError', message: e.message, finishedAt: now() } };
        resolve(128);
      });
    });
    w.statusChanged();
    this.startProbes();
    return this.exited;
  }

  // ---- probes
  private startProbes(): void {
    this.probeCtl?.abort();
    const ctl = new AbortController();
    this.probeCtl = ctl;
    const s = this.spec;
    const run = async () => {
      if (s.startupProbe) {
        const ok = await this.probeLoop(s.startupProbe, ctl.signal, 'startup');
        if (!ok || ctl.signal.aborted) return;
        this.started = true;
        this.markStarted();
        this.w.statusChanged();
      }
      if (s.livenessProbe) void this.probeLoop(s.livenessProbe, ctl.signal, 'liveness');
      if (s.readinessProbe && this.kind !== 'init') void this.probeLoop(s.readinessProbe, ctl.signal, 'readiness');
      else if (this.kind !== 'init') {
        this.ready = true;
        this.w.statusChanged();
      }
    };
    void run();
  }

  /** Runs one probe until aborted; for startup probes returns true on first success. */
  private async probeLoop(p: Probe, signal: AbortSignal, kind: 'startup' | 'liveness' | 'readiness'): Promise<boolean> {
    const period = (p.periodSeconds ?? 10) * 1000;
    const succ = p.successThreshold ?? 1;
    const fail = p.failureThreshold ?? 3;
    let okRun = 0;
    let failRun = 0;
    await abortableSleep((p.initialDelaySeconds ?? 0) * 1000, signal);
    while (!signal.aborted) {
      const ok = await this.probeOnce(p).catch(() => false);
      if (signal.aborted) return false;
      if (ok) { okRun++; failRun = 0; } else { failRun++; okRun = 0; }
      if (kind === 'startup') {
        if (ok) return true;
        if (failRun >= fail) {
          this.w.k.log(`${this.w.key}/${this.name}: startup probe failed ${failRun}x, killing`);
          void this.kill(this.spec.terminationGracePeriodSeconds ?? this.w.pod.spec.terminationGracePeriodSeconds ?? 30);
          return false;
        }
      } else if (kind === 'liveness') {
        if (failRun >= fail) {
          this.w.k.log(`${this.w.key}/${this.name}: liveness probe failed ${failRun}x, killing`);
          void this.kill(this.w.pod.spec.terminationGracePeriodSeconds ?? 30);
          return false;
        }
      } else {
        const was = this.ready;
        if (ok && okRun >= succ) this.ready = true;
        if (!ok && failRun >= fail) this.ready = false;
        if (was !== this.ready) this.w.statusChanged();
      }
      await abortableSleep(period, signal);
    }
    return false;
  }

  private port(p: number | string): number {
    if (typeof p === 'number') return p;
    if (/^\d+$/.test(p)) return Number(p);
    const named = (this.spec.ports ?? []).find((x: any) => x.name === p);
    if (!named) throw new Error(`named port ${p} not found`);
    return named.containerPort;
  }

  private probeOnce(p: Probe): Promise<boolean> {
    const timeout = (p.timeoutSeconds ?? 1) * 1000;
    const ip = this.w.podIP;
    if (p.exec) {
      const pid = this.pid;
      if (!pid) return Promise.resolve(false);
      return new Promise((resolve) => {
        const nsArgs = ['-t', String(pid), '-m', ...(this.w.hostNetwork ? [] : ['-n', '-u']), ...(this.image?.rootfs ? ['-r', '-w'] : []), '--'];
        const c = spawn('nsenter', [...nsArgs, ...p.exec!.command.map((s) => expand(s, this.env))], { env: this.env, stdio: 'ignore', detached: true });
        const t = setTimeout(() => { try { process.kill(-c.pid!, 'SIGKILL'); } catch { /* gone */ } }, timeout);
        c.on('exit', (code) => { clearTimeout(t); resolve(code === 0); });
        c.on('error', () => { clearTimeout(t); resolve(false); });
      });
    }
    if (p.httpGet) {
      const g = p.httpGet;
      return new Promise((resolve) => {
        const https = (g.scheme ?? 'HTTP').toUpperCase() === 'HTTPS';
        const headers: Record<string, string> = { 'user-agent': 'kube-probe/1.34' };
        for (const h of g.httpHeaders ?? []) headers[h.name] = h.value;
        const req = (https ? httpsRequest : httpRequest)(
          { host: g.host || ip, port: this.port(g.port), path: g.path ?? '/', method: 'GET', timeout, headers, ...(https ? { rejectUnauthorized: false } : {}) },
          (res) => {
            res.resume();
            resolve((res.statusCode ?? 0) >= 200 && (res.statusCode ?? 0) < 400);
          },
        );
        req.on('timeout', () => req.destroy());
        req.on('error', () => resolve(false));
        req.end();
      });
    }
    if (p.tcpSocket) {
      const t = p.tcpSocket;
      return new Promise((resolve) => {
        const s = connect({ host: t.host || ip, port: this.port(t.port), timeout });
        s.on('connect', () => { s.destroy(); resolve(true); });
        s.on('timeout', () => { s.destroy(); resolve(false); });
        s.on('error', () => resolve(false));
      });
    }
    // gRPC probes are not implemented: treated as passing (documented).
    return Promise.resolve(true);
  }

  /** SIGTERM the process group, SIGKILL after the grace period; resolves when it exited. */
  async kill(graceSeconds: number): Promise<void> {
    const child = this.child;
    const exited = this.exited;
    if (!child || !exited || this.pid === undefined) return;
    const pid = this.pid;
    try { process.kill(-pid, 'SIGTERM'); } catch { /* gone */ }
    const done = await Promise.race([exited.then(() => true), sleep(graceSeconds * 1000).then(() => false)]);
    if (!done) {
      try { process.kill(-pid, 'SIGKILL'); } catch { /* gone */ }
      await exited;
    }
  }

  /** No more restarts; terminate if running. */
  async stop(graceSeconds: number): Promise<void> {
    this.stopping = true;
    this.probeCtl?.abort();
    this.wake?.();
    await this.kill(graceSeconds);
    if ('waiting' in this.state && this.lastState && 'terminated' in this.lastState) {
      // Stopped during back-off: report the last run as the final state.
      this.state = this.lastState;
    }
  }

  killSync(): void {
    this.stopping = true;
    this.probeCtl?.abort();
    this.wake?.();
    if (this.pid !== undefined) try { process.kill(-this.pid, 'SIGKILL'); } catch { /* gone */ }
  }

  status(): any {
    const st: any = {
      name: this.name,
      image: this.spec.image,
      // A real image reports its content id, as a container runtime does; a host mapping says what it is.
      imageID: this.image?.id ?? `process-kubelet://${this.spec.image}`,
      ready: this.ready,
      started: this.started && 'running' in this.state,
      restartCount: this.restartCount,
      state: this.state,
      lastState: this.lastState ?? {},
    };
    if (this.containerID) st.containerID = this.containerID;
    return st;
  }
}

function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(() => { signal.removeEventListener('abort', onAbort); resolve(); }, ms);
    const onAbort = () => { clearTimeout(t); resolve(); };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

interface VolumeMountSource { path: string; readOnly: boolean }

/** One pod on the process kubelet: sandbox (netns, hosts file), volumes, containers, status. */
export class PodWorker {
  pod: any;
  readonly uid: string;
  readonly key: string;
  readonly podDir: string;
  readonly logDir: string;
  podIP = '';
  netns = '';
  hostsFile = '';
  phase: 'Pending' | 'Running' | 'Succeeded' | 'Failed' = 'Pending';
  reason: string | undefined;
  message: string | undefined;
  startTime: string | undefined;
  deleting = false;
  sandboxReady = false;
  initialized = false;
  private tornDown = false;
  private finished = false;
  private volumes = new Map<string, VolumeMountSource>();
  readonly init: ContainerRunner[];
  readonly main: ContainerRunner[];
  private statusDirty = false;
  private statusChain: Promise<void> = Promise.resolve();
  private statusTimer: NodeJS.Timeout | undefined;
  private transitions = new Map<string, { status: string; time: string }>();
  private deadlineTimer: NodeJS.Timeout | undefined;
  private terminating: Promise<void> | undefined;
  private gone = false;

  constructor(readonly k: KubeletContext, pod: any) {
    this.pod = pod;
    this.uid = pod.metadata.uid;
    this.key = `${pod.metadata.namespace}/${pod.metadata.name}`;
    this.podDir = join(k.dir, 'pods', this.uid);
    this.logDir = join(k.dir, 'logs', `${pod.metadata.namespace}_${pod.metadata.name}_${this.uid}`);
    this.init = (pod.spec.initContainers ?? []).map((c: any) => new ContainerRunner(this, c, c.restartPolicy === 'Always' ? 'sidecar' : 'init'));
    this.main = (pod.spec.containers ?? []).map((c: any) => new ContainerRunner(this, c, 'main'));
    for (const r of this.main) r.state = { waiting: { reason: 'ContainerCreating' } };
  }

  get hostNetwork(): boolean { return !!this.pod.spec.hostNetwork; }
  get hostname(): string { return (this.pod.spec.hostname || this.pod.metadata.name).slice(0, 63); }
  get terminal(): boolean { return this.phase === 'Succeeded' || this.phase === 'Failed'; }

  containerNames(): string[] {
    return [...this.main, ...this.init].map((r) => r.name);
  }

  runner(name: string): ContainerRunner | undefined {
    return [...this.main, ...this.init].find((r) => r.name === name);
  }

  // ---------------------------------------------------------------- lifecycle
  async run(): Promise<void> {
    try {
      this.startTime = now();
      await this.setupSandbox();
      if (this.deleting) return;
      this.statusChanged();
      if (this.pod.spec.activeDeadlineSeconds) {
        this.deadlineTimer = setTimeout(() => void this.deadlineExceeded(), this.pod.spec.activeDeadlineSeconds * 1000);
      }
      // Volumes: retry until the referenced objects exist (a kubelet waits the same way).
      for (let attempt = 0; ; attempt++) {
        if (this.deleting) return;
        try {
          await this.prepareVolumes();
          break;
        } catch (e) {
          const msg = (e as Error).message;
          if (attempt % 10 === 0) this.k.log(`${this.key}: volumes not ready: ${msg}`);
          for (const r of [...this.init, ...this.main]) r.state = { waiting: { reason: 'ContainerCreating', message: msg } };
          this.statusChanged();
          await sleep(Math.min(500 * (attempt + 1), 3_000));
        }
      }
      // Init containers in order; sidecars (restartPolicy: Always) keep running.
      for (const r of this.init) {
        if (this.deleting) return;
        if (r.kind === 'sidecar') {
          void r.loop();
          await Promise.race([r.startedOnce, r.done]);
          continue;
        }
        await r.loop();
        if (this.deleting) return;
        if (r.exitCode() !== 0) {
          // Only reachable with restartPolicy Never (otherwise the runner retries until success).
          this.phase = 'Failed';
          this.finish();
          return;
        }
      }
      this.initialized = true;
      for (const r of this.main) r.state = { waiting: { reason: 'ContainerCreating' } };
      this.statusChanged();
      await Promise.all(this.main.map((r) => r.loop()));
      if (this.deleting || this.terminal) return;
      // All main containers are done for good: the pod is terminal.
      this.phase = this.main.every((r) => r.exitCode() === 0) ? 'Succeeded' : 'Failed';
      this.finish();
    } catch (e) {
      this.k.log(`${this.key}: worker failed: ${(e as Error).stack ?? e}`);
      this.phase = 'Failed';
      this.reason = 'ProcessKubeletError';
      this.message = (e as Error).message;
      this.finish();
    }
  }

  /** Terminal without deletion: stop sidecars, tear down the sandbox, report. */
  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    if (this.deadlineTimer) clearTimeout(this.deadlineTimer);
    void (async () => {
      await Promise.all([...this.init, ...this.main].map((r) => r.stop(this.grace())));
      this.teardown();
      this.statusChanged();
      if (this.deleting) await this.deleteFromApi();
    })();
  }

  private async deadlineExceeded(): Promise<void> {
    if (this.terminal || this.deleting) return;
    this.k.log(`${this.key}: activeDeadlineSeconds exceeded`);
    this.phase = 'Failed';
    this.reason = 'DeadlineExceeded';
    this.message = `Pod was active on the node longer than the specified deadline`;
    this.finish();
  }

  private grace(): number {
    return this.pod.metadata.deletionGracePeriodSeconds ?? this.pod.spec.terminationGracePeriodSeconds ?? 30;
  }

  /** A newer version of the pod object. */
  update(pod: any): void {
    this.pod = pod;
    if (pod.metadata.deletionTimestamp && !this.deleting) void this.terminate();
  }

  /** Graceful deletion: SIGTERM, grace, SIGKILL, final status, delete with grace 0. */
  terminate(): Promise<void> {
    if (this.terminating) return this.terminating;
    this.deleting = true;
    this.terminating = (async () => {
      if (this.deadlineTimer) clearTimeout(this.deadlineTimer);
      const grace = this.grace();
      this.k.log(`${this.key}: terminating (grace ${grace}s)`);
      await Promise.all(this.main.map((r) => r.stop(grace)));
      await Promise.all(this.init.map((r) => r.stop(Math.min(grace, 2))));
      if (!this.terminal) {
        const all = [...this.main, ...this.init].filter((r) => r.exitCode() !== undefined || r.restartCount > 0);
        this.phase = all.length && this.main.every((r) => r.exitCode() === 0) ? 'Succeeded' : 'Failed';
      }
      this.finished = true;
      this.teardown();
      await this.flushStatus();
      await this.deleteFromApi();
    })();
    return this.terminating;
  }

  private async deleteFromApi(): Promise<void> {
    if (this.gone) return;
    const { namespace, name } = this.pod.metadata;
    for (let i = 0; i < 10 && !this.gone; i++) {
      try {
        await this.k.rest.del(`/api/v1/namespaces/${namespace}/pods/${name}`, {
          apiVersion: 'v1',
          kind: 'DeleteOptions',
          gracePeriodSeconds: 0,
          preconditions: { uid: this.uid },
        });
        return;
      } catch (e) {
        if (isNotFound(e) || (e instanceof RestError && e.code === 409)) return;
        this.k.log(`${this.key}: delete failed: ${(e as Error).message}`);
        await sleep(500);
      }
    }
  }

  /** The pod disappeared from the API (force delete, or our grace-0 delete went through). */
  vanished(): void {
    this.gone = true;
    this.deleting = true;
    for (const r of [...this.init, ...this.main]) r.killSync();
    this.teardown();
    if (this.deadlineTimer) clearTimeout(this.deadlineTimer);
    if (this.statusTimer) clearTimeout(this.statusTimer);
  }

  killSync(): void {
    this.vanished();
  }

  // ---------------------------------------------------------------- sandbox
  private async setupSandbox(): Promise<void> {
    mkdirSync(this.podDir, { recursive: true });
    mkdirSync(this.logDir, { recursive: true });
    mkdirSync(join(this.podDir, 'home'), { recursive: true, mode: 0o777 });
    if (this.hostNetwork) {
      this.podIP = this.k.hostIP;
    } else {
      this.podIP = this.k.slot.allocateIP();
      this.netns = await this.k.slot.createPodNetns(this.podIP);
      if (this.tornDown) {
        // Deleted while the sandbox was being made.
        this.k.slot.deletePodNetns(this.netns);
        this.k.slot.releaseIP(this.podIP);
        return;
      }
      this.hostsFile = join(this.podDir, 'etc-hosts');
      writeFileSync(this.hostsFile, this.k.hostsFileFor(this.pod, this.podIP));
    }
    this.sandboxReady = true;
  }

  refreshHosts(): void {
    if (!this.hostsFile || this.tornDown) return;
    const text = this.k.hostsFileFor(this.pod, this.podIP);
    let cur = '';
    try { cur = readFileSync(this.hostsFile, 'utf8'); } catch { /* new */ }
    // Same inode (bind-mounted into the container): rewrite in place, never rename.
    if (cur !== text) writeFileSync(this.hostsFile, text);
  }

  private teardown(): void {
    if (this.tornDown) return;
    this.tornDown = true;
    this.sandboxReady = false;
    if (this.netns) {
      this.k.slot.deletePodNetns(this.netns);
      this.k.slot.releaseIP(this.podIP);
    }
  }

  // ---------------------------------------------------------------- env
  async getObject(kind: 'configmaps' | 'secrets', name: string, optional: boolean): Promise<any | undefined> {
    try {
      return await this.k.rest.get(`/api/v1/namespaces/${this.pod.metadata.namespace}/${kind}/${name}`);
    } catch (e) {
      // 404, or 403 while the Node authorizer's graph has not caught up with the new pod yet.
      if (optional && isNotFound(e)) return undefined;
      throw e;
    }
  }

  private static objectData(kind: 'configmaps' | 'secrets', o: any): Record<string, Buffer> {
    const out: Record<string, Buffer> = {};
    if (kind === 'secrets') for (const [k, v] of Object.entries(o.data ?? {})) out[k] = Buffer.from(v as string, 'base64');
    else {
      for (const [k, v] of Object.entries(o.data ?? {})) out[k] = Buffer.from(v as string, 'utf8');
      for (const [k, v] of Object.entries(o.binaryData ?? {})) out[k] = Buffer.from(v as string, 'base64');
    }
    return out;
  }

  async buildEnv(c: any, image: ImageSpec): Promise<Record<string, string>> {
    const port = String(this.k.apiPort);
    const env: Record<string, string> = {
      PATH: [...new Set([...image.binDirs, ...HOST_PATH])].join(':'),
      HOSTNAME: this.hostname,
      // Processes share the host filesystem: give each pod its own HOME instead of the host's.
      HOME: join(this.podDir, 'home'),
      KUBERNETES_SERVICE_HOST: this.k.hostIP,
      KUBERNETES_SERVICE_PORT: port,
      KUBERNETES_SERVICE_PORT_HTTPS: port,
      KUBERNETES_PORT: `tcp://${this.k.hostIP}:${port}`,
      ...(image.env ?? {}),
      // A real image sees only its own filesystem: HOME as a runtime sets it for a user without a passwd entry.
      ...(image.rootfs ? { HOME: '/' } : {}),
    };
    for (const src of c.envFrom ?? []) {
      const kind = src.configMapRef ? 'configmaps' : 'secrets';
      const ref = src.configMapRef ?? src.secretRef;
      const o = await this.getObject(kind, ref.name, !!ref.optional);
      if (!o) continue;
      for (const [k, v] of Object.entries(PodWorker.objectData(kind, o))) env[`${src.prefix ?? ''}${k}`] = v.toString('utf8');
    }
    for (const e of c.env ?? []) {
      if (e.valueFrom) {
        const vf = e.valueFrom;
        if (vf.fieldRef) env[e.name] = fieldValue(this.pod, vf.fieldRef.fieldPath, this.podIP, this.k.hostIP);
        else if (vf.resourceFieldRef) env[e.name] = resourceValue(this.pod, vf.resourceFieldRef, c.name, this.k.allocatable);
        else if (vf.configMapKeyRef || vf.secretKeyRef) {
          const kind = vf.configMapKeyRef ? 'configmaps' : 'secrets';
          const ref = vf.configMapKeyRef ?? vf.secretKeyRef;
          const o = await this.getObject(kind, ref.name, !!ref.optional);
          const v = o ? PodWorker.objectData(kind, o)[ref.key] : undefined;
          if (v === undefined) {
            if (ref.optional) continue;
            throw new Error(`couldn't find key ${ref.key} in ${kind === 'configmaps' ? 'ConfigMap' : 'Secret'} ${this.pod.metadata.namespace}/${ref.name}`);
          }
          env[e.name] = v.toString('utf8');
        } else throw new Error(`unsupported env valueFrom in ${e.name}`);
      } else {
        env[e.name] = expand(e.value ?? '', env);
      }
    }
    return env;
  }

  // ---------------------------------------------------------------- volumes
  private async tokenFor(audience: string | undefined, expirationSeconds: number | undefined): Promise<string> {
    const sa = this.pod.spec.serviceAccountName || 'default';
    const tr = await this.k.rest.post(`/api/v1/namespaces/${this.pod.metadata.namespace}/serviceaccounts/${sa}/token`, {
      apiVersion: 'authentication.k8s.io/v1',
      kind: 'TokenRequest',
      spec: {
        ...(audience ? { audiences: [audience] } : {}),
        expirationSeconds: expirationSeconds ?? 3600,
        boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: this.pod.metadata.name, uid: this.uid },
      },
    });
    return tr.status.token;
  }

  private static writeFile(dir: string, rel: string, data: Buffer | string, mode: number): void {
    const p = normalize(join(dir, rel));
    if (relative(dir, p).startsWith('..')) throw new Error(`volume item path ${rel} escapes the volume`);
    mkdirSync(dirname(p), { recursive: true });
    writeFileSync(p, data);
    chmodSync(p, mode);
  }

  private async writeKeyed(dir: string, kind: 'configmaps' | 'secrets', src: any, defaultMode: number): Promise<void> {
    const name = kind === 'secrets' ? src.secretName ?? src.name : src.name;
    const o = await this.getObject(kind, name, !!src.optional);
    if (!o) return;
    const data = PodWorker.objectData(kind, o);
    if (src.items?.length) {
      for (const it of src.items) {
        if (!(it.key in data)) {
          if (src.optional) continue;
          throw new Error(`key ${it.key} not found in ${kind === 'secrets' ? 'Secret' : 'ConfigMap'} ${name}`);
        }
        PodWorker.writeFile(dir, it.path, data[it.key]!, it.mode ?? defaultMode);
      }
    } else {
      for (const [k, v] of Object.entries(data)) PodWorker.writeFile(dir, k, v, defaultMode);
    }
  }

  private writeDownward(dir: string, items: any[], defaultMode: number): void {
    for (const it of items ?? []) {
      const v = it.fieldRef
        ? fieldValue(this.pod, it.fieldRef.fieldPath, this.podIP, this.k.hostIP)
        : resourceValue(this.pod, it.resourceFieldRef, undefined, this.k.allocatable);
      PodWorker.writeFile(dir, it.path, v, it.mode ?? defaultMode);
    }
  }

  private async pvcPath(claimName: string): Promise<string> {
    const ns = this.pod.metadata.namespace;
    const pvc = await this.k.rest.get(`/api/v1/namespaces/${ns}/persistentvolumeclaims/${claimName}`);
    // As the kubelet: a claim being deleted is not mounted (the pod waits; the claim stays held by it).
    if (pvc.metadata?.deletionTimestamp) throw new Error(`PVC ${ns}/${claimName} is being deleted`);
    if (pvc.status?.phase !== 'Bound' || !pvc.spec?.volumeName) throw new Error(`PVC ${ns}/${claimName} is not bound yet`);
    const pv = await this.k.rest.get(`/api/v1/persistentvolumes/${pvc.spec.volumeName}`);
    const path: string | undefined = pv.spec?.hostPath?.path ?? pv.spec?.local?.path;
    if (!path) throw new Error(`PV ${pv.metadata.name} is neither hostPath nor local: the process kubelet cannot mount it`);
    mkdirSync(path, { recursive: true });
    // Directories of the controller-manager's hostPath provisioner go when the harness goes (even on process.exit).
    if (path.startsWith('/tmp/hostpath_pv/')) this.k.slot.recordPath('rm-rf', path);
    return path;
  }

  private async prepareVolumes(): Promise<void> {
    const fsGroup: number | undefined = this.pod.spec.securityContext?.fsGroup;
    for (const v of this.pod.spec.volumes ?? []) {
      if (this.volumes.has(v.name)) continue;
      const dir = join(this.podDir, 'volumes', v.name);
      let src: VolumeMountSource = { path: dir, readOnly: false };
      if (v.emptyDir) {
        mkdirSync(dir, { recursive: true });
        chmodSync(dir, 0o777);
      } else if (v.configMap) {
        mkdirSync(dir, { recursive: true });
        await this.writeKeyed(dir, 'configmaps', v.configMap, v.configMap.defaultMode ?? 0o644);
        src.readOnly = true;
      } else if (v.secret) {
        mkdirSync(dir, { recursive: true });
        await this.writeKeyed(dir, 'secrets', v.secret, v.secret.defaultMode ?? 0o644);
        src.readOnly = true;
      } else if (v.downwardAPI) {
        mkdirSync(dir, { recursive: true });
        this.writeDownward(dir, v.downwardAPI.items, v.downwardAPI.defaultMode ?? 0o644);
        src.readOnly = true;
      } else if (v.projected) {
        mkdirSync(dir, { recursive: true });
        const mode = v.projected.defaultMode ?? 0o644;
        for (const s of v.projected.sources ?? []) {
          if (s.serviceAccountToken) {
            const t = await this.tokenFor(s.serviceAccountToken.audience, s.serviceAccountToken.expirationSeconds);
            PodWorker.writeFile(dir, s.serviceAccountToken.path, t, mode);
          } else if (s.configMap) await this.writeKeyed(dir, 'configmaps', s.configMap, mode);
          else if (s.secret) await this.writeKeyed(dir, 'secrets', s.secret, mode);
          else if (s.downwardAPI) this.writeDownward(dir, s.downwardAPI.items, mode);
          else throw new Error(`unsupported projected volume source in ${v.name}: ${Object.keys(s).join(',')}`);
        }
        src.readOnly = true;
      } else if (v.persistentVolumeClaim) {
        src = { path: await this.pvcPath(v.persistentVolumeClaim.claimName), readOnly: !!v.persistentVolumeClaim.readOnly };
      } else if (v.ephemeral) {
        src = { path: await this.pvcPath(`${this.pod.metadata.name}-${v.name}`), readOnly: false };
      } else if (v.hostPath) {
        const p: string = v.hostPath.path;
        const type = v.hostPath.type ?? '';
        if (type === 'DirectoryOrCreate') mkdirSync(p, { recursive: true });
        else if (type === 'FileOrCreate' && !existsSync(p)) { mkdirSync(dirname(p), { recursive: true }); writeFileSync(p, ''); }
        else if ((type === 'Directory' || type === 'File') && !existsSync(p)) throw new Error(`hostPath ${p} does not exist`);
        src = { path: p, readOnly: false };
      } else {
        throw new Error(`volume ${v.name}: unsupported volume type ${Object.keys(v).filter((k) => k !== 'name').join(',')}`);
      }
      if (fsGroup !== undefined && !v.hostPath) {
        try { chownRecursive(src.path, fsGroup); } catch { /* best effort */ }
      }
      this.volumes.set(v.name, src);
    }
  }

  /**
   * The shell run inside the container's fresh mount (and UTS) namespace before exec'ing the command:
   * bind mounts for volumeMounts (subPath, readOnly), the pod's /etc/hosts, hostname, workingDir, user.
   */
  mountScript(c: any, image: ImageSpec): string {
    const lines: string[] = ['set -e'];
    // The image's binaries at the paths the image would have them (scripts say /usr/local/bin/etcd):
    // a read-only overlay of the image's bin dirs over the host's, visible only in this mount namespace.
    const own = image.binDirs.filter((d) => !HOST_PATH.includes(d) && existsSync(d));
    if (own.length) {
      for (const target of image.overlayAt ?? ['/usr/local/bin', '/usr/bin']) {
        if (existsSync(target)) lines.push(`mount -t overlay overlay -o ${q(`lowerdir=${[...own, target].join(':')}`)} ${q(target)}`);
      }
    }
    const mounts = [...(c.volumeMounts ?? [])].sort((a: any, b: any) => a.mountPath.split('/').length - b.mountPath.split('/').length);
    const done: string[] = [];
    const under = (p: string) => done.some((m) => p === m || p.startsWith(m.endsWith(sep) ? m : m + sep));
    for (const m of mounts) {
      const vol = this.volumes.get(m.name);
      if (!vol) throw new Error(`volumeMount ${m.name}: no such volume`);
      let src = vol.path;
      if (m.subPath || m.subPathExpr) {
        const sub = m.subPathExpr ? expand(m.subPathExpr, {}) : m.subPath;
        src = normalize(join(vol.path, sub));
        if (relative(vol.path, src).startsWith('..') || isAbsolute(sub)) throw new Error(`subPath ${sub} escapes volume ${m.name}`);
        if (!existsSync(src)) mkdirSync(src, { recursive: true });
      }
      const target: string = normalize(m.mountPath);
      const isFile = existsSync(src) && !statIsDir(src);
      if (!under(target)) this.ensureHostTarget(target, isFile);
      lines.push(isFile ? `[ -e ${q(target)} ] || { mkdir -p ${q(dirname(target))}; : > ${q(target)}; }` : `mkdir -p ${q(target)}`);
      lines.push(`mount --bind ${q(src)} ${q(target)}`);
      if (m.readOnly || vol.readOnly) lines.push(`mount -o remount,bind,ro ${q(target)}`);
      done.push(target);
    }
    if (!this.hostNetwork && this.hostsFile && !done.includes('/etc/hosts')) {
      lines.push(`mount --bind ${q(this.hostsFile)} /etc/hosts`);
      lines.push(`hostname ${q(this.hostname)}`);
    }
    if (c.workingDir) {
      if (!under(c.workingDir)) this.ensureHostTarget(c.workingDir, false);
      lines.push(`mkdir -p ${q(c.workingDir)}`, `cd ${q(c.workingDir)}`);
    }
    const sc = { ...(this.pod.spec.securityContext ?? {}), ...(c.securityContext ?? {}) };
    if (sc.runAsUser !== undefined && sc.runAsUser !== 0) {
      const groups = [sc.fsGroup, ...(sc.supplementalGroups ?? [])].filter((g) => g !== undefined);
      lines.push(`exec setpriv --reuid=${Number(sc.runAsUser)} --regid=${Number(sc.runAsGroup ?? sc.runAsUser)} ${groups.length ? `--groups=${groups.join(',')}` : '--clear-groups'} -- "$@"`);
    } else {
      lines.push('exec "$@"');
    }
    return lines.join('\n');
  }

  /**
   * mountScript's counterpart for a real image (ImageSpec.rootfs): the container's root is a fresh
   * overlay of the image's rootfs (its writable layer lives in the pod's folder, new on every start),
   * the volumes are mounted inside it, and the command runs chrooted there (rootfs.ts).
   */
  rootfsMountScript(c: any, image: ImageSpec, container: string): string {
    const base = join(this.podDir, 'rootfs', container);
    rmSync(base, { recursive: true, force: true });
    for (const d of ['root', 'upper', 'work']) mkdirSync(join(base, d), { recursive: true });
    const mounts: RootfsMount[] = [];
    for (const m of c.volumeMounts ?? []) {
      const vol = this.volumes.get(m.name);
      if (!vol) throw new Error(`volumeMount ${m.name}: no such volume`);
      let src = vol.path;
      if (m.subPath) {
        src = normalize(join(vol.path, m.subPath));
        if (relative(vol.path, src).startsWith('..') || isAbsolute(m.subPath)) throw new Error(`subPath ${m.subPath} escapes volume ${m.name}`);
        if (!existsSync(src)) mkdirSync(src, { recursive: true });
      }
      mounts.push({ src, target: normalize(m.mountPath), isFile: existsSync(src) && !statIsDir(src), readOnly: !!(m.readOnly || vol.readOnly) });
    }
    mounts.sort((a, b) => a.target.split('/').length - b.target.split('/').length);
    const sc = { ...(this.pod.spec.securityContext ?? {}), ...(c.securityContext ?? {}) };
    const groups = [sc.fsGroup, ...(sc.supplementalGroups ?? [])].filter((g) => g !== undefined).map(Number);
    const user = sc.runAsUser !== undefined
      ? { uid: Number(sc.runAsUser), gid: Number(sc.runAsGroup ?? image.user?.gid ?? sc.runAsUser), groups }
      : image.user ? { ...image.user, gid: sc.runAsGroup !== undefined ? Number(sc.runAsGroup) : image.user.gid, groups } : undefined;
    return ['set -e', ...rootfsScript({
      image,
      root: join(base, 'root'),
      upper: join(base, 'upper'),
      work: join(base, 'work'),
      mounts,
      hostsFile: !this.hostNetwork ? this.hostsFile : undefined,
      hostname: !this.hostNetwork ? this.hostname : undefined,
      readOnlyRootFilesystem: !!sc.readOnlyRootFilesystem,
      user,
      workingDir: c.workingDir,
    })].join('\n');
  }

  /** Creates a missing mount point on the host (recorded for removal when the harness stops). */
  private ensureHostTarget(target: string, isFile: boolean): void {
    this.k.slot.recordPath('uses', target);
    if (existsSync(target)) return;
    const dir = isFile ? dirname(target) : target;
    const missing: string[] = [];
    for (let d = dir; d !== '/' && !existsSync(d); d = dirname(d)) missing.unshift(d);
    for (const d of missing) {
      try { mkdirSync(d); } catch { /* raced */ }
      this.k.slot.recordPath('rmdir-if-empty', d);
    }
    if (isFile) {
      try { writeFileSync(target, '', { flag: 'wx' }); } catch { /* raced */ }
      this.k.slot.recordPath('unlink-if-empty', target);
    }
  }

  // ---------------------------------------------------------------- status
  statusChanged(): void {
    if (this.gone) return;
    this.statusDirty = true;
    if (this.statusTimer) return;
    this.statusTimer = setTimeout(() => {
      this.statusTimer = undefined;
      void this.flushStatus();
    }, 30);
  }

  /**
   * Writes the status if it changed since the last write. Calls are serialized on one chain, and
   * every change sets statusDirty before scheduling a flush, so no change can be lost between runs.
   */
  flushStatus(): Promise<void> {
    const run = async () => {
      while (this.statusDirty && !this.gone) {
        this.statusDirty = false;
        const { namespace, name } = this.pod.metadata;
        try {
          const updated = await this.k.rest.mergePatch(`/api/v1/namespaces/${namespace}/pods/${name}/status`, {
            metadata: { uid: this.uid },
            status: this.buildStatus(),
          });
          if (updated?.metadata?.uid === this.uid) this.pod = { ...this.pod, status: updated.status };
        } catch (e) {
          if (isNotFound(e)) { this.gone = true; break; }
          this.k.log(`${this.key}: status update failed: ${(e as Error).message}`);
          this.statusDirty = true;
          await sleep(500);
        }
      }
    };
    this.statusChain = this.statusChain.then(run, run);
    return this.statusChain;
  }

  private condition(type: string, ok: boolean, reason?: string, message?: string): any {
    const status = ok ? 'True' : 'False';
    const prev = this.transitions.get(type) ?? (() => {
      const c = (this.pod.status?.conditions ?? []).find((x: any) => x.type === type);
      return c ? { status: c.status, time: c.lastTransitionTime } : undefined;
    })();
    const time = prev && prev.status === status ? prev.time : now();
    this.transitions.set(type, { status, time });
    const c: any = { type, status, lastProbeTime: null, lastTransitionTime: time };
    if (!ok && reason) c.reason = reason;
    if (!ok && message) c.message = message;
    return c;
  }

  buildStatus(): any {
    const terminal = this.terminal;
    const sidecars = this.init.filter((r) => r.kind === 'sidecar');
    const notReady = [...this.main, ...sidecars].filter((r) => !r.ready).map((r) => r.name);
    const containersReady = !terminal && this.initialized && notReady.length === 0;
    const gates = (this.pod.spec.readinessGates ?? []).map((g: any) => g.conditionType);
    const gatesOk = gates.every((t: string) => (this.pod.status?.conditions ?? []).some((c: any) => c.type === t && c.status === 'True'));
    const notInit = this.init.filter((r) => (r.kind === 'sidecar' ? !r.started : r.exitCode() !== 0)).map((r) => r.name);
    const mine = new Set(['PodReadyToStartContainers', 'Initialized', 'ContainersReady', 'Ready']);
    const foreign = (this.pod.status?.conditions ?? []).filter((c: any) => !mine.has(c.type));
    const conditions = [
      ...foreign,
      this.condition('PodReadyToStartContainers', this.sandboxReady),
      this.condition('Initialized', this.initialized || (terminal && notInit.length === 0), 'ContainersNotInitialized', `containers with incomplete status: [${notInit.join(' ')}]`),
      this.condition('ContainersReady', containersReady, terminal ? 'PodCompleted' : 'ContainersNotReady', terminal ? undefined : `containers with unready status: [${notReady.join(' ')}]`),
      this.condition('Ready', containersReady && gatesOk, terminal ? 'PodCompleted' : 'ContainersNotReady', terminal ? undefined : `containers with unready status: [${notReady.join(' ')}]`),
    ];
    let phase = this.phase;
    if (!terminal) phase = this.initialized ? 'Running' : 'Pending';
    this.phase = phase;
    const status: any = {
      phase,
      conditions,
      hostIP: this.k.hostIP,
      hostIPs: [{ ip: this.k.hostIP }],
      startTime: this.startTime,
      containerStatuses: this.main.map((r) => r.status()),
    };
    if (this.podIP) {
      status.podIP = this.podIP;
      status.podIPs = [{ ip: this.podIP }];
    }
    if (this.init.length) status.initContainerStatuses = this.init.map((r) => r.status());
    if (this.reason) status.reason = this.reason;
    if (this.message) status.message = this.message;
    return status;
  }
}

function statIsDir(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

function chownRecursive(p: string, gid: number): void {
  const st = statSync(p);
  chownSync(p, st.uid, gid);
  if (st.isDirectory()) {
    chmodSync(p, (st.mode & 0o7777) | 0o2070);
    for (const e of readdirSync(p)) chownRecursive(join(p, e), gid);
  } else {
    chmodSync(p, (st.mode & 0o7777) | 0o060);
  }
}
