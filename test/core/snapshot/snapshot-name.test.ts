import { strict as assert } from 'node:assert';
import { formatSnapshotName, parseSnapshotName } from '@etcd-recover/core';

describe('snapshot names', () => {
  it('format and parse are inverse', () => {
    const at = new Date('2026-11-21T07:33:55.123Z');
    const name = formatSnapshotName(at);
    assert.equal(name, 'full-20261121T073355123Z');
    const parts = parseSnapshotName(name)!;
    assert.equal(parts.createdAt.toISOString(), at.toISOString());
  });

  it('sorts lexically in time order', () => {
    const names = [3, 1, 2].map((h) => formatSnapshotName(new Date(Date.UTC(2026, 0, 1, h))));
    assert.deepEqual([...names].sort(), [names[1], names[2], names[0]]);
  });

  it('rejects foreign names', () => {
    for (const n of ['snapshot.db', 'full-2026', 'full-20261321T073355123Z', 'full-20261131T073355123Z', 'full-20261121T073355123Z-r1']) {
      assert.equal(parseSnapshotName(n), undefined, n);
    }
  });
});
