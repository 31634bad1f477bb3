export * from './catalog.js';
export * from './capture.js';
export * from './member-selection.js';
export * from './prune.js';
export * from './retention.js';
export * from './snapshot-name.js';
export * from './verify.js';
export * from './verifier/index.js';
