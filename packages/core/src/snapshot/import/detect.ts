/**
 * Layout detection by content: what the first bytes of a file (or archive entry) are — a bbolt
 * database, an archive, or either of those compressed — and, from the names the tools give their
 * backups, when a backup was taken. Names only ever add a time or confirm a role; what a file is
 * comes from its bytes.
 */
import { codecName, codecOf, contentOf, decodedHead, type Codec, type Content } from './codecs.js';

export type ImportTool = 'etcdctl' | 'raw-db' | 'csm' | 'okd' | 'k3s' | 'gardener' | 'kops';

export interface Sniffed {
  codec?: Codec;
  /** What the (decoded) bytes are. */
  content: Content;
  /** Set when a compressed head does not decode. */
  broken?: string;
}

export function sniff(head: Buffer): Sniffed {
  const codec = codecOf(head);
  if (!codec) return { content: contentOf(head) };
  const inner = decodedHead(codec, head);
  if (!inner || !inner.length) return { codec, content: 'unknown', broken: `the ${codecName[codec]} data does not decode` };
  return { codec, content: contentOf(inner) };
}

/** A snapshot, plain or compressed. */
export const isSnapshotLike = (s: Sniffed): boolean => s.content === 'bbolt';

/** What a file that is no snapshot looks like, for the message that refuses it. */
export function describeOther(head: Buffer, s: Sniffed): string {
  if (s.broken) return s.broken;
  if (s.codec) return `it is ${codecName[s.codec]}-compressed, but what it holds is not an etcd snapshot (no bbolt database, tar or zip inside)`;
  const starts = (...sig: number[]) => sig.every((x, i) => head[i] === x);
  if (starts(0x28, 0xb5, 0x2f, 0xfd)) return 'it is zstd-compressed (not a layout this tool imports): decompress it first';
  if (starts(0xfd, 0x37, 0x7a, 0x58, 0x5a)) return 'it is xz-compressed (not a layout this tool imports): decompress it first';
  if (starts(0x42, 0x5a, 0x68)) return 'it is bzip2-compressed (not a layout this tool imports): decompress it first';
  if (head.length === 0) return 'it is empty';
  return 'it is not an etcd snapshot (no bbolt database) nor an archive or compression this tool knows';
}

const utc = (y: string, mo: string, d: string, h = '0', mi = '0', s = '0'): Date | undefined => {
  const t = new Date(Date.UTC(+y, +mo - 1, +d, +h, +mi, +s));
  return Number.isNaN(t.getTime()) || t.getUTCFullYear() < 2000 ? undefined : t;
};
const unix = (s: string): Date | undefined => {
  const n = Number(s);
  return n > 946684800 && n < 4102444800 ? new Date(n * 1000) : undefined;
};

export const NAMES = {
  /** CSM: bare-metal/etcd-backup-2020-02-04-18-00-10.tar.gz holding etcd-backup-…/etcd-dump.bin. */
  csmArchive: /^etcd-backup-(\d{4})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})(?:\.tar\.gz|\.tgz|\.tar)?$/,
  csmInner: 'etcd-dump.bin',
  /** OKD: snapshot_2021-04-14_123040.db and static_kuberesources_2021-04-14_123040.tar.gz. */
  okdSnapshot: /^snapshot_(\d{4})-(\d{2})-(\d{2})_(\d{2})(\d{2})(\d{2})\.db$/,
  okdStatic: /^static_kuberesources_(\d{4})-(\d{2})-(\d{2})_(\d{2})(\d{2})(\d{2})\.tar\.gz$/,
  /** Gardener: Full-<start revision>-<last revision>-<unix time>[.gz|.zlib|.Z]. */
  gardener: /^Full-([0-9a-f]{8})-([0-9a-f]{8})-(\d{9,11})(?:\.gz|\.zlib|\.Z)?$/,
  /** k3s/rke2: etcd-snapshot-<node>-<unix time>.zip, on-demand-<node>-<unix time>.zip. */
  k3s: /-(\d{10})(?:\.zip)?$/,
  kopsSnapshot: 'etcd.backup.gz',
  kopsMeta: '_etcd_backup.meta',
};

/** When the backup was taken, from the name a tool gave it (UTC), if the name says. */
export function timeFromName(name: string): Date | undefined {
  let m = NAMES.csmArchive.exec(name) ?? NAMES.okdSnapshot.exec(name) ?? NAMES.okdStatic.exec(name);
  if (m) return utc(m[1]!, m[2]!, m[3]!, m[4], m[5], m[6]);
  if ((m = NAMES.gardener.exec(name))) return unix(m[3]!);
  if ((m = NAMES.k3s.exec(name))) return unix(m[1]!);
  if ((m = /(\d{4})-(\d{2})-(\d{2})[T_ -]?(\d{2})[:-]?(\d{2})[:-]?(\d{2})/.exec(name))) return utc(m[1]!, m[2]!, m[3]!, m[4], m[5], m[6]);
  return undefined;
}

/** A compressed single snapshot: whose it is, by its compression and name. */
export function compressedTool(codec: Codec, name: string, besideKopsMeta: boolean): ImportTool | undefined {
  if (besideKopsMeta || (name === NAMES.kopsSnapshot && codec === 'gzip')) return 'kops';
  if (codec === 'zlib' || codec === 'lzw' || NAMES.gardener.test(name)) return 'gardener';
  return undefined;
}

/** kops etcd-manager's _etcd_backup.meta: JSON with the etcd version and the time (seconds). */
export function parseKopsMeta(text: string): { etcdVersion?: string; timestamp?: Date } | undefined {
  try {
    const v = JSON.parse(text) as { etcdVersion?: unknown; timestamp?: unknown; clusterSpec?: { etcdVersion?: unknown } };
    const version = typeof v.etcdVersion === 'string' ? v.etcdVersion : typeof v.clusterSpec?.etcdVersion === 'string' ? v.clusterSpec.etcdVersion : undefined;
    const ts = typeof v.timestamp === 'number' || typeof v.timestamp === 'string' ? unix(String(v.timestamp)) : undefined;
    return { ...(version ? { etcdVersion: version.replace(/^v/, '') } : {}), ...(ts ? { timestamp: ts } : {}) };
  } catch {
    return undefined;
  }
}
