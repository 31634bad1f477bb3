import { Flags } from '@oclif/core';
import { EtcdRecoverError, abandonRecovery, describeOpenJournal, prepareQuorum, refusePlannedVersions, type JournalDoc, type RecoveryPlan, type RecoveryReport, type RestorePointRequest } from '@etcd-recover/core';
import { BaseCommand } from '../base-command.js';
import { outputFlag, quietFlag, storeFlags, targetFlags, yesFlag } from '../flags.js';
import { describePlan } from '../plan-view.js';

export default class Quorum extends BaseCommand {
  static override summary = 'Restore a cluster that lost quorum: verified restore point, every member rebuilt, revisions never go backwards.';
  static override description = `Observes what is lost and what survives, picks a restore point (a live snapshot from a surviving member with data when there is one, else the newest verified backup; or --snapshot NAME), verifies it natively, and only then stops members, moves their old data aside (never deletes it), restores every member with etcdutl (new cluster token, revision bumped and marked compacted), starts them and proves they hold the same keyspace.
On Kubernetes (-n/--context/--kubeconfig) it follows the declared recovery contract: pause reconciliation, scale the dependent workloads and the etcd StatefulSet to zero, and run Jobs that mount each member's PVC, set its old data aside inside the volume and restore it from the bucket; then scale back up and check the keyspace from a Job. Nothing is streamed through this machine and nothing needs exec or port-forward.
Each step is journaled beside the backups: if the command dies, run it again and it resumes where it stopped. An unfinished recovery is shown before anything happens (its age, restore point and the step reached); it resumes only when this command asks for the same thing — a different --snapshot, --restore-point or --bump-revision refuses and names the difference — and, when none of its destructive steps has run yet, only if quorum is still lost and its restore point still verified. Close one you do not want with --abandon "REASON".
After the restore, once the dependents are back (Kubernetes), it reconciles what a restore leaves behind in the hosted cluster, through the kubeconfig Secret the contract names (afterRestore.hostedKubeconfig): CronJobs whose status.active names Jobs that are gone or whose lastScheduleTime lies in the future are repaired so they schedule again; pods stuck in ContainerCreating or Init past afterRestore.stuckPodSeconds are reported and, with --yes, deleted; the control-plane Deployments the contract names (afterRestore.rolloutDeployments) get a forced rollout. Each is a journaled step in the plan. None of them fails the recovery: what could not be done (the hosted API server unreachable within --hosted-timeout) is listed in the report as left undone, with what to check by hand — as is everything, without that kubeconfig.
A fenced lock keeps two recoveries of one cluster apart: each destructive step first proves, with a conditional write, that this run still holds it.
Exit codes: 0 restored (also when an after-restore step was left undone: the report's afterRestore.leftUndone lists it); 4 no restore point; 3 restore point corrupt or foreign; 7 another recovery holds the lock, or this run lost it (stopped before the next destructive step); 8 not confirmed; 9 quorum still holds (use --force or member replace), or an unfinished recovery asks for something else; 10 a step failed (rerun to resume); 11 a volume lacks space for the restore; 14 the restore point was written by a newer etcd minor than the target runs (etcd cannot downgrade a data dir), or by another release under --require-same-version — refused before anything is stopped.
Point in time (--to-revision R, --to-time T): with continuous archiving on (\`agent archive\`, the component's archiver), the restore point is rebuilt from an archive chain — its base backup loaded into a temporary etcd and every archived revision up to R replayed as one transaction each, so every key's create and mod revision and version are as they were at R — then snapshotted into the bucket (a backup labelled point-in-time, restored by name only) and restored like any backup, with the same plan, journal, lock and checks. --dry-run shows the chain, the segments and what the archive holds past R. A revision outside every chain, in a missing segment's range, or a time between two chains is refused naming the ranges there are. On a cluster that still has quorum (undoing a mistake) it needs --force.
The plan shows both etcd versions (the snapshot's: its storage version from the snapshot's bytes for the minor, the version its source member reported for the patch; the target's: \`etcd --version\` in the sandbox, on Kubernetes the contract's etcd.version or the StatefulSet's image tag). A different patch level, or an unknown version, warns.`;
  static override examples = [
    { description: 'See the plan without changing anything', command: '<%= config.bin %> quorum --dry-run' },
    { description: 'The plan as JSON (what the run then executes)', command: '<%= config.bin %> quorum --dry-run -o json' },
    { description: 'Restore, confirming by typing the cluster name', command: '<%= config.bin %> quorum' },
    { description: 'Restore a named backup without a prompt (automation)', command: '<%= config.bin %> quorum --snapshot full-20261121T073355123Z --yes' },
    { description: "OKD's rule: only with the etcd release that took the backup", command: '<%= config.bin %> quorum --require-same-version --yes' },
    { description: 'Undo a mistake: the keyspace as it was just before revision 48213 (from `backup history KEY`), on a cluster that still has quorum', command: '<%= config.bin %> quorum --to-revision 48212 --force --dry-run' },
    { description: 'Point-in-time restore to a time (all members lost)', command: '<%= config.bin %> quorum --to-time 2026-12-02T03:04:05Z --yes' },
    { description: 'Resume after the command was interrupted', command: '<%= config.bin %> quorum --yes' },
    { description: 'Close an unfinished recovery you do not want to resume (its set-aside data is kept)', command: '<%= config.bin %> quorum --abandon "planned before etcd-1 came back"' },
    { description: 'On Kubernetes: the cluster the EtcdCluster component declared in a namespace (Jobs in the cluster do the etcd work)', command: '<%= config.bin %> quorum -n hcp-demo --dry-run' },
    { description: 'A namespace rebuilt from scratch (Secrets gone too): the break-glass key and bucket credentials from files, companions recreated first', command: '<%= config.bin %> quorum -n hcp-demo --restore-companions --age-identity-file break-glass.key --s3-credentials-file creds.ini --yes' },
  ];
  static override flags = {
    ...targetFlags,
    ...storeFlags,
    ...outputFlag,
    ...quietFlag,
    ...yesFlag,
    'dry-run': Flags.boolean({ description: 'Print the plan; change nothing.' }),
    'restore-point': Flags.option({ description: 'auto (default): whichever is newer, a live snapshot of the best surviving member or the newest trusted backup; live; latest trusted backup.', options: ['auto', 'live', 'latest'] as const })(),
    snapshot: Flags.string({ description: 'Restore this backup (see `backup list`).', exclusive: ['restore-point'] }),
    'to-revision': Flags.integer({ description: 'Point-in-time: restore the keyspace exactly as it was at this revision, rebuilt from the archive (`backup list` shows the restorable ranges; `backup history KEY` finds the revision before a mistake).', min: 1, exclusive: ['restore-point', 'snapshot', 'to-time'] }),
    'to-time': Flags.string({ description: 'Point-in-time: restore to the newest revision archived at or before this time (RFC 3339, e.g. 2026-12-02T03:04:05Z).', exclusive: ['restore-point', 'snapshot', 'to-revision'] }),
    'bump-revision': Flags.integer({ description: 'Revision bump (default: computed; see docs/design.md#revision-bump).', min: 1 }),
    'force-foreign': Flags.boolean({ description: 'Allow a backup whose cluster identity differs from this cluster.' }),
    force: Flags.boolean({ description: 'Restore even though quorum still holds (discards writes since the restore point).' }),
    'require-same-version': Flags.boolean({ description: "Refuse unless the target's etcd is the release that took the restore point (any difference in major.minor.patch, or an unknown version, refuses). Without it only a newer minor refuses." }),
    restart: Flags.boolean({ description: 'Abandon an unfinished recovery and plan a new one (its set-aside data is kept).' }),
    abandon: Flags.string({ description: 'Close the unfinished recovery without running anything, recording this reason (its set-aside data is kept).', exclusive: ['restart', 'snapshot', 'restore-point', 'bump-revision', 'to-revision', 'to-time'] }),
    timeout: Flags.integer({ description: 'Seconds to wait for restored members to become healthy.', default: 120, min: 5 }),
    'hosted-timeout': Flags.integer({ description: "Kubernetes: seconds to wait for the hosted cluster's API server to answer once the dependents are back (the after-restore steps; past it they are left undone and reported).", default: 300, min: 1 }),
    'restore-companions': Flags.boolean({ description: 'Kubernetes: first recreate the missing Secrets/ConfigMaps saved (encrypted) with the restore point — the hosted API server\'s encryption configuration, its service-account key, TLS, the bucket credentials. Existing ones that differ are reported, not overwritten.' }),
    'overwrite-companions': Flags.boolean({ description: 'With --restore-companions: also replace existing companions whose content differs from the backup\'s.', dependsOn: ['restore-companions'] }),
  };

  async run(): Promise<RecoveryPlan | RecoveryReport | JournalDoc> {
    const { flags } = await this.parse(Quorum);
    this.setup(flags);
    const target = await this.openTarget(flags);
    const catalog = target.catalog();
    await catalog.store.probe(this.abort.signal);
    if (flags.abandon !== undefined) return this.abandon(catalog, flags.abandon);
    const rt = await target.recoveryTarget();
    const request: RestorePointRequest | undefined =
      flags['to-revision'] !== undefined ? { toRevision: flags['to-revision'] } : flags['to-time'] ? { toTime: flags['to-time'] } : flags.snapshot ? { name: flags.snapshot } : flags['restore-point'];
    const prepared = await prepareQuorum({
      target: rt,
      catalog,
      ...(request !== undefined ? { request } : {}),
      ...(flags['bump-revision'] !== undefined ? { bumpOverride: flags['bump-revision'] } : {}),
      ...(flags['force-foreign'] ? { allowForeign: true } : {}),
      ...(flags.restart ? { restart: true } : {}),
      ...(flags.force ? { force: true } : {}),
      ...(flags['require-same-version'] ? { requireSameVersion: true } : {}),
      ...(flags['restore-companions'] ? { restoreCompanions: { overwrite: Boolean(flags['overwrite-companions']) } } : {}),
      ...(flags.yes ? { deleteStuckPods: true } : {}),
      signal: this.abort.signal,
    });
    if (prepared.resume) this.progress.step(describeOpenJournal(prepared.resume));
    const { plan } = prepared;
    if (target.kind === 'kubernetes') {
      // Ask the API server before anything changes: a recovery that stops half-way for a missing
      // permission is worse than one that never starts.
      const { requirePermissions, KubernetesRecoveryTarget } = await import('@etcd-recover/core/kubernetes');
      const ns = target.kube!.namespace;
      // --restore-companions recreates Secrets/ConfigMaps (and replaces them with --overwrite-companions).
      const companionRights = (plan.companions?.items ?? []).flatMap((c) => {
        const resource = c.kind === 'Secret' ? 'secrets' : 'configmaps';
        return [
          { verb: 'get', resource, group: '', namespace: ns, name: c.name },
          { verb: 'create', resource, group: '', namespace: ns },
          ...(plan.companions!.overwrite ? [{ verb: 'update', resource, group: '', namespace: ns, name: c.name }] : []),
        ];
      });
      const check = requirePermissions(target.kube!.kc, 'quorum', [...(rt as InstanceType<typeof KubernetesRecoveryTarget>).permissions(), ...companionRights]);
      if (flags['dry-run']) await check.catch((e: Error) => plan.warnings.push(e.message));
      else await check;
    }
    if (flags['dry-run']) {
      this.render(plan, () => describePlan(plan, Boolean(prepared.resume)));
      return plan;
    }
    // A restore point the target's etcd cannot restore is refused before quorum, confirmation or any step.
    refusePlannedVersions(plan);
    if (!prepared.resume && plan.observed.quorum && !flags.force) {
      throw new EtcdRecoverError('QUORUM_HOLDS', `quorum still holds (${plan.observed.healthy.join(', ')} healthy): a full restore would discard every write since the restore point`, {
        hint: 'replace failed members one by one with `kubectl etcd-recover member replace NAME`, or pass --force',
      });
    }
    this.progress.step(describePlan(plan, Boolean(prepared.resume)));
    await this.confirm(`This stops every member of ${plan.cluster} and rebuilds their data.`, plan.cluster, flags.yes);
    const report = await this.executeRecovery(rt, catalog, prepared, ['quorum', ...this.argv].join(' '), flags);
    return report;
  }

  private async abandon(catalog: Parameters<typeof abandonRecovery>[0]['catalog'], reason: string): Promise<JournalDoc> {
    if (!reason.trim()) throw new EtcdRecoverError('USAGE', '--abandon needs a reason (it is recorded in the journal)');
    const doc = await abandonRecovery({ catalog, reason, by: ['quorum', ...this.argv].join(' '), signal: this.abort.signal });
    if (!doc) throw new EtcdRecoverError('PRECONDITION', `no unfinished recovery of cluster ${catalog.cluster} to abandon`, { hint: '`kubectl etcd-recover quorum --dry-run` shows what a new recovery would do' });
    this.render(doc, () => `Abandoned ${doc.plan.kind} recovery ${doc.plan.id} (${reason}). Its set-aside data, if any, is kept: see docs/runbooks/rollback.md.`);
    return doc;
  }
}
