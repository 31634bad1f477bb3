/**
 * The revisions of a point, in order, from its chain's segments: what both replays apply (replay.ts).
 * Checks that they follow the base without a jump, and stops at the point.
 */
import { EtcdRecoverError } from '../errors.js';
import type { RevisionBatch } from '../etcd/replication.js';
import type { Catalog } from '../snapshot/catalog.js';
import type { ChosenPoint } from './chains.js';
import { readSegment } from './segment-io.js';

export type ReplayItem = { kind: 'lease'; id: string; ttl: number } | { kind: 'revision'; batch: RevisionBatch };

export async function* replayItems(catalog: Catalog, point: ChosenPoint, signal?: AbortSignal): AsyncGenerator<ReplayItem> {
  let at = point.chain.record.base.revision;
  for (const ref of point.segments) {
    signal?.throwIfAborted();
    const seg = await readSegment(catalog, ref, signal);
    for (const [id, ttl] of Object.entries(seg.header.leases)) yield { kind: 'lease', id, ttl };
    for (const b of seg.batches) {
      if (b.revision <= at) continue;
      if (b.revision > point.revision) return;
      if (b.revision !== at + 1) throw new EtcdRecoverError('SNAPSHOT_CORRUPT', `the archive of chain ${point.chain.record.chain} jumps from revision ${at} to ${b.revision} in ${ref.key}`);
      yield { kind: 'revision', batch: b };
      at = b.revision;
    }
  }
  if (at !== point.revision) throw new EtcdRecoverError('NO_RESTORE_POINT', `the archive of chain ${point.chain.record.chain} reaches revision ${at}, not ${point.revision}`);
}

/** The framing etcd-recover-replay reads on stdin (tools/go/etcd/replay/main.go). */
export function frame(item: ReplayItem): Buffer {
  if (item.kind === 'lease') {
    const b = Buffer.alloc(17);
    b[0] = 2;
    b.writeBigInt64BE(BigInt(item.id), 1);
    b.writeBigInt64BE(BigInt(item.ttl), 9);
    return b;
  }
  const ev = item.batch.events;
  let size = 13;
  for (const e of ev) size += 5 + e.key.length + (e.type === 'put' ? 12 + (e.value?.length ?? 0) : 0);
  const b = Buffer.alloc(size);
  b[0] = 1;
  b.writeBigUInt64BE(BigInt(item.batch.revision), 1);
  b.writeUInt32BE(ev.length, 9);
  let p = 13;
  for (const e of ev) {
    b[p++] = e.type === 'put' ? 0 : 1;
    b.writeUInt32BE(e.key.length, p);
    p += 4;
    e.key.copy(b, p);
    p += e.key.length;
    if (e.type === 'put') {
      const v = e.value ?? Buffer.alloc(0);
      b.writeUInt32BE(v.length, p);
      p += 4;
      v.copy(b, p);
      p += v.length;
      b.writeBigInt64BE(BigInt(e.lease ?? '0'), p);
      p += 8;
    }
  }
  return b;
}

export function endFrame(revision: number): Buffer {
  const b = Buffer.alloc(9);
  b[0] = 3;
  b.writeBigUInt64BE(BigInt(revision), 1);
  return b;
}
