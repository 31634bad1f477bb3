/**
 * The member list a snapshot holds (bucket "members" of etcd's bbolt database), caught while the
 * snapshot streams by, and the cluster ID it implies.
 *
 * etcd keeps no cluster ID in its database: a cluster's ID is derived when it is bootstrapped (or
 * restored with etcdutl), as the first 8 bytes, big-endian, of the SHA-1 of its members' IDs
 * (sorted, each 8 bytes big-endian). The snapshot's member list gives that ID back exactly as long
 * as no member was added or removed since; `derived` says so, and the import also matches the
 * member IDs themselves against those the catalog's backups were taken from.
 *
 * Streaming: the meta pages (first) name the root page; the pages wanted are caught as they pass
 * (the root bucket's pages, then those of bucket "members" unless it is inline, as it is in any
 * cluster of a few members). A page wanted after it went by cannot be had: the list is then unknown.
 * Memory: the wanted pages only.
 */
import { createHash } from 'node:crypto';
import { asBuffer } from '../../streams.js';
import { BUCKET_HEADER_SIZE, ELEMENT_SIZE, FLAG_BRANCH, FLAG_LEAF, LEAF_FLAG_BUCKET, PAGE_HEADER_SIZE, parseMeta, u16, u32, u64 } from '../verifier/bbolt-format.js';

export interface MemberList {
  /** Member IDs (hex, as etcd prints them). */
  ids: string[];
  names: string[];
  learners: number;
  /** The cluster ID these members imply (exact if membership never changed since bootstrap or restore). */
  derivedClusterId: string;
}

export function clusterIdOf(memberIds: readonly string[]): string {
  const ids = memberIds.map((h) => BigInt(`0x${h}`)).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const b = Buffer.alloc(8 * ids.length);
  ids.forEach((id, i) => b.writeBigUInt64BE(id, 8 * i));
  return createHash('sha1').update(b).digest().readBigUInt64BE(0).toString(16);
}

interface Wanted {
  pgid: number;
  /** What it is: a page of the root bucket, or of bucket "members". */
  role: 'root' | 'members';
  buf?: Buffer;
  have: number;
}

export class MemberCatcher {
  private head: Buffer[] = [];
  private headLen = 0;
  private ps = 0;
  private pos = 0;
  /** File offset of the chunk being fed: pages starting before it are gone. */
  private cur = 0;
  private wanted = new Map<number, Wanted>();
  private readonly ids: string[] = [];
  private readonly names: string[] = [];
  private learners = 0;
  private found = false;
  /** Why the list is unknown, once it is. */
  problem: string | undefined;

  update(chunk: Uint8Array): void {
    if (this.problem || (this.found && this.wanted.size === 0)) return;
    const b = asBuffer(chunk);
    const start = this.pos;
    this.pos += b.length;
    if (!this.ps) {
      this.head.push(Buffer.from(b));
      this.headLen += b.length;
      if (this.headLen < 32) return;
      const h = Buffer.concat(this.head);
      const ps = u32(h, 24);
      if (ps < 512 || ps > 1 << 16 || (ps & (ps - 1)) !== 0) return void (this.problem = 'no bbolt meta page');
      if (h.length < 2 * ps) return;
      const m0 = parseMeta(h, 0, 0);
      const m1 = parseMeta(h, ps, 1);
      const meta = m0.invalid ? m1 : m1.invalid ? m0 : m1.txid > m0.txid ? m1 : m0;
      if (meta.invalid) return void (this.problem = 'both meta pages are invalid');
      this.ps = ps;
      this.head = [];
      this.want(meta.root, 'root');
      this.feed(h, 0);
      return;
    }
    this.feed(b, start);
  }

  private want(pgid: number, role: Wanted['role']): void {
    if (pgid < 2 || pgid * this.ps < this.cur) {
      this.problem = `page ${pgid} of the ${role === 'root' ? 'root bucket' : 'members bucket'} came before the page naming it`;
      return;
    }
    if (!this.wanted.has(pgid)) this.wanted.set(pgid, { pgid, role, have: 0 });
  }

  /** Copies the bytes of wanted pages out of a chunk that starts at file offset `at`. */
  private feed(b: Buffer, at: number): void {
    this.cur = at;
    const end = at + b.length;
    for (let progress = true; progress && !this.problem; ) {
      progress = false;
      for (const w of [...this.wanted.values()]) {
        const pStart = w.pgid * this.ps;
        w.buf ??= Buffer.alloc(this.ps);
        for (;;) {
          const from = Math.max(at, pStart + w.have);
          const to = Math.min(end, pStart + w.buf.length);
          if (to <= from) break;
          b.copy(w.buf, from - pStart, from - at, to - at);
          w.have = to - pStart;
          if (w.have >= 16) {
            const overflow = u32(w.buf, 12);
            if (overflow > 4096) return void (this.problem = `page ${w.pgid} claims ${overflow} overflow pages`);
            const need = (overflow + 1) * this.ps;
            if (need > w.buf.length) w.buf = Buffer.concat([w.buf], need);
          }
        }
        if (w.have > 0 && w.have >= w.buf.length) {
          this.wanted.delete(w.pgid);
          this.page(w);
          progress = true;
        }
      }
    }
  }

  private page(w: Wanted): void {
    const p = w.buf!;
    const flags = u16(p, 8);
    const count = u16(p, 10);
    if (flags & FLAG_BRANCH) {
      for (let i = 0; i < count; i++) this.want(u64(p, PAGE_HEADER_SIZE + ELEMENT_SIZE * i + 8), w.role);
    } else if (flags & FLAG_LEAF) {
      if (w.role === 'root') this.rootLeaf(p, 0);
      else this.memberLeaf(p, 0);
    }
  }

  private rootLeaf(p: Buffer, base: number): void {
    for (const { flags, kOff, ks, vs } of leafElements(p, base)) {
      if (!(flags & LEAF_FLAG_BUCKET) || p.toString('latin1', kOff, kOff + ks) !== 'members') continue;
      this.found = true;
      const root = u64(p, kOff + ks);
      if (root === 0) this.memberLeaf(p.subarray(kOff + ks + BUCKET_HEADER_SIZE, kOff + ks + vs), 0);
      else this.want(root, 'members');
    }
  }

  private memberLeaf(p: Buffer, base: number): void {
    for (const { kOff, ks, vs } of leafElements(p, base)) {
      const id = p.toString('latin1', kOff, kOff + ks);
      if (!/^[0-9a-f]{1,16}$/.test(id)) continue;
      this.ids.push(id);
      try {
        const m = JSON.parse(p.toString('utf8', kOff + ks, kOff + ks + vs)) as { name?: string; isLearner?: boolean };
        if (m.name) this.names.push(m.name);
        if (m.isLearner) this.learners++;
      } catch {
        /* the ID is what counts */
      }
    }
  }

  /** The member list, or undefined with `problem` saying why it could not be read. */
  finish(): MemberList | undefined {
    if (this.problem) return undefined;
    if (!this.ps) return void (this.problem = 'too short for a bbolt database');
    if (!this.found) return void (this.problem = this.wanted.size ? 'the snapshot ended before the root bucket page' : 'no bucket "members" in the snapshot');
    if (this.wanted.size) return void (this.problem = 'the snapshot ended before every page of bucket "members" went by');
    if (!this.ids.length) return void (this.problem = 'bucket "members" is empty');
    return { ids: [...this.ids], names: [...this.names], learners: this.learners, derivedClusterId: clusterIdOf(this.ids) };
  }
}

/** The elements of the leaf page at `base` of `p` (bbolt's leafPageElement: flags, pos, ksize, vsize): its flags and where its key and value lie. */
function leafElements(p: Buffer, base: number): { flags: number; kOff: number; ks: number; vs: number }[] {
  const out = [];
  for (let i = 0, count = u16(p, base + 10); i < count; i++) {
    const e = base + PAGE_HEADER_SIZE + ELEMENT_SIZE * i;
    out.push({ flags: u32(p, e), kOff: e + u32(p, e + 4), ks: u32(p, e + 8), vs: u32(p, e + 12) });
  }
  return out;
}
