/*
 * age_open: seals and opens many chunks of an age payload (age-encryption.org/v1 STREAM: 64 KiB
 * chunks, each ChaCha20-Poly1305 under the payload key, nonce = 11-byte big-endian counter + last-chunk
 * flag) in one call, on libuv's thread pool, into a buffer the caller owns. It is a speed path only:
 * the TypeScript ChunkSealer/ChunkOpener (packages/core/src/snapshot/age-stream.ts) are the reference,
 * seal and open the final chunk, and word every failure; this module only says how many chunks it did.
 *
 *   openChunks(key: Buffer(32), firstCounter: number, sealed: Buffer, count: number, out: Buffer)
 *     -> Promise<number>   chunks opened, in order (count when all did; i < count: chunk i failed)
 *   sealChunks(key: Buffer(32), firstCounter: number, plain: Buffer, count: number, out: Buffer)
 *     -> Promise<number>   chunks sealed (count)
 *
 * `sealed` holds count chunks of 65552 bytes (ciphertext then tag), `plain` count × 65536, none of
 * them the final chunk (the last-chunk flag is 0). Both buffers stay referenced, and must not be
 * touched by the caller, until the promise settles. The cipher is OpenSSL's, the one Node.js itself
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
  napi_ref refs[3];
  unsigned char key[32];
  int64_t first;
  const unsigned char *input;
  unsigned char *out;
  uint32_t count;
  int seal;       /* 1: seal plain chunks; 0: open sealed ones */
  int64_t opened; /* chunks done; -1: the cipher could not be set up */
} Job;

static void execute(napi_env env, void *data) {
  (void)env;
  Job *j = data;
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
      const unsigned char *in = j->input + (size_t)i * SEALED;
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

static void complete(napi_env env, napi_status status, void *data) {
  Job *j = data;
  napi_value v;
  if (status == napi_ok && j->opened >= 0) {
    napi_create_int64(env, j->opened, &v);
    napi_resolve_deferred(env, j->deferred, v);
  } else {
    napi_value msg;
    napi_create_string_utf8(env, j->opened < 0 ? "age_open: the cipher could not be set up" : "age_open: the job was cancelled", NAPI_AUTO_LENGTH, &msg);
    napi_create_error(env, NULL, msg, &v);
    napi_reject_deferred(env, j->deferred, v);
  }
  for (int k = 0; k < 3; k++) napi_delete_reference(env, j->refs[k]);
  napi_delete_async_work(env, j->work);
  memset(j->key, 0, sizeof j->key);
  free(j);
}

static napi_value fail(napi_env env, const char *m) {
  napi_throw_type_error(env, NULL, m);
  return NULL;
}

static napi_value run(napi_env env, napi_callback_info info, int seal) {
  size_t argc = 5;
  napi_value a[5];
  if (napi_get_cb_info(env, info, &argc, a, NULL, NULL) != napi_ok || argc != 5) return fail(env, "age_open: (key, firstCounter, input, count, out)");
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
  if (napi_get_value_int64(env, a[1], &first) != napi_ok || first < 0 || first >= ((int64_t)1 << 48)) return fail(env, "age_open: firstCounter out of range");
  if (napi_get_value_uint32(env, a[3], &count) != napi_ok) return fail(env, "age_open: count must be a number");
  if (klen != 32) return fail(env, "age_open: the key must be 32 bytes");
  if (slen < (size_t)count * (seal ? CHUNK : SEALED) || olen < (size_t)count * (seal ? SEALED : CHUNK)) return fail(env, "age_open: buffers too small for count chunks");
  if ((uint64_t)first + count > ((uint64_t)1 << 48)) return fail(env, "age_open: counter overflow");
  Job *j = calloc(1, sizeof *j);
  if (!j) return fail(env, "age_open: out of memory");
  memcpy(j->key, key, 32);
  j->first = first;
  j->input = input;
  j->out = out;
  j->count = count;
  j->seal = seal;
  napi_value promise, name;
  napi_create_promise(env, &j->deferred, &promise);
  napi_create_reference(env, a[0], 1, &j->refs[0]);
  napi_create_reference(env, a[2], 1, &j->refs[1]);
  napi_create_reference(env, a[4], 1, &j->refs[2]);
  napi_create_string_utf8(env, "age_open", NAPI_AUTO_LENGTH, &name);
  napi_create_async_work(env, NULL, name, execute, complete, j, &j->work);
  napi_queue_async_work(env, j->work);
  return promise;
}

static napi_value open_chunks(napi_env env, napi_callback_info info) { return run(env, info, 0); }
static napi_value seal_chunks(napi_env env, napi_callback_info info) { return run(env, info, 1); }

NAPI_MODULE_INIT(/* napi_env env, napi_value exports */) {
  napi_value fn;
  napi_create_function(env, "openChunks", NAPI_AUTO_LENGTH, open_chunks, NULL, &fn);
  napi_set_named_property(env, exports, "openChunks", fn);
  napi_create_function(env, "sealChunks", NAPI_AUTO_LENGTH, seal_chunks, NULL, &fn);
  napi_set_named_property(env, exports, "sealChunks", fn);
  return exports;
}
