import { strict as assert } from 'node:assert';
import { mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findEtcdBinaries, isCacheFolderOf } from '@etcd-recover/core';

describe('the etcd binaries a sandbox finds in the build cache', () => {
  it('a cache folder is the component itself: NAME-<16 hex>, not another etcd minor or a build under way', () => {
    assert.equal(isCacheFolderOf('etcd', 'etcd-c68fb73f37fb9a1a'), true);
    assert.equal(isCacheFolderOf('minio', 'minio-cfd22fdfa470d229'), true);
    for (const f of ['etcd-3.5-9ac0131c382f84b0', 'etcd-3.7-0d6fd9bf9a98b86d', 'etcd-c68fb73f37fb9a1a.tmp.123', 'etcd-c68fb73f37fb9a1', 'etcd-C68FB73F37FB9A1A', 'etcdx-c68fb73f37fb9a1a', 'minio-cfd22fdfa470d229']) {
      assert.equal(isCacheFolderOf('etcd', f), false, f);
    }
  });

  it('without ETCD_BIN_DIR, the default etcd (etcd-KEY) is taken even when another minor was built later', () => {
    const cache = mkdtempSync(join(tmpdir(), 'etcd-recover-cache-'));
    const saved = { bin: process.env['ETCD_BIN_DIR'], cache: process.env['ETCD_RECOVER_CACHE'] };
    try {
      const make = (name: string, mtime: number) => {
        const d = join(cache, 'bin', name);
        mkdirSync(d, { recursive: true });
        for (const b of ['etcd', 'etcdctl', 'etcdutl']) writeFileSync(join(d, b), '');
        utimesSync(d, mtime, mtime);
        return d;
      };
      const older = make('etcd-1111111111111111', 1_000);
      const newest = make('etcd-2222222222222222', 2_000);
      make('etcd-3.7-3333333333333333', 3_000);
      make('etcd-3.5-4444444444444444', 4_000);
      delete process.env['ETCD_BIN_DIR'];
      process.env['ETCD_RECOVER_CACHE'] = cache;
      assert.equal(findEtcdBinaries().etcdutl, join(newest, 'etcdutl'));
      assert.notEqual(findEtcdBinaries().etcd, join(older, 'etcd'));
    } finally {
      if (saved.bin === undefined) delete process.env['ETCD_BIN_DIR'];
      else process.env['ETCD_BIN_DIR'] = saved.bin;
      if (saved.cache === undefined) delete process.env['ETCD_RECOVER_CACHE'];
      else process.env['ETCD_RECOVER_CACHE'] = saved.cache;
      rmSync(cache, { recursive: true, force: true });
    }
  });
});
