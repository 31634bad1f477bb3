import { outcomeReason, recordJobOutcome, type JobName, type JobOutcome, type JobStatus } from '@etcd-recover/core';
import type { Target } from './target.js';

/**
 * Records what a job did, where alerting reads it: its status object in the bucket (the exporter's
 * metrics, `status`), and on Kubernetes an Event on the recovery contract plus the job's entry in the
 * recovery-status ConfigMap. Scheduled jobs report when the component's CronJob names them
 * (ETCD_RECOVER_JOB); recoveries always do. Reporting never changes the job's result: a failure to
 * report is a warning on stderr.
 */
export async function reportJobOutcome(target: Target | undefined, job: JobName, o: { ok: boolean; message: string; startedAt: number; details?: JobOutcome['details'] }): Promise<void> {
  if (!target) return;
  const outcome: JobOutcome = {
    ok: o.ok,
    at: new Date().toISOString(),
    reason: outcomeReason(job, o.ok),
    message: o.message,
    durationMs: Date.now() - o.startedAt,
    ...(o.details ? { details: o.details } : {}),
  };
  const warn = (m: string) => process.stderr.write(`warning: ${m}\n`);
  let status: JobStatus | undefined;
  try {
    const r = await recordJobOutcome(target.store(), target.cluster, job, outcome);
    if (r instanceof Error) warn(`could not record the ${job} outcome in the bucket: ${r.message}`);
    else status = r;
  } catch (e) {
    warn(`could not record the ${job} outcome in the bucket: ${(e as Error).message}`);
  }
  const contract = target.contract;
  if (!contract) return;
  const k = await import('@etcd-recover/core/kubernetes');
  let kc = target.kube?.kc;
  if (!kc && process.env['KUBERNETES_SERVICE_HOST']) {
    try {
      kc = k.inClusterKubeConfig();
    } catch (e) {
      warn(`could not report the ${job} outcome to Kubernetes: ${(e as Error).message}`);
      return;
    }
  }
  if (!kc) return;
  for (const e of await k.reportToKubernetes(kc, contract, job, outcome, status)) warn(e.message);
}

/** Whether this process runs as the named job of the component (its CronJob sets ETCD_RECOVER_JOB). */
export function runsAsJob(job: JobName): boolean {
  return process.env['ETCD_RECOVER_JOB'] === job;
}
