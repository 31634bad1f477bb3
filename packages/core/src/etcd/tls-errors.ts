import { connect as h2connect } from 'node:http2';
import { connect as tlsConnect } from 'node:tls';
import { EtcdRecoverError } from '../errors.js';
import type { EtcdTls } from './etcd-gateway.js';

/**
 * Turns a failed connection to an etcd member into ONE line that names the endpoint and the TLS
 * cause (`ETCD_TLS`, exit 6, not retryable): a CA that did not sign the server's certificate, a
 * missing or rejected client certificate, a name the certificate does not cover, and http/https
 * spoken to the other kind of server. Node's own errors (node:http2, the snapshot and status path)
 * carry OpenSSL's code; grpc-js (the etcd3 client) only passes the text on, so both are matched.
 */
export interface TlsCause {
  cause: string;
  hint: string;
}

const CA_HINT = 'pass the CA that signed the members\' certificates: --cacert FILE, or --etcd-tls-dir DIR holding ca.crt';
const CERT_HINT = '--cert FILE --key FILE, or --etcd-tls-dir DIR holding tls.crt and tls.key';

/** What OpenSSL and Node say, in code or in text, for each cause. */
const UNTRUSTED = /UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT|SELF_SIGNED_CERT_IN_CHAIN|DEPTH_ZERO_SELF_SIGNED_CERT|CERT_SIGNATURE_FAILURE|CERT_UNTRUSTED|unable to verify the first certificate|unable to get (local )?issuer certificate|self[- ]signed certificate|certificate signature failure/i;
const EXPIRED = /CERT_HAS_EXPIRED|CERT_NOT_YET_VALID|certificate has expired|certificate is not yet valid/i;
const ALTNAME = /ERR_TLS_CERT_ALTNAME_INVALID|does not match certificate's altnames/i;
const CERT_REQUIRED = /CERTIFICATE_REQUIRED|alert certificate required/i;
const CERT_REJECTED = /ALERT_UNKNOWN_CA|ALERT_BAD_CERTIFICATE|ALERT_CERTIFICATE_UNKNOWN|ALERT_UNSUPPORTED_CERTIFICATE|ALERT_CERTIFICATE_EXPIRED|ALERT_HANDSHAKE_FAILURE|alert (unknown ca|bad certificate|certificate unknown|unsupported certificate|certificate expired|handshake failure)/i;
const NOT_TLS = /WRONG_VERSION_NUMBER|PACKET_LENGTH_TOO_LONG|ERR_SSL_HTTP_REQUEST|wrong version number|packet length too long/i;
/** A TLS handshake the server hung up on: typical of a plaintext server (confirmed by a probe). */
const HANDSHAKE_CLOSED = /disconnected before secure TLS connection was established/i;

/** The codes and messages of an error and its causes, on one line. */
function textOf(e: unknown): string {
  const parts: string[] = [];
  for (let x = e as { code?: unknown; message?: unknown; cause?: unknown } | undefined, i = 0; x && i < 5; x = x.cause as typeof x, i++) {
    if (typeof x !== 'object') {
      parts.push(String(x));
      break;
    }
    if (x.code) parts.push(String(x.code));
    if (x.message) parts.push(String(x.message));
  }
  return parts.join(' ');
}

/** OpenSSL's reason without its source location, Node's advice or grpc-js' wrapping. */
function reason(text: string): string {
  const ssl = /SSL routines:[^:]*:([^:]+):/.exec(text);
  if (ssl) return ssl[1]!.trim();
  const m = /(unable to verify the first certificate|unable to get (?:local )?issuer certificate|self[- ]signed certificate(?: in certificate chain)?|certificate signature failure|certificate has expired|certificate is not yet valid|Hostname\/IP does not match certificate's altnames: [^.]*)/i.exec(text);
  return m ? m[1]! : text.split('\n')[0]!.slice(0, 160);
}

/** The cause, from the error alone (no network): enough for grpc-js' messages and Node's codes. */
export function classifyTls(endpoint: string, e: unknown, tls: EtcdTls | undefined): TlsCause | undefined {
  const text = textOf(e);
  const https = endpoint.startsWith('https:');
  if (!https) return undefined;
  if (CERT_REQUIRED.test(text) || (!tls?.cert && /ALERT_HANDSHAKE_FAILURE|alert handshake failure/i.test(text))) {
    return tls?.cert
      ? { cause: `the server refused the client certificate in --cert (${reason(text)})`, hint: `present a certificate signed by a CA the members trust (their trusted-ca-file): ${CERT_HINT}` }
      : { cause: 'the server requires a client certificate: pass --cert/--key or --etcd-tls-dir', hint: CERT_HINT };
  }
  if (CERT_REJECTED.test(text)) {
    return {
      cause: `the server rejected the client certificate in --cert (${reason(text)}${/unknown.ca/i.test(text) ? ': it is not signed by a CA the server trusts' : ''})`,
      hint: `present a certificate signed by a CA the members trust (their trusted-ca-file): ${CERT_HINT}`,
    };
  }
  if (UNTRUSTED.test(text)) {
    return tls?.ca
      ? { cause: `the server's certificate is not signed by the CA in --cacert (${reason(text)})`, hint: CA_HINT }
      : { cause: `the server's certificate is not signed by a CA this machine trusts, and no --cacert was given (${reason(text)})`, hint: CA_HINT };
  }
  if (EXPIRED.test(text)) return { cause: `the server's certificate is not valid now (${reason(text)})`, hint: 'renew the members\' certificates, or check this machine\'s clock' };
  if (ALTNAME.test(text)) {
    return { cause: `the server's certificate does not name ${new URL(endpoint).hostname} (${reason(text)})`, hint: 'address the member by a name or IP its certificate lists (its subjectAltName)' };
  }
  if (NOT_TLS.test(text)) return notTls();
  return undefined;
}

function notTls(): TlsCause {
  return { cause: 'the server does not speak TLS: use an http:// endpoint', hint: 'this member serves plaintext; address it as http://HOST:PORT' };
}

function speaksTls(): TlsCause {
  return { cause: 'the server speaks TLS: use an https:// endpoint (with --cacert and, if it asks for one, --cert/--key)', hint: 'address the member as https://HOST:PORT; --etcd-tls-dir DIR reads ca.crt, tls.crt and tls.key' };
}

export function tlsError(endpoint: string, c: TlsCause, cause: unknown): EtcdRecoverError {
  return new EtcdRecoverError('ETCD_TLS', `etcd at ${endpoint}: ${c.cause}`, { hint: c.hint, cause });
}

/**
 * The TLS cause of a failed call over node:http2, or undefined when it is not a TLS problem (the
 * caller keeps its own error). `answered`: the server sent an HTTP/2 response. When the text alone
 * cannot tell (a plaintext request that got no answer, a handshake the server hung up on), one
 * short probe of the other protocol decides: only on this failure path, never on success.
 */
export async function explainConnectionFailure(endpoint: string, tls: EtcdTls | undefined, e: unknown, answered: boolean): Promise<EtcdRecoverError | undefined> {
  if (e instanceof EtcdRecoverError && e.code === 'ETCD_TLS') return e;
  const known = classifyTls(endpoint, e, tls);
  if (known) return tlsError(endpoint, known, e);
  const text = textOf(e);
  // Down, unreachable or slow is not a protocol mismatch: no probe (it would only add to the wait).
  if (/\b(ECONNREFUSED|ENOTFOUND|EHOSTUNREACH|ENETUNREACH|ETIMEDOUT)\b|connection refused|timed out|aborted/i.test(text)) return undefined;
  const url = new URL(endpoint);
  if (url.protocol === 'https:' && HANDSHAKE_CLOSED.test(text)) {
    if (await probe(url, 'plaintext')) return tlsError(endpoint, notTls(), e);
  } else if (url.protocol === 'http:' && !answered) {
    if (await probe(url, 'tls')) return tlsError(endpoint, speaksTls(), e);
  }
  return undefined;
}

const PROBE_MS = 1_500;

/** Whether the member answers in the given protocol: a TLS handshake, or an HTTP/2 SETTINGS frame in plaintext. */
function probe(url: URL, kind: 'tls' | 'plaintext'): Promise<boolean> {
  return new Promise((resolve) => {
    const port = Number(url.port || (url.protocol === 'https:' ? 443 : 80));
    const host = url.hostname.replace(/^\[|\]$/g, '');
    let done = false;
    const finish = (v: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      close();
      resolve(v);
    };
    let close: () => void;
    if (kind === 'tls') {
      // Any server certificate will do: the question is only whether the port speaks TLS.
      const s = tlsConnect({ host, port, rejectUnauthorized: false, ALPNProtocols: ['h2'] }, () => finish(true));
      s.on('error', () => finish(false));
      close = () => s.destroy();
    } else {
      const s = h2connect(`http://${url.host}`);
      s.on('remoteSettings', () => finish(true));
      s.on('error', () => finish(false));
      s.on('close', () => finish(false));
      close = () => s.destroy();
    }
    const timer = setTimeout(() => finish(false), PROBE_MS);
  });
}
