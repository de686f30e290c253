/* mkshards — HDF5 training shards from Kaldi features + alignments, or NumPy arrays.
 *
 *   mkshards --feats=data/train/feats.scp --ali=exp/tri3_ali/pdf.txt --num-classes=3000 \
 *            --num-shards=8 --heldout-utts=300 --out=shards/train
 *   mkshards --npy-feats=X.npy --npy-labels=y.npy --npy-utt-offsets=o.npy --out=shards/x
 *
 * Contract (docs/design.md §5.1; memory: the streaming below):
 *  - Utterances are kept whole; their order is shuffled by --seed; shards are balanced by
 *    frames (each utterance, in shuffled order, goes to the shard with the fewest frames).
 *  - Streaming: pass 1 reads only matrix headers (shapes; truncation is caught here, before
 *    anything is written) and the alignments; pass 2 reads one utterance at a time by byte
 *    offset, so memory is O(utterances), never O(frames).
 *  - Bad utterances (no alignment, length mismatch beyond --length-tolerance, empty,
 *    duplicate key, non-finite features) are skipped and counted, the first few named; with
 *    --strict the first one is an error. Malformed files are always errors.
 *  - Nothing half-written is left behind: a shard appears only when complete (writer
 *    commit), and on any error the shards this run already wrote are removed too.
 * Output: PREFIX-001.h5 .. PREFIX-NNN.h5, PREFIX-heldout.h5 (with --heldout-*), optional
 * class counts / priors (Kaldi text vector "[ ... ]" or, for a .h5 name, /counts int64 [C]
 * and /priors float32 [C]). Exit status 0 on success, 1 on any error.
 */
#include <errno.h>
#include <hdf5.h>
#include <inttypes.h>
#include <libgen.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "ngtrain/hash.h"

#include "ngtrain/fileio.h"
#include "ngtrain/kaldi_io.h"
#include "ngtrain/log.h"
#include "ngtrain/npy.h"
#include "ngtrain/opts.h"
#include "ngtrain/rng.h"
#include "ngtrain/shard.h"

#define PRIOR_FLOOR 5e-6   /* Kaldi nnet3-am-train-transitions / nnet2 (docs/algorithm.md §4.5) */
#define MAX_NAMED_SKIPS 10 /* skipped utterances named individually */

static const ngt_tool tool = {
    "mkshards",
    "make HDF5 training shards from Kaldi feature archives + alignments, or from\n"
    "NumPy arrays. Utterances are kept whole, shuffled by --seed and spread over the shards\n"
    "balanced by frames; a held-out set can be split off by utterance.",
    "mkshards [options] --feats=<ark|scp> --ali=<ali.txt> --out=PREFIX\n"
    "mkshards [options] --npy-feats=X.npy --npy-labels=y.npy [--npy-utt-offsets=o.npy] "
    "--out=PREFIX",
    "ali-to-pdf exp/tri3_ali/final.mdl 'ark:gunzip -c exp/tri3_ali/ali.*.gz|' ark,t:ali.txt\n"
    "mkshards --feats=data/train/feats.scp --ali=ali.txt --num-classes=3000 \\\n"
    "  --num-shards=8 --heldout-utts=300 --cmn --write-priors=shards/priors.txt "
    "--out=shards/train\n"
    "ngtrain ... --train='shards/train-[0-9]*.h5' --valid=shards/train-heldout.h5",
    "Features: 'ark:f.ark' / 'scp:f.scp' / a path (.scp => scp); binary or text, float, double\n"
    "or compressed (copy-feats --compress=true). Alignments: 'utt-id pdf pdf ...' per line\n"
    "(ali-to-pdf ark,t:) or a binary int32-vector archive. NumPy: features [T, D] (any numeric\n"
    "dtype), labels [T] integers, utterance offsets [U+1] (0, ..., T) or starts [U]; without\n"
    "offsets every row is its own utterance (independent samples: no context across rows).\n"
    "Writes PREFIX-001.h5 .. PREFIX-NNN.h5 and PREFIX-heldout.h5; counts and priors (from the\n"
    "frames written, train and held-out; priors normalized and floored at 5e-6 as Kaldi does)\n"
    "as a Kaldi text vector, or as HDF5 (/counts, /priors) if the name ends in .h5.",
    0,
    0};

/* ---------------------------------------------------------------------------------- */

enum { SRC_KALDI = 1, SRC_NPY = 2 };
enum { BAD_NOALI, BAD_LENGTH, BAD_EMPTY, BAD_DUP, BAD_NONFINITE, BAD_N };
static const char *bad_name[BAD_N] = {"without alignment", "length mismatch", "empty",
                                      "duplicate key", "non-finite features"};

/* One accepted utterance. */
typedef struct utt {
  size_t key;         /* Kaldi: offset of the key in the arena; NumPy: original index */
  const char *file;   /* Kaldi: archive (owned by the pass-1 reader); NumPy: NULL */
  int64_t offset;     /* Kaldi: byte offset of the matrix; NumPy: first frame */
  int64_t T;          /* frames used (after --length-tolerance) */
  int32_t row0, col0; /* Kaldi scp range origin (0 without a range) */
  int32_t has_range;
} utt;

typedef struct ctx {
  /* options */
  const char *feats, *ali_path, *npy_feats, *npy_labels, *npy_offsets, *out;
  const char *write_counts, *write_priors;
  int num_classes, num_shards, cmn, strict, compress, compress_level, heldout_utts;
  int64_t chunk_frames;
  int length_tolerance;
  double heldout_fraction;
  uint64_t seed;
  /* sources */
  int mode;
  ngt_kaldi_reader *reader; /* pass 1 (its interned file names stay valid) */
  ngt_kaldi_reader *ra;     /* pass 2 random access */
  ngt_kaldi_ali *ali;
  ngt_npy *nf, *nl; /* NumPy features / labels */
  int npy_per_row;  /* no offsets: utterance i = row i */
  int key_width;
  /* corpus */
  int D;
  int64_t U; /* accepted utterances */
  utt *utts; /* (U), NULL when npy_per_row */
  size_t cap_utts;
  char *keys;
  size_t keys_len, keys_cap; /* key arena */
  size_t *key_set;
  size_t key_set_n;     /* open addressing over key offsets + 1 */
  size_t key_set_count; /* keys in the set (accepted or skipped) */
  int32_t max_label;
  int64_t bad[BAD_N];
  int64_t named_skips;
  /* pass 2 */
  float *x;
  size_t x_cap; /* (T, D) features of the current utterance */
  int32_t *labels;
  size_t labels_cap; /* (T) */
  int64_t *counts;   /* (C) frames per class written */
  char **written;
  int n_written;       /* committed outputs, removed on failure */
  char first_key[256]; /* for messages */
} ctx;

static void *grow_or_die(void *p, size_t *cap, size_t need, size_t elem) {
  if (need <= *cap) return p;
  size_t c = *cap ? *cap : 1024;
  while (c < need) c *= 2;
  void *np = realloc(p, c * elem);
  if (!np) ngt_die("out of memory (%zu x %zu bytes)", c, elem);
  *cap = c;
  return np;
}

/* Insert key (already at arena offset off) into the set; 1 if it was new, 0 if a duplicate. */
static int key_set_insert(ctx *c, size_t off) {
  if (2 * (c->key_set_count + 1) > c->key_set_n) {
    size_t nn = c->key_set_n ? 2 * c->key_set_n : 4096;
    size_t *ns = calloc(nn, sizeof *ns);
    if (!ns) ngt_die("out of memory");
    for (size_t i = 0; i < c->key_set_n; i++) {
      if (!c->key_set[i]) continue;
      size_t j = ngt_fnv1a64_str(c->keys + c->key_set[i] - 1) & (nn - 1);
      while (ns[j]) j = (j + 1) & (nn - 1);
      ns[j] = c->key_set[i];
    }
    free(c->key_set);
    c->key_set = ns;
    c->key_set_n = nn;
  }
  const char *k = c->keys + off;
  size_t j = ngt_fnv1a64_str(k) & (c->key_set_n - 1);
  while (c->key_set[j]) {
    if (!strcmp(c->keys + c->key_set[j] - 1, k)) return 0;
    j = (j + 1) & (c->key_set_n - 1);
  }
  c->key_set[j] = off + 1;
  c->key_set_count++;
  return 1;
}

static void utt_key(const ctx *c, int64_t i, char *buf, size_t len) {
  if (c->mode == SRC_KALDI) {
    snprintf(buf, len, "%s", c->keys + c->utts[i].key);
  } else {
    long long idx = c->npy_per_row ? (long long)i : (long long)c->utts[i].key;
    snprintf(buf, len, "%s-%0*lld", c->npy_per_row ? "row" : "utt", c->key_width & 31, idx);
  }
}
static int64_t utt_T(const ctx *c, int64_t i) { return c->npy_per_row ? 1 : c->utts[i].T; }

/* A bad utterance: counted and (the first few) named, or an error with --strict.
 * Returns 0 to skip, 1 for a fatal error (already printed). */
static int bad_utt(ctx *c, int why, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int bad_utt(ctx *c, int why, const char *key, const char *fmt, ...) {
  char detail[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(detail, sizeof detail, fmt, ap);
  va_end(ap);
  c->bad[why]++;
  if (c->strict)
    return ngt_fail("utterance '%s': %s (--strict; without it such utterances are skipped and "
                    "counted)",
                    key, detail);
  if (c->named_skips < MAX_NAMED_SKIPS) ngt_warn("skipping utterance '%s': %s", key, detail);
  else if (c->named_skips == MAX_NAMED_SKIPS)
    ngt_warn("further skipped utterances are counted but not named");
  c->named_skips++;
  return 0;
}

static void add_utt(ctx *c, const utt *u) {
  c->utts = grow_or_die(c->utts, &c->cap_utts, (size_t)c->U + 1, sizeof *c->utts);
  c->utts[c->U++] = *u;
}

/* ---------------------------------------------------------------------------------- */
/* pass 1                                                                               */

static int check_label_range(ctx *c, const char *key, const char *file, int64_t t, int32_t v) {
  if (v > c->max_label) c->max_label = v;
  if (c->num_classes > 0 && v >= c->num_classes)
    return ngt_fail("'%s': %s%s%sframe %" PRId64 " has class %d but --num-classes=%d (give the "
                    "number of classes; for Kaldi pdfs, tree-info or am-info prints it)",
                    file, key ? "utterance '" : "", key ? key : "", key ? "' " : "", t, v,
                    c->num_classes);
  return 0;
}

static int pass1_kaldi(ctx *c) {
  ngt_err err = {0};
  if (ngt_kaldi_ali_open(c->ali_path, &c->ali, &err)) return ngt_fail("%s", err.msg);
  if (ngt_kaldi_reader_open(c->feats, &c->reader, &err)) return ngt_fail("%s", err.msg);
  c->ra = ngt_kaldi_reader_new_random_access();
  if (!c->ra) return ngt_fail("out of memory");
  c->D = -1;
  ngt_kaldi_entry e;
  int rc;
  int64_t seen = 0;
  double t_last = ngt_now();
  while ((rc = ngt_kaldi_reader_next(c->reader, 0, &e, &err)) == 1) {
    seen++;
    if (e.offset < 0)
      return ngt_fail("features '%s': mkshards reads each utterance twice (shapes, then data) and "
                      "needs an archive file, not stdin",
                      c->feats);
    if (ngt_now() - t_last > 10) {
      t_last = ngt_now();
      fprintf(stderr, "mkshards: pass 1: %" PRId64 " utterances scanned\n", seen);
    }
    int64_t T = e.mat.rows;
    if (T == 0) {
      if (bad_utt(c, BAD_EMPTY, e.key,
                  "its feature matrix in '%s' (byte %" PRId64 ") has no "
                  "frames",
                  e.file, e.offset))
        return 1;
      continue;
    }
    if (c->D < 0) {
      c->D = e.mat.cols;
      snprintf(c->first_key, sizeof c->first_key, "%s", e.key);
    } else if (e.mat.cols != c->D) {
      return ngt_fail("utterance '%s' in '%s' (byte %" PRId64 ") has %d-dimensional features but "
                      "'%s' has %d; all utterances must have the same feature dimension",
                      e.key, e.file, e.offset, e.mat.cols, c->first_key, c->D);
    }
    size_t klen = strlen(e.key) + 1, off = c->keys_len;
    c->keys = grow_or_die(c->keys, &c->keys_cap, c->keys_len + klen, 1);
    memcpy(c->keys + off, e.key, klen);
    int fresh = key_set_insert(c, off);
    if (fresh) c->keys_len += klen; /* kept: the set points at it, even if skipped below */
    if (!fresh) {
      if (bad_utt(c, BAD_DUP, e.key,
                  "it appears more than once in '%s' (this copy at byte %" PRId64 " is skipped)",
                  c->feats, e.offset))
        return 1;
      continue;
    }
    const int32_t *lab;
    int64_t n;
    int g = ngt_kaldi_ali_get(c->ali, e.key, &lab, &n, &err);
    if (g < 0) return ngt_fail("%s", err.msg);
    if (g == 0) {
      if (bad_utt(c, BAD_NOALI, e.key, "no alignment in '%s' (features in '%s')",
                  ngt_kaldi_ali_path(c->ali), e.file))
        return 1;
      continue;
    }
    if (llabs(n - T) > c->length_tolerance) {
      if (bad_utt(c, BAD_LENGTH, e.key,
                  "the features in '%s' have %" PRId64 " frames but the "
                  "alignment in '%s' has %" PRId64 " (--length-tolerance=%d)",
                  e.file, T, ngt_kaldi_ali_path(c->ali), n, c->length_tolerance))
        return 1;
      continue;
    }
    if (n < T) T = n;
    for (int64_t t = 0; t < T; t++)
      if (check_label_range(c, e.key, ngt_kaldi_ali_path(c->ali), t, lab[t])) return 1;
    utt u = {off, e.file, e.offset, T, e.row0, e.col0, e.has_range};
    add_utt(c, &u);
  }
  if (rc < 0) return ngt_fail("%s", err.msg);
  if (seen == 0) return ngt_fail("features '%s' hold no utterances", c->feats);
  return 0;
}

static int pass1_npy(ctx *c) {
  ngt_err err = {0};
  if (ngt_npy_open(c->npy_feats, &c->nf, &err)) return ngt_fail("%s", err.msg);
  if (ngt_npy_open(c->npy_labels, &c->nl, &err)) return ngt_fail("%s", err.msg);
  char sh[128];
  ngt_npy_shape_str(c->nf, sh, sizeof sh);
  if (c->nf->ndim < 1 || c->nf->shape[0] == 0)
    return ngt_fail("npy '%s': shape %s holds no frames (expected [T, D] with T > 0)",
                    c->npy_feats, sh);
  int64_t T = c->nf->shape[0], D = c->nf->numel / T;
  if (D <= 0 || D > 1000000)
    return ngt_fail("npy '%s': shape %s gives feature dimension %" PRId64 " (expected [T, D])",
                    c->npy_feats, sh, D);
  c->D = (int)D;
  if (c->nl->numel != T || (c->nl->ndim == 2 && c->nl->shape[1] != 1) || c->nl->ndim > 2) {
    char lsh[128];
    ngt_npy_shape_str(c->nl, lsh, sizeof lsh);
    return ngt_fail("npy '%s': labels of shape %s do not match the %" PRId64 " frames of '%s' "
                    "(expected shape (%" PRId64 ",))",
                    c->npy_labels, lsh, T, c->npy_feats, T);
  }
  /* labels: range and maximum, streamed */
  const int64_t B = 1 << 20;
  int32_t *lab = malloc(sizeof(int32_t) * (size_t)(T < B ? T : B));
  if (!lab) return ngt_fail("out of memory");
  for (int64_t t0 = 0; t0 < T; t0 += B) {
    int64_t n = T - t0 < B ? T - t0 : B;
    if (ngt_npy_read_i32(c->nl, t0, n, lab, &err)) {
      free(lab);
      return ngt_fail("%s (labels must be class indices that fit int32)", err.msg);
    }
    for (int64_t i = 0; i < n; i++) {
      if (lab[i] < 0) {
        int32_t v = lab[i];
        free(lab);
        return ngt_fail("npy '%s': frame %" PRId64 " has negative label %d (labels are class "
                        "indices 0 .. C-1)",
                        c->npy_labels, t0 + i, v);
      }
      if (check_label_range(c, NULL, c->npy_labels, t0 + i, lab[i])) {
        free(lab);
        return 1;
      }
    }
  }
  free(lab);
  if (!c->npy_offsets) {
    c->npy_per_row = 1;
    c->U = T;
    int w = 1;
    for (int64_t x = T; x >= 10; x /= 10) w++;
    c->key_width = w;
    fprintf(stderr,
            "mkshards: no --npy-utt-offsets: each of the %" PRId64 " rows is its own "
            "utterance (independent samples; no splicing context across rows)\n",
            T);
    return 0;
  }
  ngt_npy *no;
  if (ngt_npy_open(c->npy_offsets, &no, &err)) return ngt_fail("%s", err.msg);
  int64_t n = no->numel;
  if (no->ndim != 1 || n < 1) {
    ngt_npy_close(no);
    return ngt_fail("npy '%s': utterance offsets must be a 1-D array [U+1] (0, ..., T) or [U] "
                    "(starts)",
                    c->npy_offsets);
  }
  int64_t *off = malloc(sizeof(int64_t) * (size_t)(n + 1));
  if (!off) {
    ngt_npy_close(no);
    return ngt_fail("out of memory");
  }
  int rc = ngt_npy_read_i64(no, 0, n, off, &err);
  ngt_npy_close(no);
  if (rc) {
    free(off);
    return ngt_fail("%s", err.msg);
  }
  if (off[0] != 0) {
    int64_t v = off[0];
    free(off);
    return ngt_fail("npy '%s': the first utterance offset is %" PRId64 ", must be 0",
                    c->npy_offsets, v);
  }
  if (off[n - 1] != T) off[n++] = T; /* starts only */
  int64_t U = n - 1;
  int w = 1;
  for (int64_t x = U; x >= 10; x /= 10) w++;
  c->key_width = w;
  for (int64_t u = 0; u < U; u++) {
    if (off[u + 1] < off[u] || off[u + 1] > T) {
      int64_t v = off[u + 1], prev = off[u];
      free(off);
      return ngt_fail("npy '%s': utterance offsets must increase from 0 to T = %" PRId64 ", but "
                      "entry %" PRId64 " is %" PRId64 " after %" PRId64,
                      c->npy_offsets, T, u + 1, v, prev);
    }
    if (off[u + 1] == off[u]) {
      char key[64];
      snprintf(key, sizeof key, "utt-%0*lld", w & 31, (long long)u);
      if (bad_utt(c, BAD_EMPTY, key,
                  "offsets in '%s' give it no frames (entries %" PRId64 " and %" PRId64
                  " are both %" PRId64 ")",
                  c->npy_offsets, u, u + 1, off[u])) {
        free(off);
        return 1;
      }
      continue;
    }
    utt x = {(size_t)u, NULL, off[u], off[u + 1] - off[u], 0, 0, 0};
    add_utt(c, &x);
  }
  free(off);
  return 0;
}

/* ---------------------------------------------------------------------------------- */
/* pass 2                                                                               */

/* Load utterance i into c->feats (T x D) and c->labels (T). */
static int load_utt(ctx *c, int64_t i, const char *key, ngt_err *err) {
  int64_t T = utt_T(c, i);
  const size_t D = (size_t)c->D;
  c->x = grow_or_die(c->x, &c->x_cap, (size_t)T * D, sizeof *c->x);
  c->labels = grow_or_die(c->labels, &c->labels_cap, (size_t)T, sizeof *c->labels);
  if (c->mode == SRC_NPY) {
    int64_t t0 = c->npy_per_row ? i : c->utts[i].offset;
    int rc = ngt_npy_read_f32(c->nf, t0 * (int64_t)D, T * (int64_t)D, c->x, err);
    if (!rc) rc = ngt_npy_read_i32(c->nl, t0, T, c->labels, err);
    return rc;
  }
  const utt *u = &c->utts[i];
  ngt_kaldi_entry e;
  int rc = ngt_kaldi_reader_read_at(c->ra, u->file, u->offset, key, 1, &e, err);
  if (rc) return rc;
  if (e.mat.rows < u->row0 + T || e.mat.cols < u->col0 + c->D)
    return ngt_err_set(err, NGT_EFORMAT,
                       "utterance '%s' in '%s' (byte %" PRId64 ") is now %d x "
                       "%d, it was at least %" PRId64 " x %d in the first pass; was the archive "
                       "rewritten while mkshards ran?",
                       key, u->file, u->offset, e.mat.rows, e.mat.cols, u->row0 + T, c->D);
  ngt_mat src = ngt_mat_view(e.mat.data + (size_t)u->row0 * (size_t)e.mat.stride + u->col0, (int)T,
                             c->D, e.mat.stride);
  ngt_mat dst = ngt_mat_view(c->x, (int)T, c->D, c->D);
  ngt_mat_copy(dst, src);
  const int32_t *lab;
  int64_t n;
  int g = ngt_kaldi_ali_get(c->ali, key, &lab, &n, err);
  if (g < 0) return g;
  if (g == 0 || n < T)
    return ngt_err_set(err, NGT_EFORMAT,
                       "alignments '%s': utterance '%s' changed between the "
                       "two passes",
                       ngt_kaldi_ali_path(c->ali), key);
  memcpy(c->labels, lab, sizeof(int32_t) * (size_t)T);
  return 0;
}

static void cmn(float *x, int64_t T, int D, double *mean) {
  for (int d = 0; d < D; d++) mean[d] = 0;
  for (int64_t t = 0; t < T; t++)
    for (int d = 0; d < D; d++) mean[d] += x[t * D + d];
  for (int d = 0; d < D; d++) mean[d] /= (double)T;
  for (int64_t t = 0; t < T; t++)
    for (int d = 0; d < D; d++) x[t * D + d] = (float)(x[t * D + d] - mean[d]);
}

static void remove_written(ctx *c) {
  for (int i = 0; i < c->n_written; i++) unlink(c->written[i]);
  if (c->n_written)
    fprintf(stderr,
            "mkshards: removed the %d file(s) this run had already written, so no "
            "partial set of shards is left behind\n",
            c->n_written);
  c->n_written = 0;
}

static void note_written(ctx *c, const char *path) {
  char **nw = realloc(c->written, sizeof(char *) * (size_t)(c->n_written + 1));
  if (!nw || !(nw[c->n_written] = strdup(path))) ngt_die("out of memory");
  c->written = nw;
  c->n_written++;
}

typedef struct shard_stat {
  int64_t frames, utts;
} shard_stat;

/* Write one shard from the utterances list[0..n). Returns 0 or 1 (error printed). */
static int write_shard(ctx *c, const char *path, const int64_t *list, int64_t n, int C,
                       const char *what, shard_stat *st, double *mean_ws, double t_start,
                       int64_t *frames_done, int64_t frames_total) {
  ngt_err err = {0};
  ngt_shard_write_opts o = {c->compress ? c->compress_level : 0, c->chunk_frames};
  ngt_shard_writer *w;
  if (ngt_shard_writer_open(path, c->D, C, &o, &w, &err)) return ngt_fail("%s", err.msg);
  st->frames = st->utts = 0;
  double t_last = ngt_now();
  for (int64_t k = 0; k < n; k++) {
    int64_t i = list[k];
    char key[512];
    utt_key(c, i, key, sizeof key);
    if (load_utt(c, i, key, &err)) {
      ngt_shard_writer_abort(w);
      return ngt_fail("%s", err.msg);
    }
    int64_t T = utt_T(c, i);
    int64_t nonfinite = -1;
    for (int64_t j = 0; j < T * c->D && nonfinite < 0; j++)
      if (!isfinite(c->x[j])) nonfinite = j;
    if (nonfinite >= 0) {
      if (bad_utt(c, BAD_NONFINITE, key, "frame %" PRId64 ", dim %" PRId64 " is %g in '%s'",
                  nonfinite / c->D, nonfinite % c->D, (double)c->x[nonfinite],
                  c->mode == SRC_KALDI ? c->utts[i].file : c->npy_feats)) {
        ngt_shard_writer_abort(w);
        return 1;
      }
      continue;
    }
    if (c->cmn) cmn(c->x, T, c->D, mean_ws);
    if (ngt_shard_writer_add(w, key, c->x, T, c->labels, &err)) {
      ngt_shard_writer_abort(w);
      return ngt_fail("%s", err.msg);
    }
    for (int64_t t = 0; t < T; t++) c->counts[c->labels[t]]++;
    st->frames += T;
    st->utts++;
    *frames_done += T;
    if (ngt_now() - t_last > 10) {
      t_last = ngt_now();
      double el = t_last - t_start;
      fprintf(stderr,
              "mkshards: %s: %" PRId64 "/%" PRId64 " utterances; %" PRId64 "/%" PRId64
              " frames overall (%.0f frames/s)\n",
              what, k + 1, n, *frames_done, frames_total,
              el > 0 ? (double)*frames_done / el : 0.0);
    }
  }
  if (st->utts == 0) {
    ngt_shard_writer_abort(w);
    return ngt_fail("%s '%s' would hold no utterances (all of its utterances were skipped); use "
                    "fewer shards",
                    what, path);
  }
  if (ngt_shard_writer_commit(w, &err)) return ngt_fail("%s", err.msg);
  note_written(c, path);
  return 0;
}

/* ---------------------------------------------------------------------------------- */
/* counts and priors                                                                    */

static int has_suffix(const char *s, const char *suf) {
  size_t a = strlen(s), b = strlen(suf);
  return a >= b && !strcmp(s + a - b, suf);
}

static int write_h5_vectors(const char *path, const int64_t *counts, const float *priors, int C,
                            ngt_err *err) {
  char tmp[4096];
  ngt_tmp_path(path, tmp, sizeof tmp);
  ngt_hdf5_quiet();
  hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (f < 0)
    return ngt_err_set(err, NGT_EIO, "cannot create '%s' (does the directory exist?)", tmp);
  hsize_t n = (hsize_t)C;
  int ok = 1;
  hid_t s = H5Screate_simple(1, &n, NULL);
  hid_t p = H5Pcreate(H5P_DATASET_CREATE);
  ok = s >= 0 && p >= 0 && H5Pset_obj_track_times(p, 0) >= 0;
  if (ok && counts) {
    hid_t d = H5Dcreate2(f, "counts", H5T_STD_I64LE, s, H5P_DEFAULT, p, H5P_DEFAULT);
    ok = d >= 0 && H5Dwrite(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, counts) >= 0;
    if (d >= 0) H5Dclose(d);
  }
  if (ok && priors) {
    hid_t d = H5Dcreate2(f, "priors", H5T_IEEE_F32LE, s, H5P_DEFAULT, p, H5P_DEFAULT);
    ok = d >= 0 && H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, priors) >= 0;
    if (d >= 0) H5Dclose(d);
  }
  if (p >= 0) H5Pclose(p);
  if (s >= 0) H5Sclose(s);
  if (H5Fclose(f) < 0) ok = 0;
  if (!ok) {
    unlink(tmp);
    return ngt_err_set(err, NGT_EIO, "cannot write '%s' (disk full?)", path);
  }
  return ngt_commit_tmp(tmp, path, err);
}

static int write_counts_priors(ctx *c, int C) {
  ngt_err err = {0};
  double total = 0;
  for (int k = 0; k < C; k++) total += (double)c->counts[k];
  double *v = malloc(sizeof(double) * (size_t)C);
  float *pf = malloc(sizeof(float) * (size_t)C);
  if (!v || !pf) return ngt_fail("out of memory");
  int rc = 0;
  if (c->write_counts) {
    for (int k = 0; k < C; k++) v[k] = (double)c->counts[k];
    rc = has_suffix(c->write_counts, ".h5")
             ? write_h5_vectors(c->write_counts, c->counts, NULL, C, &err)
             : ngt_kaldi_write_text_vector(c->write_counts, v, C, 1, &err);
    if (rc) rc = ngt_fail("%s", err.msg);
  }
  if (!rc && c->write_priors) {
    /* docs/algorithm.md §4.5: normalized, floored at 5e-6, renormalized to sum 1 */
    double s = 0;
    for (int k = 0; k < C; k++) {
      v[k] = c->counts[k] / total;
      if (v[k] < PRIOR_FLOOR) v[k] = PRIOR_FLOOR;
      s += v[k];
    }
    for (int k = 0; k < C; k++) {
      v[k] /= s;
      pf[k] = (float)v[k];
    }
    rc = has_suffix(c->write_priors, ".h5")
             ? write_h5_vectors(c->write_priors, c->counts, pf, C, &err)
             : ngt_kaldi_write_text_vector(c->write_priors, v, C, 0, &err);
    if (rc) rc = ngt_fail("%s", err.msg);
  }
  free(v);
  free(pf);
  return rc;
}

/* ---------------------------------------------------------------------------------- */

/* Min-heap of shards by frames (ties: lower index), for greedy balancing. */
static void heap_down(int64_t *fr, int *h, int n, int i) {
  for (;;) {
    int l = 2 * i + 1, r = l + 1, m = i;
    if (l < n && (fr[h[l]] < fr[h[m]] || (fr[h[l]] == fr[h[m]] && h[l] < h[m]))) m = l;
    if (r < n && (fr[h[r]] < fr[h[m]] || (fr[h[r]] == fr[h[m]] && h[r] < h[m]))) m = r;
    if (m == i) return;
    int t = h[i];
    h[i] = h[m];
    h[m] = t;
    i = m;
  }
}

static void shard_path(const ctx *c, int s, int N, char *buf, size_t len) {
  int w = 3;
  for (int x = N; x >= 1000; x /= 10) w++;
  snprintf(buf, len, "%s-%0*d.h5", c->out, w & 15, (s + 1) & 0x3fffffff);
}

static int run(ctx *c) {
  int rc = c->mode == SRC_KALDI ? pass1_kaldi(c) : pass1_npy(c);
  if (rc) return rc;
  int64_t skipped = 0;
  for (int b = 0; b < BAD_N; b++) skipped += c->bad[b];
  if (c->U == 0)
    return ngt_fail("no usable utterances: all %" PRId64 " were skipped (see the warnings above)",
                    skipped);
  int C = c->num_classes;
  if (C <= 0) {
    C = c->max_label + 1;
    ngt_warn("--num-classes not given: using the largest class seen + 1 = %d; pass the "
             "model's number of pdfs (tree-info / am-info) so classes never seen in this data "
             "still get an output",
             C);
  }
  /* shuffle and split */
  int64_t U = c->U;
  int64_t *order = malloc(sizeof(int64_t) * (size_t)U);
  if (!order) return ngt_fail("out of memory");
  for (int64_t i = 0; i < U; i++) order[i] = i;
  ngt_rng r = ngt_rng_make(c->seed, NGT_RNG_STREAM_DATA);
  ngt_rng_shuffle_i64(&r, order, (size_t)U);
  int64_t H = c->heldout_utts;
  if (c->heldout_fraction > 0) H = (int64_t)llround(c->heldout_fraction * (double)U);
  if (c->heldout_fraction > 0 && H == 0) H = 1;
  if (H >= U) {
    free(order);
    return ngt_fail("the held-out set (%" PRId64 " utterances) would take all %" PRId64 " usable "
                    "utterances; lower --heldout-utts / --heldout-fraction",
                    H, U);
  }
  int N = c->num_shards;
  if (N > U - H) {
    free(order);
    return ngt_fail("--num-shards=%d but only %" PRId64 " training utterances; use at most that "
                    "many shards",
                    N, U - H);
  }
  /* greedy balance in shuffled order: each utterance to the shard with the fewest frames */
  int64_t *fr = calloc((size_t)N, sizeof *fr);
  int *heap = malloc(sizeof(int) * (size_t)N);
  int32_t *shard_of = malloc(sizeof(int32_t) * (size_t)(U - H));
  int64_t *start = calloc((size_t)N + 1, sizeof *start);
  int64_t *list = malloc(sizeof(int64_t) * (size_t)(U - H > H ? U - H : H) + 8);
  c->counts = calloc((size_t)C, sizeof *c->counts);
  double *mean_ws = malloc(sizeof(double) * (size_t)c->D);
  if (!fr || !heap || !shard_of || !start || !list || !c->counts || !mean_ws)
    return ngt_fail("out of memory");
  for (int s = 0; s < N; s++) heap[s] = s;
  int64_t frames_total = 0;
  for (int64_t k = H; k < U; k++) {
    int s = heap[0];
    shard_of[k - H] = s;
    fr[s] += utt_T(c, order[k]);
    heap_down(fr, heap, N, 0);
  }
  for (int64_t k = 0; k < U; k++) frames_total += utt_T(c, order[k]);
  /* counting sort by shard, stable: shuffled order within each shard */
  for (int64_t k = 0; k < U - H; k++) start[shard_of[k] + 1]++;
  for (int s = 0; s < N; s++) start[s + 1] += start[s];
  {
    int64_t *fill = malloc(sizeof(int64_t) * (size_t)N);
    if (!fill) return ngt_fail("out of memory");
    memcpy(fill, start, sizeof(int64_t) * (size_t)N);
    for (int64_t k = 0; k < U - H; k++) list[fill[shard_of[k]]++] = order[H + k];
    free(fill);
  }
  /* output directory */
  {
    char *dup = strdup(c->out);
    if (!dup) return ngt_fail("out of memory");
    ngt_err err = {0};
    int mk = ngt_mkdir_p(dirname(dup), &err);
    free(dup);
    if (mk) return ngt_fail("%s", err.msg);
  }
  double t0 = ngt_now();
  int64_t frames_done = 0, minf = INT64_MAX, maxf = 0, train_frames = 0, train_utts = 0;
  char path[4096], first[4096] = "", last[4096] = "";
  rc = 0;
  for (int s = 0; s < N && !rc; s++) {
    shard_path(c, s, N, path, sizeof path);
    char what[64];
    snprintf(what, sizeof what, "shard %d/%d", s + 1, N);
    shard_stat st;
    rc = write_shard(c, path, list + start[s], start[s + 1] - start[s], C, what, &st, mean_ws, t0,
                     &frames_done, frames_total);
    if (rc) break;
    if (st.frames < minf) minf = st.frames;
    if (st.frames > maxf) maxf = st.frames;
    train_frames += st.frames;
    train_utts += st.utts;
    if (s == 0) snprintf(first, sizeof first, "%s", path);
    snprintf(last, sizeof last, "%s", path);
  }
  shard_stat hst = {0, 0};
  char hpath[4096] = "";
  if (!rc && H > 0) {
    snprintf(hpath, sizeof hpath, "%s-heldout.h5", c->out);
    memcpy(list, order, sizeof(int64_t) * (size_t)H);
    rc = write_shard(c, hpath, list, H, C, "held-out", &hst, mean_ws, t0, &frames_done,
                     frames_total);
  }
  if (!rc) rc = write_counts_priors(c, C);
  free(fr);
  free(heap);
  free(shard_of);
  free(start);
  free(list);
  free(order);
  free(mean_ws);
  if (rc) {
    remove_written(c);
    return rc;
  }
  /* an earlier run with more shards leaves files a glob would pick up */
  shard_path(c, N, N, path, sizeof path);
  if (access(path, F_OK) == 0)
    ngt_warn("'%s' exists from an earlier run with more shards; remove it, or a glob over "
             "PREFIX-*.h5 will include it",
             path);
  /* summary */
  skipped = 0;
  for (int b = 0; b < BAD_N; b++) skipped += c->bad[b];
  int64_t cmin = INT64_MAX, cmax = 0, unseen = 0;
  int kmin = 0, kmax = 0;
  for (int k = 0; k < C; k++) {
    if (c->counts[k] == 0) unseen++;
    if (c->counts[k] < cmin) {
      cmin = c->counts[k];
      kmin = k;
    }
    if (c->counts[k] > cmax) {
      cmax = c->counts[k];
      kmax = k;
    }
  }
  double el = ngt_now() - t0;
  printf("mkshards: wrote %d shard%s (%s%s%s)%s%s in %.1f s\n", N, N > 1 ? "s" : "", first,
         N > 1 ? " .. " : "", N > 1 ? last : "", H > 0 ? " and held-out " : "", H > 0 ? hpath : "",
         el);
  printf("  utterances: %" PRId64 " train, %" PRId64 " held-out, %" PRId64 " skipped", train_utts,
         hst.utts, skipped);
  if (skipped) {
    const char *sep = " (";
    for (int b = 0; b < BAD_N; b++)
      if (c->bad[b]) {
        printf("%s%" PRId64 " %s", sep, c->bad[b], bad_name[b]);
        sep = ", ";
      }
    printf(")");
  }
  printf("\n  frames:     %" PRId64 " train (per shard %" PRId64 " .. %" PRId64 "), %" PRId64
         " held-out\n",
         train_frames, minf, maxf, hst.frames);
  printf("  feat_dim:   %d%s\n", c->D, c->cmn ? " (per-utterance mean normalized)" : "");
  printf("  classes:    %d%s; frames per class min %" PRId64 " (class %d), max %" PRId64
         " (class %d); %" PRId64 " class%s never seen\n",
         C, c->num_classes > 0 ? "" : " (largest seen + 1)", cmin, kmin, cmax, kmax, unseen,
         unseen == 1 ? "" : "es");
  if (c->write_counts) printf("  counts:     %s\n", c->write_counts);
  if (c->write_priors) printf("  priors:     %s\n", c->write_priors);
  if (H > 0) printf("  train with: --train='%s-[0-9]*.h5' --valid=%s\n", c->out, hpath);
  else
    printf("  train with: --train='%s-[0-9]*.h5'\n", c->out);
  return 0;
}

int main(int argc, char **argv) {
  ctx c;
  memset(&c, 0, sizeof c);
  c.num_shards = 1;
  c.compress_level = 4;
  c.chunk_frames = 4096;
  c.max_label = -1;
  ngt_opt table[] = {
      {"feats", NGT_OPT_STRING, &c.feats, "Kaldi features: ark:FILE, scp:FILE or a path", 0},
      {"ali", NGT_OPT_STRING, &c.ali_path, "alignments, 'utt pdf pdf ...' per line (ali-to-pdf)",
       0},
      {"npy-feats", NGT_OPT_STRING, &c.npy_feats, "NumPy features [T, D]", 0},
      {"npy-labels", NGT_OPT_STRING, &c.npy_labels, "NumPy labels [T] (integers)", 0},
      {"npy-utt-offsets", NGT_OPT_STRING, &c.npy_offsets,
       "NumPy utterance offsets [U+1] or starts [U] (default: one utterance per row)", 0},
      {"out", NGT_OPT_STRING, &c.out, "output prefix: writes PREFIX-001.h5 ...", 0},
      {"num-classes", NGT_OPT_INT, &c.num_classes,
       "number of classes (pdfs); 0 = largest label + 1, with a warning", 0},
      {"num-shards", NGT_OPT_INT, &c.num_shards, "training shards, balanced by frames", 0},
      {"seed", NGT_OPT_UINT64, &c.seed, "seed of the utterance order and held-out choice", 0},
      {"cmn", NGT_OPT_BOOL, &c.cmn, "per-utterance mean normalization of the features", 0},
      {"heldout-utts", NGT_OPT_INT, &c.heldout_utts, "utterances for PREFIX-heldout.h5", 0},
      {"heldout-fraction", NGT_OPT_DOUBLE, &c.heldout_fraction,
       "fraction of utterances for PREFIX-heldout.h5 (instead of --heldout-utts)", 0},
      {"compress", NGT_OPT_BOOL, &c.compress, "gzip-compress the feature chunks", 0},
      {"compress-level", NGT_OPT_INT, &c.compress_level, "gzip level 1..9 with --compress", 0},
      {"chunk-frames", NGT_OPT_INT64, &c.chunk_frames, "frames per HDF5 chunk", 0},
      {"strict", NGT_OPT_BOOL, &c.strict,
       "a bad utterance (no alignment, length mismatch, empty, ...) is an error, not a skip", 0},
      {"length-tolerance", NGT_OPT_INT, &c.length_tolerance,
       "accept feature/alignment length differences up to this many frames (truncating)", 0},
      {"write-counts", NGT_OPT_STRING, &c.write_counts,
       "write class counts (Kaldi text vector, or .h5 /counts)", 0},
      {"write-priors", NGT_OPT_STRING, &c.write_priors,
       "write class priors (text vector, or .h5 /priors + /counts)", 0},
      {0, 0, 0, 0, 0}};
  char **pos = NULL;
  int npos = 0, ret = 0;
  if (ngt_opts_tool(&tool, table, argc, argv, &pos, &npos, &ret)) return ret;
  ret = 1;
  int kaldi = c.feats || c.ali_path, npy = c.npy_feats || c.npy_labels || c.npy_offsets;
  if (kaldi && npy) {
    ngt_fail("give either --feats/--ali or --npy-*, not both");
    goto out;
  }
  if (!kaldi && !npy) {
    ngt_fail("no input: give --feats and --ali, or --npy-feats and --npy-labels");
    goto out;
  }
  if (kaldi && (!c.feats || !c.ali_path)) {
    ngt_fail("Kaldi input needs both --feats and --ali (got only %s)",
             c.feats ? "--feats" : "--ali");
    goto out;
  }
  if (npy && (!c.npy_feats || !c.npy_labels)) {
    ngt_fail("NumPy input needs --npy-feats and --npy-labels");
    goto out;
  }
  if (!c.out || !*c.out) {
    ngt_fail("--out=PREFIX is required (e.g. --out=shards/train)");
    goto out;
  }
  if (c.num_shards < 1) {
    ngt_fail("--num-shards=%d must be >= 1", c.num_shards);
    goto out;
  }
  if (c.num_classes < 0) {
    ngt_fail("--num-classes=%d must be >= 0", c.num_classes);
    goto out;
  }
  if (c.heldout_utts < 0) {
    ngt_fail("--heldout-utts=%d must be >= 0", c.heldout_utts);
    goto out;
  }
  if (c.heldout_fraction < 0 || c.heldout_fraction >= 1) {
    ngt_fail("--heldout-fraction=%g must be in [0, 1)", c.heldout_fraction);
    goto out;
  }
  if (c.heldout_fraction > 0 && c.heldout_utts > 0) {
    ngt_fail("give --heldout-utts or --heldout-fraction, not both");
    goto out;
  }
  if (c.compress_level < 1 || c.compress_level > 9) {
    ngt_fail("--compress-level=%d must be 1..9", c.compress_level);
    goto out;
  }
  if (c.chunk_frames < 1) {
    ngt_fail("--chunk-frames must be >= 1");
    goto out;
  }
  if (c.length_tolerance < 0) {
    ngt_fail("--length-tolerance must be >= 0");
    goto out;
  }
  c.mode = kaldi ? SRC_KALDI : SRC_NPY;
  ret = run(&c);
out:
  ngt_kaldi_reader_close(c.reader);
  ngt_kaldi_reader_close(c.ra);
  ngt_kaldi_ali_free(c.ali);
  ngt_npy_close(c.nf);
  ngt_npy_close(c.nl);
  free(c.utts);
  free(c.keys);
  free(c.key_set);
  free(c.x);
  free(c.labels);
  free(c.counts);
  for (int i = 0; i < c.n_written; i++) free(c.written[i]);
  free(c.written);
  free(pos);
  return ret;
}
