import { EtcdRecoverError } from '../errors.js';

/**
 * Whether the etcd that will run the restored data can read a snapshot, judged
 * from versions alone (pure). etcd cannot downgrade a data dir: a snapshot
 * written by a newer minor than the target runs is refused before anything is
 * stopped; a different patch level (or an older minor, which etcd upgrades)
 * warns; `requireSame` enforces OKD's rule that a backup is restored by the
 * same etcd release that took it (any difference in major.minor.patch, or an
 * unknown version on either side, refuses).
 */

export interface EtcdVersion {
  major: number;
  minor: number;
  /** Undefined when the text names no patch level ("3.6"). */
  patch?: number;
  /** Pre-release, e.g. "alpha.1" for "3.7.0-alpha.1". */
  pre?: string;
}

const VERSION_RE = /^v?(\d+)\.(\d+)(?:\.(\d+))?(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$/;

/** Parses "3.6.16", "v3.5.21", "3.7.0-alpha.1" (build metadata after "+" is ignored); undefined when not a version. */
export function parseEtcdVersion(text: string | undefined): EtcdVersion | undefined {
  const m = VERSION_RE.exec((text ?? '').trim());
  if (!m) return undefined;
  return { major: Number(m[1]), minor: Number(m[2]), ...(m[3] !== undefined ? { patch: Number(m[3]) } : {}), ...(m[4] ? { pre: m[4] } : {}) };
}

export function formatEtcdVersion(v: EtcdVersion): string {
  return `${v.major}.${v.minor}${v.patch !== undefined ? `.${v.patch}` : ''}${v.pre ? `-${v.pre}` : ''}`;
}

/**
 * The etcd version in an image reference's tag: "registry.k8s.io/etcd:3.6.16-0" (the trailing "-0" is
 * the image's build revision, not an etcd pre-release), "quay.io/coreos/etcd:v3.6.16",
 * "gcr.io/etcd-development/etcd:v3.7.0-alpha.1". Undefined for a digest-only reference or a tag that
 * names no version ("latest").
 */
export function etcdVersionFromImage(image: string | undefined): string | undefined {
  if (!image) return undefined;
  const ref = image.split('@')[0]!;
  const slash = ref.lastIndexOf('/');
  const colon = ref.lastIndexOf(':');
  if (colon <= slash) return undefined;
  const tag = ref.slice(colon + 1).replace(/-\d+$/, '');
  const v = parseEtcdVersion(tag);
  return v ? formatEtcdVersion(v) : undefined;
}

/** Orders versions (a pre-release before its release; a missing patch as 0; what does not parse last). */
export function compareEtcdVersions(a: string, b: string): number {
  const x = parseEtcdVersion(a);
  const y = parseEtcdVersion(b);
  if (!x || !y) return (x ? 0 : 1) - (y ? 0 : 1);
  return cmpMinor(x, y) || (x.patch ?? 0) - (y.patch ?? 0) || (x.pre === y.pre ? 0 : !x.pre ? 1 : !y.pre ? -1 : x.pre < y.pre ? -1 : 1);
}

/** What tells which etcd wrote a snapshot. */
export interface SnapshotVersionEvidence {
  /** The etcd version the source member reported at backup time (record `etcdVersion`, or a live member's status). */
  reported?: string;
  /** The storage version in the snapshot's own bbolt meta (record `storageVersion`, read from the bytes), e.g. "3.6.0". */
  storage?: string;
}

export type VersionVerdict = 'ok' | 'warn' | 'refuse';

/** The versions a restore crosses, as the plan records them (`--dry-run -o json` shows them). */
export interface PlanVersions {
  snapshot: {
    /** The snapshot's etcd version as judged (null: unknown). */
    version: string | null;
    reported?: string;
    storage?: string;
    /** Where it was read (a backup record, a live member). */
    source: string;
  };
  target: {
    /** The etcd version the target will run the restored data with (null: unknown). */
    version: string | null;
    source: string;
  };
  /** --require-same-version: any difference in major.minor.patch refuses. */
  requireSame: boolean;
  verdict: VersionVerdict;
  /** One line naming both versions. */
  reason: string;
  /** For a refusal: the way out. */
  hint?: string;
}

export interface VersionCheck {
  verdict: VersionVerdict;
  reason: string;
  hint?: string;
  /** The snapshot's version as judged (undefined: unknown). */
  snapshot?: string;
}

function cmpMinor(a: EtcdVersion, b: EtcdVersion): number {
  return a.major - b.major || a.minor - b.minor;
}
const mm = (v: EtcdVersion) => `${v.major}.${v.minor}`;

/**
 * Compares a snapshot's etcd version with the target's.
 *
 * Which evidence wins: for the major.minor the data is written in, the snapshot's storage version (its
 * bbolt meta, covered by the sha256 the restore verifies) wins over the version the member reported:
 * it is what etcd itself checks when it opens a data dir, and it stays at the older minor while a
 * cluster is mid-upgrade (a 3.7 member of a cluster still at 3.6 writes 3.6 data, which 3.6 reads). A
 * storage version is only major.minor (etcd writes "3.6.0" whatever its patch), so the patch level,
 * and the release `requireSame` compares, come from the reported version — taken only when its
 * major.minor agrees with the storage version's, else the patch is unknown.
 */
export function checkEtcdVersions(i: { snapshot: SnapshotVersionEvidence; target?: string; requireSame?: boolean }): VersionCheck {
  const strict = Boolean(i.requireSame);
  const reported = parseEtcdVersion(i.snapshot.reported);
  const storage = parseEtcdVersion(i.snapshot.storage);
  // The schema level (major.minor) and, when it can be told, the release.
  const level = storage ?? reported;
  const release = reported && (!storage || cmpMinor(storage, reported) === 0) ? reported : undefined;
  const snapText = release ? formatEtcdVersion(release) : storage ? `${mm(storage)} (storage version; patch unknown)` : undefined;
  const target = parseEtcdVersion(i.target);
  const targetText = i.target ? (target ? formatEtcdVersion(target) : `"${i.target}"`) : 'unknown';
  const snap = snapText ?? 'unknown';
  const withSnap = (c: Omit<VersionCheck, 'snapshot'>): VersionCheck => ({ ...c, ...(level ? { snapshot: release ? formatEtcdVersion(release) : mm(level) } : {}) });
  const strictHint = (want: string) =>
    `restore with etcd ${want} (the backup's release), choose a backup taken by the target's etcd with --snapshot, or drop --require-same-version`;

  if (!level || !target) {
    const which = !level && !target ? "neither the snapshot's nor the target's etcd version is known" : !level ? `the snapshot's etcd version is unknown (target etcd ${targetText})` : `the target's etcd version is unknown${i.target ? ` (${targetText} is not a version)` : ''} (snapshot etcd ${snap})`;
    if (strict) {
      return withSnap({
        verdict: 'refuse',
        reason: `--require-same-version: ${which}, so the same release cannot be proven`,
        hint: !target
          ? "declare the target's etcd version (the contract's etcd.version, or an image tag naming it), or drop --require-same-version"
          : 'choose a backup whose record names its etcd version with --snapshot, or drop --require-same-version',
      });
    }
    return withSnap({ verdict: 'warn', reason: `${which}: cannot check that the target's etcd can read the snapshot` });
  }

  const inconsistent = reported && storage && cmpMinor(storage, reported) > 0 ? `; its record says etcd ${formatEtcdVersion(reported)}, but the storage version in its bytes (${mm(storage)}) wins` : '';
  const midUpgrade = reported && storage && cmpMinor(storage, reported) < 0 ? ` (written by etcd ${formatEtcdVersion(reported)} while the cluster's storage version was still ${mm(storage)})` : '';

  if (level.major !== target.major || cmpMinor(level, target) > 0) {
    const newer = cmpMinor(level, target) > 0;
    return withSnap({
      verdict: 'refuse',
      reason: newer
        ? `the snapshot is from etcd ${snap}, newer than the target's etcd ${targetText}: etcd cannot downgrade a data dir${inconsistent}`
        : `the snapshot is from etcd ${snap}, another major version than the target's etcd ${targetText}: etcd cannot restore across major versions`,
      hint: newer ? `restore with etcd >= ${mm(level)}, or choose an older backup with --snapshot` : `restore with etcd ${level.major}.x, or choose another backup with --snapshot`,
    });
  }

  if (cmpMinor(level, target) < 0) {
    const gap = target.minor - level.minor;
    const reason =
      `the snapshot is from etcd ${snap}${midUpgrade}, older than the target's etcd ${targetText}: ` +
      (gap === 1 ? 'the restored data is upgraded as etcd upgrades a member' : `etcd supports upgrades of one minor at a time, and this crosses ${gap}`);
    return strict ? withSnap({ verdict: 'refuse', reason: `--require-same-version: ${reason}`, hint: strictHint(release ? formatEtcdVersion(release) : mm(level)) }) : withSnap({ verdict: 'warn', reason });
  }

  // Same major.minor.
  if (midUpgrade) {
    const reason = `the snapshot's data is etcd ${mm(level)}${midUpgrade}; the target runs etcd ${targetText}, which reads it (as in a downgrade)`;
    return strict ? withSnap({ verdict: 'refuse', reason: `--require-same-version: ${reason}`, hint: strictHint(formatEtcdVersion(reported!)) }) : withSnap({ verdict: 'warn', reason });
  }
  if (!release || release.patch === undefined || target.patch === undefined) {
    const reason = `the snapshot is from etcd ${snap} and the target runs etcd ${targetText}: same minor, patch level not known on both sides`;
    return strict ? withSnap({ verdict: 'refuse', reason: `--require-same-version: ${reason}`, hint: strictHint(snap) }) : withSnap({ verdict: 'ok', reason });
  }
  if (release.patch !== target.patch || (release.pre ?? '') !== (target.pre ?? '')) {
    const reason = `the snapshot is from etcd ${snap} and the target runs etcd ${targetText}: a different ${release.patch !== target.patch ? 'patch level' : 'pre-release'} of the same minor`;
    return strict ? withSnap({ verdict: 'refuse', reason: `--require-same-version: ${reason}`, hint: strictHint(snap) }) : withSnap({ verdict: 'warn', reason });
  }
  return withSnap({ verdict: 'ok', reason: `the snapshot is from etcd ${snap} and the target runs the same etcd ${targetText}` });
}

/** The plan's record of the versions a restore crosses. */
export function planVersions(i: {
  snapshot: SnapshotVersionEvidence & { source: string };
  target?: { version: string; source: string };
  requireSame?: boolean;
}): PlanVersions {
  const c = checkEtcdVersions({ snapshot: i.snapshot, ...(i.target ? { target: i.target.version } : {}), ...(i.requireSame ? { requireSame: true } : {}) });
  return {
    snapshot: {
      version: c.snapshot ?? null,
      ...(i.snapshot.reported ? { reported: i.snapshot.reported } : {}),
      ...(i.snapshot.storage ? { storage: i.snapshot.storage } : {}),
      source: i.snapshot.source,
    },
    target: i.target ? { version: i.target.version, source: i.target.source } : { version: null, source: 'unknown: the target cannot tell which etcd it runs' },
    requireSame: Boolean(i.requireSame),
    verdict: c.verdict,
    reason: c.reason,
    ...(c.hint ? { hint: c.hint } : {}),
  };
}

/** Throws VERSION_MISMATCH when the plan's version check refused; `what` names the restore point. */
export function refuseVersionMismatch(versions: PlanVersions | undefined, what: string, extraHint?: string): void {
  if (!versions || versions.verdict !== 'refuse') return;
  throw new EtcdRecoverError('VERSION_MISMATCH', `refusing to restore ${what}: ${versions.reason}`, {
    ...(versions.hint ? { hint: `${versions.hint}${extraHint ? ` (${extraHint})` : ''}` } : {}),
  });
}
