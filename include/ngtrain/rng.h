/* rng.h — counter-based, stateless random numbers.
 *
 * Every random draw in ngtrain is a pure function of (seed, stream, counter), so a
 * run resumed from a checkpoint replays exactly the same numbers without storing any
 * generator state, and the result does not depend on thread timing.
 *
 *   ngt_rng r = ngt_rng_make(seed, NGT_RNG_STREAM_INIT);   // a small value type
 *   float w = ngt_rng_normal(&r);                           // advances r.counter
 *   ngt_rng_shuffle_u32(&r, perm, n);                       // Fisher-Yates
 */
#ifndef NGTRAIN_RNG_H
#define NGTRAIN_RNG_H

#include <stddef.h>
#include <stdint.h>

typedef struct ngt_rng {
  uint64_t key;     /* mixes seed and stream */
  uint64_t counter; /* number of 64-bit draws so far */
} ngt_rng;

/* Well-known streams, so that two uses of one seed never share numbers. */
enum {
  NGT_RNG_STREAM_INIT = 1,    /* parameter initialisation */
  NGT_RNG_STREAM_DATA = 2,    /* data order (mixed further with epoch, shard) */
  NGT_RNG_STREAM_DATAGEN = 3, /* example-data generator */
  NGT_RNG_STREAM_SUBSET = 4,  /* diagnostic / combine / prior / LDA subsets */
  NGT_RNG_STREAM_NGRAD = 5,   /* Gram-Schmidt re-randomisation in ngrad */
  NGT_RNG_STREAM_TEST = 99
};

uint64_t ngt_rng_mix(uint64_t a, uint64_t b); /* a 64-bit hash of (a, b) */
ngt_rng ngt_rng_make(uint64_t seed, uint64_t stream);
uint64_t ngt_rng_u64(ngt_rng *r);
double ngt_rng_uniform(ngt_rng *r);             /* [0, 1) */
uint32_t ngt_rng_below(ngt_rng *r, uint32_t n); /* [0, n), unbiased; n > 0 */
double ngt_rng_normal(ngt_rng *r);              /* N(0, 1) */
void ngt_rng_shuffle_u32(ngt_rng *r, uint32_t *a, size_t n);
void ngt_rng_shuffle_i64(ngt_rng *r, int64_t *a, size_t n);

#endif
