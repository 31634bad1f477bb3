import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EtcdRecoverError } from '../errors.js';
import { executePlan, type RecoveryReport, type StepEvent } from '../recovery/executor.js';
import { Journal } from '../recovery/journal.js';
import { RecoveryLock } from '../lock.js';
import { newRecoveryId, planQuorumRestore } from '../recovery/plan.js';
import { computeRevisionBump } from '../recovery/revision-bump.js';
import { backupRestorePoint } from '../recovery/restore-point.js';
import { snapshotVersionEvidence } from '../recovery/restore-versions.js';
import { planVersions, refuseVersionMismatch } from '../recovery/version-check.js';
import { findEtcdBinaries } from '../binaries.js';
import { Catalog, isTrusted, type SnapshotRecord } from '../snapshot/catalog.js';
import { buildPointInTime, type PointInTimeBuild } from '../archive/point.js';
import { resolvePointInTime, type PointInTimeRequest } from '../recovery/restore-point.js';
import { MemoryObjectStore } from '../store/memory-object-store.js';
import { Sandbox } from './sandbox.js';
import { opensslAvailable } from './sandbox-pki.js';
import { SandboxTarget, localEtcdVersion } from './sandbox-target.js';

export interface DrillOptions {
  catalog: Catalog;
  /** Backup to drill; default the newest verified one. */
  name?: string;
  /**
   * Drill a point in time instead (`--to-revision` / `--to-time`): rebuilt from the archive in a
   * temporary etcd into a scratch catalog in memory (the source bucket is only read), then restored
   * as any backup.
   */
  pointInTime?: PointInTimeRequest;
  members?: number;
  /**
   * Run the throwaway cluster with TLS (https, client and peer certificate auth, a throwaway CA).
   * Default: when the backup was taken over TLS (its source member's endpoint is https://), as the
   * source cluster runs — unless the openssl CLI is missing, which is then said and the drill runs
   * plaintext (TLS does not change what a drill proves about the backup). `true` requires openssl.
   */
  tls?: boolean;
  /** Keep the throwaway cluster's folder (for inspection). Default false. */
  keep?: boolean;
  /** Refuse unless the local etcd is the release that took the backup (as `quorum --require-same-version`). */
  requireSameVersion?: boolean;
  healthyTimeoutMs?: number;
  signal?: AbortSignal;
  onStep?: (e: StepEvent) => void;
  onMessage?: (m: string) => void;
}

export interface DrillReport extends RecoveryReport {
  backup: string;
  /** A point-in-time drill: the chain and base it was rebuilt from, and how long the replay took. */
  pointInTime?: PointInTimeBuild['point'];
  snapshotRevision: number;
  snapshotKeys: number;
  /** Whether the throwaway cluster ran with TLS. */
  tls: boolean;
  dir?: string;
}

/**
 * Proves a backup restores: into a throwaway cluster of real etcd processes on
 * loopback, with exactly the steps and checks of a quorum restore (fetch and
 * verify natively, etcdutl restore of every member with a revision bump, start,
 * wait for a healthy quorum, revision floor, key count, identical HashKV on
 * every member). The journal lives in memory; the source bucket is only read.
 */
export async function drillRestore(o: DrillOptions): Promise<DrillReport> {
  let record: SnapshotRecord | undefined;
  let source = o.catalog;
  let built: PointInTimeBuild | undefined;
  if (o.pointInTime) {
    const { chosen } = await resolvePointInTime(o.catalog, o.pointInTime, o.signal);
    source = new Catalog(new MemoryObjectStore(), o.catalog.cluster, o.catalog.keys);
    o.onMessage?.(`rebuilding revision ${chosen.revision} from archive chain ${chosen.chain.record.chain} (backup ${chosen.chain.record.base.snapshot} + ${chosen.segments.length} segment(s))`);
    built = await buildPointInTime({ catalog: o.catalog, into: source, point: chosen, ...(o.signal ? { signal: o.signal } : {}), ...(o.onMessage ? { progress: o.onMessage } : {}) });
    record = built.record;
  } else if (o.name) record = await o.catalog.get(o.name, o.signal);
  else {
    // What `quorum --restore-point latest` would pick: verified and not suspect.
    record = (await o.catalog.list(o.signal)).snapshots.find(isTrusted);
    if (!record) throw new EtcdRecoverError('NO_RESTORE_POINT', `no trusted (verified, not suspect) backup of cluster ${o.catalog.cluster} to drill`, { hint: 'name one: backup drill NAME' });
  }
  // The same version check as a quorum restore, against the local etcd the drill runs, before any of it starts.
  const local = await localEtcdVersion(findEtcdBinaries().etcd, o.signal);
  const versions = planVersions({ snapshot: snapshotVersionEvidence(undefined, record)!, ...(local ? { target: local } : {}), requireSame: Boolean(o.requireSameVersion) });
  refuseVersionMismatch(versions, `backup ${record.name}`);
  let tls = o.tls ?? record.sourceMember.endpoint.startsWith('https:');
  if (tls && o.tls === undefined && !(await opensslAvailable())) {
    o.onMessage?.(`${record.name} was taken over TLS, but the openssl CLI is not on PATH: the throwaway cluster runs without TLS`);
    tls = false;
  }
  const dir = mkdtempSync(join(tmpdir(), 'etcd-recover-drill-'));
  const sb = await Sandbox.up({ dir, members: o.members ?? 3, cluster: o.catalog.cluster, store: false, startMembers: false, tls });
  const target = new SandboxTarget(sb);
  try {
    const now = new Date();
    const observation = await target.observe(o.signal);
    const plan = planQuorumRestore({
      id: newRecoveryId(now, 'dril'),
      cluster: o.catalog.cluster,
      target: `drill ${dir}`,
      now,
      members: target.members(),
      observation,
      restorePoint: backupRestorePoint(record, 'drill'),
      bump: computeRevisionBump({ snapshotRevision: record.revision, snapshotCreatedAt: new Date(record.createdAt), now, override: 1000 }),
      token: `drill-${now.getTime()}`,
      quiesce: false,
      versions,
    });
    for (const w of plan.warnings) o.onMessage?.(`warning: ${w}`);
    const scratch = new MemoryObjectStore();
    const journal = Journal.create(scratch, plan);
    journal.doc.facts['token'] = plan.token;
    const lock = new RecoveryLock(scratch, o.catalog.cluster);
    await lock.acquire(plan.id, 'drill', 'backup drill', o.signal);
    const report = await executePlan({
      target,
      catalog: source,
      journal,
      lock,
      ...(o.signal ? { signal: o.signal } : {}),
      ...(o.onStep ? { onStep: o.onStep } : {}),
      ...(o.onMessage ? { onMessage: o.onMessage } : {}),
      healthyTimeoutMs: o.healthyTimeoutMs ?? 60_000,
    });
    return { ...report, backup: record.name, ...(built ? { pointInTime: built.point } : {}), snapshotRevision: record.revision, snapshotKeys: record.totalKeys, tls, ...(o.keep ? { dir } : {}) };
  } finally {
    target.close();
    await sb.down({ purge: !o.keep });
    if (!o.keep) rmSync(dir, { recursive: true, force: true });
  }
}
