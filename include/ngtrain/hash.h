/* hash.h — the one non-cryptographic hash of the project: 64-bit FNV-1a.
 *
 * Used for hash tables (Kaldi alignment keys, mkshards' duplicate keys), run signatures
 * (a checkpoint's options) and content checksums. Not for anything adversarial.
 *
 *   uint64_t h = ngt_fnv1a64_str("utt-001");
 *   h = ngt_fnv1a64(buf, nbytes, NGT_FNV1A64_INIT);     // chainable over pieces
 */
#ifndef NGTRAIN_HASH_H
#define NGTRAIN_HASH_H

#include <stddef.h>
#include <stdint.h>

#define NGT_FNV1A64_INIT 1469598103934665603ULL

/* Continue hash h over n bytes at p (start with h = NGT_FNV1A64_INIT). */
static inline uint64_t ngt_fnv1a64(const void *p, size_t n, uint64_t h) {
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ULL;
  return h;
}

/* Hash of a NUL-terminated string; NULL hashes like "". */
static inline uint64_t ngt_fnv1a64_str(const char *s) {
  uint64_t h = NGT_FNV1A64_INIT;
  for (; s && *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ULL;
  return h;
}

#endif
