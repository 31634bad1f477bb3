/**
 * Native, streaming verifier for etcd snapshot files (bbolt databases).
 *
 * One sequential pass over the bytes, in file order, with memory bounded by a
 * small per-page summary (32 bytes of fixed fields + the first/last key of
 * each leaf and one key per branch element, each truncated to 64 bytes — about
 * 70 bytes per page for etcd), plus full detail only for leaves holding bucket
 * elements (the root bucket), plus ~2 bytes per `key` record for the pages seen
 * before the live root page (see etcd-keys.ts: etcdutl's live-key count).
 *
 * Pages arrive in file order but the B+tree has to be walked in key order, so
 * each leaf is summarised by the CRC-32C of the concatenation k1 v1 k2 v2 …
 * (values of nested-bucket elements excluded, as bbolt's ForEach yields them as
 * nil) and its byte length. After the pass, the tree is walked from the active
 * meta's root and the per-page CRCs are joined with crc32cCombine, giving
 * exactly the hash `etcdutl snapshot status` computes.
 *
 * The parts, in the order the bytes meet them:
 *   format-probe.ts  the first bytes: bbolt or not, and the page size;
 *   page-stream.ts   the bytes cut into page slots, copied only across chunks;
 *   page-index.ts    each page parsed as it streams by (leaf-scan.ts for leaves)
 *                    into the summaries of page-table.ts;
 *   live-keys.ts     the leaves of bucket `key`, counted for etcdutl's TotalKey;
 *   tree-walk.ts     after the pass: the walk in key order, structural checks
 *                    as bbolt's tx.Check(), the hash;
 *   sha-sink.ts      the sha256 of the bytes (inline, or in a worker thread for
 *                    large local files) and the trailer check below;
 *   report.ts        the report and its defects.
 * This file runs them: it routes the bytes, picks the active meta page, and
 * puts the report together.
 *
 * What cannot be detected: without the sha256 trailer, a flipped bit inside a
 * value (or any byte not covered by structure: padding, free pages, a meta
 * page outside its checksummed 64 bytes) changes no structure and bbolt has no
 * per-page checksums, so it goes unnoticed — as it does for `etcdutl`. The
 * reported hash changes, though, so comparing it with the hash recorded at
 * backup time does catch it.
 */
import { readSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { asBuffer } from '../../streams.js';
import { TRAILER_ALIGN, TRAILER_SIZE, parseMeta, type MetaInfo } from './bbolt-format.js';
import { FormatProbe } from './format-probe.js';
import { LiveKeyCount } from './live-keys.js';
import { PageIndex } from './page-index.js';
import { PageStream, type PageSink } from './page-stream.js';
import { DefectLog, type SnapshotReport } from './report.js';
import { openShaSink, type ShaResult, type ShaSink } from './sha-sink.js';
import { DeferredSha, fileHasher, hashFile, type FileDigests } from './file-hash.js';
import { TreeWalk } from './tree-walk.js';

export interface VerifyOptions {
  /** A missing sha256 trailer is fatal (default false: reported as a warning). */
  requireTrailer?: boolean;
  /**
   * Compute the sha256 in a worker thread, in parallel with page parsing
   * (default false; verifySnapshotFile turns it on for files ≥ 64 MiB).
   */
  parallelHash?: boolean;
  /** @internal The sink to hash with (verifySnapshotFile's DeferredSha). */
  sink?: ShaSink;
}

// Module-internal access for verifySnapshotFile's zero-copy reads into the hash ring.
let ringSlot!: (v: SnapshotVerifier, max: number) => Buffer | null;
let ringCommit!: (v: SnapshotVerifier, view: Buffer) => void;
let ringAbort!: (v: SnapshotVerifier) => void;

/** Incremental verifier: feed chunks of any size in file order, then finish(). */
export class SnapshotVerifier {
  private readonly requireTrailer: boolean;
  private total = 0;
  /** sha256 of the input, the last 32 bytes held back. */
  private readonly sink: ShaSink;
  private done: SnapshotReport | undefined;

  private phase: 'head' | 'pages' | 'skip' = 'head';
  /** Why we stopped looking at pages ('skip'): the format is not bbolt. */
  private notBbolt = false;
  private probe: FormatProbe | null = new FormatProbe();
  private stream: PageStream | null = null;
  private readonly toPages: PageSink = {
    slot: (b, off, regionEnd, pgid) => this.slot(b, off, regionEnd, pgid),
    span: (b, start, end, pgid) => this.pages.parse(b, start, end, pgid),
  };

  private ps = 0;
  private readonly metas: (MetaInfo | undefined)[] = [undefined, undefined];
  private active: MetaInfo | undefined;

  private readonly defects = new DefectLog();
  private readonly keys = new LiveKeyCount();
  private readonly pages = new PageIndex(this.keys);
  private tree: TreeWalk | undefined;

  constructor(opts: VerifyOptions = {}) {
    this.requireTrailer = opts.requireTrailer ?? false;
    this.sink = opts.sink ?? openShaSink(opts.parallelHash ?? false);
  }

  static {
    ringSlot = (v, max) => (v.done ? null : v.sink.slot(max));
    ringCommit = (v, view) => {
      v.sink.commit(view.length);
      v.consume(view);
    };
    ringAbort = (v) => v.sink.abort();
  }

  update(chunk: Uint8Array): void {
    if (this.done) throw new Error('SnapshotVerifier.update() called after finish()');
    if (chunk.length === 0) return;
    const b = asBuffer(chunk);
    this.sink.push(b);
    this.consume(b);
  }

  private consume(b: Buffer): void {
    const n = b.length;
    if (n === 0) return;
    this.total += n;
    if (this.phase === 'pages') this.stream!.feed(b);
    else if (this.phase === 'head') {
      const probe = this.probe!;
      probe.head.append(b, 0, n);
      if (probe.head.len >= probe.need) this.resolveHead(false);
    }
  }

  finish(): SnapshotReport {
    if (this.done) return this.done;
    // The structure is checked first, while a hash worker may still be busy.
    let hasTrailer = false;
    let failure: unknown;
    try {
      hasTrailer = this.finishStructure();
    } catch (err) {
      failure = err;
    }
    const sha = this.sink.finish();
    if (failure !== undefined) {
      // Defensive: never throw for bad input.
      this.defects.add('NOT_BBOLT', undefined, `internal error while verifying: ${(failure as Error).message}`, true);
      return (this.done = this.buildReport(false, sha.all.toString('hex'), undefined));
    }
    return (this.done = this.finishTrailer(sha, hasTrailer));
  }

  // ----------------------------------------------------------------- head ---

  private resolveHead(eof: boolean): void {
    const ps = this.probe!.resolve(eof, this.defects);
    if (ps > 0) this.startPages(ps);
    else if (ps < 0) this.stop(true);
  }

  private stop(notBbolt: boolean): void {
    this.phase = 'skip';
    this.notBbolt = notBbolt;
    this.probe = null;
    this.stream?.stop();
  }

  private startPages(pageSize: number): void {
    this.ps = pageSize;
    this.phase = 'pages';
    const head = this.probe!.head;
    this.probe = null;
    this.stream = new PageStream(pageSize, this.toPages);
    this.stream.feed(head.buf.subarray(0, head.len));
  }

  // ---------------------------------------------------------------- pages ---

  private slot(b: Buffer, off: number, regionEnd: number, pgid: number): void {
    if (pgid < 2) {
      this.metas[pgid] = parseMeta(b, off, pgid);
      if (pgid === 1) this.chooseMeta();
      return;
    }
    const span = this.pages.slot(b, off, regionEnd, pgid);
    if (span) this.stream!.wait(span);
  }

  private chooseMeta(): void {
    const m0 = this.metas[0]!;
    const m1 = this.metas[1]!;
    if (m0.invalid && m1.invalid) {
      this.defects.add('META_INVALID', undefined, `both meta pages are invalid (meta page 0: ${m0.invalid}; meta page 1: ${m1.invalid}): bbolt cannot open this file`, true);
      this.stop(false);
      return;
    }
    let active: MetaInfo;
    if (m0.invalid) {
      active = m1;
      this.defects.add('META_INVALID', 0, `meta page 0 is invalid: ${m0.invalid}; bbolt falls back to meta page 1 (txid ${m1.txid})`, false);
    } else if (m1.invalid) {
      active = m0;
      this.defects.add('META_INVALID', 1, `meta page 1 is invalid: ${m1.invalid}; bbolt uses meta page 0 (txid ${m0.txid})`, false);
    } else {
      active = m1.txid > m0.txid ? m1 : m0;
    }
    this.active = active;
    this.pages.start(this.ps, active);
    this.stream!.limitSlots = active.hwm;
  }

  // --------------------------------------------------------------- finish ---

  /** Everything but the sha256: format, truncation, the tree walk. Returns whether the input ends with a trailer. */
  private finishStructure(): boolean {
    const total = this.total;
    if (total === 0) {
      this.defects.add('EMPTY', undefined, 'the file is empty (0 bytes): not a snapshot', true);
      return false;
    }
    if (this.phase === 'head') this.resolveHead(true);
    if (this.notBbolt) return false;
    // etcd's rule (snapshot.hasChecksum): size % 512 == 32 means a sha256 trailer.
    const hasTrailer = total > TRAILER_SIZE && total % TRAILER_ALIGN === TRAILER_SIZE;
    const contentLen = hasTrailer ? total - TRAILER_SIZE : total;
    if (this.phase === 'pages') {
      const ps = this.ps;
      // bbolt files are whole pages and etcd's snapshots whole pages + the trailer: any other length
      // was cut or damaged, even when every page the meta page points at happens to be there.
      if (contentLen % ps !== 0) {
        const pages = Math.floor(total / ps);
        this.defects.add(
          'TRUNCATED',
          pages,
          `file length ${total} bytes is neither whole ${ps}-byte pages (a raw database copy) nor whole pages plus a ${TRAILER_SIZE}-byte sha256 trailer: ` +
            `${pages} pages and ${total - pages * ps} bytes (page size ${ps} from the meta page): the file is truncated or damaged`,
          true,
        );
      }
      if (!this.active) {
        this.defects.add('TRUNCATED', 1, `file truncated: ${contentLen} bytes, shorter than the two meta pages (${2 * ps} bytes)`, true);
      } else {
        const hwm = this.active.hwm;
        const need = hwm * ps;
        if (contentLen < need) {
          this.defects.add(
            'TRUNCATED',
            Math.floor(contentLen / ps),
            `file truncated: the meta page says ${hwm} pages × ${ps} = ${need} bytes but only ${contentLen} bytes of page data are present ` +
              `(${need - contentLen} bytes missing)`,
            true,
          );
        }
        this.tree = new TreeWalk(this.pages, this.keys, this.defects);
        this.tree.run();
      }
    }
    return hasTrailer;
  }

  private finishTrailer(sha: ShaResult, hasTrailer: boolean): SnapshotReport {
    const total = this.total;
    const shaAll = sha.all.toString('hex');
    if (total === 0 || this.notBbolt) return this.buildReport(false, shaAll, undefined);
    if (!hasTrailer) {
      this.defects.add(
        'TRAILER_MISSING',
        undefined,
        `no sha256 trailer (size ${total} % 512 = ${total % TRAILER_ALIGN}, not 32): a raw database copy, its integrity cannot be checked end to end`,
        this.requireTrailer,
      );
      return this.buildReport(false, shaAll, undefined);
    }
    const shaContent = sha.content.toString('hex');
    const trailerHex = sha.tail.toString('hex');
    if (trailerHex !== shaContent) {
      this.defects.add(
        'TRAILER_MISMATCH',
        undefined,
        `sha256 trailer mismatch: the last 32 bytes say ${trailerHex} but the ${total - TRAILER_SIZE} bytes before them hash to ${shaContent}: ` +
          'the snapshot is corrupted',
        true,
      );
    }
    return this.buildReport(true, shaContent, trailerHex);
  }

  private buildReport(hasTrailer: boolean, sha256: string, trailerHex: string | undefined): SnapshotReport {
    const { defects, keys, tree, active } = this;
    const r: SnapshotReport = {
      ok: !defects.fatal,
      fileSize: this.total,
      hasTrailer,
      sha256,
      hash: (tree?.hash ?? 0) >>> 0,
      revision: tree?.revision ?? 0,
      totalKeys: keys.totalKeys,
      totalEntries: Object.values(tree?.buckets ?? {}).reduce((a, n) => a + n, 0),
      userKeys: keys.userKeys,
      bumpMarkers: keys.bumpMarkers,
      compactionPending: keys.compactionPending,
      compactRevision: Math.max(0, keys.compactRev),
      totalSize: active ? active.hwm * this.ps : 0,
      pageSize: this.ps,
      txid: active?.txid ?? 0,
      pages: active ? active.hwm : 0,
      buckets: tree?.buckets ?? {},
      defects: defects.list,
    };
    if (trailerHex !== undefined) r.trailerSha256 = trailerHex;
    if (tree?.version !== undefined) r.version = tree.version;
    if (defects.omitted > 0) r.omittedDefects = defects.omitted;
    return r;
  }
}

// ------------------------------------------------------------ entry points ---

/** Verifies a snapshot from any async byte source (chunks in file order). */
export async function verifySnapshotStream(source: AsyncIterable<Uint8Array>, opts?: VerifyOptions): Promise<SnapshotReport> {
  const v = new SnapshotVerifier(opts);
  for await (const chunk of source) v.update(chunk);
  return v.finish();
}

/** Files from this size on are hashed in a worker thread, in parallel with parsing. */
const PARALLEL_HASH_MIN = 64 * 1024 * 1024;
const READ_SIZE = 1 << 20;
/** Bytes read between two yields to the event loop (≈ 20–40 ms of work). */
const YIELD_EVERY = 32 * 1024 * 1024;

/**
 * Verifies a snapshot file, read sequentially in 1 MiB blocks (bounded memory).
 * Large files are read straight into the shared ring of the sha256 worker (no
 * copy) and parsed from there, the hash running in parallel. Rejects only on
 * I/O errors.
 */
export async function verifySnapshotFile(path: string, opts: VerifyOptions = {}): Promise<SnapshotReport> {
  const fh = await open(path, 'r');
  let v: SnapshotVerifier | undefined;
  try {
    const st = await fh.stat();
    if (!st.isFile()) {
      // A pipe or device: plain async streaming.
      return await verifySnapshotStream(fh.createReadStream({ highWaterMark: READ_SIZE, autoClose: false }), opts);
    }
    const size = st.size;
    const parallel = opts.parallelHash ?? size >= PARALLEL_HASH_MIN;
    // Where no worker thread may run (the single executable), another process hashes the file.
    const hasher = parallel ? fileHasher() : undefined;
    let deferred: { sink: DeferredSha; digests: Promise<FileDigests | Error> } | undefined;
    if (hasher) {
      const sink = new DeferredSha();
      deferred = { sink, digests: hasher(path).catch((e: unknown) => (e instanceof Error ? e : new Error(String(e)))) };
      v = new SnapshotVerifier({ ...opts, sink });
    } else v = new SnapshotVerifier({ ...opts, parallelHash: parallel });
    let own: Buffer | undefined;
    let sinceYield = 0;
    for (;;) {
      const ring = ringSlot(v, READ_SIZE);
      const buf = ring ?? (own ??= Buffer.allocUnsafe(READ_SIZE));
      // Synchronous reads: a threadpool read would be a third busy thread
      // competing with this one and the hash worker (measurably slower).
      const n = readSync(fh.fd, buf, 0, buf.length, null);
      if (n === 0) break;
      if (ring) ringCommit(v, buf.subarray(0, n));
      else v.update(buf.subarray(0, n));
      sinceYield += n;
      if (sinceYield >= YIELD_EVERY) {
        sinceYield = 0;
        await new Promise<void>((r) => setImmediate(r)); // let the event loop breathe
      }
    }
    if (deferred) {
      // The other process failed (it could not start, say): hash here after all.
      const d = await deferred.digests;
      deferred.sink.resolve(d instanceof Error ? hashFile(path) : d);
    }
    const report = v.finish();
    v = undefined;
    return report;
  } finally {
    if (v) ringAbort(v);
    await fh.close();
  }
}
