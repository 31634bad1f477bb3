/**
 * From a source (a file, a folder, an object or a prefix) to the one snapshot it holds: which
 * tool's layout it is, where the snapshot is inside it, what comes with it (kept beside), and the
 * plain snapshot bytes as a stream. Every decision is made on the bytes (see detect.ts); a source
 * holding no snapshot, or two, is refused naming what it holds.
 */
import { basename } from 'node:path';
import { EtcdRecoverError } from '../../errors.js';
import { ByteReader } from './byte-reader.js';
import { codecName, DecodeError, decode, SNIFF_BYTES, type Codec } from './codecs.js';
import { compressedTool, describeOther, isSnapshotLike, NAMES, parseKopsMeta, sniff, timeFromName, type ImportTool, type Sniffed } from './detect.js';
import type { ImportSource, SourceFile } from './source.js';
import { tarEntries, type ArchiveEntry } from './tar.js';
import { zipEntries } from './zip.js';

export interface FoundExtra {
  name: string;
  where: string;
  open(signal?: AbortSignal): AsyncIterable<Buffer>;
}

export interface Found {
  /** Undefined for a plain snapshot: etcdctl's (with the sha256 trailer) or a raw db copy, told by the verifier. */
  tool?: ImportTool;
  /** One line: what was recognised. */
  layout: string;
  /** Where it was read: a path or URL. */
  where: string;
  originalName: string;
  /** The snapshot's path inside the archive or folder. */
  innerName?: string;
  compression?: string;
  originalTime?: Date;
  etcdVersion?: string;
  notes: string[];
  extras: FoundExtra[];
  /** The plain snapshot; throws at its end when the archive turns out to hold a second one. */
  snapshot(): AsyncGenerator<Buffer>;
}

const corrupt = (where: string, why: string) =>
  new EtcdRecoverError('SNAPSHOT_CORRUPT', `${where}: ${why}`, { hint: 'the backup is damaged or was cut short: copy it again from where it was made, or import another one' });

/** DecodeErrors (damaged or cut-short data) as the one error type. */
export async function* mapDecodeErrors<T>(src: AsyncIterable<T>, where: string): AsyncGenerator<T> {
  try {
    yield* src;
  } catch (e) {
    if (e instanceof DecodeError) throw corrupt(where, e.message.startsWith(where) ? e.message.slice(where.length).replace(/^[:\s]+/, '') : e.message);
    throw e;
  }
}

interface Opened {
  f: SourceFile;
  reader: ByteReader;
  head: Buffer;
  s: Sniffed;
}

async function openFile(f: SourceFile, signal?: AbortSignal): Promise<Opened> {
  const reader = new ByteReader(f.open(signal));
  try {
    const head = await reader.peek(SNIFF_BYTES);
    return { f, reader, head, s: sniff(head) };
  } catch (e) {
    await reader.close();
    throw e;
  }
}

function snapshotStream(reader: ByteReader, codec: Codec | undefined, where: string): AsyncGenerator<Buffer> {
  return mapDecodeErrors(codec ? decode(codec, reader, where) : reader.stream(), where);
}

/** Resolves a source to its one snapshot. */
export async function findSnapshot(source: ImportSource, signal?: AbortSignal): Promise<Found> {
  if (source.file) {
    const o = await openFile(source.file, signal);
    return fromOpened(o, {});
  }
  return fromFolder(source, signal);
}

function fromOpened(o: Opened, ctx: { kopsMeta?: boolean; folder?: string }): Promise<Found> | Found {
  const { f, s } = o;
  if (isSnapshotLike(s)) {
    const tool = s.codec ? compressedTool(s.codec, f.name, Boolean(ctx.kopsMeta)) : undefined;
    const time = timeFromName(f.name);
    const notes: string[] = [];
    if (s.codec && !tool) notes.push(`${codecName[s.codec]}-compressed snapshot of no known tool's naming: imported as a plain snapshot`);
    const layout =
      tool === 'gardener' ? `Gardener full snapshot (${codecName[s.codec!]})`
      : tool === 'kops' ? 'kops etcd-manager backup (etcd.backup.gz)'
      : s.codec ? `${codecName[s.codec]}-compressed etcd snapshot`
      : 'etcd snapshot file (bbolt database)';
    return {
      ...(tool ? { tool } : {}),
      layout,
      where: f.where,
      originalName: ctx.folder ?? f.name,
      ...(ctx.folder ? { innerName: f.name } : {}),
      ...(s.codec ? { compression: s.codec } : {}),
      ...((time ?? f.mtime) ? { originalTime: time ?? f.mtime! } : {}),
      notes,
      extras: [],
      snapshot: () => snapshotStream(o.reader, s.codec, f.where),
    };
  }
  if (s.content === 'tar' || s.content === 'zip') return fromArchive(o, s.content);
  void o.reader.close();
  throw new EtcdRecoverError('SNAPSHOT_CORRUPT', `${f.where} is not a backup this tool can import: ${describeOther(o.head, s)}`, {
    hint: 'import an etcd snapshot, or a backup of etcdctl, CSM, OKD, k3s/rke2, Gardener or kops as its tool wrote it',
  });
}

async function fromArchive(o: Opened, kind: 'tar' | 'zip'): Promise<Found> {
  const { f, s } = o;
  const inner = s.codec ? new ByteReader(decode(s.codec, o.reader, f.where)) : o.reader;
  const entries = mapDecodeErrors(kind === 'tar' ? tarEntries(inner, f.where) : zipEntries(inner, f.where), f.where);
  const others: string[] = [];
  // The first entry that is a snapshot (by content); the rest of the archive is read after it.
  const nextSnapshot = async (): Promise<{ e: ArchiveEntry; r: ByteReader; es: Sniffed } | undefined> => {
    for (;;) {
      const n = await entries.next();
      if (n.done) return undefined;
      const e = n.value;
      if (e.type !== 'file') continue;
      const r = new ByteReader(mapDecodeErrors(e.body(), f.where));
      const es = sniff(await r.peek(SNIFF_BYTES));
      if (isSnapshotLike(es)) return { e, r, es };
      others.push(e.name);
    }
  };
  const first = await nextSnapshot();
  const csmNamed = NAMES.csmArchive.test(f.name);
  if (!first) {
    const held = others.length ? `it holds ${others.slice(0, 8).join(', ')}${others.length > 8 ? `, … (${others.length} files)` : ''}` : 'it holds no file';
    if (csmNamed) {
      const dir = f.name.replace(/\.(tar\.gz|tgz|tar)$/, '');
      throw new EtcdRecoverError('SNAPSHOT_NOT_FOUND', `CSM tarball ${f.where} has no ${dir}/${NAMES.csmInner} (no etcd snapshot inside: ${held})`, {
        hint: 'the backup is incomplete: pick another one (`list-objects.py --bucket-name etcd-backup`)',
      });
    }
    throw new EtcdRecoverError('SNAPSHOT_NOT_FOUND', `${f.where} is a ${kind} archive without an etcd snapshot in it (${held})`, { hint: 'import the archive that holds the snapshot' });
  }
  const { e, r, es } = first;
  const tool: ImportTool | undefined =
    kind === 'zip' ? 'k3s' : basename(e.name) === NAMES.csmInner ? 'csm' : es.codec ? compressedTool(es.codec, basename(e.name), false) : undefined;
  const notes: string[] = [];
  if (!tool) notes.push(`a ${kind} archive holding one snapshot, of no known tool's layout: imported as a plain snapshot`);
  if (csmNamed && tool !== 'csm') notes.push(`named like a CSM backup, but the snapshot inside is ${e.name}, not ${NAMES.csmInner}`);
  const time = timeFromName(f.name) ?? timeFromName(basename(e.name)) ?? e.mtime ?? f.mtime;
  const compression = [kind === 'zip' ? 'zip' : 'tar', s.codec, es.codec].filter(Boolean).join('+');
  const where = `${f.where}:${e.name}`;
  return {
    ...(tool ? { tool } : {}),
    layout: tool === 'k3s' ? 'k3s/rke2 zip snapshot' : tool === 'csm' ? `CSM bare-metal etcd backup (${s.codec ? `tar+${s.codec}` : 'tar'})` : `${kind} archive holding one snapshot`,
    where: f.where,
    originalName: f.name,
    innerName: e.name,
    compression,
    ...(time ? { originalTime: time } : {}),
    notes,
    extras: [],
    snapshot: async function* () {
      yield* snapshotStream(r, es.codec, where);
      const second = await nextSnapshot();
      if (second) {
        throw new EtcdRecoverError('USAGE', `${f.where} holds two snapshots, ${e.name} and ${second.e.name}: refusing to guess which one to import`, {
          hint: 'extract the one you mean and import that file',
        });
      }
      if (others.length) notes.push(`other files in the archive, not imported: ${others.join(', ')}`);
    },
  };
}

async function fromFolder(source: ImportSource, signal?: AbortSignal): Promise<Found> {
  const files = source.files ?? [];
  const opened: Opened[] = [];
  try {
    for (const f of files) opened.push(await openFile(f, signal));
  } catch (e) {
    await Promise.all(opened.map((o) => o.reader.close()));
    throw e;
  }
  const snapshots = opened.filter((o) => isSnapshotLike(o.s));
  const statics = opened.filter((o) => NAMES.okdStatic.test(o.f.name) && o.s.content === 'tar');
  const meta = opened.find((o) => o.f.name === NAMES.kopsMeta);
  const archives = opened.filter((o) => (o.s.content === 'tar' || o.s.content === 'zip') && !statics.includes(o));
  const listing = `it holds ${files.map((f) => f.name).concat(source.skipped ?? []).join(', ') || 'nothing'}`;
  let chosen: Opened | undefined;
  if (snapshots.length > 1) {
    throw new EtcdRecoverError('USAGE', `${source.description} holds ${snapshots.length} snapshots (${snapshots.map((o) => o.f.name).join(', ')}): refusing to guess which one to import`, {
      hint: 'import one file, not the folder',
    });
  } else if (snapshots.length === 1) chosen = snapshots[0];
  else if (statics.length) {
    throw new EtcdRecoverError('SNAPSHOT_NOT_FOUND', `OKD backup folder ${source.description} has ${statics[0]!.f.name} but no snapshot_<timestamp>.db: its etcd snapshot is missing (${listing})`, {
      hint: 'copy the whole backup folder cluster-backup.sh wrote (both files), or pick another backup',
    });
  } else if (meta) {
    throw new EtcdRecoverError('SNAPSHOT_NOT_FOUND', `kops backup folder ${source.description} has ${NAMES.kopsMeta} but no ${NAMES.kopsSnapshot} (${listing})`, { hint: 'pick another backup of etcd-manager' });
  } else if (archives.length === 1) chosen = archives[0];
  if (!chosen) {
    await Promise.all(opened.map((o) => o.reader.close()));
    const what = archives.length > 1 ? `${archives.length} archives (${archives.map((o) => o.f.name).join(', ')}): import one of them` : `no etcd snapshot (${listing})`;
    throw new EtcdRecoverError(archives.length > 1 ? 'USAGE' : 'SNAPSHOT_NOT_FOUND', `${source.description} holds ${what}`, { hint: 'name the backup file itself' });
  }
  for (const o of opened) if (o !== chosen) await o.reader.close();
  const kopsInfo = meta && chosen.f.name === NAMES.kopsSnapshot ? parseKopsMeta((await readSmall(meta.f, signal)).toString('utf8')) : undefined;
  const found = await fromOpened(chosen, { kopsMeta: Boolean(meta && chosen.s.codec), folder: source.name });
  const others = files.filter((f) => f !== chosen.f && !statics.some((o) => o.f === f) && f !== meta?.f).map((f) => f.name);
  if (statics.length) {
    found.tool = 'okd';
    found.layout = 'OKD backup folder (snapshot + static pod resources)';
    found.extras.push(...statics.map((o) => ({ name: o.f.name, where: o.f.where, open: o.f.open })));
    const t = timeFromName(chosen.f.name);
    if (t) found.originalTime = t;
    if (!NAMES.okdSnapshot.test(chosen.f.name)) found.notes.push(`the snapshot is named ${chosen.f.name}, not snapshot_<timestamp>.db`);
    const st = statics.map((o) => timeFromName(o.f.name)?.getTime());
    if (t && !st.includes(t.getTime())) found.notes.push(`the static pod resources (${statics.map((o) => o.f.name).join(', ')}) are not from the snapshot's time`);
  } else if (meta && found.tool === 'kops') {
    found.layout = 'kops etcd-manager backup (etcd.backup.gz + _etcd_backup.meta)';
    found.extras.push({ name: meta.f.name, where: meta.f.where, open: meta.f.open });
    if (kopsInfo?.etcdVersion) found.etcdVersion = kopsInfo.etcdVersion;
    const t = kopsInfo?.timestamp ?? timeFromName(source.name);
    if (t) found.originalTime = t;
    if (!kopsInfo) found.notes.push(`${NAMES.kopsMeta} is not the JSON etcd-manager writes: kept, but not read`);
  } else if (found.tool === 'kops') found.notes.push(`no ${NAMES.kopsMeta} beside it`);
  if (others.length || source.skipped?.length) found.notes.push(`other files in the folder, not imported: ${[...others, ...(source.skipped ?? [])].join(', ')}`);
  return found;
}

async function readSmall(f: SourceFile, signal?: AbortSignal): Promise<Buffer> {
  const parts: Buffer[] = [];
  let n = 0;
  for await (const c of f.open(signal)) {
    parts.push(Buffer.from(c));
    n += c.length;
    if (n > 1 << 20) throw new EtcdRecoverError('SNAPSHOT_CORRUPT', `${f.where} is ${n}+ bytes: not etcd-manager's small metadata file`);
  }
  return Buffer.concat(parts);
}
