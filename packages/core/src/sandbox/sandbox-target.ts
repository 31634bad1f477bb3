import { execFile } from 'node:child_process';
import { existsSync, readFileSync, statSync, statfsSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { EtcdRecoverError } from '../errors.js';
import { Etcd3Gateway } from '../etcd/etcd3-gateway.js';
import type { EtcdConnection, EtcdGateway } from '../etcd/etcd-gateway.js';
import { summarize, type ClusterObservation, type MemberObservation, type MemberSpec } from '../recovery/observation.js';
import type { RecoveryTarget, RestoreParams, StepContext, TargetEtcdVersion } from '../recovery/target.js';
import type { SnapshotRecord } from '../snapshot/catalog.js';
import { asidePath, restoreDataDir, restoredBy, setAsideData } from '../recovery/member-data.js';
import { fetchVerifiedSnapshot } from '../snapshot/fetch-verified.js';
import { isAlive } from '../processes.js';
import { addNeeds, refuseUnlessRoom, restoreSpaceNeed, type VolumeSpace } from '../recovery/space.js';
import type { Sandbox } from './sandbox.js';

/**
 * What `<binary> --version` prints as "etcd Version: 3.6.16"; undefined when the binary cannot be run
 * or prints no version (an unknown version never blocks a restore by itself).
 */
export function localEtcdVersion(binary: string, signal?: AbortSignal): Promise<TargetEtcdVersion | undefined> {
  return new Promise((resolve) => {
    execFile(binary, ['--version'], { timeout: 10_000, ...(signal ? { signal } : {}) }, (err, stdout) => {
      const m = err ? null : /etcd Version:\s*(\S+)/.exec(String(stdout));
      resolve(m ? { version: m[1]!, source: `\`${binary} --version\`` } : undefined);
    });
  });
}

/**
 * The sandbox as a recovery target: members are processes, their data are
 * folders. Old data is renamed to `<data>.before-<recovery id>` (never
 * deleted); new data is restored into `<data>.restoring-<id>` and renamed into
 * place with a marker naming the recovery, so each step can tell whether its
 * effect holds.
 */
export class SandboxTarget implements RecoveryTarget {
  readonly kind = 'sandbox' as const;
  readonly quiesces = false;
  private gw: EtcdGateway | undefined;
  private version: Promise<TargetEtcdVersion | undefined> | undefined;

  /** `connection`: how to reach the members; default the sandbox's own (its client TLS included). */
  constructor(readonly sandbox: Sandbox, private readonly connection?: EtcdConnection) {}

  get cluster(): string {
    return this.sandbox.state.cluster;
  }

  describe(): string {
    return `sandbox ${this.sandbox.dir}`;
  }

  members(): MemberSpec[] {
    return this.sandbox.state.members.map((m) => ({ name: m.name, peerURL: m.peerURL, clientURL: m.clientURL }));
  }

  gateway(): EtcdGateway {
    this.gw ??= new Etcd3Gateway({ ...(this.connection ?? this.sandbox.etcdConnection()), timeoutMs: 2_000 });
    return this.gw;
  }

  close(): void {
    this.gw?.close();
    this.gw = undefined;
  }

  /**
   * Every member's status, in parallel (as observeMembers). A member that fails on TLS is not a lost
   * member: when no quorum answers and any member failed so, the TLS error is thrown — a recovery
   * must never plan around members that only our certificates could not reach.
   */
  async observe(signal?: AbortSignal): Promise<ClusterObservation> {
    const gw = this.gateway();
    const tlsFailures: (EtcdRecoverError | undefined)[] = [];
    const members = await Promise.all(
      this.members().map(async (spec, i): Promise<MemberObservation> => {
        const m = this.sandbox.member(spec.name);
        const facts = { running: isAlive(m.pid), hasData: existsSync(join(m.dataDir, 'member')) };
        try {
          return { ...spec, ...facts, running: true, status: await gw.status(spec.clientURL, signal) };
        } catch (e) {
          if (e instanceof EtcdRecoverError && e.code === 'ETCD_TLS') tlsFailures[i] = e;
          return { ...spec, ...facts, error: (e as Error).message };
        }
      }),
    );
    const o = summarize(members);
    const tls = tlsFailures.find(Boolean);
    if (!o.quorum && tls) throw tls;
    return o;
  }

  private recoveryDir(id: string): string {
    return join(this.sandbox.dir, 'recoveries', id);
  }

  private stagedPath(id: string): string {
    return join(this.recoveryDir(id), 'snapshot.db');
  }

  async isStaged(record: SnapshotRecord, ctx: StepContext): Promise<boolean> {
    const f = join(this.recoveryDir(ctx.recoveryId), 'snapshot.verified.json');
    if (!existsSync(f) || !existsSync(this.stagedPath(ctx.recoveryId))) return false;
    const v = JSON.parse(readFileSync(f, 'utf8')) as { name: string; sha256: string };
    return v.name === record.name && v.sha256 === record.sha256;
  }

  /** Downloads the snapshot (resuming on transient errors) and verifies it in the same pass. */
  async stageSnapshot(record: SnapshotRecord, ctx: StepContext): Promise<void> {
    const dir = this.recoveryDir(ctx.recoveryId);
    const r = await fetchVerifiedSnapshot(ctx.catalog, record, this.stagedPath(ctx.recoveryId), { ...(ctx.signal ? { signal: ctx.signal } : {}), progress: ctx.progress });
    writeFileSync(join(dir, 'snapshot.verified.json'), JSON.stringify({ name: record.name, sha256: record.sha256, ...r }));
    ctx.progress(`fetched ${record.name} (${r.bytes} bytes) and verified it: revision ${r.revision}, ${r.totalKeys} keys`);
  }

  /**
   * Each member restores beside its data dir (`<data>.restoring-<id>`, then renamed in): the
   * filesystem of the data dir's folder must hold the restored DB and its new WAL. The old data is
   * renamed in place (it stays, needing nothing new); the staged snapshot is already on disk (the plan
   * stages it before the space check). Members sharing a filesystem add up.
   */
  async checkSpace(names: string[], record: SnapshotRecord, ctx: StepContext): Promise<void> {
    const need = restoreSpaceNeed(record, { snapshotInVolume: false });
    const byDevice = new Map<number, VolumeSpace>();
    for (const name of names) {
      const dir = dirname(this.sandbox.member(name).dataDir);
      const dev = statSync(dir).dev;
      const v = byDevice.get(dev);
      if (!v) {
        const s = statfsSync(dir);
        byDevice.set(dev, { volume: `filesystem of ${dir}`, members: [name], freeBytes: s.bavail * s.bsize, need });
      } else {
        v.members.push(name);
        v.volume += `, ${dir}`;
        v.need = addNeeds(v.need, need);
      }
    }
    refuseUnlessRoom([...byDevice.values()], ctx.progress);
  }

  async quiesce(): Promise<void> {}
  async isQuiesced(): Promise<boolean> {
    return true;
  }
  async resume(): Promise<void> {}
  async isResumed(): Promise<boolean> {
    return true;
  }

  async stopMembers(names: string[], ctx: StepContext): Promise<void> {
    await Promise.all(names.map((n) => this.sandbox.stopMember(n)));
    ctx.progress(`stopped ${names.join(', ')}`);
  }

  async areStopped(names: string[]): Promise<boolean> {
    return names.every((n) => !this.sandbox.isRunning(n));
  }

  diagnose(name: string): string | undefined {
    if (this.sandbox.isRunning(name)) return undefined;
    try {
      const lines = readFileSync(this.sandbox.member(name).logFile, 'utf8').trim().split('\n').slice(-20).reverse();
      for (const l of lines) {
        try {
          const j = JSON.parse(l) as { level?: string; msg?: string; error?: string };
          if (j.level === 'fatal' || j.level === 'panic' || j.level === 'error') return `${j.msg}${j.error ? `: ${j.error}` : ''} (log ${this.sandbox.member(name).logFile})`;
        } catch {
          /* not JSON */
        }
      }
    } catch {
      /* no log */
    }
    return undefined;
  }

  /** The local etcd binary the members are started with (asked once). */
  etcdVersion(signal?: AbortSignal): Promise<TargetEtcdVersion | undefined> {
    this.version ??= localEtcdVersion(this.sandbox.state.binaries.etcd, signal);
    return this.version;
  }

  asideLocation(name: string, recoveryId: string): string {
    return asidePath(this.sandbox.member(name).dataDir, recoveryId);
  }

  async isSetAside(name: string, ctx: StepContext): Promise<boolean> {
    const data = this.sandbox.member(name).dataDir;
    return !existsSync(data) || existsSync(this.asideLocation(name, ctx.recoveryId)) || restoredBy(data) === ctx.recoveryId;
  }

  async setAside(name: string, ctx: StepContext): Promise<void> {
    if (this.sandbox.isRunning(name)) throw new EtcdRecoverError('PRECONDITION', `refusing to move ${name}'s data while it runs`);
    const { moved, aside } = setAsideData(this.sandbox.member(name).dataDir, ctx.recoveryId);
    if (moved) ctx.progress(`${name}: old data moved to ${aside}`);
  }

  async isRestored(name: string, ctx: StepContext): Promise<boolean> {
    return restoredBy(this.sandbox.member(name).dataDir) === ctx.recoveryId;
  }

  async restoreMember(name: string, record: SnapshotRecord, p: RestoreParams, ctx: StepContext): Promise<void> {
    const m = this.sandbox.member(name);
    await restoreDataDir({
      etcdutl: this.sandbox.state.binaries.etcdutl,
      snapshotFile: this.stagedPath(ctx.recoveryId),
      record,
      recoveryId: ctx.recoveryId,
      name,
      peerURL: m.peerURL,
      dataDir: m.dataDir,
      members: p.members,
      token: p.token,
      bump: p.bump,
      ...(ctx.signal ? { signal: ctx.signal } : {}),
    });
    ctx.progress(`${name}: restored ${record.name} (revision ${record.revision} + ${p.bump})`);
  }

  async startMembers(names: string[], mode: { initialState: 'new' | 'existing'; initialCluster?: string }, ctx: StepContext): Promise<void> {
    if (mode.initialState === 'new') {
      // A restored cluster is a new cluster: keep the sandbox's token in line with the restored data.
      const token = (ctx.facts['token'] as string | undefined) ?? undefined;
      if (token) {
        this.sandbox.state.token = token;
        this.sandbox.save();
      }
    }
    for (const n of names) this.sandbox.startMember(n, mode.initialState, mode.initialCluster);
    ctx.progress(`started ${names.join(', ')}`);
  }

  async areStarted(names: string[]): Promise<boolean> {
    return names.every((n) => this.sandbox.isRunning(n));
  }
}
