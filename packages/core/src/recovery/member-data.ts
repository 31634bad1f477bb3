import { execFile } from 'node:child_process';
import { existsSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { EtcdRecoverError } from '../errors.js';
import { layout } from '../layout.js';
import type { Catalog, SnapshotRecord } from '../snapshot/catalog.js';
import { fetchVerifiedSnapshot } from '../snapshot/fetch-verified.js';
import type { MemberSpec } from './observation.js';

const run = promisify(execFile);

/** Written into a restored data dir: which recovery produced it (so a rerun can tell the step is done). */
export const RESTORED_MARKER = 'etcd-recover-restored.json';

/**
 * Where a member's old data goes: beside the data dir, named after the recovery (never deleted; the
 * rollback runbook moves it back). On Kubernetes this is inside the member's own volume.
 */
export function asidePath(dataDir: string, recoveryId: string): string {
  return `${dataDir}.before-${recoveryId}`;
}

/** The recovery that wrote this data dir, if one did. */
export function restoredBy(dataDir: string): string | undefined {
  const f = join(dataDir, RESTORED_MARKER);
  if (!existsSync(f)) return undefined;
  try {
    return (JSON.parse(readFileSync(f, 'utf8')) as { recoveryId: string }).recoveryId;
  } catch {
    return undefined;
  }
}

/** Moves a member's data aside (rename, never delete). A missing data dir has nothing to move. */
export function setAsideData(dataDir: string, recoveryId: string): { moved: boolean; aside: string } {
  const aside = asidePath(dataDir, recoveryId);
  if (!existsSync(dataDir) || restoredBy(dataDir) === recoveryId) return { moved: false, aside };
  if (existsSync(aside)) {
    throw new EtcdRecoverError('PRECONDITION', `${aside} already exists and so does ${dataDir}: refusing to overwrite either`, {
      hint: 'inspect both folders; move one away by hand, then rerun',
    });
  }
  renameSync(dataDir, aside);
  return { moved: true, aside };
}


export interface EtcdutlRestore {
  etcdutl: string;
  snapshotFile: string;
  record: SnapshotRecord;
  recoveryId: string;
  name: string;
  peerURL: string;
  dataDir: string;
  members: MemberSpec[];
  token: string;
  bump: number;
  signal?: AbortSignal;
}

/**
 * `etcdutl snapshot restore` into a staging dir beside the data dir (new cluster token, the target's
 * topology, revision bumped and marked compacted), a marker naming the recovery, then one rename
 * into place: a crash never leaves a half-written member.
 */
export async function restoreDataDir(p: EtcdutlRestore): Promise<void> {
  if (restoredBy(p.dataDir) === p.recoveryId) return;
  if (existsSync(p.dataDir)) {
    throw new EtcdRecoverError('PRECONDITION', `${p.dataDir} exists and was not set aside: refusing to overwrite it`);
  }
  if (!existsSync(p.snapshotFile)) throw new EtcdRecoverError('PRECONDITION', `the staged snapshot ${p.snapshotFile} is missing`, { hint: 'rerun: the snapshot is fetched again' });
  const staging = `${p.dataDir}.restoring-${p.recoveryId}`;
  rmSync(staging, { recursive: true, force: true });
  const args = [
    'snapshot', 'restore', p.snapshotFile,
    '--name', p.name,
    '--initial-cluster', p.members.map((x) => `${x.name}=${x.peerURL}`).join(','),
    '--initial-cluster-token', p.token,
    '--initial-advertise-peer-urls', p.peerURL,
    '--data-dir', staging,
    '--bump-revision', String(p.bump),
    '--mark-compacted',
    // A raw bbolt copy (imported; no sha256 trailer) is refused by etcdutl without this; its bytes
    // were proven against the record's sha256 by fetchVerifiedSnapshot before.
    ...(p.record.hasTrailer === false ? ['--skip-hash-check'] : []),
  ];
  try {
    await run(p.etcdutl, args, { maxBuffer: 16 * 1024 * 1024, ...(p.signal ? { signal: p.signal } : {}) });
  } catch (e) {
    rmSync(staging, { recursive: true, force: true });
    const stderr = String((e as { stderr?: string }).stderr ?? (e as Error).message).trim().split('\n').slice(-3).join(' ');
    throw new EtcdRecoverError('STEP_FAILED', `etcdutl snapshot restore for ${p.name} failed: ${stderr}`, { cause: e });
  }
  writeFileSync(
    join(staging, RESTORED_MARKER),
    JSON.stringify({ recoveryId: p.recoveryId, snapshot: p.record.name, revision: p.record.revision, bump: p.bump, at: new Date().toISOString() }),
  );
  renameSync(staging, p.dataDir);
}

export interface VolumeStep {
  phase: 'set-aside' | 'restore';
  catalog: Catalog;
  recoveryId: string;
  member: MemberSpec;
  dataDir: string;
  members: MemberSpec[];
  /** For restore: the backup, the new cluster token and the revision bump. */
  snapshot?: string;
  token?: string;
  bump?: number;
  /** Path of etcdutl (for restore). */
  etcdutl?: string;
  signal?: AbortSignal;
  progress: (m: string) => void;
}

/** Where the in-cluster Job of a recovery step reports that its effect holds. */
export function volumeStepKey(cluster: string, recoveryId: string, member: string, phase: VolumeStep['phase']): string {
  return layout.recoveryWork(cluster, recoveryId, `${member}.${phase}`);
}

/**
 * One member's part of a restore, run where its data lives (on Kubernetes: a Job that mounts the
 * member's PVC): set the old data aside, or fetch the restore point from the bucket, verify it and
 * restore it. Idempotent: the volume tells what is done; the bucket is told last.
 */
export async function runVolumeStep(s: VolumeStep): Promise<Record<string, unknown>> {
  let result: Record<string, unknown>;
  if (s.phase === 'set-aside') {
    const { moved, aside } = setAsideData(s.dataDir, s.recoveryId);
    s.progress(moved ? `${s.member.name}: old data moved to ${aside}` : `${s.member.name}: no old data to move (${existsSync(aside) ? 'already aside' : 'volume empty'})`);
    result = { moved, aside, hadData: moved || existsSync(aside) };
  } else {
    if (!s.snapshot || !s.token || s.bump === undefined || !s.etcdutl) throw new EtcdRecoverError('USAGE', 'restore needs the snapshot, token, bump and etcdutl');
    const record = await s.catalog.get(s.snapshot, s.signal);
    if (restoredBy(s.dataDir) !== s.recoveryId) {
      const file = join(dirname(s.dataDir), `snapshot-${s.recoveryId}.db`);
      const got = await fetchVerifiedSnapshot(s.catalog, record, file, { ...(s.signal ? { signal: s.signal } : {}), progress: s.progress });
      s.progress(`${s.member.name}: fetched ${record.name} (${got.bytes} bytes) and verified it: revision ${got.revision}, ${got.totalKeys} keys`);
      await restoreDataDir({
        etcdutl: s.etcdutl,
        snapshotFile: file,
        record,
        recoveryId: s.recoveryId,
        name: s.member.name,
        peerURL: s.member.peerURL,
        dataDir: s.dataDir,
        members: s.members,
        token: s.token,
        bump: s.bump,
        ...(s.signal ? { signal: s.signal } : {}),
      });
      rmSync(file, { force: true });
    }
    s.progress(`${s.member.name}: restored ${record.name} (revision ${record.revision} + ${s.bump})`);
    result = { snapshot: record.name, revision: record.revision, bump: s.bump };
  }
  const done = { recoveryId: s.recoveryId, member: s.member.name, phase: s.phase, at: new Date().toISOString(), ...result };
  await s.catalog.store.put(volumeStepKey(s.catalog.cluster, s.recoveryId, s.member.name, s.phase), JSON.stringify(done, null, 2), { contentType: 'application/json', ...(s.signal ? { signal: s.signal } : {}) });
  return done;
}
