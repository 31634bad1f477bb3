export * from './etcd-gateway.js';
export { Etcd3Gateway } from './etcd3-gateway.js';
export { SnapshotFrameParser } from './grpc-snapshot.js';
export * from './metrics.js';
