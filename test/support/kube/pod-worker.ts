import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ImageSpec } from './images.js';
import { isNotFound, RestError } from './rest.js';
import { isoNow as now, sleep } from './util.js';
import { ContainerRunner, type KubeletContext } from './container-runner.js';
import { PodInputs } from './pod-inputs.js';

export type { KubeletContext } from './container-runner.js';

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
  private readonly inputs: PodInputs = new PodInputs(this);
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
          await this.inputs.prepareVolumes();
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

  // ---------------------------------------------------------------- inputs (PodInputs), for the runners
  buildEnv(c: any, image: ImageSpec): Promise<Record<string, string>> {
    return this.inputs.buildEnv(c, image);
  }

  mountScript(c: any, image: ImageSpec): string {
    return this.inputs.mountScript(c, image);
  }

  rootfsMountScript(c: any, image: ImageSpec, container: string): string {
    return this.inputs.rootfsMountScript(c, image, container);
  }

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
