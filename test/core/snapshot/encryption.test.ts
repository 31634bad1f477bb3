import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { createHash, pbkdf2, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { Decrypter, Encrypter, generateX25519Identity, identityToRecipient } from 'age-encryption';
import { AgeKeys, EtcdRecoverError, decryptStream, encryptStream, nativeAge, setAgeOpenLoader, type OpenChunks } from '@etcd-recover/core';
import { tempDir } from '../../support/sandbox.js';

async function* pieces(buf: Buffer, sizes: number[]): AsyncGenerator<Buffer> {
  let at = 0;
  let i = 0;
  while (at < buf.length) {
    const n = sizes[i++ % sizes.length]!;
    yield buf.subarray(at, at + n);
    at += n;
  }
}

async function collect(it: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const out: Buffer[] = [];
  for await (const c of it) out.push(Buffer.from(c));
  return Buffer.concat(out);
}

async function newKeys(): Promise<{ identity: string; recipient: string; keys: AgeKeys }> {
  const identity = await generateX25519Identity();
  const recipient = await identityToRecipient(identity);
  return { identity, recipient, keys: await AgeKeys.parse({ identities: `# created by a test\n${identity}\n`, source: 'a test' }) };
}

// Every test below runs twice: with the native opener (batches on the thread pool) and in this thread.
let inThread = false;
const decryptCtx = (keys: AgeKeys | undefined, recipients?: string[]) => ({ what: 'backup b1', keys, inThread, ...(recipients ? { recipients } : {}) });
const seal = (plain: AsyncIterable<Uint8Array>, recipients: string[]) => encryptStream(plain, recipients, { inThread });

async function rejectsWith(p: Promise<unknown>, code: string, re: RegExp, secret?: string): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof EtcdRecoverError, String(e));
    assert.equal(e.code, code, e.message);
    assert.match(e.message, re);
    assert.ok(!e.message.includes('\n'), 'one line');
    if (secret) assert.ok(!e.message.includes(secret) && !(e.hint ?? '').includes(secret), 'the identity never appears in an error');
    return true;
  });
}

for (const way of ['the native module', 'this thread'] as const) {
describe(`age encryption of backups (format age-encryption.org/v1), sealed and opened by ${way}`, function () {
  before(async () => {
    inThread = way === 'this thread';
    if (!inThread) assert.ok(await nativeAge(), 'the native age module is built (scripts/build-native.mjs) and passes its self-test');
  });
  const sizes = [0, 1, 65535, 65536, 65537, 131072, 1_000_003, 16 * 65536, 16 * 65536 + 1, 2_500_000];

  for (const size of sizes) {
    it(`round-trips ${size} bytes, and the age-encryption package opens what we seal and vice versa`, async () => {
      const { identity, recipient, keys } = await newKeys();
      const plain = randomBytes(size);
      const sealed = await collect(seal(pieces(plain, [7, 70_000, 4096, 65536]), [recipient]));
      // Ours → ours, fed in odd pieces.
      assert.ok((await collect(decryptStream(pieces(sealed, [3, 65_553, 100_000]), decryptCtx(keys)))).equals(plain));
      // Ours → the package.
      const d = new Decrypter();
      d.addIdentity(identity);
      assert.ok(Buffer.from(await d.decrypt(sealed)).equals(plain));
      // The package → ours.
      const e = new Encrypter();
      e.addRecipient(recipient);
      const theirs = Buffer.from(await e.encrypt(plain));
      assert.ok((await collect(decryptStream(pieces(theirs, [65_552]), decryptCtx(keys)))).equals(plain));
    });
  }

  it('decrypts input delivered in one reused buffer (as the bucket read lends it), whole chunks opened where they lie', async () => {
    const { recipient, keys } = await newKeys();
    const plain = randomBytes(40 * 65536 + 12345);
    const sealed = await collect(seal(pieces(plain, [65536]), [recipient]));
    for (const size of [sealed.length, 1 << 20, 600_000, 200_000, 65552, 65553]) {
      const lent = Buffer.alloc(size);
      async function* borrowed(): AsyncGenerator<Buffer> {
        for (let at = 0; at < sealed.length; at += size) {
          const n = sealed.copy(lent, 0, at, at + size);
          yield lent.subarray(0, n);
          lent.fill(0xee); // the lender reuses its buffer once the next piece is asked for
        }
      }
      const out: Buffer[] = [];
      for await (const c of decryptStream(borrowed(), decryptCtx(keys))) out.push(Buffer.from(c));
      assert.ok(Buffer.concat(out).equals(plain), `pieces of ${size} bytes`);
    }
  });

  it("Debian's age (an independent implementation) decrypts ours and encrypts what we open, with several recipients", async () => {
    const a = await newKeys();
    const b = await newKeys();
    const dir = tempDir('age-');
    try {
      const plain = randomBytes(300_000);
      writeFileSync(join(dir.path, 'a.key'), `${a.identity}\n`);
      writeFileSync(join(dir.path, 'b.key'), `${b.identity}\n`);
      writeFileSync(join(dir.path, 'sealed.age'), await collect(seal(pieces(plain, [50_000]), [a.recipient, b.recipient])));
      for (const k of ['a.key', 'b.key']) {
        assert.ok(execFileSync('age', ['-d', '-i', join(dir.path, k), join(dir.path, 'sealed.age')], { maxBuffer: 1 << 24 }).equals(plain), `age -d with ${k}`);
      }
      writeFileSync(join(dir.path, 'plain'), plain);
      execFileSync('age', ['-r', a.recipient, '-o', join(dir.path, 'theirs.age'), join(dir.path, 'plain')]);
      const theirs = readFileSync(join(dir.path, 'theirs.age'));
      assert.ok((await collect(decryptStream(pieces(theirs, [1 << 20]), decryptCtx(a.keys)))).equals(plain));
    } finally {
      dir.remove();
    }
  });

  describe('bad keys and bad bytes are told apart', () => {
    let sealed: Buffer;
    let owner: Awaited<ReturnType<typeof newKeys>>;
    before(async () => {
      owner = await newKeys();
      sealed = await collect(seal(pieces(randomBytes(200_000), [65536]), [owner.recipient]));
    });

    it('a wrong key is ENCRYPTION_KEY naming the recipients, never "corrupt", and never shows the identity', async () => {
      const other = await newKeys();
      await rejectsWith(collect(decryptStream(pieces(sealed, [4096]), decryptCtx(other.keys, [owner.recipient]))), 'ENCRYPTION_KEY', new RegExp(`encrypted for ${owner.recipient}; none of the 1 identity`), other.identity);
    });

    it('no key at all is ENCRYPTION_KEY with the way out', async () => {
      await rejectsWith(collect(decryptStream(pieces(sealed, [4096]), decryptCtx(undefined))), 'ENCRYPTION_KEY', /no age identity is configured/);
      const onlyRecipients = await AgeKeys.parse({ recipients: owner.recipient, source: 'recipients only' });
      assert.equal(onlyRecipients.canDecrypt, false);
      await rejectsWith(collect(decryptStream(pieces(sealed, [4096]), decryptCtx(onlyRecipients))), 'ENCRYPTION_KEY', /no age identity/);
    });

    it('a flipped bit in the payload fails authentication, naming the chunk', async () => {
      const bad = Buffer.from(sealed);
      bad[bad.length - 70_000]! ^= 0x01;
      await rejectsWith(collect(decryptStream(pieces(bad, [9000]), decryptCtx(owner.keys))), 'SNAPSHOT_CORRUPT', /failed authentication in the chunk at byte \d+/);
    });

    it('a flipped bit in the header is a damaged header', async () => {
      const bad = Buffer.from(sealed);
      const at = bad.indexOf('\n--- ') + 8;
      bad[at] = bad[at] === 0x41 ? 0x42 : 0x41;
      await rejectsWith(collect(decryptStream(pieces(bad, [9000]), decryptCtx(owner.keys))), 'SNAPSHOT_CORRUPT', /damaged age header/);
    });

    it('truncation mid-chunk, at a chunk boundary, and inside the header are all caught', async () => {
      const headerLen = sealed.indexOf('\n--- ');
      const payloadStart = sealed.indexOf(0x0a, headerLen + 1) + 1 + 16; // after the header's MAC line and the 16-byte nonce
      const secondChunkEnd = payloadStart + 2 * (65536 + 16);
      await rejectsWith(collect(decryptStream(pieces(sealed.subarray(0, sealed.length - 1000), [9000]), decryptCtx(owner.keys))), 'SNAPSHOT_CORRUPT', /final chunk|truncated/);
      await rejectsWith(collect(decryptStream(pieces(sealed.subarray(0, secondChunkEnd), [9000]), decryptCtx(owner.keys))), 'SNAPSHOT_CORRUPT', /truncated: it ends after chunk 2 without the final chunk/);
      await rejectsWith(collect(decryptStream(pieces(sealed.subarray(0, headerLen), [9000]), decryptCtx(owner.keys))), 'SNAPSHOT_CORRUPT', /truncated inside its age header/);
    });

    it('plain bytes where an age file is expected are SNAPSHOT_CORRUPT', async () => {
      await rejectsWith(collect(decryptStream(pieces(Buffer.alloc(8192), [4096]), decryptCtx(owner.keys))), 'SNAPSHOT_CORRUPT', /not an age-encrypted file/);
    });
  });

  describe('payloads longer than a batch (16 chunks): every failure named at its chunk', () => {
    const SEALED = 65536 + 16;
    let owner: Awaited<ReturnType<typeof newKeys>>;
    let plain: Buffer;
    let sealed: Buffer;
    let payloadStart: number;
    before(async () => {
      owner = await newKeys();
      plain = randomBytes(40 * 65536 + 777); // 41 chunks: two whole batches, then 8 and the final one
      sealed = await collect(seal(pieces(plain, [65536]), [owner.recipient]));
      payloadStart = sealed.indexOf(0x0a, sealed.indexOf('\n--- ') + 1) + 1 + 16;
    });

    it('borrowed: the plain bytes come in reused buffers, each whole until the next is asked for', async () => {
      for (const size of [1 << 20, 65_552, 300_001, 7]) {
        const h = createHash('sha256');
        const seen = new Set<ArrayBufferLike>();
        for await (const c of decryptStream(pieces(sealed, [size]), { ...decryptCtx(owner.keys), borrow: true })) {
          h.update(c);
          seen.add(c.buffer);
        }
        assert.equal(h.digest('hex'), createHash('sha256').update(plain).digest('hex'), `pieces of ${size}`);
        if (!inThread) assert.ok(seen.size <= 5, `${seen.size} distinct buffers for 41 chunks: the batches' outputs are reused`);
      }
    });

    for (const k of [0, 15, 16, 17, 33, 39]) {
      it(`a flipped bit in chunk ${k} is "failed authentication" at that chunk's byte, and nothing after it is yielded`, async () => {
        const bad = Buffer.from(sealed);
        bad[payloadStart + k * SEALED + 100]! ^= 0x01;
        // Large pieces are opened where they lie (a chunk across two of them copied first), small ones gathered.
        for (const size of [1 << 20, 600_000, 65_536, 9000]) {
          let yielded = 0;
          const read = (async () => {
            for await (const c of decryptStream(pieces(bad, [size]), decryptCtx(owner.keys))) yielded += c.length;
          })();
          await rejectsWith(read, 'SNAPSHOT_CORRUPT', new RegExp(`failed authentication in the chunk at byte ${payloadStart + k * SEALED} \\(`));
          assert.equal(yielded, k * 65536, `exactly the chunks before the damaged one (pieces of ${size})`);
        }
      });
    }

    it('a flipped bit in the final chunk, data after a final chunk, and a cut at a chunk boundary are told apart', async () => {
      const bad = Buffer.from(sealed);
      bad[bad.length - 5]! ^= 0x01;
      await rejectsWith(collect(decryptStream(pieces(bad, [1 << 20]), decryptCtx(owner.keys))), 'SNAPSHOT_CORRUPT', new RegExp(`failed authentication in its final chunk at byte ${payloadStart + 40 * SEALED} `));
      // 20 whole chunks: the 20th is the final one (flagged); bytes after it make it a chunk in the middle.
      const exact = await collect(seal(pieces(plain.subarray(0, 20 * 65536), [65536]), [owner.recipient]));
      await rejectsWith(collect(decryptStream(pieces(Buffer.concat([exact, randomBytes(100)]), [1 << 20]), decryptCtx(owner.keys))), 'SNAPSHOT_CORRUPT', /has data after its final chunk/);
      await rejectsWith(collect(decryptStream(pieces(sealed.subarray(0, payloadStart + 33 * SEALED), [1 << 20]), decryptCtx(owner.keys))), 'SNAPSHOT_CORRUPT', /truncated: it ends after chunk 33 without the final chunk/);
    });
  });
});
}

describe('the native age opener (packages/core/native/age_open.c) is only a speed path', () => {
  const SEALED = 65536 + 16;
  afterEach(() => setAgeOpenLoader(undefined));

  it('a module that fails its self-test is not used', async () => {
    const real = await nativeAge();
    assert.ok(real, 'the native age module is built');
    const wrong: OpenChunks = async (_key, _first, _sealed, count) => count; // claims every chunk opened
    setAgeOpenLoader(() => ({ openChunks: wrong, sealChunks: real.seal }));
    const used = (await nativeAge())?.open;
    assert.notEqual(used, wrong);
    assert.equal(used, real.open, 'the module in the package folder is used instead');
  });

  it('where the module opens fewer chunks than are good, the in-thread opener opens the rest: nothing good is lost or called corrupt', async () => {
    const age = await nativeAge();
    assert.ok(age, 'the native age module is built');
    const real = age.open;
    let short = 0;
    // Passes the self-test (3 chunks), then stops halfway through every call of more than 8 chunks.
    const halting: OpenChunks = (key, first, sealed, count, out, head) => {
      if (count <= 8) return real(key, first, sealed, count, out, head);
      short++;
      const n = count >> 1;
      return real(key, first, sealed, n, out, head && head.length > n * SEALED ? head.subarray(0, n * SEALED) : head);
    };
    setAgeOpenLoader(() => ({ openChunks: halting, sealChunks: age.seal }));
    assert.equal((await nativeAge())?.open, halting);
    const { recipient, keys } = await newKeys();
    const plain = randomBytes(50 * 65536 + 3);
    const sealed = await collect(seal(pieces(plain, [65536]), [recipient]));
    // 1 MiB pieces are opened where they lie, 64 KiB ones gathered into batches first.
    for (const size of [1 << 20, 65536]) {
      for (const borrow of [true, false]) {
        const h = createHash('sha256');
        for await (const c of decryptStream(pieces(sealed, [size]), { what: 'backup b1', keys, borrow })) h.update(c);
        assert.equal(h.digest('hex'), createHash('sha256').update(plain).digest('hex'), `pieces of ${size}, borrow ${borrow}`);
      }
    }
    assert.ok(short >= 8, `the module stopped short ${short} times`);
  });

  it('a batch the thread pool has not started when it is waited for is opened on this thread (the pool busy): same bytes, same errors', async () => {
    const age = await nativeAge();
    assert.ok(age?.openNow, 'the native age module is built, with openChunksNow');
    let here = 0;
    const now = age.openNow;
    setAgeOpenLoader(() => ({ openChunks: age.open, sealChunks: age.seal, openChunksNow: (...a: Parameters<typeof now>) => (here++, now(...a)) }));
    assert.ok((await nativeAge())?.openNow, 'the counting module passes the self-test');
    here = 0;
    const { recipient, keys } = await newKeys();
    const plain = randomBytes(50 * 65536 + 3);
    const sealed = await collect(encryptStream(pieces(plain, [65536]), [recipient], { inThread: true }));
    const payloadStart = sealed.indexOf(0x0a, sealed.indexOf('\n--- ') + 1) + 1 + 16;
    const bad = Buffer.from(sealed);
    bad[payloadStart + 20 * SEALED + 9]! ^= 0x01;
    // Every thread of the pool busy for a while (key derivations run there): no batch starts on it.
    const busy = Array.from({ length: 8 }, () => new Promise((resolve) => pbkdf2(randomBytes(8), 'salt', 400_000, 64, 'sha512', resolve)));
    const h = createHash('sha256');
    for await (const c of decryptStream(pieces(sealed, [1 << 20]), { what: 'backup b1', keys, borrow: true })) h.update(c);
    assert.equal(h.digest('hex'), createHash('sha256').update(plain).digest('hex'));
    assert.ok(here >= 3, `${here} batches opened on this thread`);
    let yielded = 0;
    const read = (async () => {
      for await (const c of decryptStream(pieces(bad, [1 << 20]), { what: 'backup b1', keys })) yielded += c.length;
    })();
    await assert.rejects(read, (e: EtcdRecoverError) => e.code === 'SNAPSHOT_CORRUPT' && e.message.includes(`failed authentication in the chunk at byte ${payloadStart + 20 * SEALED} `));
    assert.equal(yielded, 20 * 65536, 'exactly the chunks before the damaged one');
    await Promise.all(busy);
  });

  it('where the module seals fewer chunks than asked, this thread seals the batch: the file opens (ours and the age package)', async () => {
    const age = await nativeAge();
    assert.ok(age, 'the native age module is built');
    let short = 0;
    setAgeOpenLoader(() => ({ openChunks: age.open, sealChunks: (k: Buffer, f: number, p: Buffer, c: number, o: Buffer) => (c === 16 ? (short++, Promise.resolve(0)) : age.seal(k, f, p, c, o)) }));
    const { identity, recipient, keys } = await newKeys();
    const plain = randomBytes(40 * 65536 + 9);
    const sealed = await collect(encryptStream(pieces(plain, [1 << 20]), [recipient]));
    assert.ok(short >= 2, `the module stopped short ${short} times`);
    assert.ok((await collect(decryptStream(pieces(sealed, [1 << 20]), { what: 'backup b1', keys }))).equals(plain));
    const d = new Decrypter();
    d.addIdentity(identity);
    assert.ok(Buffer.from(await d.decrypt(sealed)).equals(plain));
  });
});

describe('age keys', () => {
  it('identities never appear in JSON, inspect or errors about them', async () => {
    const { identity, recipient, keys } = await newKeys();
    assert.deepEqual(keys.recipients, [recipient], 'without explicit recipients, the identity’s public key is the recipient');
    assert.ok(!JSON.stringify(keys).includes(identity));
    assert.ok(!inspect(keys, { depth: 5, showHidden: true }).includes(identity));
    await rejectsWith(AgeKeys.parse({ identities: `${identity}\nnot-a-key-${identity}`, source: 'f' }), 'CONFIG', /line 2 of the age identity \(f\) does not start with AGE-SECRET-KEY-1/, identity);
  });

  it('explicit recipients win over the identities’ own (rotation: a new key, the old one still reads)', async () => {
    const old = await newKeys();
    const fresh = await newKeys();
    const keys = await AgeKeys.parse({ recipients: `# new key\n${fresh.recipient}\n`, identities: old.identity, source: 'rotation' });
    assert.deepEqual(keys.recipients, [fresh.recipient]);
    assert.ok(keys.canDecrypt);
  });

  it('a malformed recipient is a CONFIG error naming it', async () => {
    await rejectsWith(AgeKeys.parse({ recipients: 'age1notarealkey', source: 'f' }), 'CONFIG', /age recipient "age1notarealkey" from f is not valid/);
    await rejectsWith(AgeKeys.parse({ recipients: '# only a comment\n', source: 'f' }), 'CONFIG', /holds no key/);
  });
});
