import { isSuspect, isTrusted, isVerified, type SnapshotRecord } from '../snapshot/catalog.js';

/**
 * What `status` finds wrong with a cluster, for machines: each finding has a stable code and the
 * exit code `status` ends with (docs/exit-codes.md, section "status"). Pure: no I/O.
 */
export type HealthCode = 'MEMBER_DOWN' | 'VERIFICATION_FAILED' | 'RPO_BREACHED';

/** Above every error exit code, and ordered by severity: when several hold, the highest wins. */
export const STATUS_EXIT_CODES: Record<HealthCode, number> = {
  RPO_BREACHED: 20,
  VERIFICATION_FAILED: 21,
  MEMBER_DOWN: 22,
};

export interface HealthFinding {
  code: HealthCode;
  exitCode: number;
  message: string;
}

export interface HealthReport {
  ok: boolean;
  /** The exit code of the most severe finding; 0 when there is none. */
  exitCode: number;
  /** Most severe first. */
  findings: HealthFinding[];
}

/** How a backup looks at a glance: a failed verification outranks suspect, suspect outranks verified. */
export type BackupResult = 'verified' | 'failed' | 'unverified' | 'suspect';

export function backupResult(r: SnapshotRecord): BackupResult {
  if (r.verification && !isVerified(r)) return 'failed';
  if (isSuspect(r)) return 'suspect';
  return isVerified(r) ? 'verified' : 'unverified';
}

/** The backup the RPO is measured by: the newest trusted one, else the newest verified one. */
export function rpoBackup(snapshots: readonly SnapshotRecord[]): SnapshotRecord | undefined {
  return snapshots.find(isTrusted) ?? snapshots.find(isVerified);
}

export interface HealthInput {
  members: readonly { name: string; healthy: boolean; detail?: string | undefined }[];
  /** Newest first; absent when the catalog could not be read (then `backupsError` says why). */
  snapshots?: readonly SnapshotRecord[] | undefined;
  backupsError?: string | undefined;
  rpoMs: number;
  /** The RPO as the operator wrote it (e.g. "1h"), for messages. */
  rpo: string;
  now: Date;
  /**
   * Continuous archiving, when the cluster has it (archive/lag.ts): while the archiver is current
   * (not stale, no alarm) and behind by less than the RPO, the RPO is met by the archive, whatever
   * the age of the newest backup.
   */
  archive?: { lagSeconds: number; stale: boolean; alarm?: string | undefined } | undefined;
}

export function assessHealth(input: HealthInput): HealthReport {
  const findings: HealthFinding[] = [];
  const add = (code: HealthCode, message: string) => findings.push({ code, exitCode: STATUS_EXIT_CODES[code], message });

  const down = input.members.filter((m) => !m.healthy);
  if (down.length > 1 && down.length === input.members.length) add('MEMBER_DOWN', `all ${down.length} members are down or unreachable`);
  else for (const m of down) add('MEMBER_DOWN', `member ${m.name} is down${m.detail ? `: ${m.detail}` : ''}`);

  if (input.snapshots) {
    // The newest backup that has a verification result at all: did that verification pass?
    const checked = input.snapshots.find((s) => s.verification);
    if (checked && !isVerified(checked)) {
      const v = checked.verification!;
      const why = v.ok ? 'its sha256 differs from the record' : v.defects.length ? v.defects.join('; ') : 'failed';
      add('VERIFICATION_FAILED', `newest verification (backup ${checked.name}, by ${v.by} at ${v.at}) failed: ${why}`);
    }
    const b = rpoBackup(input.snapshots);
    const a = input.archive;
    const archiveMeets = a !== undefined && !a.stale && !a.alarm && a.lagSeconds * 1000 <= input.rpoMs;
    const archiveNote = a === undefined ? '' : a.stale ? '; the archiver has not reported for a while (is it running?)' : a.alarm ? `; the archive cannot keep up: ${a.alarm}` : `; the archive is ${Math.round(a.lagSeconds)} s behind`;
    if (archiveMeets) {
      /* the archive holds every write but the last lagSeconds: RPO met */
    } else if (!b) add('RPO_BREACHED', `no verified backup: RPO ${input.rpo} not met${archiveNote}`);
    else {
      const ageMs = input.now.getTime() - Date.parse(b.createdAt);
      if (ageMs > input.rpoMs) add('RPO_BREACHED', `newest verified backup ${b.name} is ${Math.round(ageMs / 1000)}s old: RPO ${input.rpo} not met${archiveNote}`);
    }
  } else add('RPO_BREACHED', `backups could not be read, RPO ${input.rpo} not proven: ${input.backupsError ?? 'unknown error'}`);

  findings.sort((a, b) => b.exitCode - a.exitCode);
  return { ok: findings.length === 0, exitCode: findings[0]?.exitCode ?? 0, findings };
}
