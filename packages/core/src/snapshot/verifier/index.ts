export {
  SnapshotVerifier,
  verifySnapshotStream,
  verifySnapshotFile,
  describeDefects,
  MAX_DEFECTS,
  type DefectCode,
  type SnapshotDefect,
  type SnapshotReport,
  type VerifyOptions,
} from './snapshot-verifier.js';
export { crc32c, crc32cJs, crc32cCombine, crc32cNative } from './crc32c.js';
