export { S3Bucket, S3_BUCKET_TYPE, type S3BucketArgs } from './s3-bucket.js';
export {
  s3BucketProvider,
  LIFECYCLE_RULE_ID,
  type S3BucketInputs,
  type S3BucketOutputs,
  type ObjectLockSpec,
  type ChecksumMode,
} from './provider.js';
export { argProblems as s3BucketArgProblems, type ArgProblem } from './validate.js';
