/**
 * Snapshot names: "full-<UTC yyyymmddThhmmssSSSZ>", e.g. full-20261121T073355123Z.
 * Lexical order is chronological order. The revision is not part of the name:
 * etcd does not say a snapshot's revision before the stream ends, and an
 * object cannot be renamed cheaply once uploaded; the catalog record has it.
 * formatSnapshotName and parseSnapshotName are inverse functions (tested as such).
 */
export interface SnapshotNameParts {
  kind: 'full';
  createdAt: Date;
}

const NAME_RE = /^full-(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})(\d{3})Z$/;

export function formatSnapshotName(createdAt: Date): string {
  const stamp = createdAt.toISOString().replace(/[-:]/g, '').replace('.', '');
  return `full-${stamp}`;
}

export function parseSnapshotName(name: string): SnapshotNameParts | undefined {
  const m = NAME_RE.exec(name);
  if (!m) return undefined;
  const [, y, mo, d, h, mi, s, ms] = m;
  const createdAt = new Date(`${y}-${mo}-${d}T${h}:${mi}:${s}.${ms}Z`);
  if (Number.isNaN(createdAt.getTime()) || formatSnapshotName(createdAt) !== name) return undefined;
  return { kind: 'full', createdAt };
}

export function isSnapshotName(name: string): boolean {
  return parseSnapshotName(name) !== undefined;
}
