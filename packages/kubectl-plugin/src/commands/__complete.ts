import { Command } from '@oclif/core';
import { performance } from 'node:perf_hooks';
import { complete, formatCompletion, withDynamic, type Candidate, type DynamicNeed } from '../completion.js';
import type { TargetFlags } from '../target.js';

/** The whole completion, start-up included, answers within this (the shell waits for it). */
const BUDGET_MS = 1500;

/**
 * What `kubectl_complete-etcd_recover` runs (kubectl's plugin completion): prints the candidates for
 * the words after `kubectl etcd-recover` in Cobra's __complete format. Commands, flags and their
 * options come from the oclif manifest; backup and member names from the cluster, only when asked
 * for and only as long as the budget lasts. Never an error on the terminal: whatever fails, the
 * static candidates and the directive are printed and the exit code is 0
 * (ETCD_RECOVER_COMPLETE_DEBUG=1 shows on stderr why no names came).
 */
export default class Complete extends Command {
  static override hidden = true;
  static override strict = false;
  static override summary = 'Shell completion for kubectl (Cobra __complete format).';

  async run(): Promise<void> {
    const debug = Boolean(process.env['ETCD_RECOVER_COMPLETE_DEBUG']);
    if (!debug) process.stderr.write = () => true;
    // The words are another command's, read raw (oclif's parser would reject their flags); the
    // launcher puts `--` first.
    this.parsed = true;
    const raw = this.argv[0] === '--' ? this.argv.slice(1) : this.argv;
    const words = raw.length ? raw : [''];
    const commands = this.config.commands.filter((c) => c.id !== this.id);
    const result = complete(words, commands, this.config.topics, process.env);
    if (!result.dynamic) {
      process.stdout.write(formatCompletion(result));
      return;
    }
    const found = await withinBudget(lookup(result.dynamic), debug);
    // A lookup that ran out of time may still hold sockets open (an unreachable bucket or API server).
    process.stdout.write(formatCompletion(withDynamic(result, found)), () => process.exit(0));
  }
}

async function withinBudget(p: Promise<Candidate[]>, debug: boolean): Promise<Candidate[]> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<Candidate[]>((resolve) => {
    timer = setTimeout(() => {
      if (debug) process.stderr.write(`completion: no answer within ${BUDGET_MS} ms\n`);
      resolve([]);
    }, Math.max(200, BUDGET_MS - performance.now()));
  });
  try {
    return await Promise.race([
      p.catch((e: unknown) => {
        if (debug) process.stderr.write(`completion: ${(e as Error).message}\n`);
        return [];
      }),
      late,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Backup or member names from the target the typed flags (or their environment variables) name. */
async function lookup(need: DynamicNeed): Promise<Candidate[]> {
  const { Target } = await import('../target.js');
  const signal = AbortSignal.timeout(BUDGET_MS);
  const t = await Target.open(need.flags as TargetFlags);
  try {
    if (need.kind === 'backup') {
      const { snapshots } = await t.catalog().list(signal);
      return snapshots.map((r) => ({
        value: r.name,
        description: `${r.createdAt}, revision ${r.revision}${r.suspect ? ', SUSPECT' : r.verification ? (r.verification.ok ? ', verified' : ', FAILED verification') : ''}`,
      }));
    }
    const members =
      t.contract?.etcd.members ??
      t.sandbox?.state.members ??
      (await t.gateway().list(signal)).members.map((m) => ({ name: m.name, clientURL: m.clientURLs[0] ?? '' }));
    return need.kind === 'member'
      ? members.map((m) => ({ value: m.name, description: m.clientURL }))
      : members.filter((m) => m.clientURL).map((m) => ({ value: m.clientURL, description: m.name }));
  } finally {
    t.close();
  }
}
