import type { RecoveryPlan, RecoveryReport, StepEvent } from '@etcd-recover/core';
import { age, duration } from './render.js';

/** The preflight a person reads before typing the confirmation. */
export function describePlan(plan: RecoveryPlan, resumed: boolean): string {
  const o = plan.observed;
  const lines: string[] = [];
  lines.push(`${plan.kind === 'quorum' ? 'Quorum-loss restore' : `Replace member ${plan.member}`} of cluster ${plan.cluster} (${plan.target})${resumed ? ` — RESUMING ${plan.id}` : ''}`);
  lines.push(`  members:    ${plan.members.map((m) => `${m.name}${o.healthy.includes(m.name) ? ' (healthy)' : o.withData.includes(m.name) ? ' (has data, no quorum)' : o.running.includes(m.name) ? ' (running, unhealthy)' : ' (lost)'}`).join(', ')}`);
  lines.push(`  quorum:     ${o.quorum ? 'holds' : 'LOST'}${o.maxRevision !== undefined ? `; highest revision seen ${o.maxRevision}` : ''}`);
  const rp = plan.restorePoint;
  if (rp) {
    lines.push(
      rp.kind === 'live'
        ? `  restore:    a fresh snapshot of surviving member ${rp.member} (revision ${rp.revision}) — ${rp.reason}`
        : rp.kind === 'point-in-time'
          ? `  restore:    revision ${rp.revision}${rp.createdAt ? ` (archived ${rp.createdAt})` : ''}, rebuilt from archive chain ${rp.pointInTime?.chain}: backup ${rp.pointInTime?.baseSnapshot} (revision ${rp.pointInTime?.baseRevision}) + ${rp.pointInTime?.segments} segment(s) — ${rp.reason}`
          : `  restore:    backup ${rp.name} (revision ${rp.revision}, ${rp.totalKeys} keys, taken ${age(rp.createdAt)} ago${rp.verified ? ', verified' : ', NOT yet verified'}) — ${rp.reason}`,
    );
  }
  if (plan.versions) lines.push(`  etcd:       ${describeVersions(plan.versions)}`);
  if (plan.bump) lines.push(`  revisions:  bumped by ${plan.bump.bump} and marked compacted (${plan.bump.reason})`);
  if (plan.loss) {
    const parts = [plan.loss.revisions !== undefined ? `${plan.loss.revisions} revisions` : undefined, plan.loss.seconds !== undefined ? `${plan.loss.seconds} s of writes` : undefined].filter(Boolean);
    lines.push(`  data loss:  ${parts.length ? parts.join(', ') + ' — ' : ''}${plan.loss.note}`);
  }
  lines.push('  steps:');
  plan.steps.forEach((s, i) => lines.push(`    ${String(i + 1).padStart(2)}. ${s.title}${s.destructive ? '  [changes data]' : ''}`));
  for (const w of plan.warnings) lines.push(`  warning: ${w}`);
  return lines.join('\n');
}

export function describeStep(e: StepEvent): string {
  const n = `[${e.index + 1}/${e.total}]`;
  if (e.phase === 'start') return `${n} ${e.step.title}…`;
  if (e.phase === 'skip') return `${n} ${e.step.title}: skipped (${e.note})`;
  return `${n} done in ${duration(e.ms ?? 0)}${e.note ? ` (${e.note})` : ''}`;
}

export function describeReport(r: RecoveryReport): string {
  const lines = [`Recovery ${r.id} completed${r.resumed ? ' (resumed)' : ''} in ${duration(r.rtoMs)}.`];
  if (r.restorePoint) lines.push(`  restored from: ${r.restorePoint.kind === 'live' ? `live snapshot of ${r.restorePoint.member}` : r.restorePoint.kind === 'point-in-time' ? 'point in time, rebuilt from the archive as' : 'backup'} ${r.restorePoint.name ?? ''} (revision ${r.restorePoint.revision ?? '?'})`);
  if (r.versions) lines.push(`  etcd:          ${describeVersions(r.versions)}`);
  if (r.revisionBefore !== undefined || r.bump) lines.push(`  revision:      ${r.revisionBefore ?? '?'} before → ${r.revisionAfter} after${r.bump ? ` (bump ${r.bump})` : ''}`);
  lines.push(`  keys:          ${r.keys}`);
  lines.push(`  members:       ${r.members.map((m) => `${m.name}${m.isLeader ? '*' : ''}@${m.revision}`).join(', ')}${r.members[0]?.hashKV !== undefined ? ` — identical keyspace (hashKV ${r.members[0].hashKV})` : ''}`);
  if (r.loss) lines.push(`  data loss:     ${r.loss.note}`);
  lines.push(`  old data kept: ${Object.values(r.oldData).join(', ')}`);
  if (r.backupAfter) lines.push(`  backed up as:  ${r.backupAfter.name} (revision ${r.backupAfter.revision}): the newest backup is now the restored data`);
  lines.push(`  RTO:           ${duration(r.rtoMs)}`);
  if (r.afterRestore) lines.push(...describeAfterRestore(r.afterRestore));
  for (const w of r.warnings ?? []) lines.push(`  warning: ${w}`);
  return lines.join('\n');
}

/** What the after-restore steps did, what they left undone, and what to check by hand. */
function describeAfterRestore(a: NonNullable<RecoveryReport['afterRestore']>): string[] {
  const lines = ['  after the restore:'];
  for (const s of a.steps) {
    if (s.status === 'left-undone') {
      lines.push(`    ${s.step}: LEFT UNDONE — ${s.reason}`);
      continue;
    }
    if (s.deployment) lines.push(`    ${s.step}: rollout started`);
    else if (!s.actions.length) lines.push(`    ${s.step}: nothing stuck`);
    for (const x of s.actions) {
      const what = x.kind === 'repair-cronjob' ? `CronJob ${x.namespace}/${x.name} (${x.why})` : `pod ${x.namespace}/${x.name} (${x.state} for ${x.ageSeconds} s on ${x.node})`;
      lines.push(`    ${s.step}: ${x.done} ${what}${x.error ? `: ${x.error}` : ''}`);
    }
  }
  if (a.manual.length) {
    lines.push('  check by hand:');
    for (const m of a.manual) lines.push(`    - ${m}`);
  }
  return lines;
}

/** "snapshot 3.6.15 → target 3.6.16 (warn)", unknown versions named so. */
function describeVersions(v: NonNullable<RecoveryPlan['versions']>): string {
  return `snapshot ${v.snapshot.version ?? 'unknown'} → target ${v.target.version ?? 'unknown'} (${v.verdict === 'ok' ? 'ok' : v.verdict === 'warn' ? 'warning' : 'REFUSED'}${v.requireSame ? ', same release required' : ''}; target's from ${v.target.source})`;
}
