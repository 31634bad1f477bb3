export * from './object-store.js';
export * from './s3-config.js';
export { S3ObjectStore } from './s3-object-store.js';
export { MemoryObjectStore } from './memory-object-store.js';
