/**
 * What a restore leaves behind in the hosted cluster, and what to do about it — the by-hand steps of
 * a restore runbook (CronJobs that stopped scheduling, pods stuck in ContainerCreating or Init) as a
 * pure function from observed objects to actions. The executor runs the actions as journaled steps
 * once the dependents are back (executor.ts); the hosted cluster's API is the HostedCluster port.
 */

/** A CronJob as the controller reads it. */
export interface HostedCronJob {
  namespace: string;
  name: string;
  suspended: boolean;
  /** status.active: the Jobs the CronJob controller believes are running. */
  active: { namespace?: string; name: string; uid?: string }[];
  /** status.lastScheduleTime (RFC 3339). */
  lastScheduleTime?: string;
  resourceVersion?: string;
}

export interface HostedJob {
  namespace: string;
  name: string;
  uid?: string;
}

export interface HostedPod {
  namespace: string;
  name: string;
  phase: string;
  /** spec.nodeName: a pod not yet scheduled is not stuck on a node. */
  nodeName?: string;
  createdAt?: string;
  deleting: boolean;
  initContainers: number;
  /** Init containers that terminated with exit 0. */
  initDone: number;
  /** state.waiting.reason of each regular container that waits. */
  waiting: string[];
}

/** Clear what makes a CronJob stuck, through its status subresource. */
export interface RepairCronJob {
  kind: 'repair-cronjob';
  namespace: string;
  name: string;
  /** status.active entries naming Jobs that do not exist. */
  dropActive: string[];
  /** The lastScheduleTime in the future that is cleared (the controller then schedules from creation). */
  clearLastSchedule?: string;
  why: string;
}

/** A pod stuck in ContainerCreating or Init past the bound: reported, deleted when allowed. */
export interface StuckPod {
  kind: 'stuck-pod';
  namespace: string;
  name: string;
  /** As `kubectl get pods` shows it: "ContainerCreating", "Init:0/1". */
  state: string;
  ageSeconds: number;
  node: string;
}

export type AfterRestoreAction = RepairCronJob | StuckPod;

/**
 * CronJobs the restore left unable to schedule: status.active lists Jobs that no longer exist (a
 * Forbid CronJob waits for them forever), or status.lastScheduleTime lies after `now` (the controller
 * schedules nothing before it). Suspended CronJobs are their owner's business and left alone.
 */
export function stuckCronJobs(now: Date, cronJobs: HostedCronJob[], jobs: HostedJob[]): RepairCronJob[] {
  const byName = new Map(jobs.map((j) => [`${j.namespace}/${j.name}`, j]));
  const out: RepairCronJob[] = [];
  for (const cj of cronJobs) {
    if (cj.suspended) continue;
    const dropActive = cj.active
      .filter((a) => {
        const j = byName.get(`${a.namespace ?? cj.namespace}/${a.name}`);
        // A Job of that name with another UID is another Job: the one the status names is gone.
        return !j || (a.uid !== undefined && j.uid !== undefined && a.uid !== j.uid);
      })
      .map((a) => a.name);
    const last = cj.lastScheduleTime ? Date.parse(cj.lastScheduleTime) : NaN;
    const future = Number.isFinite(last) && last > now.getTime() ? cj.lastScheduleTime : undefined;
    if (!dropActive.length && !future) continue;
    const why = [
      dropActive.length ? `status.active names Job${dropActive.length > 1 ? 's' : ''} ${dropActive.join(', ')} that no longer exist${dropActive.length > 1 ? '' : 's'}` : '',
      future ? `status.lastScheduleTime ${future} is in the future` : '',
    ].filter(Boolean).join('; ');
    out.push({ kind: 'repair-cronjob', namespace: cj.namespace, name: cj.name, dropActive, ...(future ? { clearLastSchedule: future } : {}), why });
  }
  return out;
}

/**
 * The status merge patch that repairs one CronJob: the active list without the missing Jobs,
 * lastScheduleTime removed when it was in the future. Carries the resourceVersion it was computed
 * from, so a controller write in between makes it fail (409) rather than be overwritten.
 */
export function cronJobRepairPatch(a: RepairCronJob, cj: HostedCronJob): Record<string, unknown> {
  const active = cj.active.filter((x) => !a.dropActive.includes(x.name));
  return {
    metadata: { ...(cj.resourceVersion ? { resourceVersion: cj.resourceVersion } : {}) },
    status: {
      ...(a.dropActive.length ? { active: active.length ? active : null } : {}),
      ...(a.clearLastSchedule ? { lastScheduleTime: null } : {}),
    },
  };
}

/**
 * Pods that sit on a node in ContainerCreating or Init for longer than `boundSeconds` (the kubelet
 * lost track of them across the restore). Unscheduled pods, terminating ones and running ones are not
 * stuck. Age counts from creation.
 */
export function stuckPods(now: Date, pods: HostedPod[], boundSeconds: number): StuckPod[] {
  const out: StuckPod[] = [];
  for (const p of pods) {
    if (p.phase !== 'Pending' || !p.nodeName || p.deleting || !p.createdAt) continue;
    const ageSeconds = Math.floor((now.getTime() - Date.parse(p.createdAt)) / 1000);
    if (!(ageSeconds > boundSeconds)) continue;
    const state =
      p.initDone < p.initContainers
        ? `Init:${p.initDone}/${p.initContainers}`
        : p.waiting.find((r) => r === 'ContainerCreating' || r === 'PodInitializing');
    if (!state) continue;
    out.push({ kind: 'stuck-pod', namespace: p.namespace, name: p.name, state, ageSeconds, node: p.nodeName });
  }
  return out;
}

/** One after-restore step's outcome, as the journal and the final report record it. */
export interface AfterRestoreOutcome {
  step: string;
  status: 'done' | 'left-undone';
  /** What was found and done (or found and only reported). */
  actions: (AfterRestoreAction & { done: 'repaired' | 'deleted' | 'reported' | 'failed'; error?: string })[];
  /** Why the step could not do its work (the hosted API unreachable, the Secret missing…). */
  reason?: string;
  /** What to check by hand instead. */
  manual?: string[];
  /** For a rollout step: the Deployment restarted. */
  deployment?: string;
}

/** The checks a person does by hand when no hosted-cluster kubeconfig is available (or it does not answer). */
export const MANUAL_CRONJOB_CHECKS = [
  'kubectl get cronjobs -A: a CronJob with ACTIVE > 0 whose Jobs are gone, or a LAST SCHEDULE in the future (or far older than its schedule), no longer schedules',
  "repair it: clear status.active of the missing Jobs and a future status.lastScheduleTime (kubectl patch cronjob NAME --subresource=status --type=merge -p '{\"status\":{\"active\":null,\"lastScheduleTime\":null}}'), or `kubectl replace --force` it",
];
export const MANUAL_POD_CHECKS = [
  'kubectl get pods -A | grep -E "ContainerCreating|Init:": pods stuck there for minutes after the restore never start; delete them (their controller recreates them)',
];
export function manualRolloutCheck(deployment: string): string {
  return `kubectl -n ${deployment.split('/')[0]} rollout restart deployment ${deployment.split('/')[1]} (its caches predate the restore)`;
}
