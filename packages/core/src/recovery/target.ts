import type { EtcdGateway } from '../etcd/etcd-gateway.js';
import type { Catalog, SnapshotRecord } from '../snapshot/catalog.js';
import type { CompanionBundle, CompanionOutcome } from '../snapshot/companions.js';
import type { ClusterObservation, MemberSpec } from './observation.js';
import type { HostedCluster } from './ports.js';

export interface StepContext {
  recoveryId: string;
  catalog: Catalog;
  signal?: AbortSignal;
  progress: (message: string) => void;
  /** Facts recorded by earlier steps (persisted in the journal). */
  facts: Record<string, unknown>;
}

export interface RestoreParams {
  members: MemberSpec[];
  token: string;
  bump: number;
}

/** What every member holds, compared at one revision. */
export interface Keyspace {
  /** Keys in the cluster (a linearizable count). */
  keys: number;
  /** The revision the hashes were taken at (the lowest current revision of the members). */
  revision: number;
  members: { name: string; revision: number; hash: number }[];
  /** The etcd cluster ID the members report. */
  clusterId?: string;
}

/** The target's after-restore declarations (Kubernetes: from the recovery contract). */
export interface AfterRestoreSpec {
  /** The Secret with a kubeconfig for the hosted cluster; absent: the report says what to check by hand. */
  hostedKubeconfig?: { secretName: string; key: string };
  /** Control-plane Deployments (`namespace/name`) that get a forced rollout. */
  rollouts: string[];
  stuckPodSeconds: number;
}

/** The etcd version a target runs, e.g. "3.6.16", and where it was read (shown in the plan). */
export interface TargetEtcdVersion {
  version: string;
  source: string;
}

/**
 * What a recovery needs from the place etcd runs: the local sandbox
 * (processes and folders) or Kubernetes (a StatefulSet, PVCs and Jobs). Every
 * method is idempotent and every `is…` tells whether an effect already holds,
 * so a rerun after a crash resumes instead of repeating.
 */
export interface RecoveryTarget {
  readonly kind: 'sandbox' | 'kubernetes';
  readonly cluster: string;
  /** Whether dependents must be paused and scaled down around a restore. */
  readonly quiesces: boolean;
  describe(): string;
  members(): MemberSpec[];
  gateway(): EtcdGateway;
  observe(signal?: AbortSignal): Promise<ClusterObservation>;

  /**
   * Recreates the companion resources saved with a backup that are missing (Kubernetes: Secrets and
   * ConfigMaps in the namespace); existing ones that differ are reported, replaced only with overwrite.
   */
  restoreCompanions?(bundle: CompanionBundle, o: { overwrite: boolean; backup: string }, ctx: StepContext): Promise<CompanionOutcome[]>;

  /** Makes the restore source available where the restore runs, verified natively against the record. */
  stageSnapshot(record: SnapshotRecord, ctx: StepContext): Promise<void>;
  isStaged(record: SnapshotRecord, ctx: StepContext): Promise<boolean>;

  /**
   * Refuses (NO_SPACE, with the numbers) when a volume that will hold a member's restore lacks room for
   * what the restore writes beside what stays set aside. Runs before anything is stopped.
   */
  checkSpace?(names: string[], record: SnapshotRecord, ctx: StepContext): Promise<void>;

  quiesce(ctx: StepContext): Promise<void>;
  isQuiesced(ctx: StepContext): Promise<boolean>;
  resume(ctx: StepContext): Promise<void>;
  isResumed(ctx: StepContext): Promise<boolean>;

  stopMembers(names: string[], ctx: StepContext): Promise<void>;
  areStopped(names: string[], ctx: StepContext): Promise<boolean>;

  /** Moves a member's data aside (never deletes it); a member without data has nothing to move. */
  setAside(name: string, ctx: StepContext): Promise<void>;
  isSetAside(name: string, ctx: StepContext): Promise<boolean>;

  /** Writes a member's new data from the staged snapshot into a staging place, then moves it in. */
  restoreMember(name: string, record: SnapshotRecord, params: RestoreParams, ctx: StepContext): Promise<void>;
  isRestored(name: string, ctx: StepContext): Promise<boolean>;

  /** Starts members; `existing` joins a running cluster with the given initial-cluster. */
  startMembers(names: string[], mode: { initialState: 'new' | 'existing'; initialCluster?: string }, ctx: StepContext): Promise<void>;
  areStarted(names: string[], ctx: StepContext): Promise<boolean>;

  /**
   * Snapshots one member into the catalog where etcd runs (on Kubernetes: a Job in the cluster);
   * returns the new backup's name. Without it the executor streams the snapshot through gateway().
   */
  captureLive?(member: string, labels: Record<string, string>, ctx: StepContext): Promise<string>;
  /**
   * Rebuilds a point in time of an archive chain into the catalog (a Job on Kubernetes) and returns
   * the backup's name. Absent: the plugin process replays it itself (it needs etcd and etcdutl).
   */
  buildPointInTime?(point: { chain: string; revision: number }, labels: Record<string, string>, ctx: StepContext): Promise<string>;

  /** Key count (at `countAt` when given) and per-member HashKV. Without it the executor asks through gateway(). */
  keyspace?(ctx: StepContext, countAt?: number): Promise<Keyspace>;

  /**
   * The etcd version that will run the restored data, and where it was read (sandbox: `etcd --version`
   * of its binary; Kubernetes: the contract, else the StatefulSet's image tag). Undefined when the
   * target cannot tell: the plan then shows it as unknown and the live members' reported versions,
   * if any, stand in (recover.ts). Never throws for an unknown version.
   */
  etcdVersion?(signal?: AbortSignal): Promise<TargetEtcdVersion | undefined>;

  /** Why a member is not running, if the target can tell (e.g. the fatal line of its log). */
  diagnose?(name: string): string | undefined;

  /**
   * What the target declares for after a restore (Kubernetes: the contract's afterRestore). Undefined:
   * there is no hosted cluster to reconcile (the sandbox).
   */
  afterRestore?(): AfterRestoreSpec;
  /**
   * The hosted cluster's API server, from the kubeconfig Secret afterRestore names. Throws, saying why,
   * when it cannot be had (the Secret missing, not a kubeconfig); reaching it is the caller's concern.
   */
  hostedCluster?(ctx: StepContext): Promise<HostedCluster>;
  /** Forces a rollout of a Deployment (`namespace/name`), stamped with the recovery id (isRolledOut tells). */
  rollout?(deployment: string, ctx: StepContext): Promise<void>;
  isRolledOut?(deployment: string, ctx: StepContext): Promise<boolean>;

  /** Where the old data of a member went (for the report and rollback). */
  asideLocation(name: string, recoveryId: string): string;
}
