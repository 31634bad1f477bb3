/**
 * A streaming tar reader (POSIX ustar, with GNU long names and pax path/size records): 512-byte
 * headers, each checked by its checksum, then the entry's bytes padded to 512. An entry's body is
 * read in place from the stream; whatever the caller leaves unread is skipped. Memory: one header
 * (and a long name) at a time.
 */
import type { ByteReader } from './byte-reader.js';
import { DecodeError } from './codecs.js';

export interface ArchiveEntry {
  /** Path inside the archive. */
  name: string;
  type: 'file' | 'dir' | 'other';
  /** Bytes of the (uncompressed) content; undefined when only known at its end (zip data descriptors). */
  size: number | undefined;
  mtime?: Date;
  /** The entry's content, streamed; read it before asking for the next entry (or it is skipped). */
  body(): AsyncGenerator<Buffer>;
}

const BLOCK = 512;

function str(h: Buffer, off: number, len: number): string {
  const end = h.indexOf(0, off);
  return h.toString('utf8', off, end < 0 || end > off + len ? off + len : end);
}

function octal(h: Buffer, off: number, len: number): number {
  if (h[off]! & 0x80) {
    // GNU base-256 for large values.
    let v = 0;
    for (let i = off + 1; i < off + len; i++) v = v * 256 + h[i]!;
    return v;
  }
  const s = str(h, off, len).trim();
  return s ? parseInt(s, 8) : 0;
}

function checksumOk(h: Buffer): boolean {
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : h[i]!;
  return sum === octal(h, 148, 8);
}

function paxRecords(b: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  let i = 0;
  while (i < b.length) {
    const sp = b.indexOf(0x20, i);
    if (sp < 0) break;
    const len = parseInt(b.toString('latin1', i, sp), 10);
    if (!(len > 0)) break;
    const rec = b.toString('utf8', sp + 1, i + len - 1);
    const eq = rec.indexOf('=');
    if (eq > 0) out[rec.slice(0, eq)] = rec.slice(eq + 1);
    i += len;
  }
  return out;
}

/** The entries of a tar stream, in order. Throws DecodeError for a damaged or truncated archive. */
export async function* tarEntries(reader: ByteReader, what: string): AsyncGenerator<ArchiveEntry> {
  let longName: string | undefined;
  let pax: Record<string, string> = {};
  for (;;) {
    const at = reader.position;
    const h = await reader.read(BLOCK);
    if (h.length === 0) throw new DecodeError(`${what}: truncated: the tar archive ends without its end-of-archive blocks`);
    if (h.length < BLOCK) throw new DecodeError(`${what}: truncated: the tar archive ends inside a header (offset ${at})`);
    if (h.every((b) => b === 0)) return;
    if (!checksumOk(h)) throw new DecodeError(`${what}: damaged tar archive: the header at offset ${at} fails its checksum`);
    const flag = String.fromCharCode(h[156]!);
    let size = octal(h, 124, 12);
    if (pax['size']) size = Number(pax['size']);
    const readAll = async (): Promise<Buffer> => {
      if (size > 1 << 20) throw new DecodeError(`${what}: a tar metadata record of ${size} bytes is implausible`);
      const b = await reader.read(size);
      if (b.length < size) throw new DecodeError(`${what}: truncated inside a tar metadata record`);
      await reader.skip((BLOCK - (size % BLOCK)) % BLOCK);
      return b;
    };
    if (flag === 'L') {
      longName = str(await readAll(), 0, size);
      continue;
    }
    if (flag === 'x') {
      pax = paxRecords(await readAll());
      continue;
    }
    if (flag === 'g') {
      await readAll();
      continue;
    }
    const prefix = h.toString('latin1', 257, 262) === 'ustar' ? str(h, 345, 155) : '';
    const name = pax['path'] ?? longName ?? (prefix ? `${prefix}/${str(h, 0, 100)}` : str(h, 0, 100));
    longName = undefined;
    pax = {};
    const type = flag === '0' || flag === '\0' || flag === '7' ? 'file' : flag === '5' ? 'dir' : 'other';
    let left = type === 'dir' ? 0 : size;
    const mtime = octal(h, 136, 12);
    yield {
      name,
      type,
      size: type === 'dir' ? 0 : size,
      ...(mtime ? { mtime: new Date(mtime * 1000) } : {}),
      body: async function* () {
        while (left > 0) {
          const c = await reader.readSome(Math.min(left, 1 << 20));
          if (!c.length) throw new DecodeError(`${what}: truncated: the tar archive ends inside ${name} (${left} of ${size} bytes missing)`);
          left -= c.length;
          yield c;
        }
      },
    };
    if (left > 0) {
      const skipped = await reader.skip(left);
      if (skipped < left) throw new DecodeError(`${what}: truncated: the tar archive ends inside ${name} (${left - skipped} of ${size} bytes missing)`);
      left = 0;
    }
    const pad = (BLOCK - (size % BLOCK)) % BLOCK;
    if (type !== 'dir' && pad && (await reader.skip(pad)) < pad) throw new DecodeError(`${what}: truncated: the tar archive ends inside the padding after ${name}`);
  }
}
