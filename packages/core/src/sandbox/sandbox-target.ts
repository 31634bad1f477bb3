import { execFile } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { once } from 'node:events';
import { promisify } from 'node:util';
import { EtcdRecoverError } from '../errors.js';
import { Etcd3Gateway } from '../etcd/etcd3-gateway.js';
import type { EtcdGateway } from '../etcd/etcd-gateway.js';
import { layout } from '../layout.js';
import { observeMembers, type ClusterObservation, type MemberSpec } from '../recovery/observation.js';
import type { RecoveryTarget, RestoreParams, StepContext } from '../recovery/target.js';
import type { SnapshotRecord } from '../snapshot/catalog.js';
import { SnapshotVerifier, describeDefects } from '../snapshot/verifier/index.js';
import { isAlive } from '../processes.js';
import type { Sandbox } from './sandbox.js';

const run = promisify(execFile);
const MARKER = 'etcd-recover-restored.json';

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

  constructor(readonly sandbox: Sandbox) {}

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
    this.gw ??= new Etcd3Gateway({ endpoints: this.sandbox.endpoints(), timeoutMs: 2_000 });
    return this.gw;
  }

  close(): void {
    this.gw?.close();
    this.gw = undefined;
  }

  async observe(signal?: AbortSignal): Promise<ClusterObservation> {
    return observeMembers(
      this.members(),
      this.gateway(),
      async (spec) => {
        const m = this.sandbox.member(spec.name);
        return { running: isAlive(m.pid), hasData: existsSync(join(m.dataDir, 'member')) };
      },
      signal,
    );
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
    mkdirSync(dir, { recursive: true });
    const part = this.stagedPath(ctx.recoveryId) + '.part';
    const out = createWriteStream(part);
    const verifier = new SnapshotVerifier({ requireTrailer: true });
    let bytes = 0;
    try {
      for await (const chunk of ctx.catalog.store.get(layout.snapshotObject(ctx.catalog.cluster, record.name), {
        ...(ctx.signal ? { signal: ctx.signal } : {}),
        onRetry: (r) => ctx.progress(`object store hiccup at byte ${r.offset} (${r.error}); resuming, attempt ${r.attempt}`),
      })) {
        verifier.update(chunk);
        bytes += chunk.length;
        if (!out.write(chunk)) await once(out, 'drain');
      }
    } finally {
      out.end();
      await once(out, 'close');
    }
    const report = verifier.finish();
    if (!report.ok) {
      rmSync(part, { force: true });
      throw new EtcdRecoverError('SNAPSHOT_CORRUPT', `restore point ${record.name} is corrupt: ${describeDefects(report)}`, {
        hint: 'nothing was changed; choose another backup with --snapshot',
      });
    }
    if (report.sha256 !== record.sha256) {
      rmSync(part, { force: true });
      throw new EtcdRecoverError('SNAPSHOT_CORRUPT', `restore point ${record.name} does not match its catalog record (sha256 ${report.sha256.slice(0, 12)}… vs ${record.sha256.slice(0, 12)}…)`, {
        hint: 'nothing was changed; choose another backup with --snapshot',
      });
    }
    renameSync(part, this.stagedPath(ctx.recoveryId));
    writeFileSync(join(dir, 'snapshot.verified.json'), JSON.stringify({ name: record.name, sha256: record.sha256, revision: report.revision, totalKeys: report.totalKeys, bytes }));
    ctx.progress(`fetched ${record.name} (${bytes} bytes) and verified it: revision ${report.revision}, ${report.totalKeys} keys`);
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

  asideLocation(name: string, recoveryId: string): string {
    return `${this.sandbox.member(name).dataDir}.before-${recoveryId}`;
  }

  private restoredBy(name: string): string | undefined {
    const f = join(this.sandbox.member(name).dataDir, MARKER);
    if (!existsSync(f)) return undefined;
    return (JSON.parse(readFileSync(f, 'utf8')) as { recoveryId: string }).recoveryId;
  }

  async isSetAside(name: string, ctx: StepContext): Promise<boolean> {
    const data = this.sandbox.member(name).dataDir;
    return !existsSync(data) || existsSync(this.asideLocation(name, ctx.recoveryId)) || this.restoredBy(name) === ctx.recoveryId;
  }

  async setAside(name: string, ctx: StepContext): Promise<void> {
    if (this.sandbox.isRunning(name)) throw new EtcdRecoverError('PRECONDITION', `refusing to move ${name}'s data while it runs`);
    const data = this.sandbox.member(name).dataDir;
    const aside = this.asideLocation(name, ctx.recoveryId);
    if (existsSync(aside)) {
      throw new EtcdRecoverError('PRECONDITION', `${aside} already exists and so does ${data}: refusing to overwrite either`, {
        hint: 'inspect both folders; move one away by hand, then rerun',
      });
    }
    renameSync(data, aside);
    ctx.progress(`${name}: old data moved to ${aside}`);
  }

  async isRestored(name: string, ctx: StepContext): Promise<boolean> {
    return this.restoredBy(name) === ctx.recoveryId;
  }

  async restoreMember(name: string, record: SnapshotRecord, p: RestoreParams, ctx: StepContext): Promise<void> {
    const m = this.sandbox.member(name);
    if (existsSync(m.dataDir)) {
      throw new EtcdRecoverError('PRECONDITION', `${m.dataDir} exists and was not set aside: refusing to overwrite it`);
    }
    const staged = this.stagedPath(ctx.recoveryId);
    if (!existsSync(staged)) throw new EtcdRecoverError('PRECONDITION', `the staged snapshot ${staged} is missing`, { hint: 'rerun: the stage step fetches it again' });
    const staging = `${m.dataDir}.restoring-${ctx.recoveryId}`;
    rmSync(staging, { recursive: true, force: true });
    const args = [
      'snapshot', 'restore', staged,
      '--name', name,
      '--initial-cluster', p.members.map((x) => `${x.name}=${x.peerURL}`).join(','),
      '--initial-cluster-token', p.token,
      '--initial-advertise-peer-urls', m.peerURL,
      '--data-dir', staging,
      '--bump-revision', String(p.bump),
      '--mark-compacted',
    ];
    try {
      await run(this.sandbox.state.binaries.etcdutl, args, { maxBuffer: 16 * 1024 * 1024, ...(ctx.signal ? { signal: ctx.signal } : {}) });
    } catch (e) {
      rmSync(staging, { recursive: true, force: true });
      const stderr = String((e as { stderr?: string }).stderr ?? (e as Error).message).trim().split('\n').slice(-3).join(' ');
      throw new EtcdRecoverError('STEP_FAILED', `etcdutl snapshot restore for ${name} failed: ${stderr}`, { cause: e });
    }
    writeFileSync(join(staging, MARKER), JSON.stringify({ recoveryId: ctx.recoveryId, snapshot: record.name, revision: record.revision, bump: p.bump, at: new Date().toISOString() }));
    renameSync(staging, m.dataDir);
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
