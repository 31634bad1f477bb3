import { EtcdRecoverError, messageOf } from '../errors.js';
import type { S3Config } from './s3-config.js';

/** What an S3 error is named against: the bucket, where it is, its SSE, and the strings never to repeat. */
export interface S3Where {
  bucket: string;
  prefix: string;
  endpoint?: string;
  sse?: S3Config['sse'];
  /** Never repeated in a message or hint (the SSE-C key). */
  secrets: readonly string[];
}

/**
 * An S3 failure (the SDK's typed errors, the direct GET's, the network's) as one EtcdRecoverError
 * with one clear line naming the problem and the next step; never includes credentials or the SSE-C
 * key.
 */
export function s3Error(e: unknown, doing: string, s: S3Where): EtcdRecoverError {
  if (e instanceof EtcdRecoverError) return e;
  const mapped = classify(e, doing, s);
  if (!s.secrets.some((k) => mapped.message.includes(k))) return mapped;
  const redact = (t: string) => s.secrets.reduce((acc, k) => acc.split(k).join('[redacted]'), t);
  return new EtcdRecoverError(mapped.code, redact(mapped.message), { cause: e, retryable: mapped.retryable, ...(mapped.hint ? { hint: redact(mapped.hint) } : {}) });
}

/** The failures that come from server-side encryption, named as such (or undefined). */
function sseProblem(name: string, status: number | undefined, doing: string, message: string, where: string, e: unknown, sse: S3Config['sse']): EtcdRecoverError | undefined {
  if (KMS_ERROR.test(name)) {
    const key = sse?.mode === 'SSE-KMS' && sse.kmsKeyId ? `the SSE-KMS key "${sse.kmsKeyId}"` : sse?.mode === 'SSE-KMS' ? "the bucket's default SSE-KMS key" : "the object's KMS key";
    return new EtcdRecoverError('CONFIG', `${doing}: ${key} cannot be used at ${where} (${name}${message && message !== name ? `: ${message}` : ''})`, {
      cause: e,
      hint: 'name a KMS key the store has and these credentials may use (kms:GenerateDataKey, kms:Decrypt)',
    });
  }
  if (status !== 400 || !/^(reading|inspecting) /.test(doing)) return undefined;
  // A HEAD answer has no body: a 400 to it is how S3 refuses SSE-C parameters that do not fit the object.
  const bodiless = /^inspecting /.test(doing) && ['Unknown', 'BadRequest', '400', ''].includes(name);
  if (sse?.mode !== 'SSE-C' && (/Server Side Encryption/i.test(message) || bodiless)) {
    return new EtcdRecoverError('ENCRYPTION_KEY', `${doing}: the object is encrypted with a customer-provided key (SSE-C) and none is configured${bodiless ? ' (HTTP 400 to HEAD)' : ''}`, {
      cause: e,
      hint: 'configure the SSE-C key the backups were written with',
    });
  }
  if (sse?.mode === 'SSE-C' && (/encryption parameters are not applicable/i.test(message) || bodiless)) {
    return new EtcdRecoverError('ENCRYPTION_KEY', `${doing}: the object is not encrypted with a customer-provided key (SSE-C), but one is configured${bodiless ? ' (HTTP 400 to HEAD)' : ''}`, {
      cause: e,
      hint: 'objects written before SSE-C was configured are read without it: use a configuration without the SSE-C key for them',
    });
  }
  return undefined;
}

function classify(e: unknown, doing: string, s: S3Where): EtcdRecoverError {
  const err = e as { name?: string; code?: string; Code?: string; $metadata?: { httpStatusCode?: number }; cause?: { code?: string } };
  const name = err.name ?? err.Code ?? '';
  const status = err.$metadata?.httpStatusCode;
  const netCode = err.code ?? err.cause?.code ?? '';
  const where = s.endpoint ?? 'AWS S3';
  if (name === 'AbortError') return new EtcdRecoverError('ABORTED', `${doing}: aborted`, { cause: e });
  const sse = sseProblem(name, status, doing, messageOf(e), where, e, s.sse);
  if (sse) return sse;
  if (name === 'NoSuchBucket' || (status === 404 && /bucket/i.test(doing))) {
    return new EtcdRecoverError('BUCKET_NOT_FOUND', `bucket "${s.bucket}" does not exist at ${where}`, {
      cause: e,
      hint: 'create it (the Pulumi component can) or pass the right --bucket / --s3-endpoint',
    });
  }
  if (name === 'NoSuchKey' || name === 'NotFound' || status === 404) {
    return new EtcdRecoverError('SNAPSHOT_NOT_FOUND', `${doing}: not found in s3://${s.bucket}/${s.prefix}`, { cause: e });
  }
  if (['InvalidAccessKeyId', 'SignatureDoesNotMatch', 'AccessDenied', 'InvalidToken', 'ExpiredToken', 'CredentialsProviderError'].includes(name) || status === 403 || status === 401) {
    const what = name === 'SignatureDoesNotMatch' ? 'the secret key is wrong' : name === 'InvalidAccessKeyId' ? 'the access key id is unknown' : name === 'CredentialsProviderError' ? 'no credentials were found' : 'access was denied';
    // S3 answers a read with an SSE-C key other than the object's with the same 403 as a policy refusal.
    const ssecRead = what === 'access was denied' && s.sse?.mode === 'SSE-C' && /^(reading|inspecting) /.test(doing);
    return new EtcdRecoverError('ACCESS_DENIED', `${doing} at ${where}: ${ssecRead ? 'access was denied, or the SSE-C key is not the one the object was written with' : what} (bucket "${s.bucket}")`, {
      cause: e,
      hint: `${ssecRead ? 'check the SSE-C key the backups were written with, then ' : 'check '}the S3 credentials (--s3-credentials-file, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY) and the bucket policy`,
    });
  }
  if (/ECONNREFUSED|ENOTFOUND|EAI_AGAIN|ETIMEDOUT|ECONNRESET|EPIPE|ENETUNREACH|EHOSTUNREACH|socket hang up|TimeoutError/i.test(`${netCode} ${name} ${messageOf(e)}`)) {
    return new EtcdRecoverError('STORE_UNREACHABLE', `${doing}: S3 endpoint ${where} is unreachable (${netCode || name || messageOf(e)})`, {
      cause: e,
      hint: 'check --s3-endpoint and that the object store is up; the operation can be retried',
    });
  }
  if (status !== undefined && status >= 500) {
    return new EtcdRecoverError('STORE_UNREACHABLE', `${doing}: the object store answered ${status} ${name}`, { cause: e, retryable: true });
  }
  if (/self[- ]signed|certificate|UNABLE_TO_VERIFY/i.test(`${netCode} ${messageOf(e)}`)) {
    return new EtcdRecoverError('STORE_UNREACHABLE', `${doing}: TLS to ${where} failed (${netCode || messageOf(e)})`, {
      cause: e,
      retryable: false,
      hint: 'pass the endpoint CA bundle with --s3-ca-file',
    });
  }
  return new EtcdRecoverError('STORE_ERROR', `${doing}: ${name || 'error'}: ${messageOf(e)}`, { cause: e });
}

export function isNotFound(e: unknown): boolean {
  const err = e as { name?: string; $metadata?: { httpStatusCode?: number } };
  // A KMS key that is gone answers 404 too (MinIO: kms:KeyNotFound): that is no missing object.
  return err.name === 'NoSuchKey' || err.name === 'NotFound' || (err.$metadata?.httpStatusCode === 404 && err.name !== 'NoSuchBucket' && !KMS_ERROR.test(err.name ?? ''));
}

/** Errors of the store's KMS: AWS "KMS.NotFoundException", "KMS.DisabledException"…; MinIO "kms:KeyNotFound"… */
const KMS_ERROR = /^kms[.:]/i;
