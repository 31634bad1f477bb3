import { EtcdRecoverError } from '../errors.js';
import { layout } from '../layout.js';
import type { ObjectStore } from '../store/object-store.js';

/** The jobs whose outcomes are recorded (the component's CronJobs, and recoveries). */
export type JobName = 'backup' | 'verify' | 'heal' | 'defrag' | 'drill' | 'recovery';

export interface JobOutcome {
  ok: boolean;
  at: string;
  /** A CamelCase reason, as Kubernetes Events have: BackupSucceeded, VerificationFailed, DrillFailed, … */
  reason: string;
  /** One line: what happened, or the error and its hint. */
  message: string;
  durationMs?: number;
  /** E.g. the backup's name, or the error code. */
  details?: Record<string, string | number | boolean>;
}

/** What the bucket keeps per job: its last run, its last success, and how many failed in a row since. */
export interface JobStatus {
  job: JobName;
  last: JobOutcome;
  lastSuccessAt?: string;
  consecutiveFailures: number;
}

export const JOB_NAMES: readonly JobName[] = ['backup', 'verify', 'heal', 'defrag', 'drill', 'recovery'];

/**
 * Records one run's outcome in the bucket (`clusters/<c>/jobs/<job>.json`), with a conditional write so
 * two runs never lose each other's count. Where alerting reads it: the exporter's metrics, `status`,
 * and the recovery contract's status on Kubernetes. Never throws for the job's sake: returns the error.
 */
export async function recordJobOutcome(store: ObjectStore, cluster: string, job: JobName, outcome: JobOutcome, signal?: AbortSignal): Promise<JobStatus | Error> {
  const key = layout.jobStatus(cluster, job);
  try {
    for (let attempt = 0; attempt < 5; attempt++) {
      const got = await store.read(key, signal);
      const prev = got ? (JSON.parse(got.body.toString('utf8')) as JobStatus) : undefined;
      const next: JobStatus = {
        job,
        last: outcome,
        ...(outcome.ok ? { lastSuccessAt: outcome.at } : prev?.lastSuccessAt ? { lastSuccessAt: prev.lastSuccessAt } : {}),
        consecutiveFailures: outcome.ok ? 0 : (prev?.consecutiveFailures ?? 0) + 1,
      };
      const body = JSON.stringify(next, null, 2) + '\n';
      const written = await store.put(key, body, { contentType: 'application/json', ...(got?.etag ? { ifMatch: got.etag } : { ifNoneMatch: true }), ...(signal ? { signal } : {}) });
      if (written) return next;
    }
    return new EtcdRecoverError('STORE_ERROR', `could not record the ${job} outcome: the status object kept changing`);
  } catch (e) {
    return e instanceof Error ? e : new Error(String(e));
  }
}

/** Every job's recorded status (absent jobs are left out). */
export async function readJobStatuses(store: ObjectStore, cluster: string, signal?: AbortSignal): Promise<JobStatus[]> {
  const out: JobStatus[] = [];
  for (const job of JOB_NAMES) {
    const got = await store.read(layout.jobStatus(cluster, job), signal);
    if (!got) continue;
    try {
      out.push(JSON.parse(got.body.toString('utf8')) as JobStatus);
    } catch {
      // An unreadable status object is no status; the next run rewrites it.
    }
  }
  return out;
}

/** The Event reason for a job's outcome: BackupSucceeded / BackupFailed, VerificationSucceeded, … */
export function outcomeReason(job: JobName, ok: boolean): string {
  const noun = { backup: 'Backup', verify: 'Verification', heal: 'Heal', defrag: 'Defrag', drill: 'Drill', recovery: 'Recovery' }[job];
  return `${noun}${ok ? 'Succeeded' : 'Failed'}`;
}
