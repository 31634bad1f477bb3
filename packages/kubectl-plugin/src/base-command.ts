import { Command, Errors } from '@oclif/core';
import { EtcdRecoverError, isEtcdRecoverError, runRecovery, type Catalog, type Prepared, type RecoveryReport, type RecoveryTarget } from '@etcd-recover/core';
import { describeReport, describeStep } from './plan-view.js';
import { formatStructured, type OutputFormat } from './render.js';
import { Progress } from './progress.js';
import { Target, type TargetFlags } from './target.js';
import { reportJobOutcome, runsAsJob } from './job-report.js';
import type { JobName, JobOutcome } from '@etcd-recover/core';
import { createInterface } from 'node:readline/promises';

/**
 * Base of every command: `run()` returns a typed result; `render` prints it as
 * a table (human) or JSON/YAML (stable schemas); `catch` turns every error into
 * one message naming the problem, the next step, and a documented exit code
 * (docs/exit-codes.md). Results go to stdout, progress and warnings to stderr.
 */
export abstract class BaseCommand extends Command {
  protected progress = new Progress(false);
  protected format: OutputFormat = 'table';
  private target: Target | undefined;
  protected abort = new AbortController();

  protected setup(flags: { output?: OutputFormat; quiet?: boolean }): void {
    this.format = flags.output ?? 'table';
    this.progress = new Progress(!flags.quiet);
    const onSignal = () => this.abort.abort(new EtcdRecoverError('ABORTED', 'interrupted'));
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
  }

  protected async openTarget(flags: TargetFlags): Promise<Target> {
    this.target = await Target.open(flags);
    return this.target;
  }

  /** Prints a result: JSON/YAML verbatim, or the command's human rendering. */
  protected render(result: unknown, human: () => string): void {
    this.progress.clear();
    if (this.format === 'json' || this.format === 'yaml') this.log(formatStructured(result, this.format));
    else {
      const text = human();
      if (text) this.log(text);
    }
  }

  /**
   * Typed confirmation for destructive steps: the operator types `expected`.
   * Without a terminal the command refuses unless --yes was given.
   */
  protected async confirm(action: string, expected: string, yes: boolean | undefined): Promise<void> {
    if (yes) return;
    if (!process.stdin.isTTY) {
      throw new EtcdRecoverError('ABORTED', `${action}: refusing without confirmation (no terminal)`, {
        hint: 'review with --dry-run, then rerun with --yes',
      });
    }
    this.progress.clear();
    const rl = createInterface({ input: process.stdin, output: process.stderr });
    try {
      const answer = await rl.question(`${action}\nType "${expected}" to continue: `);
      if (answer.trim() !== expected) throw new EtcdRecoverError('ABORTED', 'not confirmed; nothing was changed');
    } finally {
      rl.close();
    }
  }

  /** Runs (or resumes) a prepared recovery with progress on stderr, and renders its report. */
  protected async executeRecovery(
    target: RecoveryTarget,
    catalog: Catalog,
    prepared: Prepared,
    command: string,
    flags: { restart?: boolean; timeout: number; 'hosted-timeout'?: number },
  ): Promise<RecoveryReport> {
    this.reportAs('recovery', { always: true });
    const report = await runRecovery({
      target,
      catalog,
      prepared,
      command,
      ...(flags.restart ? { restart: true } : {}),
      signal: this.abort.signal,
      healthyTimeoutMs: flags.timeout * 1000,
      ...(flags['hosted-timeout'] !== undefined ? { hostedTimeoutMs: flags['hosted-timeout'] * 1000 } : {}),
      onStep: (e) => this.progress.step(describeStep(e)),
      onMessage: (m) => this.progress.step(`      ${m}`),
    });
    this.render(report, () => describeReport(report));
    this.job!.message = `${report.kind} recovery ${report.id} completed: ${report.members.length} member(s) at revision ${report.revisionAfter}, ${report.keys} keys${report.restorePoint?.name ? ` (from ${report.restorePoint.name})` : ''}`;
    this.job!.details = { recovery: report.id, kind: report.kind };
    return report;
  }

  protected override async catch(err: Error & { exitCode?: number; oclif?: { exit?: number } }): Promise<void> {
    this.progress.clear();
    let e: EtcdRecoverError;
    if (isEtcdRecoverError(err)) e = err;
    else if (err instanceof Errors.CLIError || err.oclif) {
      if (err.oclif?.exit === 0) return;
      e = new EtcdRecoverError('USAGE', err.message.replace(/^Error: /, ''), { hint: `see \`kubectl etcd-recover ${this.id?.replace(/:/g, ' ') ?? ''} --help\`` });
    } else e = new EtcdRecoverError('INTERNAL', err.message || String(err), { cause: err });
    if (this.format === 'json' || this.format === 'yaml') {
      process.stdout.write(formatStructured({ error: e.toJSON() }, this.format) + '\n');
    }
    process.stderr.write(`error: ${e.message}\n`);
    if (e.hint) process.stderr.write(`  next: ${e.hint}\n`);
    if (e.code === 'INTERNAL' && process.env['DEBUG']) process.stderr.write(`${err.stack}\n`);
    process.exitCode = e.exitCode;
  }

  /**
   * A command that is one of the component's jobs (or a recovery) names itself here and, on success,
   * what it did; `finally` then records the outcome (job-report.ts): success, or the error it ended with.
   */
  protected job: { name: JobName; startedAt: number; always?: boolean; message?: string; ok?: boolean; details?: JobOutcome['details'] } | undefined;

  protected reportAs(name: JobName, o: { always?: boolean } = {}): void {
    this.job = { name, startedAt: Date.now(), ...(o.always ? { always: true } : {}) };
  }

  protected override async finally(err: Error | undefined): Promise<void> {
    const j = this.job;
    if (j && (j.always || runsAsJob(j.name))) {
      const failed = Boolean(err) || j.ok === false || (process.exitCode !== undefined && process.exitCode !== 0);
      const message = err ? err.message + (isEtcdRecoverError(err) && err.hint ? ` (next: ${err.hint})` : '') : (j.message ?? `${j.name} ${failed ? 'failed' : 'succeeded'}`);
      await reportJobOutcome(this.target, j.name, { ok: !failed, message, startedAt: j.startedAt, ...(j.details ? { details: j.details } : {}) }).catch(() => undefined);
    }
    this.target?.close();
    await super.finally(err);
  }
}
