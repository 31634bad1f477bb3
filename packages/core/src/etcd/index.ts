export * from './etcd-gateway.js';
export { Etcd3Gateway } from './etcd3-gateway.js';
export { SnapshotFrameParser } from './grpc-snapshot.js';
export * from './metrics.js';
export * from './replication.js';
export { Etcd3ChangeSource, Etcd3ReplayTarget, groupByRevision } from './etcd3-replication.js';
