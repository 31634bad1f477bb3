import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect } from 'node:net';
import { constants as osConstants } from 'node:os';
import { dirname, join } from 'node:path';
import { imageSpecFor, resolveCommand, type ImageSpec } from './images.js';
import { expand } from './container-env.js';
import { isoNow as now, sleep } from './util.js';
import type { Slot } from './net.js';
import type { Rest } from './rest.js';

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

/** What a container runner needs from the pod it runs in (the PodWorker). */
export interface PodHost {
  readonly k: KubeletContext;
  readonly pod: any;
  readonly uid: string;
  readonly key: string;
  readonly logDir: string;
  readonly podIP: string;
  readonly netns: string;
  readonly hostNetwork: boolean;
  readonly deleting: boolean;
  statusChanged(): void;
  buildEnv(c: any, image: ImageSpec): Promise<Record<string, string>>;
  mountScript(c: any, image: ImageSpec): string;
  rootfsMountScript(c: any, image: ImageSpec, container: string): string;
}

export type CState =
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
export class ContainerRunner {
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

  constructor(readonly w: PodHost, readonly spec: any, readonly kind: 'init' | 'sidecar' | 'main') {
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
