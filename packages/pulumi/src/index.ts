export { EtcdCluster } from './etcd-cluster.js';
export type { EtcdClusterArgs, BackupArgs, CreateBucketArgs, RetentionArgs, TlsArgs, WorkloadRef, PauseArgs } from './args.js';
export { resolveArgs } from './resolve-args.js';
export { buildContract } from './contract.js';
export { jobRules } from './jobs.js';
export { cronProblem } from './cron.js';
export * from './bucket/index.js';
export { alertRules, EXPORTER_PORT } from './monitoring.js';
