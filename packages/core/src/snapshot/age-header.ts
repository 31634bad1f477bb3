import { createCipheriv, createDecipheriv, createHmac, createPrivateKey, createPublicKey, diffieHellman, generateKeyPairSync, hkdfSync, randomBytes, timingSafeEqual, type KeyObject } from 'node:crypto';

/**
 * The age header (age-encryption.org/v1) for X25519 recipients, made and opened with node:crypto on
 * this thread: no Web Crypto round trips, no stream parser, no pure-JS hash. This is the fast path of
 * encryption.ts; the `age-encryption` package stays the reference for everything else:
 *
 * - `openX25519Header` gives a file key only when every stanza is a well-formed X25519 stanza, one of
 *   them unwraps with an identity (ChaCha20-Poly1305 authenticates it) and the header MAC under that
 *   file key is right. Any other header, and every failure, returns undefined: the caller then asks the
 *   package, which decides and words the error ("no identity matched", "invalid header HMAC", …).
 * - `makeX25519Header` writes what the package and Debian's `age` write for X25519 recipients (the
 *   tests open it with both).
 *
 * The spec: https://age-encryption.org/v1 (C2SP age.md). Secret key bytes live only in KeyObjects.
 */
export interface X25519Identity {
  readonly key: KeyObject;
  /** The identity's public key, 32 bytes (the salt of each unwrap needs it). */
  readonly publicKey: Buffer;
}

const VERSION = 'age-encryption.org/v1';
const X25519_INFO = 'age-encryption.org/v1/X25519';
// DER prefixes of a raw X25519 key (RFC 8410): PKCS#8 for a private key, SubjectPublicKeyInfo for a public one.
const PKCS8 = Buffer.from('302e020100300506032b656e04220420', 'hex');
const SPKI = Buffer.from('302a300506032b656e032100', 'hex');
const ZERO_NONCE = Buffer.alloc(12);

const CHARSET = 'qpzry9x8gf2tvdw0s3jn54khce6mua7l';
const GEN = [0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3];

function polymod(values: number[]): number {
  let chk = 1;
  for (const v of values) {
    const top = chk >>> 25;
    chk = (((chk & 0x1ffffff) << 5) ^ v) >>> 0;
    for (let i = 0; i < 5; i++) if ((top >>> i) & 1) chk = (chk ^ GEN[i]!) >>> 0;
  }
  return chk;
}

function hrpExpand(hrp: string): number[] {
  const out: number[] = [];
  for (const c of hrp) out.push(c.charCodeAt(0) >> 5);
  out.push(0);
  for (const c of hrp) out.push(c.charCodeAt(0) & 31);
  return out;
}

/** Bech32 (BIP 173, no length limit, as age uses it): the prefix in lower case and the bytes, or undefined. */
export function bech32Decode(s: string): { prefix: string; bytes: Buffer } | undefined {
  if (s !== s.toLowerCase() && s !== s.toUpperCase()) return undefined;
  const lower = s.toLowerCase();
  const sep = lower.lastIndexOf('1');
  if (sep < 1 || lower.length - sep - 1 < 6) return undefined;
  const prefix = lower.slice(0, sep);
  if (![...prefix].every((c) => c.charCodeAt(0) >= 33 && c.charCodeAt(0) <= 126)) return undefined;
  const data: number[] = [];
  for (const c of lower.slice(sep + 1)) {
    const v = CHARSET.indexOf(c);
    if (v < 0) return undefined;
    data.push(v);
  }
  if (polymod([...hrpExpand(prefix), ...data]) !== 1) return undefined;
  const bytes = regroup(data.slice(0, -6), 5, 8, false);
  return bytes && { prefix, bytes: Buffer.from(bytes) };
}

export function bech32Encode(prefix: string, bytes: Uint8Array): string {
  const data = regroup(bytes, 8, 5, true)!;
  const chk = polymod([...hrpExpand(prefix), ...data, 0, 0, 0, 0, 0, 0]) ^ 1;
  for (let i = 0; i < 6; i++) data.push((chk >>> (5 * (5 - i))) & 31);
  return `${prefix}1${data.map((v) => CHARSET[v]).join('')}`;
}

/**
 * Groups of `from` bits to groups of `to` bits (BIP 173's convertbits). `pad`: the last group is
 * filled with zero bits; else left-over bits must be fewer than `from` and zero, or undefined.
 */
function regroup(values: Iterable<number>, from: number, to: number, pad: boolean): number[] | undefined {
  let acc = 0;
  let bits = 0;
  const out: number[] = [];
  for (const v of values) {
    acc = (acc << from) | v;
    bits += from;
    while (bits >= to) {
      bits -= to;
      out.push((acc >> bits) & ((1 << to) - 1));
    }
    acc &= (1 << bits) - 1;
  }
  if (pad) {
    if (bits) out.push((acc << (to - bits)) & ((1 << to) - 1));
  } else if (bits >= from || acc !== 0) return undefined;
  return out;
}

/** An `age1…` X25519 recipient's 32-byte public key, or undefined (another kind of recipient, or not valid). */
export function x25519Recipient(s: string): Buffer | undefined {
  const d = s.startsWith('age1') ? bech32Decode(s) : undefined;
  return d?.prefix === 'age' && d.bytes.length === 32 ? d.bytes : undefined;
}

/** An `AGE-SECRET-KEY-1…` identity, or undefined when it is not a valid one. */
export function x25519Identity(s: string): X25519Identity | undefined {
  const d = s.startsWith('AGE-SECRET-KEY-1') ? bech32Decode(s) : undefined;
  if (d?.prefix !== 'age-secret-key-' || d.bytes.length !== 32) return undefined;
  const key = createPrivateKey({ key: Buffer.concat([PKCS8, d.bytes]), format: 'der', type: 'pkcs8' });
  d.bytes.fill(0);
  return { key, publicKey: rawPublic(createPublicKey(key)) };
}

/** The `age1…` recipient of an identity. */
export function recipientOf(id: X25519Identity): string {
  return bech32Encode('age', id.publicKey);
}

/** A raw 32-byte X25519 public key as a KeyObject. */
function publicKey(raw: Buffer): KeyObject {
  return createPublicKey({ key: Buffer.concat([SPKI, raw]), format: 'der', type: 'spki' });
}

function rawPublic(k: KeyObject): Buffer {
  return k.export({ format: 'der', type: 'spki' }).subarray(SPKI.length);
}

function b64(b: Uint8Array): string {
  return Buffer.from(b).toString('base64').replace(/=+$/, '');
}

/** Strict base64 without padding (what age writes), or undefined. */
function unb64(s: string): Buffer | undefined {
  if (!/^[A-Za-z0-9+/]*$/.test(s)) return undefined;
  const b = Buffer.from(s, 'base64');
  return b64(b) === s ? b : undefined;
}

function wrapKey(shared: Buffer, share: Buffer, recipient: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', shared, Buffer.concat([share, recipient]), X25519_INFO, 32));
}

function headerMac(fileKey: Uint8Array, headerNoMac: Uint8Array): Buffer {
  const key = Buffer.from(hkdfSync('sha256', fileKey, Buffer.alloc(0), 'header', 32));
  return createHmac('sha256', key).update(headerNoMac).digest();
}

/** A new file key and the header that wraps it for each recipient (32-byte X25519 public keys). */
export function makeX25519Header(recipients: readonly Buffer[]): { header: Buffer; fileKey: Buffer } {
  const fileKey = randomBytes(16);
  let text = `${VERSION}\n`;
  for (const r of recipients) {
    const eph = generateKeyPairSync('x25519');
    const share = rawPublic(eph.publicKey);
    const shared = diffieHellman({ privateKey: eph.privateKey, publicKey: publicKey(r) });
    const c = createCipheriv('chacha20-poly1305', wrapKey(shared, share, r), ZERO_NONCE, { authTagLength: 16 });
    const body = Buffer.concat([c.update(fileKey), c.final(), c.getAuthTag()]);
    text += `-> X25519 ${b64(share)}\n${b64(body)}\n`;
  }
  text += '---';
  const noMac = Buffer.from(text);
  return { header: Buffer.concat([noMac, Buffer.from(` ${b64(headerMac(fileKey, noMac))}\n`)]), fileKey };
}

/**
 * The file key of a header (its bytes up to and including the "--- MAC\n" line) for one of the
 * identities, or undefined: not a header of X25519 stanzas only, no identity matched, or a bad MAC.
 * The caller then has the package decide (module comment).
 */
export function openX25519Header(header: Buffer, identities: readonly X25519Identity[]): Buffer | undefined {
  if (header.at(-1) !== 0x0a) return undefined;
  const lines = header.subarray(0, -1).toString('latin1').split('\n');
  if (lines[0] !== VERSION) return undefined;
  const macLine = lines.at(-1)!;
  if (!macLine.startsWith('--- ')) return undefined;
  const mac = unb64(macLine.slice(4));
  if (mac?.length !== 32) return undefined;
  // The version line, then pairs of lines (an X25519 stanza's arguments and its one body line), then the MAC.
  if (lines.length % 2 !== 0) return undefined;
  const stanzas: { share: Buffer; shareKey: KeyObject; body: Buffer }[] = [];
  for (let i = 1; i < lines.length - 1; i += 2) {
    const args = lines[i]!.split(' ');
    if (args.length !== 3 || args[0] !== '->' || args[1] !== 'X25519') return undefined;
    const share = unb64(args[2]!);
    const body = unb64(lines[i + 1]!);
    if (share?.length !== 32 || body?.length !== 32) return undefined;
    let shareKey: KeyObject;
    try {
      shareKey = publicKey(share);
    } catch {
      return undefined; // not a key node:crypto takes: the package words it
    }
    stanzas.push({ share, shareKey, body });
  }
  if (!stanzas.length) return undefined;
  const noMac = header.subarray(0, header.length - macLine.length - 1 + 3);
  for (const id of identities) {
    for (const s of stanzas) {
      let shared: Buffer;
      try {
        shared = diffieHellman({ privateKey: id.key, publicKey: s.shareKey });
      } catch {
        return undefined; // e.g. a low-order share: the package words it
      }
      const d = createDecipheriv('chacha20-poly1305', wrapKey(shared, s.share, id.publicKey), ZERO_NONCE, { authTagLength: 16 });
      d.setAuthTag(s.body.subarray(16));
      const fileKey = d.update(s.body.subarray(0, 16));
      try {
        d.final();
      } catch {
        continue;
      }
      return timingSafeEqual(headerMac(fileKey, noMac), mac) ? fileKey : undefined;
    }
  }
  return undefined;
}
