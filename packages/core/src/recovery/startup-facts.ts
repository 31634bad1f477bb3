import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { EtcdRecoverError, messageOf } from '../errors.js';
import { isTrusted, isVerified, type Catalog } from '../snapshot/catalog.js';
import { describeDefects, verifySnapshotFile } from '../snapshot/verifier/index.js';
import { RESTORED_MARKER } from './member-data.js';
import type { BucketFacts, DataFacts } from './startup-decision.js';

/**
 * Gathers the facts the start-up decision (startup-decision.ts) asks for. Each function reads one
 * thing and never throws for what it is asked to find out: a failure is itself a fact.
 */

/** What the catalog of this cluster holds. A bucket or prefix that holds nothing yet is `listed` with no backups. */
export async function readBucketFacts(catalog: Catalog | undefined, signal?: AbortSignal): Promise<BucketFacts> {
  if (!catalog) return { kind: 'not-configured' };
  try {
    const { snapshots, unreadable } = await catalog.list(signal);
    const verified = snapshots.filter(isVerified);
    const newest = verified[0];
    const trusted = snapshots.find(isTrusted);
    return {
      kind: 'listed',
      ...(newest ? { newestVerified: { name: newest.name, revision: newest.revision, createdAt: newest.createdAt } } : {}),
      ...(trusted ? { newestTrusted: { name: trusted.name, revision: trusted.revision, createdAt: trusted.createdAt } } : {}),
      verified: verified.length,
      unverified: snapshots.length - verified.length,
      unreadable: unreadable.length,
    };
  } catch (e) {
    return { kind: 'error', code: e instanceof EtcdRecoverError ? e.code : 'STORE_ERROR', message: messageOf(e) };
  }
}

/** Whether the data dir holds a member, and whether a recovery wrote it. Cheap: the revision is read separately. */
export function readDataFacts(dataDir: string): DataFacts {
  if (!existsSync(join(dataDir, 'member'))) return { present: false };
  const marker = join(dataDir, RESTORED_MARKER);
  if (existsSync(marker)) {
    try {
      const m = JSON.parse(readFileSync(marker, 'utf8')) as { recoveryId?: string; snapshot?: string; at?: string };
      if (m.recoveryId) {
        return { present: true, restored: { recoveryId: m.recoveryId, ...(m.snapshot ? { snapshot: m.snapshot } : {}), ...(m.at ? { at: m.at } : {}) } };
      }
    } catch {
      /* an unreadable marker proves nothing */
    }
  }
  return { present: true };
}

/** The bbolt file of a data dir. */
export function memberDbPath(dataDir: string): string {
  return join(dataDir, 'member', 'snap', 'db');
}

/**
 * The store revision of a stopped member's data, read natively from its bbolt file (the same walk
 * `backup verify` does; the file of a live member has no sha256 trailer, which is expected).
 */
export async function readDataRevision(dataDir: string): Promise<{ revision: number } | { error: string }> {
  const db = memberDbPath(dataDir);
  if (!existsSync(db)) return { error: `${db} does not exist` };
  try {
    const r = await verifySnapshotFile(db);
    if (!r.ok) return { error: `${db}: ${describeDefects(r).split('\n')[0]}` };
    return { revision: r.revision };
  } catch (e) {
    return { error: `${db}: ${messageOf(e)}` };
  }
}
