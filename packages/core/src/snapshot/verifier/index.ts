export {
  SnapshotVerifier,
  verifySnapshotStream,
  verifySnapshotFile,
  type VerifyOptions,
} from './snapshot-verifier.js';
export { describeDefects, MAX_DEFECTS, type DefectCode, type SnapshotDefect, type SnapshotReport } from './report.js';
export { setFileHasher, hashFile, digestsToJson, digestsFromJson, type FileHasher, type FileDigests } from './file-hash.js';
