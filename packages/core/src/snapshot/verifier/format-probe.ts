/**
 * The first bytes of the input: is it a bbolt database, and what is its page
 * size? As bbolt opens a file: meta page 0, else (getPageSizeFromSecondMeta)
 * the first valid meta page at 1 KiB << i. Other formats are named when they
 * can be told from their first bytes.
 */
import { GZIP_MAGIC0, GZIP_MAGIC1, MAGIC, META1_PROBE_OFFSETS, META_BODY_OFFSET, META_SIZE, parseMeta, type MetaInfo } from './bbolt-format.js';
import type { DefectLog } from './report.js';
import { ByteBuf } from './summary-keys.js';

/** Bytes buffered at most while looking for the page size when meta 0 is unreadable. */
const HEAD_LIMIT = META1_PROBE_OFFSETS[META1_PROBE_OFFSETS.length - 1]! + 4096;

/** What a non-bbolt file looks like, from its first bytes. */
function formatHint(h: Uint8Array): string {
  const starts = (...sig: number[]): boolean => sig.every((x, i) => h[i] === x);
  if (starts(0x28, 0xb5, 0x2f, 0xfd)) return 'this looks zstd-compressed; decompress it first';
  if (starts(0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00)) return 'this looks xz-compressed; decompress it first';
  if (starts(0x42, 0x5a, 0x68)) return 'this looks bzip2-compressed; decompress it first';
  if (starts(0x50, 0x4b, 0x03, 0x04)) return 'this looks like a zip archive; extract the snapshot first';
  if (h.length >= 262 && h[257] === 0x75 && h[258] === 0x73 && h[259] === 0x74 && h[260] === 0x61 && h[261] === 0x72) {
    return 'this looks like a tar archive; extract the snapshot first';
  }
  return 'this is not an etcd snapshot';
}

/** Buffers the first bytes until the format and page size are decided. */
export class FormatProbe {
  /** The bytes so far. */
  readonly head = new ByteBuf(8192);
  /** Bytes needed before resolve() can decide more. */
  need = 2;
  private probe = 0;
  private meta0: MetaInfo | undefined;
  private sawMagic = false;
  /** Why the first meta page 1 candidate with the right magic was rejected. */
  private meta1Invalid: string | undefined;

  /**
   * Decides from the bytes so far (all of them when `eof`): the page size; 0
   * when more bytes are needed first (see `need`; never at eof); -1 when this
   * is not a bbolt database that bbolt can open (the defect is logged).
   */
  resolve(eof: boolean, defects: DefectLog): number {
    const head = this.head;
    const h = head.buf.subarray(0, head.len);
    const n = h.length;
    if (n >= 2 && h[0] === GZIP_MAGIC0 && h[1] === GZIP_MAGIC1) {
      defects.add('GZIP', undefined, 'this is gzip-compressed; gunzip it first (etcd snapshots are raw bbolt databases)', true);
      return -1;
    }
    if (!this.meta0) {
      if (n < META_BODY_OFFSET + META_SIZE && !eof) {
        this.need = META_BODY_OFFSET + META_SIZE;
        return 0;
      }
      this.meta0 = parseMeta(h, 0, 0);
      if (this.meta0.magic === MAGIC) this.sawMagic = true;
    }
    const m0 = this.meta0;
    if (!m0.invalid) return m0.pageSize;
    // Like bbolt's getPageSizeFromSecondMeta: probe 1 KiB << i for a valid meta.
    for (; this.probe < META1_PROBE_OFFSETS.length; this.probe++) {
      const pos = META1_PROBE_OFFSETS[this.probe]!;
      if (pos + META_BODY_OFFSET + META_SIZE > n) {
        if (!eof && n < HEAD_LIMIT) {
          this.need = pos + META_BODY_OFFSET + META_SIZE;
          return 0;
        }
        break;
      }
      const m = parseMeta(h, pos, 1);
      if (m.magic === MAGIC) {
        this.sawMagic = true;
        this.meta1Invalid ??= `${m.invalid} (at offset ${pos})`;
      }
      if (!m.invalid) return m.pageSize;
    }
    if (!this.sawMagic) {
      const what = n < META_BODY_OFFSET + 4 ? `only ${n} bytes` : `bad magic 0x${m0.magic.toString(16).padStart(8, '0')} at offset 16`;
      defects.add('NOT_BBOLT', undefined, `not a bbolt database (${what}; expected 0x${MAGIC.toString(16)}): ${formatHint(h)}`, true);
    } else if (eof && n < META_BODY_OFFSET + META_SIZE) {
      defects.add('TRUNCATED', 0, `file truncated: only ${n} bytes, the meta page is incomplete`, true);
    } else {
      const m1 = this.meta1Invalid ?? 'not found';
      defects.add('META_INVALID', undefined, `both meta pages are invalid (meta page 0: ${m0.invalid}; meta page 1: ${m1}): bbolt cannot open this file`, true);
    }
    return -1;
  }
}
