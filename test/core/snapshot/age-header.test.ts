import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Decrypter, Encrypter, Stanza, generateX25519Identity, identityToRecipient } from 'age-encryption';
import { AgeKeys, makeX25519Header, openX25519Header, recipientOf, x25519Identity, x25519Recipient } from '@etcd-recover/core';
import { tempDir } from '../../support/sandbox.js';

/** The header of an age file: its bytes through the "--- MAC" line. */
function headerOf(file: Uint8Array): Buffer {
  const b = Buffer.from(file);
  const i = b.indexOf('\n--- ');
  return b.subarray(0, b.indexOf(0x0a, i + 5) + 1);
}

/** A header made by the package, and the file key it wraps (a recipient that adds no stanza sees it). */
async function packageHeader(recipients: string[], extra: Stanza[] = []): Promise<{ header: Buffer; fileKey: Buffer }> {
  let fileKey: Uint8Array | undefined;
  const e = new Encrypter();
  for (const r of recipients) e.addRecipient(r);
  e.addRecipient({ wrapFileKey: (k: Uint8Array) => ((fileKey = k), extra) });
  return { header: headerOf(await e.encrypt(new Uint8Array(0))), fileKey: Buffer.from(fileKey!) };
}

async function packageOpens(header: Buffer, identity: string): Promise<Buffer | Error> {
  const d = new Decrypter();
  d.addIdentity(identity);
  return d.decryptHeader(header).then((k) => Buffer.from(k), (e: Error) => e);
}

describe('the age header with node:crypto (age-header.ts), checked against the age-encryption package and Debian\'s age', () => {
  const ids: string[] = [];
  const recs: string[] = [];
  before(async () => {
    for (let i = 0; i < 3; i++) {
      ids.push(await generateX25519Identity());
      recs.push(await identityToRecipient(ids[i]!));
    }
  });

  it('derives the same recipient as the package, and refuses a bad checksum, mixed case and other kinds of key', async () => {
    for (let i = 0; i < 20; i++) {
      const id = await generateX25519Identity();
      assert.equal(recipientOf(x25519Identity(id)!), await identityToRecipient(id));
      assert.deepEqual(x25519Recipient(await identityToRecipient(id))?.length, 32);
    }
    const id = ids[0]!;
    const flipped = id.slice(0, 30) + (id[30] === 'Q' ? 'P' : 'Q') + id.slice(31);
    assert.equal(x25519Identity(flipped), undefined);
    assert.equal(x25519Identity(id.slice(0, 20) + id.slice(20).toLowerCase()), undefined, 'mixed case');
    assert.equal(x25519Recipient(recs[0]!.slice(0, -1) + (recs[0]!.endsWith('q') ? 'p' : 'q')), undefined);
    assert.equal(x25519Recipient(recs[0]!.toUpperCase()), undefined, 'a recipient must start "age1"');
    assert.equal(x25519Recipient(id), undefined);
    assert.equal(x25519Identity(recs[0]!), undefined);
  });

  it('opens headers the package and Debian\'s age make (one and three recipients) to the same file key', async () => {
    for (const n of [1, 3]) {
      const { header, fileKey } = await packageHeader(recs.slice(0, n));
      for (const id of ids.slice(0, n)) assert.deepEqual(openX25519Header(header, [x25519Identity(id)!]), fileKey);
    }
    const dir = tempDir('age-header-');
    try {
      writeFileSync(join(dir.path, 'plain'), 'x');
      execFileSync('age', ['-e', ...recs.flatMap((r) => ['-r', r]), '-o', join(dir.path, 'f.age'), join(dir.path, 'plain')]);
      const header = headerOf(readFileSync(join(dir.path, 'f.age')));
      for (const id of ids) {
        const fast = openX25519Header(header, [x25519Identity(id)!]);
        assert.ok(fast);
        assert.deepEqual(fast, await packageOpens(header, id));
      }
    } finally {
      dir.remove();
    }
  });

  it('makes headers the package opens for each recipient, to the same file key', async () => {
    const { header, fileKey } = makeX25519Header(recs.map((r) => x25519Recipient(r)!));
    for (const id of ids) assert.deepEqual(await packageOpens(header, id), fileKey);
  });

  it('leaves every header it does not fully understand or cannot open to the package', async () => {
    const mine = [x25519Identity(ids[0]!)!];
    const { header } = await packageHeader([recs[0]!]);
    assert.equal(openX25519Header(header, [x25519Identity(ids[1]!)!]), undefined, 'no identity matched');
    const grease = await packageHeader([recs[0]!], [new Stanza(['example.com/grease', 'abc'], new Uint8Array(7))]);
    assert.equal(openX25519Header(grease.header, mine), undefined, 'another kind of stanza');
    // The package still opens it: through AgeKeys the fallback gives the file key.
    const keys = await AgeKeys.parse({ identities: ids[0]!, source: 'a test' });
    assert.deepEqual(Buffer.from(await keys.openHeader(grease.header)), grease.fileKey);
    const mac = header.lastIndexOf('--- ') + 4;
    const badMac = Buffer.from(header);
    badMac[mac] = badMac[mac] === 0x41 ? 0x42 : 0x41;
    assert.equal(openX25519Header(badMac, mine), undefined, 'a wrong MAC');
    assert.match(String(await packageOpens(badMac, ids[0]!)), /HMAC|invalid/);
  });

  it('never opens a header the package refuses (every single-byte change of a real header)', async () => {
    const { header } = await packageHeader(recs);
    const mine = [x25519Identity(ids[1]!)!];
    let opened = 0;
    for (let at = 0; at < header.length; at++) {
      for (const v of [header[at]! ^ 0x01, header[at]! ^ 0x20, 0x0a, 0x20]) {
        if (v === header[at]) continue;
        const h = Buffer.from(header);
        h[at] = v;
        const fast = openX25519Header(h, mine);
        if (!fast) continue;
        opened++;
        assert.deepEqual(fast, await packageOpens(h, ids[1]!), `byte ${at} set to ${v}: opened here, so the package must open it to the same key`);
      }
    }
    // The MAC covers every byte before it, and the MAC itself must be canonical base64 and equal.
    assert.equal(opened, 0, 'the header MAC covers every byte: no change opens');
  });
});
