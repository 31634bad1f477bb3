import { strict as assert } from 'node:assert';
import { LiveKeyCount } from '../../../packages/core/src/snapshot/verifier/live-keys.js';

/** An etcd revision key: 8-byte big-endian main, '_', 8-byte sub, and 't' for a tombstone. */
function revKey(main: number, tomb = false): Buffer {
  const k = Buffer.alloc(tomb ? 18 : 17);
  k.writeBigUInt64BE(BigInt(main), 0);
  k[8] = 0x5f;
  if (tomb) k[17] = 0x74;
  return k;
}

/** A mvccpb.KeyValue: key (1), create (2), mod (3), version (4). */
function kv(key: string, main: number, version: number): Buffer {
  const k = Buffer.from(key);
  return Buffer.concat([Buffer.from([0x0a, k.length]), k, Buffer.from([0x10, main, 0x18, main, 0x20, version])]);
}

/** A bbolt leaf page of (key, value) elements, in order. */
function leaf(records: [Buffer, Buffer][]): Buffer {
  const head = Buffer.alloc(16 + records.length * 16);
  head.writeUInt16LE(0x02, 8); // leaf
  head.writeUInt16LE(records.length, 10);
  const data: Buffer[] = [];
  let at = head.length;
  records.forEach(([k, v], i) => {
    const e = 16 + i * 16;
    head.writeUInt32LE(at - e, e + 4);
    head.writeUInt32LE(k.length, e + 8);
    head.writeUInt32LE(v.length, e + 12);
    data.push(k, v);
    at += k.length + v.length;
  });
  return Buffer.concat([head, ...data]);
}

describe('live-key count of the key bucket', () => {
  it('a revision-bump marker on a page read before the compacted revision is known counts once, apart, and shifts no other record', () => {
    const c = new LiveKeyCount();
    // Page 2: key "a" created at 5, then the marker etcdutl --bump-revision writes (an empty value) at 10.
    const a = leaf([[revKey(5), kv('a', 5, 1)], [revKey(10), Buffer.alloc(0)]]);
    // Page 3: key "b" at its second version: its record is read right after page 2's.
    const b = leaf([[revKey(6), kv('b', 3, 2)]]);
    c.addPage(a, 0, 2, 2);
    c.addPage(b, 0, 1, 3);
    c.setCompactRev(100);
    assert.equal(c.countPage(2), null);
    assert.equal(c.countPage(3), null);
    c.settle();
    assert.equal(c.userKeys, 2, 'a and b (page 2 must not read page 3\'s record as its own)');
    assert.equal(c.totalKeys, 3, 'and the marker, once');
    assert.equal(c.bumpMarkers, 1);
  });
});
