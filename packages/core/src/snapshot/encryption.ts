import { randomBytes } from 'node:crypto';
import { inspect } from 'node:util';
import { EtcdRecoverError } from '../errors.js';
import { asBuffer } from '../streams.js';
import { makeX25519Header, openX25519Header, recipientOf, x25519Identity, x25519Recipient, type X25519Identity } from './age-header.js';
import { nativeAge } from './age-native.js';
import { openPayload, sealPayload } from './age-payload.js';
import { payloadKey } from './age-stream.js';

/**
 * Client-side encryption of backups in the age format (age-encryption.org/v1, X25519 recipients),
 * so that `age -d -i key.txt backup.db.age > backup.db` opens any backup without this tool.
 *
 * The header (recipient stanzas, header MAC) of X25519 recipients is made and opened with node:crypto
 * (age-header.ts); any other header, every header that does not open, and other kinds of recipients
 * go to the `age-encryption` package (loaded only then), which decides and words the error. The
 * payload (the STREAM construction: 64 KiB ChaCha20-Poly1305 chunks, the last one flagged) is sealed
 * and opened with OpenSSL's ChaCha20-Poly1305 (age-payload.ts: in 1 MiB batches on the thread pool by
 * the native module, age-native.ts, else chunk by chunk with node:crypto on this thread),
 * because the package's pure-JS cipher runs at ~70 MB/s where OpenSSL's runs at well over 1 GB/s.
 * Both sides are checked against the package and against Debian's `age` in the tests, both ways.
 * Memory is a few MiB at most.
 */
export const AGE_MAGIC = Buffer.from('age-encryption.org/v1\n');
const MAX_HEADER = 64 * 1024;

/**
 * The keys of one cluster's backups: recipients (public, `age1…`) new backups are encrypted for,
 * and identities (secret, `AGE-SECRET-KEY-1…`) that open them. The identities are kept out of
 * JSON, `inspect` and every message: only their count and where they came from are ever shown.
 */
export class AgeKeys {
  readonly #identities: readonly string[];
  readonly #x25519: readonly X25519Identity[];

  private constructor(
    readonly recipients: readonly string[],
    identities: readonly string[],
    x25519: readonly X25519Identity[],
    /** Where the keys came from, for messages: e.g. "file /etc/age/identity" or "Secret ns/etcd-backup-age". */
    readonly source: string,
  ) {
    this.#identities = identities;
    this.#x25519 = x25519;
  }

  /**
   * From the texts of a recipients file (one `age1…` per line, `#` comments) and an identity file
   * (as `age-keygen` writes it). Without explicit recipients the identities' own public keys are the
   * recipients; with them, the identities only open backups (key rotation: new recipients, the old
   * identity still reads the old backups).
   */
  static async parse(o: { recipients?: string; identities?: string; source: string }): Promise<AgeKeys> {
    const recipients = o.recipients !== undefined ? parseLines(o.recipients, 'age1', `recipients (${o.source})`) : [];
    const identities = o.identities !== undefined ? parseLines(o.identities, 'AGE-SECRET-KEY-1', `identity (${o.source})`, true) : [];
    for (const r of recipients) {
      if (x25519Recipient(r)) continue;
      try {
        // Another kind of recipient (e.g. post-quantum "age1pq1…"): the package knows it or says why not.
        new (await import('age-encryption')).Encrypter().addRecipient(r);
      } catch (e) {
        throw new EtcdRecoverError('CONFIG', `age recipient "${r}" from ${o.source} is not valid: ${(e as Error).message}`, {
          hint: 'recipients are the public keys `age-keygen` prints ("age1…"), one per line',
        });
      }
    }
    const x25519 = identities.map((id, i) => {
      const k = x25519Identity(id);
      if (!k) {
        throw new EtcdRecoverError('CONFIG', `age identity ${i + 1} in ${o.source} is not valid`, {
          hint: 'an identity file is what `age-keygen -o key.txt` writes: lines starting AGE-SECRET-KEY-1',
        });
      }
      return k;
    });
    return new AgeKeys(recipients.length ? recipients : x25519.map(recipientOf), identities, x25519, o.source);
  }

  get canEncrypt(): boolean {
    return this.recipients.length > 0;
  }

  get canDecrypt(): boolean {
    return this.#identities.length > 0;
  }

  /**
   * The file key of an age header (its bytes through the "--- MAC" line) for one of the identities,
   * which never leave this object. Throws the package's error when none matches or the header is bad.
   */
  async openHeader(header: Buffer): Promise<Uint8Array> {
    const fast = openX25519Header(header, this.#x25519);
    if (fast) return fast;
    const d = new (await import('age-encryption')).Decrypter();
    for (const id of this.#identities) d.addIdentity(id);
    return d.decryptHeader(header);
  }

  toJSON(): { recipients: readonly string[]; identities: number; source: string } {
    return { recipients: this.recipients, identities: this.#identities.length, source: this.source };
  }

  [inspect.custom](): string {
    return `AgeKeys(${this.recipients.length} recipient(s), ${this.#identities.length} identity(ies) from ${this.source})`;
  }
}

function parseLines(text: string, prefix: string, what: string, secret = false): string[] {
  const out: string[] = [];
  for (const [i, raw] of text.split(/\r?\n/).entries()) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    if (!line.startsWith(prefix)) {
      // Never echo a line of an identity file: it may be a key of another kind.
      throw new EtcdRecoverError('CONFIG', `line ${i + 1} of the age ${what} does not start with ${prefix}${secret ? '' : `: "${line.slice(0, 40)}"`}`, {
        hint: secret ? 'an identity file is what `age-keygen -o key.txt` writes' : 'recipients are "age1…" public keys, one per line',
      });
    }
    out.push(line);
  }
  if (!out.length) throw new EtcdRecoverError('CONFIG', `the age ${what} holds no key`, { hint: 'generate one with `age-keygen -o key.txt`' });
  return out;
}

/** True when the bytes begin like an age file (a plain etcd snapshot begins with a bbolt page header). */
export function looksLikeAge(head: Uint8Array): boolean {
  return head.length >= AGE_MAGIC.length && AGE_MAGIC.equals(head.subarray(0, AGE_MAGIC.length));
}

/** The header (stanzas and MAC) and file key for a new file: age-header.ts for X25519 recipients, else the package. */
async function newHeader(recipients: readonly string[]): Promise<{ header: Buffer; fileKey: Uint8Array }> {
  const x25519 = recipients.map(x25519Recipient);
  if (x25519.every((r) => r !== undefined)) return makeX25519Header(x25519);
  let fileKey: Uint8Array | undefined;
  const e = new (await import('age-encryption')).Encrypter();
  for (const r of recipients) e.addRecipient(r);
  // A recipient that adds no stanza and only sees the file key: the header then covers exactly the real recipients.
  e.addRecipient({ wrapFileKey: (k: Uint8Array) => ((fileKey = k), []) });
  const sample = Buffer.from(await e.encrypt(new Uint8Array(0)));
  const end = headerEnd(sample);
  if (end < 0 || !fileKey) throw new EtcdRecoverError('INTERNAL', 'age header could not be made');
  return { header: sample.subarray(0, end), fileKey };
}

/** Index just past the header's "--- MAC\n" line, or -1 when not (yet) found. */
function headerEnd(buf: Buffer): number {
  const i = buf.indexOf('\n--- ');
  if (i < 0) return -1;
  const nl = buf.indexOf(0x0a, i + 5);
  return nl < 0 ? -1 : nl + 1;
}

/**
 * Encrypts a stream for the recipients; yields the age file piece by piece (memory: a few 1 MiB batches
 * with the native module, one chunk without). `inThread`: seal on this thread even where the native
 * module is there (tests, comparisons).
 */
export async function* encryptStream(plain: AsyncIterable<Uint8Array>, recipients: readonly string[], opts: { inThread?: boolean } = {}): AsyncGenerator<Buffer> {
  if (!recipients.length) throw new EtcdRecoverError('ENCRYPTION_KEY', 'encryption asked for, but no age recipients are configured');
  const { header, fileKey } = await newHeader(recipients);
  const nonce = randomBytes(16);
  yield Buffer.concat([header, nonce]);
  yield* sealPayload(plain, payloadKey(fileKey, nonce), opts.inThread ? undefined : (await nativeAge())?.seal);
}

export interface DecryptContext {
  /** What is being decrypted, for messages: e.g. "backup 2026-12-02T05-00-00Z". */
  what: string;
  keys: AgeKeys | undefined;
  /** The recipients the record names, for the message when no identity matches. */
  recipients?: readonly string[];
  /**
   * The caller is done with each yielded buffer when it asks for the next (as the verifier is): the
   * plain bytes then come in reused buffers. Otherwise every yielded buffer is the caller's to keep.
   */
  borrow?: boolean;
  /** Open in this thread even where the native opener is there (tests, comparisons). */
  inThread?: boolean;
}

/**
 * Decrypts an age stream. Errors are precise: no identity or a non-matching one is ENCRYPTION_KEY
 * (the bytes may be fine); a header or chunk that fails authentication, a truncated file, or bytes
 * that are no age file at all are SNAPSHOT_CORRUPT, naming the byte offset.
 */
export async function* decryptStream(cipher: AsyncIterable<Uint8Array>, ctx: DecryptContext): AsyncGenerator<Buffer> {
  const corrupt = (why: string) =>
    new EtcdRecoverError('SNAPSHOT_CORRUPT', `${ctx.what} ${why}`, { hint: 'nothing was changed; choose another backup (`backup list`)' });
  const it = cipher[Symbol.asyncIterator]();
  // 1. The header: text lines up to "--- MAC\n".
  let head = Buffer.alloc(0);
  let end = -1;
  while (end < 0) {
    const n = await it.next();
    if (n.done) throw corrupt(head.length ? `is truncated inside its age header (${head.length} bytes)` : 'is empty');
    head = Buffer.concat([head, n.value]);
    if (head.length >= AGE_MAGIC.length && !looksLikeAge(head)) throw corrupt('is not an age-encrypted file, though its record says it is encrypted');
    end = headerEnd(head);
    if (end < 0 && head.length > MAX_HEADER) throw corrupt(`has no end of its age header within ${MAX_HEADER} bytes`);
  }
  if (!ctx.keys?.canDecrypt) {
    throw new EtcdRecoverError('ENCRYPTION_KEY', `${ctx.what} is encrypted${recipientsOf(ctx)}, and no age identity is configured to open it`, {
      hint: 'pass --age-identity-file FILE (or ETCD_RECOVER_AGE_IDENTITY_FILE), or name the key Secret in the recovery contract',
    });
  }
  let fileKey: Uint8Array;
  try {
    fileKey = await ctx.keys.openHeader(head.subarray(0, end));
  } catch (e) {
    const m = (e as Error).message;
    if (/no identity matched/.test(m)) {
      throw new EtcdRecoverError('ENCRYPTION_KEY', `${ctx.what} is encrypted${recipientsOf(ctx)}; none of the ${ctx.keys.toJSON().identities} identity(ies) from ${ctx.keys.source} is one of them`, {
        hint: 'use the identity of one of those recipients (an older key after a rotation, or the break-glass key)',
      });
    }
    throw corrupt(`has a damaged age header (${m})`);
  }
  // 2. The payload nonce (16 bytes), then the chunks (age-payload.ts).
  let nonce = Buffer.alloc(0);
  let piece: Buffer = head.subarray(end);
  for (;;) {
    const need = 16 - nonce.length;
    nonce = Buffer.concat([nonce, piece.subarray(0, need)]);
    piece = piece.subarray(Math.min(need, piece.length));
    if (nonce.length === 16) break;
    const n = await it.next();
    if (n.done) throw corrupt('is truncated before its payload');
    piece = asBuffer(n.value);
  }
  const age = ctx.inThread ? undefined : await nativeAge();
  yield* openPayload(piece, it, { key: payloadKey(fileKey, nonce), payloadAt: end + 16, corrupt, borrow: ctx.borrow === true, native: age?.open, nativeNow: age?.openNow });
}

function recipientsOf(ctx: DecryptContext): string {
  return ctx.recipients?.length ? ` for ${ctx.recipients.join(', ')}` : '';
}
