/* mkdata — generate speech-like example shards (deterministic from --seed).
 *
 * The task: frames of D dims whose classes follow left-to-right HMM-like state sequences.
 * There are P phone-like units of 3 states each (C = 3P classes). An utterance is
 * silence (phone 0), a random sequence of phones (weighted, so classes are unbalanced as
 * in speech), silence; every state lasts a random duration (geometric-ish, min..max
 * frames; silence states last longer). Each class c has a latent mean mu_c (D dims;
 * the three states of a phone share part of their mean, so telling them apart needs
 * context). Frames follow an AR(1) process pulled towards the current class mean:
 *
 *   z_t = a z_{t-1} + (1 - a) mu_{c_t} + sigma eps_t,   eps_t ~ N(0, I)      (eqn:ar1)
 *
 * so neighbouring frames carry evidence about the class and splicing context helps.
 * With --fbank-like=1 (default) the features look like log filterbank energies:
 *
 *   x_t = offset + scale .* (K z_t) + loud_u                                  (eqn:fbank)
 *
 * with per-dimension offsets in 5..15, unequal scales (variance ~10), K a tridiagonal
 * mixing of neighbouring dimensions (a smooth spectral envelope: strong correlation
 * between neighbouring dims) and loud_u a per-utterance loudness added to every dim.
 *
 * Determinism: everything comes from ngt_rng with stream NGT_RNG_STREAM_DATAGEN. The
 * model (means, phone weights, offsets, scales) depends on --seed only; utterance u of
 * --part p depends on (seed, p, u) only. So train (--part=0) and dev (--part=1) shards
 * share the class means but hold different utterances, and the number of shards does
 * not change the data.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ngtrain/fileio.h"
#include "ngtrain/log.h"
#include "ngtrain/opts.h"
#include "ngtrain/rng.h"
#include "ngtrain/shard.h"

#define STATES 3

static const ngt_tool tool = {
    "mkdata",
    "generate speech-like example shards: frames of --feat-dim dims labelled with\n"
    "3-state phone-like classes (num_classes = 3 x --num-phones), temporally correlated so\n"
    "that context splicing helps, and (by default) filterbank-like feature statistics.\n"
    "Output is deterministic from --seed; --part picks a different set of utterances with\n"
    "the same class means (e.g. --part=0 for train, --part=1 for dev).",
    "mkdata [options] --out=PREFIX|FILE.h5",
    "mkdata --seed=1 --part=0 --num-utts=600 --num-shards=4 --compress --out=data/train\n"
    "mkdata --seed=1 --part=1 --num-utts=80 --compress --out=data/dev.h5",
    "The examples make the data/ shards of the repository (data/README.md).",
    0,
    0};

typedef struct opts {
  const char *out;
  int num_shards, num_utts, num_phones, feat_dim, min_phones, max_phones, min_dur, max_dur;
  double smooth, noise;
  uint64_t seed, part;
  int fbank_like, compress;
} opts;

/* value in [lo, hi] (hi_open: [lo, hi)), else a message naming the option and the range */
static int out_of_range(const char *name, double v, double lo, double hi, int hi_open) {
  if (v >= lo && (hi_open ? v < hi : v <= hi)) return 0;
  ngt_fail("--%s=%g: must be in [%g, %g%s (see --help)", name, v, lo, hi, hi_open ? ")" : "]");
  return 1;
}

/* Options into o; 0 to run, else 1 with *code the exit status (--help, a bad option). */
static int parse_args(int argc, char **argv, opts *o, int *code) {
  *o = (opts){.out = NULL,
              .num_shards = 1,
              .num_utts = 200,
              .num_phones = 16,
              .feat_dim = 13,
              .min_phones = 3,
              .max_phones = 12,
              .min_dur = 2,
              .max_dur = 8,
              .smooth = 0.6,
              .noise = 0.8,
              .seed = 1,
              .part = 0,
              .fbank_like = 1,
              .compress = 0};
  ngt_opt table[] = {
      {"out", NGT_OPT_STRING, &o->out, "write PREFIX-0001.h5 .. PREFIX-NNNN.h5, or one FILE.h5",
       0},
      {"num-shards", NGT_OPT_INT, &o->num_shards, "shards to split the utterances into, 1..9999",
       0},
      {"num-utts", NGT_OPT_INT, &o->num_utts, "utterances to generate", 0},
      {"num-phones", NGT_OPT_INT, &o->num_phones, "phone-like units, 3 classes each", 0},
      {"feat-dim", NGT_OPT_INT, &o->feat_dim, "feature dimension", 0},
      {"min-phones", NGT_OPT_INT, &o->min_phones, "phones per utterance, at least", 0},
      {"max-phones", NGT_OPT_INT, &o->max_phones, "phones per utterance, at most", 0},
      {"min-dur", NGT_OPT_INT, &o->min_dur, "frames per state, at least", 0},
      {"max-dur", NGT_OPT_INT, &o->max_dur, "frames per state, at most", 0},
      {"smooth", NGT_OPT_DOUBLE, &o->smooth, "AR(1) coefficient a in [0, 1)", 0},
      {"noise", NGT_OPT_DOUBLE, &o->noise, "AR(1) noise stddev sigma", 0},
      {"seed", NGT_OPT_UINT64, &o->seed, "model and data seed", 0},
      {"part", NGT_OPT_UINT64, &o->part, "utterance set with the same means (0 train, 1 dev)", 0},
      {"utt-seed", NGT_OPT_UINT64, &o->part, "the same as --part", 0},
      {"fbank-like", NGT_OPT_BOOL, &o->fbank_like, "filterbank-like offsets, scales, correlation",
       0},
      {"compress", NGT_OPT_INT, &o->compress,
       "gzip level 0..9 of the shards; --compress alone = 6", 0},
      {0, 0, 0, 0, 0}};
  /* "--compress" alone means level 6 (the parser would take the next argument as its value) */
  for (int i = 1; i < argc; i++)
    if (!strcmp(argv[i], "--compress")) argv[i] = (char *)"--compress=6";
  char **pos = NULL;
  int npos = 0;
  if (ngt_opts_tool(&tool, table, argc, argv, &pos, &npos, code)) return 1;
  free(pos);
  *code = NGT_EXIT_FAILURE;
  if (!o->out || !*o->out)
    return ngt_fail("--out is required (e.g. --out=data/train or --out=dev.h5; see --help)");
  if (out_of_range("num-shards", o->num_shards, 1, 9999, 0) ||
      out_of_range("num-utts", o->num_utts, 1, 100000000, 0) ||
      out_of_range("num-phones", o->num_phones, 1, 100000, 0) ||
      out_of_range("feat-dim", o->feat_dim, 1, 100000, 0) ||
      out_of_range("min-phones", o->min_phones, 1, 10000, 0) ||
      out_of_range("max-phones", o->max_phones, 1, 10000, 0) ||
      out_of_range("min-dur", o->min_dur, 1, 1000, 0) ||
      out_of_range("max-dur", o->max_dur, 1, 1000, 0) ||
      out_of_range("smooth", o->smooth, 0.0, 1.0, 1) ||
      out_of_range("noise", o->noise, 0.0, 1e6, 1) ||
      out_of_range("compress", o->compress, 0, 9, 0))
    return 1;
  if (o->min_phones > o->max_phones)
    return ngt_fail("--min-phones=%d is larger than --max-phones=%d", o->min_phones,
                    o->max_phones);
  if (o->min_dur > o->max_dur)
    return ngt_fail("--min-dur=%d is larger than --max-dur=%d", o->min_dur, o->max_dur);
  if (o->num_utts < o->num_shards)
    return ngt_fail("--num-utts=%d is smaller than --num-shards=%d (every shard needs "
                    "utterances)",
                    o->num_utts, o->num_shards);
  size_t ol = strlen(o->out);
  if (ol > 3 && strcmp(o->out + ol - 3, ".h5") == 0 && o->num_shards != 1)
    return ngt_fail("--out=%s names one file but --num-shards=%d; give a prefix (e.g. "
                    "--out=data/train) for several shards",
                    o->out, o->num_shards);
  return 0;
}

/* The generative model: depends on --seed (and the sizes) only. */
typedef struct model {
  int P, C, D;
  double *mu;     /* (C, D) latent class means */
  double *cum_w;  /* (P) cumulative phone weights over phones 1..P-1 (silence = 0) */
  double *offset; /* (D) fbank-like per-dim offset */
  double *scale;  /* (D) fbank-like per-dim scale */
  double *kern;   /* (D, D) mixing of neighbouring dims, rows of unit norm */
} model;

static void model_make(model *m, const opts *o) {
  const int P = (int)o->num_phones, D = (int)o->feat_dim, C = P * STATES;
  m->P = P;
  m->C = C;
  m->D = D;
  m->mu = ngt_xmalloc((size_t)C * (size_t)D * sizeof *m->mu);
  m->cum_w = ngt_xmalloc((size_t)P * sizeof *m->cum_w);
  m->offset = ngt_xmalloc((size_t)D * sizeof *m->offset);
  m->scale = ngt_xmalloc((size_t)D * sizeof *m->scale);
  m->kern = ngt_xcalloc((size_t)D * (size_t)D, sizeof *m->kern);
  ngt_rng r = ngt_rng_make(ngt_rng_mix(o->seed, 0), NGT_RNG_STREAM_DATAGEN);
  /* class means: a phone mean shared by its 3 states plus a smaller per-state part */
  double *pm = ngt_xmalloc((size_t)D * sizeof *pm);
  for (int p = 0; p < P; p++) {
    for (int d = 0; d < D; d++) pm[d] = ngt_rng_normal(&r);
    for (int k = 0; k < STATES; k++)
      for (int d = 0; d < D; d++)
        m->mu[((size_t)p * STATES + (size_t)k) * (size_t)D + (size_t)d] = pm[d] +
                                                                          0.6 * ngt_rng_normal(&r);
  }
  free(pm);
  /* phone weights: log-normal, so some phones are much more frequent than others */
  double acc = 0;
  for (int p = 0; p < P; p++) {
    double w = p == 0 && P > 1 ? 0.0 : exp(0.7 * ngt_rng_normal(&r));
    acc += w;
    m->cum_w[p] = acc;
  }
  /* (eqn:fbank): offsets 5..15 with a spectral tilt, scales with variance ~10 */
  for (int d = 0; d < D; d++) {
    double tilt = D > 1 ? (double)d / (double)(D - 1) : 0.0;
    m->offset[d] = 14.0 - 8.0 * tilt + (ngt_rng_uniform(&r) - 0.5) * 2.0;
    m->scale[d] = 1.6 + 1.2 * ngt_rng_uniform(&r);
  }
  const double b = 0.45; /* tridiagonal [b 1 b], rows normalised */
  for (int d = 0; d < D; d++) {
    double s = 1.0;
    m->kern[(size_t)d * (size_t)D + (size_t)d] = 1.0;
    if (d > 0) {
      m->kern[(size_t)d * (size_t)D + (size_t)d - 1] = b;
      s += b * b;
    }
    if (d + 1 < D) {
      m->kern[(size_t)d * (size_t)D + (size_t)d + 1] = b;
      s += b * b;
    }
    for (int j = 0; j < D; j++) m->kern[(size_t)d * (size_t)D + (size_t)j] /= sqrt(s);
  }
}

static void model_free(model *m) {
  free(m->mu);
  free(m->cum_w);
  free(m->offset);
  free(m->scale);
  free(m->kern);
}

static int draw_phone(const model *m, ngt_rng *r) {
  double x = ngt_rng_uniform(r) * m->cum_w[m->P - 1];
  int p = 0;
  while (p < m->P - 1 && m->cum_w[p] <= x) p++;
  return p;
}

/* min..max frames, geometric-ish: each extra frame with probability q. */
static int draw_dur(ngt_rng *r, long lo, long hi, double q) {
  long d = lo;
  while (d < hi && ngt_rng_uniform(r) < q) d++;
  return (int)d;
}

/* Generates utterance u of the part into feats (T, D) / labels (T); returns T.
 * cap is the capacity in frames (enough for the longest possible utterance). */
static int64_t gen_utt(const model *m, const opts *o, uint64_t u, float *feats, int32_t *labels,
                       double *z, double *y) {
  const int D = m->D;
  ngt_rng r = ngt_rng_make(ngt_rng_mix(o->seed, ngt_rng_mix(1 + o->part, u)),
                           NGT_RNG_STREAM_DATAGEN);
  long np = o->min_phones + (long)ngt_rng_below(&r, (uint32_t)(o->max_phones - o->min_phones + 1));
  int sil = m->P > 1; /* phone 0 is silence at both ends */
  double loud = o->fbank_like ? 1.0 * ngt_rng_normal(&r) : 0.0;
  int64_t T = 0;
  for (long i = -sil; i < np + sil; i++) {
    int is_sil = sil && (i < 0 || i == np);
    int p = is_sil ? 0 : draw_phone(m, &r);
    for (int k = 0; k < STATES; k++) {
      int c = p * STATES + k;
      int dur = is_sil ? draw_dur(&r, o->min_dur, 2 * o->max_dur, 0.8)
                       : draw_dur(&r, o->min_dur, o->max_dur, 0.55);
      const double *mu = m->mu + (size_t)c * (size_t)D;
      for (int f = 0; f < dur; f++, T++) {
        for (int d = 0; d < D; d++) { /* (eqn:ar1) */
          double prev = T == 0 ? mu[d] : z[d];
          z[d] = o->smooth * prev + (1.0 - o->smooth) * mu[d] + o->noise * ngt_rng_normal(&r);
        }
        float *x = feats + (size_t)T * (size_t)D;
        if (o->fbank_like) { /* (eqn:fbank) */
          for (int d = 0; d < D; d++) {
            double s = 0;
            for (int j = d > 0 ? d - 1 : 0; j <= d + 1 && j < D; j++)
              s += m->kern[(size_t)d * (size_t)D + (size_t)j] * z[j];
            y[d] = s;
          }
          for (int d = 0; d < D; d++) x[d] = (float)(m->offset[d] + m->scale[d] * y[d] + loud);
        } else {
          for (int d = 0; d < D; d++) x[d] = (float)z[d];
        }
        labels[T] = c;
      }
    }
  }
  return T;
}

int main(int argc, char **argv) {
  opts o;
  int code = 0;
  if (parse_args(argc, argv, &o, &code)) return code;
  ngt_hdf5_quiet();
  model m;
  model_make(&m, &o);
  const int D = m.D, C = m.C;
  const int64_t cap = (int64_t)(o.max_phones + 2) * STATES * 2 * o.max_dur;
  float *feats = ngt_xmalloc((size_t)cap * (size_t)D * sizeof *feats); /* (cap, D) */
  int32_t *labels = ngt_xmalloc((size_t)cap * sizeof *labels);         /* (cap) */
  double *z = ngt_xmalloc((size_t)D * sizeof *z), *y = ngt_xmalloc((size_t)D * sizeof *y);
  int64_t *counts = ngt_xcalloc((size_t)C, sizeof *counts);
  double *sum = ngt_xcalloc((size_t)D, sizeof *sum), *sum2 = ngt_xcalloc((size_t)D, sizeof *sum2);
  ngt_shard_write_opts wo = {(int)o.compress, 4096};
  size_t ol = strlen(o.out);
  int single = ol > 3 && strcmp(o.out + ol - 3, ".h5") == 0;
  char path[4096], first[4096] = "";
  int64_t total = 0;
  int rc = 0;
  ngt_err err = {0};
  for (long s = 0; s < o.num_shards && rc == 0; s++) {
    if (single) snprintf(path, sizeof path, "%s", o.out);
    else
      snprintf(path, sizeof path, "%s-%04ld.h5", o.out, s + 1);
    if (s == 0) snprintf(first, sizeof first, "%s", path);
    ngt_shard_writer *w = NULL;
    rc = ngt_shard_writer_open(path, D, C, &wo, &w, &err);
    if (rc) break;
    int64_t u0 = o.num_utts * s / o.num_shards, u1 = o.num_utts * (s + 1) / o.num_shards;
    for (int64_t u = u0; u < u1 && rc == 0; u++) {
      int64_t T = gen_utt(&m, &o, (uint64_t)u, feats, labels, z, y);
      NGT_ASSERT(T <= cap);
      char id[64];
      snprintf(id, sizeof id, "part%" PRIu64 "-utt%06" PRId64, o.part, u);
      rc = ngt_shard_writer_add(w, id, feats, T, labels, &err);
      for (int64_t t = 0; t < T; t++) {
        counts[labels[t]]++;
        for (int d = 0; d < D; d++) {
          double v = feats[t * D + d];
          sum[d] += v;
          sum2[d] += v * v;
        }
      }
      total += T;
    }
    if (rc) {
      ngt_shard_writer_abort(w);
      break;
    }
    rc = ngt_shard_writer_commit(w, &err);
  }
  if (rc) {
    ngt_fail("%s", err.msg);
  } else {
    int cmin = 0, cmax = 0;
    for (int c = 1; c < C; c++) {
      if (counts[c] < counts[cmin]) cmin = c;
      if (counts[c] > counts[cmax]) cmax = c;
    }
    double mlo = INFINITY, mhi = -INFINITY, vlo = INFINITY, vhi = -INFINITY;
    for (int d = 0; d < D; d++) {
      double mean = sum[d] / (double)total, var = sum2[d] / (double)total - mean * mean;
      mlo = fmin(mlo, mean);
      mhi = fmax(mhi, mean);
      vlo = fmin(vlo, var);
      vhi = fmax(vhi, var);
    }
    if (o.num_shards == 1) printf("mkdata: wrote %s\n", first);
    else
      printf("mkdata: wrote %d shards %s .. %s\n", o.num_shards, first, path);
    printf("mkdata: %d utterances, %" PRId64 " frames, feat_dim %d, %d classes (%d phones x %d "
           "states), seed %" PRIu64 ", part %" PRIu64 "\n",
           o.num_utts, total, D, C, m.P, STATES, o.seed, o.part);
    printf("mkdata: class counts min %" PRId64 " (class %d) max %" PRId64 " (class %d); "
           "majority class %.1f%% of frames\n",
           counts[cmin], cmin, counts[cmax], cmax, 100.0 * (double)counts[cmax] / (double)total);
    printf("mkdata: features: per-dim mean %.2f..%.2f, variance %.2f..%.2f\n", mlo, mhi, vlo, vhi);
  }
  free(feats);
  free(labels);
  free(z);
  free(y);
  free(counts);
  free(sum);
  free(sum2);
  model_free(&m);
  return rc ? NGT_EXIT_FAILURE : NGT_EXIT_OK;
}
