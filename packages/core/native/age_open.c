/*
 * age_open: seals and opens many chunks of an age payload (age-encryption.org/v1 STREAM: 64 KiB
 * chunks, each ChaCha20-Poly1305 under the payload key, nonce = 11-byte big-endian counter + last-chunk
 * flag) in one call, on libuv's thread pool, into a buffer the caller owns. It is a speed path only:
 * the TypeScript ChunkSealer/ChunkOpener (packages/core/src/snapshot/age-stream.ts) are the reference,
 * seal and open the final chunk, and word every failure; this module only says how many chunks it did.
 *
 *   openChunks(key: Buffer(32), firstCounter: number, sealed: Buffer, count: number, out: Buffer[, head: Buffer])
 *     -> Promise<number>   chunks opened, in order (count when all did; i < count: chunk i failed)
 *   sealChunks(key: Buffer(32), firstCounter: number, plain: Buffer, count: number, out: Buffer)
 *     -> Promise<number>   chunks sealed (count)
 *   openChunksNow(key, firstCounter, sealed, count, out[, head]) -> number
 *     the same as openChunks, on the calling thread
 *   openChunks(key, firstCounter, sealed, count, out, head | undefined, claim: Int32Array)
 *     the pool thread opens the chunks only if it claims the job first: claim[0] from 0 to 1 (an
 *     atomic compare-exchange, as JavaScript's Atomics.compareExchange is); if the caller claimed it
 *     (and opened them with openChunksNow), the promise settles with -1. So a caller about to wait for
 *     a job the pool has not started (its thread not scheduled yet) opens it itself instead.
 *
 * `sealed` holds count chunks of 65552 bytes (ciphertext then tag), `plain` count × 65536, none of
 * them the final chunk (the last-chunk flag is 0). `head`, when given, holds h whole sealed chunks
 * (h × 65552 bytes, h <= count) opened first: the chunks gathered by the caller, before the count - h
 * in `sealed`, which then may lie where the bytes were received (no copy). Every buffer stays
 * referenced, and must not be touched by the caller, until the promise settles. The cipher is OpenSSL's, the one Node.js itself
 * carries: its symbols are resolved from the running node at load time (nothing is linked in).
 */
#include <node_api.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK 65536
#define TAG 16
#define SEALED (CHUNK + TAG)

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  napi_ref refs[5];
  unsigned char key[32];
  int64_t first;
  const unsigned char *input;
  const unsigned char *head; /* opening: the first heads chunks, before those in input */
  uint32_t heads;
  unsigned char *out;
  uint32_t count;
  int seal;       /* 1: seal plain chunks; 0: open sealed ones */
  int64_t opened; /* chunks done; -1: the cipher could not be set up */
  int32_t *claim; /* 0 until claimed (1) by the pool thread or by the caller; NULL: always run */
  int skipped;    /* the caller had claimed it: nothing done here */
} Job;

static void crypt(Job *j) {
  j->opened = -1;
  EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
  if (!ctx) return;
  int ok = j->seal ? EVP_EncryptInit_ex(ctx, EVP_chacha20_poly1305(), NULL, j->key, NULL) : EVP_DecryptInit_ex(ctx, EVP_chacha20_poly1305(), NULL, j->key, NULL);
  if (ok != 1) goto done;
  uint32_t i;
  for (i = 0; i < j->count; i++) {
    unsigned char nonce[12] = {0};
    uint64_t c = (uint64_t)j->first + i;
    for (int b = 0; b < 6; b++) nonce[10 - b] = (unsigned char)(c >> (8 * b));
    int len = 0, fin = 0;
    if (j->seal) {
      const unsigned char *in = j->input + (size_t)i * CHUNK;
      unsigned char *out = j->out + (size_t)i * SEALED;
      if (EVP_EncryptInit_ex(ctx, NULL, NULL, NULL, nonce) != 1) break;
      if (EVP_EncryptUpdate(ctx, out, &len, in, CHUNK) != 1 || len != CHUNK) break;
      if (EVP_EncryptFinal_ex(ctx, out + len, &fin) != 1 || fin != 0) break;
      if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, TAG, out + CHUNK) != 1) break;
    } else {
      const unsigned char *in = i < j->heads ? j->head + (size_t)i * SEALED : j->input + (size_t)(i - j->heads) * SEALED;
      unsigned char *out = j->out + (size_t)i * CHUNK;
      if (EVP_DecryptInit_ex(ctx, NULL, NULL, NULL, nonce) != 1) break;
      if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, TAG, (void *)(in + CHUNK)) != 1) break;
      if (EVP_DecryptUpdate(ctx, out, &len, in, CHUNK) != 1 || len != CHUNK) break;
      if (EVP_DecryptFinal_ex(ctx, out + len, &fin) != 1) break;
    }
  }
  j->opened = i;
done:
  EVP_CIPHER_CTX_free(ctx);
}

static void execute(napi_env env, void *data) {
  (void)env;
  Job *j = data;
  int32_t free_ = 0;
  if (j->claim && !__atomic_compare_exchange_n(j->claim, &free_, 1, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
    j->skipped = 1;
    return;
  }
  crypt(j);
}

static void complete(napi_env env, napi_status status, void *data) {
  Job *j = data;
  napi_value v;
  if (status == napi_ok && (j->skipped || j->opened >= 0)) {
    napi_create_int64(env, j->skipped ? -1 : j->opened, &v);
    napi_resolve_deferred(env, j->deferred, v);
  } else {
    napi_value msg;
    napi_create_string_utf8(env, j->opened < 0 ? "age_open: the cipher could not be set up" : "age_open: the job was cancelled", NAPI_AUTO_LENGTH, &msg);
    napi_create_error(env, NULL, msg, &v);
    napi_reject_deferred(env, j->deferred, v);
  }
  for (int k = 0; k < 5; k++)
    if (j->refs[k]) napi_delete_reference(env, j->refs[k]);
  napi_delete_async_work(env, j->work);
  memset(j->key, 0, sizeof j->key);
  free(j);
}

static napi_value fail(napi_env env, const char *m) {
  napi_throw_type_error(env, NULL, m);
  return NULL;
}

/* mode: 0 open on the pool, 1 seal on the pool, 2 open on this thread */
static napi_value run(napi_env env, napi_callback_info info, int mode) {
  int seal = mode == 1;
  size_t argc = 7;
  napi_value a[7];
  if (napi_get_cb_info(env, info, &argc, a, NULL, NULL) != napi_ok || argc < 5 || argc > (mode == 0 ? 7u : 6u)) return fail(env, "age_open: (key, firstCounter, input, count, out[, head[, claim]])");
  napi_valuetype t = napi_undefined;
  if (argc >= 6 && napi_typeof(env, a[5], &t) != napi_ok) return fail(env, "age_open: head must be a Buffer");
  int withHead = argc >= 6 && t != napi_undefined;
  int32_t *claim = NULL;
  napi_valuetype ct = napi_undefined;
  if (argc == 7 && napi_typeof(env, a[6], &ct) != napi_ok) return fail(env, "age_open: claim must be an Int32Array");
  if (ct != napi_undefined) {
    napi_typedarray_type tt;
    size_t tlen = 0;
    void *td = NULL;
    bool ista = false;
    if (napi_is_typedarray(env, a[6], &ista) != napi_ok || !ista || napi_get_typedarray_info(env, a[6], &tt, &tlen, &td, NULL, NULL) != napi_ok || tt != napi_int32_array || tlen < 1)
      return fail(env, "age_open: claim must be an Int32Array");
    claim = td;
  }
  if (withHead && seal) return fail(env, "age_open: sealChunks takes no head");
  void *key, *input, *out;
  size_t klen, slen, olen;
  int64_t first;
  uint32_t count;
  bool isbuf;
  for (int k = 0; k < 5; k += 2) {
    if (napi_is_buffer(env, a[k], &isbuf) != napi_ok || !isbuf) return fail(env, "age_open: key, input and out must be Buffers");
  }
  napi_get_buffer_info(env, a[0], &key, &klen);
  napi_get_buffer_info(env, a[2], &input, &slen);
  napi_get_buffer_info(env, a[4], &out, &olen);
  void *head = NULL;
  size_t hlen = 0;
  if (withHead) {
    if (napi_is_buffer(env, a[5], &isbuf) != napi_ok || !isbuf) return fail(env, "age_open: head must be a Buffer");
    napi_get_buffer_info(env, a[5], &head, &hlen);
    if (hlen % SEALED != 0) return fail(env, "age_open: head must hold whole sealed chunks");
  }
  uint32_t heads = (uint32_t)(hlen / SEALED);
  if (napi_get_value_int64(env, a[1], &first) != napi_ok || first < 0 || first >= ((int64_t)1 << 48)) return fail(env, "age_open: firstCounter out of range");
  if (napi_get_value_uint32(env, a[3], &count) != napi_ok) return fail(env, "age_open: count must be a number");
  if (klen != 32) return fail(env, "age_open: the key must be 32 bytes");
  if (heads > count) return fail(env, "age_open: head holds more than count chunks");
  if (slen < (size_t)(count - heads) * (seal ? CHUNK : SEALED) || olen < (size_t)count * (seal ? SEALED : CHUNK)) return fail(env, "age_open: buffers too small for count chunks");
  if ((uint64_t)first + count > ((uint64_t)1 << 48)) return fail(env, "age_open: counter overflow");
  /* One description of the work, run here (mode 2) or moved into a job for the pool. */
  Job spec = {0};
  memcpy(spec.key, key, 32);
  spec.first = first;
  spec.input = input;
  spec.head = head;
  spec.heads = heads;
  spec.out = out;
  spec.count = count;
  spec.seal = seal;
  if (mode == 2) {
    crypt(&spec);
    memset(spec.key, 0, sizeof spec.key);
    if (spec.opened < 0) return fail(env, "age_open: the cipher could not be set up");
    napi_value r;
    napi_create_int64(env, spec.opened, &r);
    return r;
  }
  Job *j = malloc(sizeof *j);
  if (j) *j = spec;
  memset(spec.key, 0, sizeof spec.key);
  if (!j) return fail(env, "age_open: out of memory");
  napi_value promise, name;
  napi_create_promise(env, &j->deferred, &promise);
  napi_create_reference(env, a[0], 1, &j->refs[0]);
  napi_create_reference(env, a[2], 1, &j->refs[1]);
  napi_create_reference(env, a[4], 1, &j->refs[2]);
  if (withHead) napi_create_reference(env, a[5], 1, &j->refs[3]);
  if (claim) {
    j->claim = claim;
    napi_create_reference(env, a[6], 1, &j->refs[4]);
  }
  napi_create_string_utf8(env, "age_open", NAPI_AUTO_LENGTH, &name);
  napi_create_async_work(env, NULL, name, execute, complete, j, &j->work);
  napi_queue_async_work(env, j->work);
  return promise;
}

static napi_value open_chunks(napi_env env, napi_callback_info info) { return run(env, info, 0); }
static napi_value seal_chunks(napi_env env, napi_callback_info info) { return run(env, info, 1); }
static napi_value open_chunks_now(napi_env env, napi_callback_info info) { return run(env, info, 2); }

NAPI_MODULE_INIT(/* napi_env env, napi_value exports */) {
  napi_value fn;
  napi_create_function(env, "openChunks", NAPI_AUTO_LENGTH, open_chunks, NULL, &fn);
  napi_set_named_property(env, exports, "openChunks", fn);
  napi_create_function(env, "sealChunks", NAPI_AUTO_LENGTH, seal_chunks, NULL, &fn);
  napi_set_named_property(env, exports, "sealChunks", fn);
  napi_create_function(env, "openChunksNow", NAPI_AUTO_LENGTH, open_chunks_now, NULL, &fn);
  napi_set_named_property(env, exports, "openChunksNow", fn);
  return exports;
}
