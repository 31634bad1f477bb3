import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { SnapshotFrameParser, type SnapshotHeader } from '@etcd-recover/core';

// Protobuf and gRPC framing, written by hand the way etcd's Maintenance/Snapshot sends them.
const varint = (n: number): Buffer => {
  const out: number[] = [];
  let v = BigInt(n);
  do {
    const b = Number(v & 0x7fn);
    v >>= 7n;
    out.push(v ? b | 0x80 : b);
  } while (v);
  return Buffer.from(out);
};
const field = (no: number, value: Buffer | number): Buffer =>
  typeof value === 'number' ? Buffer.concat([varint((no << 3) | 0), varint(value)]) : Buffer.concat([varint((no << 3) | 2), varint(value.length), value]);
const grpc = (msg: Buffer, compressed = 0): Buffer => {
  const p = Buffer.alloc(5);
  p[0] = compressed;
  p.writeUInt32BE(msg.length, 1);
  return Buffer.concat([p, msg]);
};

/** A stream of snapshot responses: header in the first, version in the last, as etcd 3.6 sends them. */
function snapshotStream(data: Buffer, chunk = 32 * 1024): Buffer {
  const msgs: Buffer[] = [];
  for (let off = 0; off < data.length; off += chunk) {
    const blob = data.subarray(off, off + chunk);
    const parts: Buffer[] = [];
    if (off === 0) parts.push(field(1, Buffer.concat([field(1, 0x1234), field(2, 0xabcdef), field(3, 4242), field(4, 7)])));
    parts.push(field(2, data.length - off - blob.length), field(3, blob));
    if (off + chunk >= data.length) parts.push(field(4, Buffer.from('3.6.0')));
    msgs.push(grpc(Buffer.concat(parts)));
  }
  return Buffer.concat(msgs);
}

function parseIn(stream: Buffer, cut: (i: number) => number) {
  let header: SnapshotHeader | undefined;
  let expected: number | undefined;
  const parser = new SnapshotFrameParser('test', { header: (h) => (header = h), expected: (n) => (expected ??= n) });
  const blobs: Buffer[] = [];
  for (let off = 0, i = 0; off < stream.length; i++) {
    const n = Math.max(1, Math.min(cut(i), stream.length - off));
    const chunk = stream.subarray(off, off + n);
    for (const b of parser.push(chunk)) {
      assert.equal(b.buffer, chunk.buffer, 'blob bytes are slices of the received chunk, not copies');
      blobs.push(b);
    }
    off += n;
  }
  return { data: Buffer.concat(blobs), header, expected, atBoundary: parser.atBoundary() };
}

describe('snapshot stream parser (gRPC frames → blob slices)', () => {
  const data = randomBytes(200_000);
  const stream = snapshotStream(data);

  for (const [what, cut] of [
    ['one chunk', () => Number.MAX_SAFE_INTEGER],
    ['16 KiB DATA frames', () => 16 * 1024],
    ['one byte at a time', () => 1],
    ['random cuts', () => 1 + Math.floor(Math.random() * 9000)],
  ] as const) {
    it(`yields every blob byte in order, the header and the size: ${what}`, () => {
      const r = parseIn(stream, cut);
      assert.ok(r.data.equals(data));
      assert.deepEqual(r.header, { clusterId: '1234', memberId: 'abcdef', revision: 4242, raftTerm: 7 });
      assert.equal(r.expected, data.length);
      assert.ok(r.atBoundary);
    });
  }

  it('a stream cut inside a message is not at a boundary', () => {
    assert.equal(parseIn(stream.subarray(0, stream.length - 10), () => 4096).atBoundary, false);
    assert.equal(parseIn(stream.subarray(0, 3), () => 4096).atBoundary, false);
  });

  it('refuses compressed messages and malformed fields', () => {
    assert.throws(() => parseIn(grpc(field(3, Buffer.from('x')), 1), () => 100), /compressed gRPC messages are not supported/);
    // a blob claiming more bytes than its message holds
    const bad = grpc(Buffer.concat([varint((3 << 3) | 2), varint(1000), Buffer.alloc(10)]));
    assert.throws(() => parseIn(bad, () => 100), /malformed message/);
    assert.throws(() => parseIn(grpc(Buffer.from([(3 << 3) | 5, 0, 0, 0, 0])), () => 100), /wire type 5/);
  });
});
