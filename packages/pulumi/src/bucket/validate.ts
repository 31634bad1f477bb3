import { bucketNameProblem } from '@etcd-recover/core';

/**
 * Pulumi's wire value for "not known yet" (preview): what a dynamic provider's
 * check() sees for a value that depends on another resource's output.
 */
export const UNKNOWN = '04da6b54-80e4-46f7-96ec-b56ff0331ba9';

export interface ArgProblem {
  /** The argument's name as the user wrote it (objectLock.days for a nested field). */
  property: string;
  reason: string;
}

/**
 * The problems with the known values among S3Bucket's arguments. Values that are
 * not known yet (UNKNOWN) are skipped; a missing required value is a problem.
 * Used both by the constructor (plain values only) and by the provider's check()
 * (everything, once resolved), so this function must stay self-contained: it is
 * serialized into the dynamic provider (bucketNameProblem is a pure function).
 * Never echoes a credential.
 */
export function argProblems(a: Record<string, unknown>): ArgProblem[] {
  const out: ArgProblem[] = [];
  const known = (v: unknown) => v !== undefined && v !== null && v !== UNKNOWN;
  const positiveWhole = (v: unknown) => typeof v === 'number' && Number.isInteger(v) && v > 0;

  if (a['bucket'] === undefined || a['bucket'] === null || a['bucket'] === '') out.push({ property: 'bucket', reason: 'is required' });
  else if (known(a['bucket'])) {
    if (typeof a['bucket'] !== 'string') out.push({ property: 'bucket', reason: 'must be a string' });
    else {
      const p = bucketNameProblem(a['bucket']);
      if (p) out.push({ property: 'bucket', reason: `"${a['bucket']}" ${p}` });
    }
  }
  for (const k of ['accessKeyId', 'secretAccessKey']) {
    if (a[k] === undefined || a[k] === null || a[k] === '') out.push({ property: k, reason: 'is required' });
    else if (known(a[k]) && typeof a[k] !== 'string') out.push({ property: k, reason: 'must be a string' });
  }
  if (known(a['endpoint']) && a['endpoint'] !== '') {
    let ok = false;
    try {
      const u = new URL(String(a['endpoint']));
      ok = u.protocol === 'http:' || u.protocol === 'https:';
    } catch {
      ok = false;
    }
    if (!ok) out.push({ property: 'endpoint', reason: 'must be an http(s) URL' });
  }
  if (known(a['checksumMode']) && a['checksumMode'] !== 'when_supported' && a['checksumMode'] !== 'when_required') {
    out.push({ property: 'checksumMode', reason: `must be "when_supported" or "when_required" (got ${JSON.stringify(a['checksumMode'])})` });
  }
  if (known(a['expirationDays']) && !positiveWhole(a['expirationDays'])) {
    out.push({ property: 'expirationDays', reason: `must be a whole number of days greater than 0 (got ${JSON.stringify(a['expirationDays'])})` });
  }
  const lock = a['objectLock'];
  if (known(lock)) {
    if (typeof lock !== 'object') out.push({ property: 'objectLock', reason: 'must be { mode, days }' });
    else {
      const l = lock as Record<string, unknown>;
      if (known(l['mode']) && l['mode'] !== 'GOVERNANCE' && l['mode'] !== 'COMPLIANCE') {
        out.push({ property: 'objectLock.mode', reason: `must be "GOVERNANCE" or "COMPLIANCE" (got ${JSON.stringify(l['mode'])})` });
      } else if (!known(l['mode']) && l['mode'] !== UNKNOWN) out.push({ property: 'objectLock.mode', reason: 'is required' });
      if (known(l['days']) && !positiveWhole(l['days'])) {
        out.push({ property: 'objectLock.days', reason: `must be a whole number of days greater than 0 (got ${JSON.stringify(l['days'])})` });
      } else if (!known(l['days']) && l['days'] !== UNKNOWN) out.push({ property: 'objectLock.days', reason: 'is required' });
      if (a['versioning'] === false) out.push({ property: 'versioning', reason: 'must not be false when objectLock is set (object lock needs versioning)' });
    }
  }
  return out;
}
