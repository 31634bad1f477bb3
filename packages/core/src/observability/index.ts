export * from './exposition.js';
export * from './metrics.js';
export * from './schedule.js';
export * from './collector.js';
