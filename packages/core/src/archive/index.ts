export * from './segment.js';
export * from './segment-io.js';
export * from './chains.js';
export * from './archiver.js';
export * from './replay.js';
export * from './point.js';
export * from './history.js';
export * from './lag.js';
