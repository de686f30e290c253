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
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ngtrain/fileio.h"
#include "ngtrain/log.h"
#include "ngtrain/rng.h"
#include "ngtrain/shard.h"

#define STATES 3

static const char *USAGE =
    "usage: mkdata [options] --out=PREFIX|FILE.h5\n"
    "\n"
    "Generate speech-like example shards: frames of --feat-dim dims labelled with\n"
    "3-state phone-like classes (num_classes = 3 x --num-phones), temporally correlated so\n"
    "that context splicing helps, and (by default) filterbank-like feature statistics.\n"
    "Output is deterministic from --seed; --part picks a different set of utterances with\n"
    "the same class means (e.g. --part=0 for train, --part=1 for dev).\n"
    "\n"
    "Options (default in brackets):\n"
    "  --out=PREFIX|FILE.h5  write PREFIX-0001.h5 .. PREFIX-NNNN.h5, or one FILE.h5\n"
    "                        e.g. --out=data/train  or  --out=data/dev.h5\n"
    "  --num-shards=N        shards to split the utterances into [1]   e.g. --num-shards=4\n"
    "  --num-utts=N          utterances to generate [200]              e.g. --num-utts=600\n"
    "  --num-phones=N        phone-like units, 3 classes each [16]     e.g. --num-phones=16\n"
    "  --feat-dim=N          feature dimension [13]                    e.g. --feat-dim=40\n"
    "  --min-phones=N        phones per utterance, at least [3]        e.g. --min-phones=3\n"
    "  --max-phones=N        phones per utterance, at most [12]        e.g. --max-phones=12\n"
    "  --min-dur=N           frames per state, at least [2]            e.g. --min-dur=2\n"
    "  --max-dur=N           frames per state, at most [8]             e.g. --max-dur=8\n"
    "  --smooth=A            AR(1) coefficient a in [0, 1) [0.6]       e.g. --smooth=0.6\n"
    "  --noise=S             AR(1) noise stddev sigma [0.8]            e.g. --noise=0.5\n"
    "  --seed=N              model and data seed [1]                   e.g. --seed=7\n"
    "  --part=N              utterance set (same means) [0]            e.g. --part=1\n"
    "                        (--utt-seed is an alias)\n"
    "  --fbank-like=0|1      filterbank-like offsets/scales/correlation [1]\n"
    "  --compress[=L]        gzip level L (0..9) for the shards [0; bare --compress = 6]\n"
    "  --help                this text\n"
    "\n"
    "Example (the data/ shards of the repository, see data/README.md):\n"
    "  mkdata --seed=1 --part=0 --num-utts=600 --num-shards=4 --compress --out=data/train\n"
    "  mkdata --seed=1 --part=1 --num-utts=80 --compress --out=data/dev.h5\n";

typedef struct opts {
  const char *out;
  long num_shards, num_utts, num_phones, feat_dim, min_phones, max_phones, min_dur, max_dur;
  double smooth, noise;
  unsigned long long seed, part;
  long fbank_like, compress;
} opts;

static int bad_opt(const char *name, const char *val, const char *why) {
  fprintf(stderr, "mkdata: %s=%s: %s (see mkdata --help)\n", name, val, why);
  return 2;
}

static int parse_long(const char *name, const char *v, long lo, long hi, long *out) {
  char *end;
  errno = 0;
  long x = strtol(v, &end, 10);
  if (errno || end == v || *end) return bad_opt(name, v, "not an integer");
  if (x < lo || x > hi) {
    char why[128];
    snprintf(why, sizeof why, "must be in [%ld, %ld]", lo, hi);
    return bad_opt(name, v, why);
  }
  *out = x;
  return 0;
}

static int parse_double(const char *name, const char *v, double lo, double hi, double *out) {
  char *end;
  errno = 0;
  double x = strtod(v, &end);
  if (errno || end == v || *end || !isfinite(x)) return bad_opt(name, v, "not a number");
  if (x < lo || x >= hi) {
    char why[128];
    snprintf(why, sizeof why, "must be in [%g, %g)", lo, hi);
    return bad_opt(name, v, why);
  }
  *out = x;
  return 0;
}

static int parse_args(int argc, char **argv, opts *o) {
  o->out = NULL;
  o->num_shards = 1;
  o->num_utts = 200;
  o->num_phones = 16;
  o->feat_dim = 13;
  o->min_phones = 3;
  o->max_phones = 12;
  o->min_dur = 2;
  o->max_dur = 8;
  o->smooth = 0.6;
  o->noise = 0.8;
  o->seed = 1;
  o->part = 0;
  o->fbank_like = 1;
  o->compress = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      fputs(USAGE, stdout);
      return 1;
    }
    if (strncmp(a, "--", 2) != 0) {
      fprintf(stderr, "mkdata: unexpected argument '%s' (options look like --name=value; see "
              "mkdata --help)\n", a);
      return 2;
    }
    char name[64];
    const char *eq = strchr(a, '='), *val = NULL;
    size_t nl = eq ? (size_t)(eq - a) : strlen(a);
    if (nl >= sizeof name) nl = sizeof name - 1;
    memcpy(name, a, nl);
    name[nl] = '\0';
    if (eq) {
      val = eq + 1;
    } else if (strcmp(name, "--compress") == 0) {
      val = "6";
    } else if (i + 1 < argc) {
      val = argv[++i];
    } else {
      fprintf(stderr, "mkdata: option %s needs a value (e.g. %s=4; see mkdata --help)\n", name,
              name);
      return 2;
    }
    int rc = 0;
    long l;
    if (strcmp(name, "--out") == 0) {
      if (!*val) return bad_opt(name, val, "empty output name");
      o->out = val;
    } else if (strcmp(name, "--num-shards") == 0) {
      rc = parse_long(name, val, 1, 9999, &o->num_shards);
    } else if (strcmp(name, "--num-utts") == 0) {
      rc = parse_long(name, val, 1, 100000000, &o->num_utts);
    } else if (strcmp(name, "--num-phones") == 0) {
      rc = parse_long(name, val, 1, 100000, &o->num_phones);
    } else if (strcmp(name, "--feat-dim") == 0) {
      rc = parse_long(name, val, 1, 100000, &o->feat_dim);
    } else if (strcmp(name, "--min-phones") == 0) {
      rc = parse_long(name, val, 1, 10000, &o->min_phones);
    } else if (strcmp(name, "--max-phones") == 0) {
      rc = parse_long(name, val, 1, 10000, &o->max_phones);
    } else if (strcmp(name, "--min-dur") == 0) {
      rc = parse_long(name, val, 1, 1000, &o->min_dur);
    } else if (strcmp(name, "--max-dur") == 0) {
      rc = parse_long(name, val, 1, 1000, &o->max_dur);
    } else if (strcmp(name, "--smooth") == 0) {
      rc = parse_double(name, val, 0.0, 1.0, &o->smooth);
    } else if (strcmp(name, "--noise") == 0) {
      rc = parse_double(name, val, 0.0, 1e6, &o->noise);
    } else if (strcmp(name, "--seed") == 0) {
      rc = parse_long(name, val, 0, 2147483647L, &l);
      o->seed = (unsigned long long)l;
    } else if (strcmp(name, "--part") == 0 || strcmp(name, "--utt-seed") == 0) {
      rc = parse_long(name, val, 0, 2147483647L, &l);
      o->part = (unsigned long long)l;
    } else if (strcmp(name, "--fbank-like") == 0) {
      rc = parse_long(name, val, 0, 1, &o->fbank_like);
    } else if (strcmp(name, "--compress") == 0) {
      rc = parse_long(name, val, 0, 9, &o->compress);
    } else {
      fprintf(stderr, "mkdata: unknown option '%s' (see mkdata --help)\n", name);
      return 2;
    }
    if (rc) return rc;
  }
  if (!o->out) {
    fprintf(stderr, "mkdata: --out is required (e.g. --out=data/train or --out=dev.h5; see "
            "mkdata --help)\n");
    return 2;
  }
  if (o->min_phones > o->max_phones) {
    fprintf(stderr, "mkdata: --min-phones=%ld is larger than --max-phones=%ld\n", o->min_phones,
            o->max_phones);
    return 2;
  }
  if (o->min_dur > o->max_dur) {
    fprintf(stderr, "mkdata: --min-dur=%ld is larger than --max-dur=%ld\n", o->min_dur,
            o->max_dur);
    return 2;
  }
  if (o->num_utts < o->num_shards) {
    fprintf(stderr, "mkdata: --num-utts=%ld is smaller than --num-shards=%ld (every shard needs "
            "utterances)\n", o->num_utts, o->num_shards);
    return 2;
  }
  if ((long long)o->num_phones * STATES > 2147483647LL) {
    fprintf(stderr, "mkdata: --num-phones=%ld is too large\n", o->num_phones);
    return 2;
  }
  size_t ol = strlen(o->out);
  if (ol > 3 && strcmp(o->out + ol - 3, ".h5") == 0 && o->num_shards != 1) {
    fprintf(stderr, "mkdata: --out=%s names one file but --num-shards=%ld; give a prefix "
            "(e.g. --out=data/train) for several shards\n", o->out, o->num_shards);
    return 2;
  }
  return 0;
}

/* The generative model: depends on --seed (and the sizes) only. */
typedef struct model {
  int P, C, D;
  double *mu;      /* (C, D) latent class means */
  double *cum_w;   /* (P) cumulative phone weights over phones 1..P-1 (silence = 0) */
  double *offset;  /* (D) fbank-like per-dim offset */
  double *scale;   /* (D) fbank-like per-dim scale */
  double *kern;    /* (D, D) mixing of neighbouring dims, rows of unit norm */
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
        m->mu[((size_t)p * STATES + (size_t)k) * (size_t)D + (size_t)d] =
            pm[d] + 0.6 * ngt_rng_normal(&r);
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
  int prc = parse_args(argc, argv, &o);
  if (prc) return prc == 1 ? 0 : prc;
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
    if (single)
      snprintf(path, sizeof path, "%s", o.out);
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
      snprintf(id, sizeof id, "part%llu-utt%06" PRId64, o.part, u);
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
    fprintf(stderr, "mkdata: %s\n", err.msg);
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
    if (o.num_shards == 1)
      printf("mkdata: wrote %s\n", first);
    else
      printf("mkdata: wrote %ld shards %s .. %s\n", o.num_shards, first, path);
    printf("mkdata: %ld utterances, %" PRId64 " frames, feat_dim %d, %d classes (%d phones x %d "
           "states), seed %llu, part %llu\n", o.num_utts, total, D, C, m.P, STATES, o.seed,
           o.part);
    printf("mkdata: class counts min %" PRId64 " (class %d) max %" PRId64 " (class %d); "
           "majority class %.1f%% of frames\n", counts[cmin], cmin, counts[cmax], cmax,
           100.0 * (double)counts[cmax] / (double)total);
    printf("mkdata: features: per-dim mean %.2f..%.2f, variance %.2f..%.2f\n", mlo, mhi, vlo,
           vhi);
  }
  free(feats);
  free(labels);
  free(z);
  free(y);
  free(counts);
  free(sum);
  free(sum2);
  model_free(&m);
  return rc ? 1 : 0;
}
