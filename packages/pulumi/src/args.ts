import type * as pulumi from '@pulumi/pulumi';
import type * as k8s from '@pulumi/kubernetes';

/** A bucket the component creates (a dynamic resource over the S3 API). */
export interface CreateBucketArgs {
  readonly name: string;
  /** Enable versioning. Default true. */
  readonly versioning?: boolean;
  /**
   * Expire backups after this many days (a lifecycle rule on the cluster's prefix, noncurrent
   * versions too). Default: none (retention prunes). Must exceed the longest retention window by
   * at least EXPIRY_GRACE_DAYS: once backups stop, the rule also deletes the newest verified
   * backup, which retention always keeps; and `archive.keep` by as much (the archive's segments).
   * A safety net for a prune that never runs, not a policy.
   */
  readonly expirationDays?: number;
  /** Object lock for backups (needs store support). Default: none. */
  readonly objectLock?: { mode: 'GOVERNANCE' | 'COMPLIANCE'; days: number };
  /** Empty and delete the bucket on `pulumi destroy`. Default false: destroy leaves the bucket and every backup in it (the bucket leaves the stack). */
  readonly forceDestroy?: boolean;
}

export interface RetentionArgs {
  /** Always keep the N newest. Default 3. */
  readonly keepLast?: number;
  /** Keep everything younger than this (e.g. "6h"). Default "6h". */
  readonly keepWithin?: string;
  /** Keep the newest of each hour for this long. Default "24h". */
  readonly hourly?: string;
  /** Keep the newest of each day for this long. Default "7d". */
  readonly daily?: string;
  /** Keep the newest of each week for this long. Default "30d". */
  readonly weekly?: string;
  /** Keep at most this many. Default: no cap. */
  readonly maxCount?: number;
}

export interface BackupArgs {
  /** Create a bucket, or use an existing one by name. */
  readonly bucket: { readonly create: CreateBucketArgs } | { readonly existing: string };
  /** Key prefix in the bucket. Default "" (backups go under clusters/<name>/). */
  readonly prefix?: string;
  /** S3-compatible endpoint (MinIO, Ceph RGW, …). Default: AWS. */
  readonly endpoint?: pulumi.Input<string>;
  /** Default "us-east-1". */
  readonly region?: string;
  /** Default: true when an endpoint is set. */
  readonly forcePathStyle?: boolean;
  /** SDK checksum mode for stores that reject the newer checksums. Default "when_supported". */
  readonly checksumMode?: 'when_supported' | 'when_required';
  /**
   * Client-side encryption of every backup (age, X25519): an existing Secret in the namespace with
   * key `recipients` (age public keys, one per line) and key `identity` (the `age-keygen` file). The
   * backup job mounts only `recipients`; verification, restores and member-init also `identity`.
   * The identity never passes through Pulumi's state. Default: plain backups.
   */
  readonly encryption?: { readonly secretName: string };
  /**
   * Server-side encryption of every object written (the store encrypts at rest): SSE-S3 (keys the
   * store manages), SSE-KMS (a KMS key: kmsKeyId, else the bucket's default KMS key), or SSE-C (a
   * key you hold: an existing Secret in the namespace with key `sse-c-key`, the base64 of 32 bytes,
   * mounted by every job that talks to the bucket; needs an https endpoint). The SSE-C key never
   * passes through Pulumi's state or the recovery contract. Default: the bucket's default.
   */
  readonly sse?: { readonly mode: 'SSE-S3' } | { readonly mode: 'SSE-KMS'; readonly kmsKeyId?: string } | { readonly mode: 'SSE-C'; readonly customerKeySecret: string };
  /** Credentials; stored in a Secret for the jobs and kept secret in Pulumi state. */
  readonly credentials: { readonly accessKeyId: pulumi.Input<string>; readonly secretAccessKey: pulumi.Input<string> };
  /** Full backup schedule (cron). Default every 30 minutes. */
  readonly schedule?: string;
  readonly retention?: RetentionArgs;
  /** Verification schedule (cron): re-verifies the newest backups in the bucket. Default hourly at :15. */
  readonly verifySchedule?: string;
  /** How many of the newest backups each verification run re-reads. Default 3. */
  readonly verifyCount?: number;
}

export interface TlsArgs {
  /** Secret (ca.crt, tls.crt, tls.key) for etcd's client port. Requires clientSecret. */
  readonly serverSecret?: string;
  /** Secret (ca.crt, tls.crt, tls.key) that jobs and the plugin use to talk to etcd. Requires serverSecret. */
  readonly clientSecret?: string;
  /** Secret (ca.crt, tls.crt, tls.key) for peer traffic. */
  readonly peerSecret?: string;
}

export interface WorkloadRef {
  readonly kind: 'Deployment' | 'StatefulSet';
  readonly name: string;
  /** Default: the cluster's namespace. */
  readonly namespace?: string;
  /** Replicas to scale back to after a restore. Default 1. */
  readonly replicas?: number;
}

export interface PauseArgs {
  readonly apiVersion: string;
  readonly kind: string;
  /** Plural resource name, e.g. "hostedclusters". */
  readonly resource: string;
  readonly name: string;
  readonly namespace?: string;
  /** JSON merge patch that pauses reconciliation, e.g. {spec: {pausedUntil: "true"}}. */
  readonly pausePatch: Record<string, unknown>;
  /** JSON merge patch that resumes it, e.g. {spec: {pausedUntil: null}}. */
  readonly resumePatch: Record<string, unknown>;
}

export interface EtcdClusterArgs {
  /** Namespace to deploy into (must exist). */
  readonly namespace: string;
  /** Number of members: an odd number ≥ 1. Default 3. */
  readonly members?: number;
  /**
   * etcd version, "3.5.x", "3.6.x" or "3.7.x" (tested: 3.5.35, 3.6.16, 3.7.3; ≥ 3.5.10 for revision-safe
   * restores). Selects the default image and is written into the recovery contract, where restores
   * check snapshots against it (a newer minor's snapshot is refused). Default "3.6.16".
   */
  readonly etcdVersion?: string;
  /** etcd image. Default `registry.k8s.io/etcd:<etcdVersion>-0`. */
  readonly image?: string;
  /** The etcd-recover agent image the jobs run (docker/agent.Dockerfile). Default "ghcr.io/etcd-recover/agent:0.1.0". */
  readonly agentImage?: string;
  /** Per-member volume. Default 8Gi of the default StorageClass. */
  readonly storage?: { readonly size?: string; readonly storageClassName?: string };
  /** Container resources of etcd. Default: requests 100m CPU / 256Mi. */
  readonly resources?: pulumi.Input<k8s.types.input.core.v1.ResourceRequirements>;
  /** Spread members over nodes: "required", "preferred" or "none". Default "preferred". */
  readonly antiAffinity?: 'required' | 'preferred' | 'none';
  /** TLS from existing Secrets. Default: plain HTTP inside the namespace. */
  readonly tls?: TlsArgs;
  /** etcd --quota-backend-bytes. Default etcd's (2 GiB). */
  readonly quotaBackendBytes?: number;
  /** Extra etcd flags, e.g. ["--auto-compaction-retention=1h"]. Default none. */
  readonly extraArgs?: string[];
  readonly backup: BackupArgs;
  /** Member auto-heal: replace exactly one failing member while quorum holds. Default enabled, every 5 minutes. */
  readonly autoHeal?: { readonly enabled?: boolean; readonly schedule?: string };
  /** Optional scheduled defragmentation (followers first, leader last). Default off. */
  readonly defrag?: { readonly schedule: string };
  /** Workloads to scale to zero during a full restore, e.g. the hosted kube-apiserver. Default none. */
  readonly dependents?: WorkloadRef[];
  /**
   * Secrets and ConfigMaps in the namespace a restore needs beside etcd's data — e.g. the hosted API
   * server's encryption configuration and service-account signing key. Each backup saves them
   * (always encrypted: requires backup.encryption) together with the component's own Secrets (etcd's
   * TLS, the bucket credentials, the age key), and `kubectl etcd-recover quorum --restore-companions`
   * recreates the missing ones first. The backup job may then `get` exactly these names. Default none.
   */
  readonly companions?: { readonly secrets?: string[]; readonly configMaps?: string[] };
  /**
   * The scheduled restore drill: a CronJob that restores the newest verified backup into a throwaway
   * etcd inside its own pod (an emptyDir bounded by `ephemeralStorage`, no PVC) and runs every check
   * `quorum` runs after a restore. Default enabled, daily at 04:30, 3 members, 4Gi.
   */
  readonly drill?: { readonly enabled?: boolean; readonly schedule?: string; readonly members?: number; readonly ephemeralStorage?: string };
  /**
   * Metrics and alerts: the exporter Deployment (`agent exporter`, a Service with prometheus.io scrape
   * annotations; default on), a ServiceMonitor and a PrometheusRule (default off: they need the
   * Prometheus Operator's CRDs). `rpo` is the alerting threshold for stale backups (default 1.5x the
   * backup schedule's interval, as the exporter computes it); `runbookBaseUrl` prefixes the alerts' runbook links.
   */
  readonly monitoring?: { readonly exporter?: boolean; readonly serviceMonitor?: boolean; readonly prometheusRule?: boolean; readonly rpo?: string; readonly runbookBaseUrl?: string };
  /**
   * Continuous archiving (point-in-time restore, RPO about `interval`): a Deployment of one archiver
   * (`agent archive`, Recreate) that follows etcd's watch into the bucket (docs/archive.md). It talks
   * only to etcd and the bucket: no Kubernetes rights, no token. `maxBufferMiB`: unflushed data past
   * which it stops reading etcd while the bucket is down (and alarms). `rebaseEvery`: a new chain from a
   * fresh base this often (bounds a point-in-time replay; a lifecycle expiry then only takes whole old
   * chains). `keep`: the point-in-time window; the backup job prunes chains whose newest point is
   * older (their bases then follow the backup retention). Default enabled, 1s, rebase every 1h, keep 7d, 64 MiB,
   * requests 50m CPU / 128Mi, memory limit 512Mi.
   */
  readonly archive?: { readonly enabled?: boolean; readonly interval?: string; readonly rebaseEvery?: string; readonly keep?: string; readonly maxBufferMiB?: number; readonly resources?: pulumi.Input<k8s.types.input.core.v1.ResourceRequirements> };
  /** How to pause reconciliation during a restore (e.g. a HostedCluster). Default none. */
  readonly pause?: PauseArgs;
  /**
   * What `kubectl etcd-recover quorum` does once the dependents are back after a restore
   * (docs/runbooks/quorum-loss.md, "After the restore"). `hostedKubeconfigSecret`: a Secret in the
   * namespace holding a kubeconfig for the hosted cluster's API server (key `hostedKubeconfigKey`,
   * default "kubeconfig"); with it stuck CronJobs are repaired and stuck pods reported (deleted with
   * `--yes`); without it the report says what to check by hand. `rolloutDeployments`: control-plane
   * Deployments in the namespace restarted after the restore (their caches predate it). `stuckPodSeconds`:
   * how long a pod may sit in ContainerCreating or Init before it counts as stuck. Default: no
   * kubeconfig, no rollouts, 300 s.
   */
  readonly afterRestore?: {
    readonly hostedKubeconfigSecret?: string;
    readonly hostedKubeconfigKey?: string;
    readonly rolloutDeployments?: string[];
    readonly stuckPodSeconds?: number;
  };
  /**
   * Seconds an empty member (or one whose data is behind the newest verified backup) waits in its
   * init container for peers with a quorum before it reads the bucket: a survivor that starts late
   * is found before anything bootstraps. Default 30.
   */
  readonly peerWaitSeconds?: number;
  /**
   * Automatic restore (off by default): when every member's volume is empty and the bucket holds
   * trusted backups of this cluster, the members restore themselves from the newest trusted backup
   * (one decision object in the bucket, the recovery lock, a journal) instead of staying in Init
   * until an operator runs `kubectl etcd-recover quorum`. This is also how a stack applied to a new
   * management cluster with an existing bucket brings its etcd back. See docs/design.md,
   * "Automatic restore".
   */
  readonly autoRestore?: boolean;
  /**
   * How long `pulumi up` waits for the StatefulSet to become ready before it fails with the
   * provider's reason (e.g. "10m", "90s"). Default "10m".
   */
  readonly readyTimeout?: string;
}
