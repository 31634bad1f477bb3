/**
 * Where everything lives in the backup bucket (see docs/bucket-layout.md).
 * All keys are relative to the configured prefix:
 *
 *   clusters/<cluster>/snapshots/<snapshot>.db     the snapshot, as etcd streamed it (with its sha256 trailer)
 *   clusters/<cluster>/snapshots/<snapshot>.json   its catalog record, written last
 *   clusters/<cluster>/snapshots/<snapshot>.companions  the Secrets/ConfigMaps a restore needs (age-encrypted), before the record
 *   clusters/<cluster>/recoveries/<id>.json        the journal of one recovery run
 *   clusters/<cluster>/lock.json                   the recovery lock (created with If-None-Match, renewed with If-Match)
 *   clusters/<cluster>/lock-clock.json             written to read the store's clock when judging a stale lock
 *   clusters/<cluster>/recovery-work/<id>/<what>.json  results the in-cluster Jobs of a recovery report back
 *   clusters/<cluster>/auto-restore/votes/<member>.json  member-init's vote for an automatic restore (empty / has data)
 *   clusters/<cluster>/auto-restore/rounds/<round>.json  the decision of one automatic-restore round (If-None-Match)
 *   clusters/<cluster>/jobs/<job>.json             the last outcome of each job, its last success, failures in a row
 *   clusters/<cluster>/rekey/<snapshot>.{age,previous,json}  `backup rekey` at work: the new object, the old one, its marker
 *   clusters/<cluster>/archive/<chain>/chain.json  one archive chain: its base snapshot, why it started
 *   clusters/<cluster>/archive/<chain>/<first>-<last>-<firstMs>-<lastMs>.seg  a segment of that chain (archive/segment.ts)
 *   clusters/<cluster>/archive-owner.json          the archiver's fence (a lock like the recovery lock)
 *   clusters/<cluster>/archive-status.json         the archiver's progress: last archived revision and time, alarms
 */
const CLUSTER_RE = /^[a-z0-9]([a-z0-9._-]{0,126}[a-z0-9])?$/;

export function clusterNameProblem(name: string): string | undefined {
  return CLUSTER_RE.test(name) ? undefined : 'must be 1-128 lowercase letters, digits, ".", "_" or "-", starting and ending with a letter or digit';
}

export const layout = {
  clusterRoot: (cluster: string) => `clusters/${cluster}/`,
  snapshotsPrefix: (cluster: string) => `clusters/${cluster}/snapshots/`,
  snapshotObject: (cluster: string, name: string) => `clusters/${cluster}/snapshots/${name}.db`,
  snapshotRecord: (cluster: string, name: string) => `clusters/${cluster}/snapshots/${name}.json`,
  /** The companion resources saved with a snapshot (an age file; see snapshot/companions.ts). */
  companionsObject: (cluster: string, name: string) => `clusters/${cluster}/snapshots/${name}.companions`,
  recoveriesPrefix: (cluster: string) => `clusters/${cluster}/recoveries/`,
  recoveryJournal: (cluster: string, id: string) => `clusters/${cluster}/recoveries/${id}.json`,
  lock: (cluster: string) => `clusters/${cluster}/lock.json`,
  /** Written to read the store's own clock (its Last-Modified) when judging whether a lock is stale. */
  lockClock: (cluster: string) => `clusters/${cluster}/lock-clock.json`,
  /** Scratch object of the conditional-write probe, deleted right after. */
  lockProbe: (cluster: string, runId: string) => `clusters/${cluster}/lock-probe-${runId}.json`,
  recoveryWork: (cluster: string, id: string, what: string) => `clusters/${cluster}/recovery-work/${id}/${what}.json`,
  /** member-init's vote for an automatic restore (autoRestore on the component): this member is empty, or holds data. */
  autoRestoreVotesPrefix: (cluster: string) => `clusters/${cluster}/auto-restore/votes/`,
  autoRestoreVote: (cluster: string, member: string) => `clusters/${cluster}/auto-restore/votes/${member}.json`,
  /** The decisions of automatic-restore rounds, one per round, each created once with If-None-Match. */
  autoRestoreRoundsPrefix: (cluster: string) => `clusters/${cluster}/auto-restore/rounds/`,
  autoRestoreRound: (cluster: string, round: string) => `clusters/${cluster}/auto-restore/rounds/${round}.json`,
  /** The last outcome of one job (backup, verify, heal, defrag, drill, recovery): what alerting reads. */
  jobStatus: (cluster: string, job: string) => `clusters/${cluster}/jobs/${job}.json`,
  /** `backup rekey`: the re-encrypted object before it replaces the old one, a copy of the old one, and the marker naming the new one. */
  rekeyStaging: (cluster: string, name: string) => `clusters/${cluster}/rekey/${name}.age`,
  rekeyPrevious: (cluster: string, name: string) => `clusters/${cluster}/rekey/${name}.previous`,
  rekeyMarker: (cluster: string, name: string) => `clusters/${cluster}/rekey/${name}.json`,
  archivePrefix: (cluster: string) => `clusters/${cluster}/archive/`,
  archiveChainPrefix: (cluster: string, chain: string) => `clusters/${cluster}/archive/${chain}/`,
  archiveChain: (cluster: string, chain: string) => `clusters/${cluster}/archive/${chain}/chain.json`,
  archiveSegment: (cluster: string, chain: string, name: string) => `clusters/${cluster}/archive/${chain}/${name}`,
  archiveOwner: (cluster: string) => `clusters/${cluster}/archive-owner.json`,
  archiveStatus: (cluster: string) => `clusters/${cluster}/archive-status.json`,
};
