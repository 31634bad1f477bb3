import { connect, constants, type ClientHttp2Session, type SecureClientSessionOptions } from 'node:http2';
import { EtcdRecoverError } from '../errors.js';
import { idToHex, type EtcdTls, type SnapshotHeader, type SnapshotStream } from './etcd-gateway.js';

/**
 * etcd's Maintenance/Snapshot stream over node:http2 directly. The etcd3
 * client decodes every 32 KiB message into protobufjs objects and copies the
 * blob; for a multi-gigabyte snapshot that costs more than twice the time and
 * memory of etcdctl. Here each gRPC frame's blob is handed on as a slice of
 * the received bytes, and HTTP/2 flow control is the backpressure: when the
 * consumer stops pulling, etcd stops sending.
 *
 * gRPC framing: 1-byte compressed flag, 4-byte big-endian length, message.
 * SnapshotResponse: header=1 (ResponseHeader), remaining_bytes=2 (uint64),
 * blob=3 (bytes), version=4 (string). ResponseHeader: cluster_id=1,
 * member_id=2, revision=3, raft_term=4.
 */
/** An HTTP/2 session to an etcd member, connected (or failed) within timeoutMs. */
async function openSession(endpoint: string, tls: EtcdTls | undefined, timeoutMs: number): Promise<ClientHttp2Session> {
  const url = new URL(endpoint);
  // Large flow-control windows: with HTTP/2's default 64 KiB, loopback throughput is bound by round trips.
  const opts: SecureClientSessionOptions = { settings: { initialWindowSize: WINDOW } };
  if (url.protocol === 'https:') {
    if (tls?.ca) opts.ca = tls.ca;
    if (tls?.cert) opts.cert = tls.cert;
    if (tls?.key) opts.key = tls.key;
  }
  const session = connect(url.origin, opts);
  session.on('error', () => undefined);
  try {
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('connection timed out')), timeoutMs);
      session.once('connect', () => {
        clearTimeout(t);
        session.setLocalWindowSize(WINDOW);
        resolve();
      });
      session.once('error', (e) => {
        clearTimeout(t);
        reject(/ECONNREFUSED/.test(String(e)) ? new Error('connection refused') : e);
      });
    });
    return session;
  } catch (e) {
    session.destroy();
    throw e;
  }
}

/**
 * Sends one gRPC request (a single length-prefixed message) and collects the
 * grpc-status / grpc-message, which arrive in the response headers (trailers-only
 * answers) or in the trailers.
 */
function grpcCall(session: ClientHttp2Session, path: string, message: Buffer) {
  const req = session.request({
    [constants.HTTP2_HEADER_METHOD]: 'POST',
    [constants.HTTP2_HEADER_PATH]: path,
    [constants.HTTP2_HEADER_CONTENT_TYPE]: 'application/grpc',
    te: 'trailers',
  });
  let status: string | undefined;
  let text: string | undefined;
  const take = (h: Record<string, unknown>) => {
    if (h['grpc-status'] !== undefined) status = String(h['grpc-status']);
    if (h['grpc-message'] !== undefined) text = decodeURIComponent(String(h['grpc-message']));
  };
  req.on('response', take);
  req.on('trailers', take);
  const frame = Buffer.alloc(5 + message.length);
  frame.writeUInt32BE(message.length, 1);
  message.copy(frame, 5);
  req.end(frame);
  return { req, result: () => ({ status, message: text }) };
}

/** Per-stream and connection receive window: bounds what etcd may send ahead of the consumer (2 MiB). */
const WINDOW = 2 * 1024 * 1024;

export function grpcSnapshot(endpoint: string, tls: EtcdTls | undefined, signal?: AbortSignal, connectTimeoutMs = 5_000): SnapshotStream {
  let resolveHeader!: (h: SnapshotHeader) => void;
  let rejectHeader!: (e: unknown) => void;
  const header = new Promise<SnapshotHeader>((res, rej) => {
    resolveHeader = res;
    rejectHeader = rej;
  });
  header.catch(() => undefined);
  let resolveExpected!: (n: number | undefined) => void;
  const expectedBytes = new Promise<number | undefined>((res) => (resolveExpected = res));

  async function* frames(): AsyncGenerator<Buffer> {
    let session: ClientHttp2Session | undefined;
    const fail = (what: string, e: unknown) =>
      new EtcdRecoverError('ETCD_UNREACHABLE', `snapshot from ${endpoint} ${what}: ${(e as Error).message ?? e}`, { cause: e });
    try {
      session = await openSession(endpoint, tls, connectTimeoutMs).catch((e) => {
        throw fail('failed to connect', e);
      });
      const { req, result } = grpcCall(session, '/etcdserverpb.Maintenance/Snapshot', Buffer.alloc(0));
      const onAbort = () => req.close(constants.NGHTTP2_CANCEL);
      signal?.addEventListener('abort', onAbort, { once: true });

      let pending: Buffer | undefined;
      let first = true;
      try {
        for await (const chunk of req as AsyncIterable<Buffer>) {
          let buf = pending ? Buffer.concat([pending, chunk]) : chunk;
          pending = undefined;
          let off = 0;
          while (buf.length - off >= 5) {
            const len = buf.readUInt32BE(off + 1);
            if (buf.length - off - 5 < len) break;
            if (buf[off] !== 0) throw new EtcdRecoverError('ETCD_ERROR', `snapshot from ${endpoint}: compressed gRPC messages are not supported`);
            const msg = decodeSnapshotResponse(buf.subarray(off + 5, off + 5 + len));
            off += 5 + len;
            if (msg.header) resolveHeader(msg.header);
            if (first) {
              first = false;
              resolveExpected(msg.remaining + (msg.blob?.length ?? 0));
            }
            if (msg.blob?.length) yield msg.blob;
          }
          if (off < buf.length) pending = Buffer.from(buf.subarray(off));
        }
      } finally {
        signal?.removeEventListener('abort', onAbort);
      }
      signal?.throwIfAborted();
      const { status, message } = result();
      if (status !== undefined && status !== '0') {
        throw new EtcdRecoverError(status === '14' ? 'ETCD_UNREACHABLE' : 'ETCD_ERROR', `snapshot from ${endpoint} failed: ${message ?? `gRPC status ${status}`}`);
      }
      if (status === undefined) throw new EtcdRecoverError('ETCD_UNREACHABLE', `snapshot stream from ${endpoint} ended without a status`);
      if (pending?.length) throw new EtcdRecoverError('ETCD_ERROR', `snapshot stream from ${endpoint} ended inside a message`);
    } catch (e) {
      const err = e instanceof EtcdRecoverError ? e : fail('broke', e);
      rejectHeader(err);
      resolveExpected(undefined);
      throw err;
    } finally {
      rejectHeader(new EtcdRecoverError('ETCD_ERROR', `snapshot from ${endpoint} sent no header`));
      resolveExpected(undefined);
      session?.close();
    }
  }
  const it = frames();
  return { header, expectedBytes, [Symbol.asyncIterator]: () => it };
}

/**
 * One unary gRPC call over node:http2 (empty-bodied requests only need the 5-byte frame).
 * Used for Maintenance/Status so that a backup never has to load the etcd3 client.
 */
export async function grpcUnary(endpoint: string, tls: EtcdTls | undefined, path: string, request: Buffer, timeoutMs: number, signal?: AbortSignal): Promise<Buffer> {
  const session = await openSession(endpoint, tls, timeoutMs);
  const timer = setTimeout(() => session.destroy(new Error('timed out')), timeoutMs);
  const onAbort = () => session.destroy(new Error('aborted'));
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    const { req, result } = grpcCall(session, path, request);
    const parts: Buffer[] = [];
    for await (const c of req as AsyncIterable<Buffer>) parts.push(c);
    const { status, message } = result();
    if (status !== '0') throw new Error(message ?? `gRPC status ${status ?? 'missing'}`);
    const body = Buffer.concat(parts);
    if (body.length < 5) throw new Error('empty gRPC response');
    return body.subarray(5, 5 + body.readUInt32BE(1));
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener('abort', onAbort);
    session.close();
  }
}

export interface RawStatus {
  clusterId: string;
  memberId: string;
  revision: number;
  raftTerm: number;
  version: string;
  dbSize: number;
  leader: string;
  raftIndex: number;
  raftAppliedIndex: number;
  errors: string[];
  dbSizeInUse: number;
  isLearner: boolean;
}

/** StatusResponse: header=1, version=2, dbSize=3, leader=4, raftIndex=5, raftTerm=6, raftAppliedIndex=7, errors=8, dbSizeInUse=9, isLearner=10. */
export function decodeStatusResponse(b: Buffer): RawStatus {
  const s: RawStatus = { clusterId: '0', memberId: '0', revision: 0, raftTerm: 0, version: '', dbSize: 0, leader: '0', raftIndex: 0, raftAppliedIndex: 0, errors: [], dbSizeInUse: 0, isLearner: false };
  fields(b, (f, _w, v, bytes) => {
    if (f === 1 && bytes) {
      fields(bytes, (hf, _hw, hv) => {
        if (hf === 1) s.clusterId = idToHex(hv);
        else if (hf === 2) s.memberId = idToHex(hv);
        else if (hf === 3) s.revision = Number(hv);
      });
    } else if (f === 2 && bytes) s.version = bytes.toString('utf8');
    else if (f === 3) s.dbSize = Number(v);
    else if (f === 4) s.leader = idToHex(v);
    else if (f === 5) s.raftIndex = Number(v);
    else if (f === 6) s.raftTerm = Number(v);
    else if (f === 7) s.raftAppliedIndex = Number(v);
    else if (f === 8 && bytes) s.errors.push(bytes.toString('utf8'));
    else if (f === 9) s.dbSizeInUse = Number(v);
    else if (f === 10) s.isLearner = v !== 0n;
  });
  return s;
}

interface Decoded {
  header?: SnapshotHeader;
  remaining: number;
  blob?: Buffer;
}

function readVarint(b: Buffer, pos: number): [bigint, number] {
  let result = 0n;
  let shift = 0n;
  for (;;) {
    const byte = b[pos++]!;
    result |= BigInt(byte & 0x7f) << shift;
    if (byte < 0x80) return [result, pos];
    shift += 7n;
    if (shift > 63n) throw new Error('varint too long');
  }
}

function fields(b: Buffer, visit: (field: number, wire: number, value: bigint, bytes: Buffer | undefined) => void): void {
  let pos = 0;
  while (pos < b.length) {
    const [tag, p1] = readVarint(b, pos);
    pos = p1;
    const field = Number(tag >> 3n);
    const wire = Number(tag & 7n);
    if (wire === 0) {
      const [v, p2] = readVarint(b, pos);
      pos = p2;
      visit(field, wire, v, undefined);
    } else if (wire === 2) {
      const [len, p2] = readVarint(b, pos);
      const end = p2 + Number(len);
      visit(field, wire, 0n, b.subarray(p2, end));
      pos = end;
    } else if (wire === 1) pos += 8;
    else if (wire === 5) pos += 4;
    else throw new Error(`unsupported protobuf wire type ${wire}`);
  }
}

export function decodeSnapshotResponse(b: Buffer): Decoded {
  const out: Decoded = { remaining: 0 };
  fields(b, (f, _w, v, bytes) => {
    if (f === 1 && bytes) {
      const h = { clusterId: '0', memberId: '0', revision: 0, raftTerm: 0 };
      fields(bytes, (hf, _hw, hv) => {
        if (hf === 1) h.clusterId = idToHex(hv);
        else if (hf === 2) h.memberId = idToHex(hv);
        else if (hf === 3) h.revision = Number(hv);
        else if (hf === 4) h.raftTerm = Number(hv);
      });
      out.header = h;
    } else if (f === 2) out.remaining = Number(v);
    else if (f === 3 && bytes) out.blob = bytes;
  });
  return out;
}
