/* rng.c — splitmix64-style counter-based generator; see include/ngtrain/rng.h. */
#include "ngtrain/rng.h"

#include <math.h>

static uint64_t splitmix(uint64_t z) {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint64_t ngt_rng_mix(uint64_t a, uint64_t b) {
  return splitmix(splitmix(a) ^ (b * 0xd6e8feb86659fd93ULL));
}

ngt_rng ngt_rng_make(uint64_t seed, uint64_t stream) {
  ngt_rng r = {ngt_rng_mix(seed, stream), 0};
  return r;
}

uint64_t ngt_rng_u64(ngt_rng *r) { return splitmix(r->key ^ splitmix(r->counter++)); }

double ngt_rng_uniform(ngt_rng *r) { return (double)(ngt_rng_u64(r) >> 11) * 0x1.0p-53; }

uint32_t ngt_rng_below(ngt_rng *r, uint32_t n) {
  /* Lemire's multiply-shift with rejection: unbiased. */
  uint64_t m = (uint64_t)(uint32_t)ngt_rng_u64(r) * n;
  uint32_t l = (uint32_t)m;
  if (l < n) {
    uint32_t t = (uint32_t)(-n) % n;
    while (l < t) {
      m = (uint64_t)(uint32_t)ngt_rng_u64(r) * n;
      l = (uint32_t)m;
    }
  }
  return (uint32_t)(m >> 32);
}

double ngt_rng_normal(ngt_rng *r) {
  /* Box-Muller, one value per call (the counter keeps it stateless). */
  double u1 = ngt_rng_uniform(r), u2 = ngt_rng_uniform(r);
  if (u1 < 1e-300) u1 = 1e-300;
  return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

void ngt_rng_shuffle_u32(ngt_rng *r, uint32_t *a, size_t n) {
  for (size_t i = n; i > 1; i--) {
    size_t j = ngt_rng_below(r, (uint32_t)i);
    uint32_t t = a[i - 1];
    a[i - 1] = a[j];
    a[j] = t;
  }
}

void ngt_rng_shuffle_i64(ngt_rng *r, int64_t *a, size_t n) {
  for (size_t i = n; i > 1; i--) {
    size_t j = ngt_rng_below(r, (uint32_t)i);
    int64_t t = a[i - 1];
    a[i - 1] = a[j];
    a[j] = t;
  }
}
