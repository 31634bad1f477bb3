import { EtcdRecoverError } from '../errors.js';
import { layout } from '../layout.js';
import { readJson, type ObjectStore } from '../store/object-store.js';
import type { RecoveryPlan } from './plan.js';

export type StepState = 'pending' | 'running' | 'done' | 'failed';

export interface StepRecord {
  id: string;
  state: StepState;
  startedAt?: string;
  finishedAt?: string;
  /** "already held" when a rerun found the effect in place. */
  note?: string;
  error?: string;
  attempts: number;
}

export type RecoveryStatus = 'running' | 'completed' | 'failed' | 'abandoned';

export interface JournalDoc {
  formatVersion: 1;
  plan: RecoveryPlan;
  status: RecoveryStatus;
  startedAt: string;
  updatedAt: string;
  finishedAt?: string;
  steps: StepRecord[];
  /** Facts later steps need, recorded by earlier ones (e.g. the live snapshot's name). */
  facts: Record<string, unknown>;
  error?: { code: string; message: string; hint?: string };
  runs: { host: string; pid: number; startedAt: string; runId?: string }[];
  /** Set when it was closed without finishing (--abandon, --restart). */
  abandoned?: { at: string; reason: string; by: string };
}

/**
 * The recovery journal, kept beside the backups (it survives the operator's
 * laptop): progress of every step, written after each transition, so a rerun
 * resumes where a crash left off.
 */
export class Journal {
  constructor(
    private readonly store: ObjectStore,
    public doc: JournalDoc,
  ) {}

  static key(cluster: string, id: string): string {
    return layout.recoveryJournal(cluster, id);
  }

  static async load(store: ObjectStore, cluster: string, id: string): Promise<Journal | undefined> {
    const got = await readJson<JournalDoc>(store, Journal.key(cluster, id));
    return got ? new Journal(store, got.value) : undefined;
  }

  /** The newest journal of this cluster that is still running or failed (i.e. resumable). */
  static async findOpen(store: ObjectStore, cluster: string): Promise<Journal | undefined> {
    const ids: string[] = [];
    const prefix = layout.recoveriesPrefix(cluster);
    for await (const o of store.list(prefix)) if (o.key.endsWith('.json')) ids.push(o.key.slice(prefix.length, -5));
    ids.sort().reverse();
    for (const id of ids) {
      const j = await Journal.load(store, cluster, id);
      if (j && (j.doc.status === 'running' || j.doc.status === 'failed')) return j;
    }
    return undefined;
  }

  static create(store: ObjectStore, plan: RecoveryPlan): Journal {
    const now = new Date().toISOString();
    return new Journal(store, {
      formatVersion: 1,
      plan,
      status: 'running',
      startedAt: now,
      updatedAt: now,
      steps: plan.steps.map((s) => ({ id: s.id, state: 'pending', attempts: 0 })),
      facts: {},
      runs: [],
    });
  }

  get id(): string {
    return this.doc.plan.id;
  }

  step(id: string): StepRecord {
    const s = this.doc.steps.find((x) => x.id === id);
    if (!s) throw new EtcdRecoverError('INTERNAL', `journal ${this.id} has no step ${id}`);
    return s;
  }

  private saving: Promise<void> = Promise.resolve();
  /** When set and false, saving refuses (LOCK_LOST): the run that owns this journal lost its lock. */
  writable?: () => boolean;

  /** Writes the journal; concurrent calls (parallel steps) are serialized, each writing the latest state. */
  async save(): Promise<void> {
    const next = this.saving.then(async () => {
      if (this.writable && !this.writable()) {
        throw new EtcdRecoverError('LOCK_LOST', `journal ${this.id} was not written: this run no longer holds the recovery lock`);
      }
      this.doc.updatedAt = new Date().toISOString();
      await this.store.put(Journal.key(this.doc.plan.cluster, this.id), JSON.stringify(this.doc, null, 2), { contentType: 'application/json' });
    });
    this.saving = next.catch(() => undefined);
    return next;
  }
}
