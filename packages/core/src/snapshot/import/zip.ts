/**
 * A streaming zip reader over the local file headers: stored and deflated entries, data
 * descriptors (Go's archive/zip, which k3s and rke2 write with, always uses them: the deflate
 * stream's own end says where the entry ends), ZIP64 sizes, the CRC-32 of every entry checked.
 * The central directory is not needed to read the entries; the archive must still end with one
 * (else it was cut short). Memory: one header, one inflate piece, the last 64 KiB for the end record.
 */
import { crc32 } from 'node:zlib';
import type { ByteReader } from './byte-reader.js';
import { DecodeError, inflate } from './codecs.js';
import type { ArchiveEntry } from './tar.js';

const LOCAL = 0x04034b50;
const CENTRAL = 0x02014b50;
const END = 0x06054b50;
const END64 = 0x06064b50;
const DESCRIPTOR = 0x08074b50;

function dosTime(time: number, date: number): Date | undefined {
  if (!date) return undefined;
  return new Date(Date.UTC(1980 + (date >> 9), ((date >> 5) & 15) - 1, date & 31, time >> 11, (time >> 5) & 63, (time & 31) * 2));
}

function zip64Sizes(extra: Buffer): { usize?: number; csize?: number } {
  for (let i = 0; i + 4 <= extra.length; ) {
    const id = extra.readUInt16LE(i);
    const len = extra.readUInt16LE(i + 2);
    if (id === 0x0001 && len >= 16) return { usize: Number(extra.readBigUInt64LE(i + 4)), csize: Number(extra.readBigUInt64LE(i + 12)) };
    i += 4 + len;
  }
  return {};
}

/** The entries of a zip stream, in order. Throws DecodeError for a damaged or truncated archive. */
export async function* zipEntries(reader: ByteReader, what: string): AsyncGenerator<ArchiveEntry> {
  for (;;) {
    const at = reader.position;
    const sig = await reader.peek(4);
    if (sig.length < 4) throw new DecodeError(`${what}: truncated: the zip archive ends before its central directory`);
    const s = sig.readUInt32LE(0);
    if (s === CENTRAL || s === END || s === END64) {
      await checkEnd(reader, what);
      return;
    }
    if (s !== LOCAL) throw new DecodeError(`${what}: damaged zip archive: no entry header at offset ${at}`);
    const h = await reader.read(30);
    if (h.length < 30) throw new DecodeError(`${what}: truncated: the zip archive ends inside an entry header`);
    const flags = h.readUInt16LE(6);
    const method = h.readUInt16LE(8);
    const nameLen = h.readUInt16LE(26);
    const extraLen = h.readUInt16LE(28);
    const meta = await reader.read(nameLen + extraLen);
    if (meta.length < nameLen + extraLen) throw new DecodeError(`${what}: truncated: the zip archive ends inside an entry header`);
    const name = meta.toString('utf8', 0, nameLen);
    if (flags & 1) throw new DecodeError(`${what}: ${name} is encrypted (zip encryption is not supported): extract it with the password first`);
    const z64 = zip64Sizes(meta.subarray(nameLen));
    let crc = h.readUInt32LE(14);
    const csize = h.readUInt32LE(18) === 0xffffffff ? (z64.csize ?? 0) : h.readUInt32LE(18);
    let usize: number | undefined = h.readUInt32LE(22) === 0xffffffff ? z64.usize : h.readUInt32LE(22);
    const described = (flags & 8) !== 0;
    if (described) usize = undefined;
    if (method !== 0 && method !== 8) throw new DecodeError(`${what}: ${name} uses zip compression method ${method}; only stored (0) and deflate (8) are supported`);
    if (method === 0 && described) throw new DecodeError(`${what}: ${name} is stored with a data descriptor: its size is not known while streaming; unzip it and import the file`);
    const isDir = name.endsWith('/');
    let inst: AsyncGenerator<Buffer> | undefined;
    let finished = false;
    let sum = 0;
    let outLen = 0;
    const read = async function* (): AsyncGenerator<Buffer> {
      const start = reader.position;
      const src = method === 8 ? inflate('raw', reader, { exact: true, what: `${what}: ${name}` }) : limited(reader, csize, `${what}: ${name}`);
      for await (const c of src) {
        sum = crc32(c, sum);
        outLen += c.length;
        yield c;
      }
      if (method === 8 && !described && reader.position - start !== csize) {
        throw new DecodeError(`${what}: ${name}: the deflate data is ${reader.position - start} bytes, its header says ${csize}`);
      }
      if (described) {
        const d = await reader.peek(24);
        const off = d.length >= 4 && d.readUInt32LE(0) === DESCRIPTOR ? 4 : 0;
        if (d.length < off + 12) throw new DecodeError(`${what}: truncated: the zip archive ends inside the data descriptor of ${name}`);
        crc = d.readUInt32LE(off);
        const actual = reader.position - start;
        const narrow = d.readUInt32LE(off + 4) === actual && d.readUInt32LE(off + 8) === outLen % 2 ** 32;
        const wide = !narrow && d.length >= off + 20 && Number(d.readBigUInt64LE(off + 4)) === actual;
        if (!narrow && !wide) throw new DecodeError(`${what}: the data descriptor of ${name} does not match its data (the zip archive is damaged)`);
        await reader.skip(off + (wide ? 20 : 12));
      }
      if ((sum >>> 0) !== crc >>> 0) throw new DecodeError(`${what}: ${name} fails its CRC-32 (the zip archive is damaged)`);
      if (usize !== undefined && outLen !== usize) throw new DecodeError(`${what}: ${name} holds ${outLen} bytes, its header says ${usize}`);
      finished = true;
    };
    // One instance: what the caller leaves unread is read on from where it stopped.
    const body = (): AsyncGenerator<Buffer> => (inst ??= read());
    const mtime = dosTime(h.readUInt16LE(10), h.readUInt16LE(12));
    yield { name, type: isDir ? 'dir' : 'file', size: usize, ...(mtime ? { mtime } : {}), body };
    // Not read (to its end) by the caller: decoded anyway (a described entry's end is only known by inflating it).
    if (!finished) for await (const _ of body()) void _;
  }
}

async function* limited(reader: ByteReader, n: number, what: string): AsyncGenerator<Buffer> {
  let left = n;
  while (left > 0) {
    const c = await reader.readSome(Math.min(left, 1 << 20));
    if (!c.length) throw new DecodeError(`${what}: truncated: the zip archive ends inside the entry (${left} of ${n} bytes missing)`);
    left -= c.length;
    yield c;
  }
}

/** Reads the rest (central directory) and checks that the end-of-central-directory record is there. */
async function checkEnd(reader: ByteReader, what: string): Promise<void> {
  let tail = Buffer.alloc(0);
  for (;;) {
    const c = await reader.readSome(1 << 16);
    if (!c.length) break;
    tail = Buffer.concat([tail, c]);
    if (tail.length > 70_000) tail = tail.subarray(tail.length - 70_000);
  }
  for (let i = tail.length - 22; i >= 0; i--) if (tail.readUInt32LE(i) === END) return;
  throw new DecodeError(`${what}: truncated: the zip archive's central directory is cut short (no end record)`);
}
