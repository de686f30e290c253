/* test_tools.c — the built mkshards and nnforward programs ($NGT_BUILDDIR), end to end:
 * a Kaldi archive and alignments built in the test -> mkshards -> shards read back with
 * ngt_shard_open (frames, classes, features, labels, balance, held-out, skips, priors);
 * NumPy input; every bad-input path (message checked, no files left behind); nnforward
 * output (ark and HDF5, with and without priors) checked against ngt_nnet_forward of the
 * same model on the same spliced frames. */
#include <check.h>
#include <glob.h>
#include <hdf5.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ngtrain/batcher.h"
#include "ngtrain/fileio.h"
#include "ngtrain/kaldi_io.h"
#include "ngtrain/nnet.h"
#include "ngtrain/nnet_io.h"
#include "ngtrain/rng.h"
#include "ngtrain/shard.h"

static char g_dir[256];
static char g_bin[1024];
static char g_out[1 << 16], g_errout[1 << 16];

static void setup(void) {
  snprintf(g_dir, sizeof g_dir, "/tmp/ngt_tools_XXXXXX");
  ck_assert_ptr_nonnull(mkdtemp(g_dir));
  const char *b = getenv("NGT_BUILDDIR");
  snprintf(g_bin, sizeof g_bin, "%s", b ? b : "build");
}
static void teardown(void) {
  char cmd[400];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
}
static const char *tp(const char *name) {
  static char buf[8][512];
  static int k = 0;
  k = (k + 1) % 8;
  snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, name);
  return buf[k];
}

static void slurp(const char *path, char *buf, size_t len) {
  buf[0] = '\0';
  FILE *f = fopen(path, "rb");
  if (!f) return;
  size_t n = fread(buf, 1, len - 1, f);
  buf[n] = '\0';
  fclose(f);
}

/* Run "<bindir>/<tool> <args>", capturing stdout/stderr in g_out/g_errout; exit status. */
static int run_tool(const char *tool, const char *args) {
  char cmd[8192];
  snprintf(cmd, sizeof cmd, "'%s/%s' %s >'%s/stdout.txt' 2>'%s/stderr.txt'", g_bin, tool, args,
           g_dir, g_dir);
  int st = system(cmd);
  slurp(tp("stdout.txt"), g_out, sizeof g_out);
  slurp(tp("stderr.txt"), g_errout, sizeof g_errout);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 255;
}

/* Number of files in g_dir matching pattern. */
static int count_files(const char *pattern) {
  char pat[600];
  snprintf(pat, sizeof pat, "%s/%s", g_dir, pattern);
  glob_t g;
  int n = glob(pat, 0, NULL, &g) == 0 ? (int)g.gl_pathc : 0;
  globfree(&g);
  return n;
}

/* ---- the test corpus: utterance u has T_u frames, x[t][d] = u + 0.1 t + 0.01 d ---- */
#define NU 9
#define D 3
#define NCLASS 6
static const int g_T[NU] = {7, 3, 12, 5, 9, 4, 10, 6, 8};
static float feat_val(int u, int t, int d) {
  return (float)u + 0.1f * (float)t + 0.01f * (float)d;
}
static int32_t label_val(int u, int t) { return (u + t) % (NCLASS - 1); } /* class 5 unseen */
static int utt_index(const char *key) { return atoi(key + 3); }

typedef struct bytes {
  unsigned char *d;
  size_t n, cap;
} bytes;
static void put(bytes *b, const void *p, size_t n) {
  if (b->n + n > b->cap) {
    b->cap = (b->n + n) * 2;
    b->d = realloc(b->d, b->cap);
    ck_assert_ptr_nonnull(b->d);
  }
  memcpy(b->d + b->n, p, n);
  b->n += n;
}
static void put_i32(bytes *b, int32_t v) {
  unsigned char c[4];
  for (int i = 0; i < 4; i++) c[i] = (unsigned char)((uint32_t)v >> (8 * i));
  put(b, c, 4);
}
static void put_sized(bytes *b, int32_t v) {
  unsigned char s = 4;
  put(b, &s, 1);
  put_i32(b, v);
}

/* Writes feats.ark (FM, DM and text entries), feats.scp (with offsets) and ali.txt
 * (utt002 has no alignment, utt005 one frame too many). */
static void make_corpus(void) {
  bytes b = {0};
  FILE *scp = fopen(tp("feats.scp"), "w");
  ck_assert_ptr_nonnull(scp);
  for (int u = 0; u < NU; u++) {
    char key[32];
    snprintf(key, sizeof key, "utt%03d ", u);
    put(&b, key, strlen(key));
    fprintf(scp, "utt%03d %s:%zu\n", u, tp("feats.ark"), b.n);
    if (u == 4) { /* a text matrix */
      char line[128];
      put(&b, " [\n", 3);
      for (int t = 0; t < g_T[u]; t++) {
        snprintf(line, sizeof line, "  %.9g %.9g %.9g%s\n", feat_val(u, t, 0), feat_val(u, t, 1),
                 feat_val(u, t, 2), t + 1 == g_T[u] ? " ]" : "");
        put(&b, line, strlen(line));
      }
      continue;
    }
    int dbl = u % 3 == 1;
    put(&b, dbl ? "\0BDM " : "\0BFM ", 5);
    put_sized(&b, g_T[u]);
    put_sized(&b, D);
    for (int t = 0; t < g_T[u]; t++)
      for (int d = 0; d < D; d++) {
        if (dbl) {
          double v = feat_val(u, t, d);
          put(&b, &v, 8);
        } else {
          float v = feat_val(u, t, d);
          put(&b, &v, 4);
        }
      }
  }
  fclose(scp);
  FILE *f = fopen(tp("feats.ark"), "wb");
  ck_assert_ptr_nonnull(f);
  ck_assert_uint_eq(fwrite(b.d, 1, b.n, f), b.n);
  fclose(f);
  free(b.d);
  FILE *a = fopen(tp("ali.txt"), "w");
  for (int u = NU - 1; u >= 0; u--) { /* any order */
    if (u == 2) continue;
    fprintf(a, "utt%03d", u);
    int n = g_T[u] + (u == 5);
    for (int t = 0; t < n; t++) fprintf(a, " %d", label_val(u, t));
    fprintf(a, "\n");
  }
  fclose(a);
}

/* Opens PREFIX shards and checks every utterance against the corpus; returns frames and
 * fills seen[u] += 1. cmn: features are mean-normalized per utterance. */
static int64_t check_shard(const char *path, int *seen, int cmn, int64_t *utts) {
  ngt_err err = {0};
  ngt_shard *sh;
  ck_assert_msg(ngt_shard_open(path, &sh, &err) == 0, "%s", err.msg);
  ck_assert_int_eq(sh->feat_dim, D);
  ck_assert_int_eq(sh->num_classes, NCLASS);
  char **ids = NULL;
  ck_assert_int_eq(ngt_shard_read_ids(sh, &ids, &err), 0);
  ck_assert_ptr_nonnull(ids);
  float *x = malloc(sizeof(float) * (size_t)sh->num_frames * D);
  int32_t *y = malloc(sizeof(int32_t) * (size_t)sh->num_frames);
  ck_assert_int_eq(ngt_shard_read(sh, 0, sh->num_frames, x, y, &err), 0);
  for (int64_t k = 0; k < sh->num_utts; k++) {
    int u = utt_index(ids[k]);
    ck_assert_int_ge(u, 0);
    ck_assert_int_lt(u, NU);
    seen[u]++;
    int64_t s = sh->utt_offsets[k], T = sh->utt_offsets[k + 1] - s;
    ck_assert_int_eq(T, g_T[u]);
    for (int d = 0; d < D; d++) {
      double mean = 0;
      if (cmn) {
        for (int t = 0; t < T; t++) mean += feat_val(u, t, d);
        mean /= (double)T;
      }
      for (int t = 0; t < T; t++)
        ck_assert_double_eq_tol(x[(s + t) * D + d], feat_val(u, t, d) - mean, 2e-5);
    }
    for (int t = 0; t < T; t++) ck_assert_int_eq(y[s + t], label_val(u, t));
  }
  int64_t n = sh->num_frames;
  *utts += sh->num_utts;
  free(x);
  free(y);
  ngt_shard_free_ids(ids, sh->num_utts);
  ngt_shard_close(sh);
  return n;
}

static void read_vector(const char *path, double *v, int n) {
  char buf[4096];
  slurp(path, buf, sizeof buf);
  char *p = strchr(buf, '[');
  ck_assert_ptr_nonnull(p);
  p++;
  for (int i = 0; i < n; i++) {
    char *end;
    v[i] = strtod(p, &end);
    ck_assert_ptr_ne(end, p);
    p = end;
  }
  while (*p == ' ') p++;
  ck_assert_int_eq(*p, ']');
}

START_TEST(test_mkshards_kaldi) {
  make_corpus();
  char args[4096];
  snprintf(args, sizeof args,
           "--feats=ark:%s --ali=%s --num-classes=%d --num-shards=2 "
           "--heldout-utts=1 --seed=7 --out=%s --write-priors=%s --write-counts=%s",
           tp("feats.ark"), tp("ali.txt"), NCLASS, tp("sh/train"), tp("priors.txt"),
           tp("counts.txt"));
  ck_assert_msg(run_tool("mkshards", args) == 0, "%s", g_errout);
  ck_assert_ptr_nonnull(strstr(g_out, "2 skipped"));
  ck_assert_ptr_nonnull(strstr(g_out, "1 without alignment"));
  ck_assert_ptr_nonnull(strstr(g_out, "1 length mismatch"));
  ck_assert_ptr_nonnull(strstr(g_errout, "'utt002'"));
  ck_assert_ptr_nonnull(strstr(g_errout, "'utt005'"));
  int seen[NU] = {0};
  int64_t utts = 0, f1 = check_shard(tp("sh/train-001.h5"), seen, 0, &utts),
          f2 = check_shard(tp("sh/train-002.h5"), seen, 0, &utts),
          fh = check_shard(tp("sh/train-heldout.h5"), seen, 0, &utts);
  int64_t expect = 0;
  for (int u = 0; u < NU; u++) {
    ck_assert_int_eq(seen[u], u == 2 || u == 5 ? 0 : 1);
    if (seen[u]) expect += g_T[u];
  }
  ck_assert_int_eq(f1 + f2 + fh, expect);
  ck_assert_int_eq(utts, NU - 2);
  ck_assert_int_le(llabs(f1 - f2), 12); /* balanced within the longest utterance */
  ck_assert_int_eq(count_files("sh/*tmp*"), 0);
  /* counts and priors */
  double counts[NCLASS], priors[NCLASS], csum = 0, psum = 0;
  read_vector(tp("counts.txt"), counts, NCLASS);
  read_vector(tp("priors.txt"), priors, NCLASS);
  for (int k = 0; k < NCLASS; k++) {
    csum += counts[k];
    psum += priors[k];
  }
  ck_assert_double_eq(csum, (double)expect);
  ck_assert_double_eq(counts[NCLASS - 1], 0.0);
  ck_assert_double_eq_tol(psum, 1.0, 1e-6);
  ck_assert_double_gt(priors[NCLASS - 1], 4e-6); /* floored at 5e-6, then renormalized */
  ck_assert_double_lt(priors[NCLASS - 1], 5.1e-6);
  ck_assert_double_eq_tol(priors[0], counts[0] / csum, 1e-4);

  /* scp input, --cmn, one shard, same seed => same held-out utterance */
  snprintf(args, sizeof args,
           "--feats=%s --ali=%s --num-classes=%d --heldout-utts=1 --seed=7 "
           "--cmn --compress --out=%s",
           tp("feats.scp"), tp("ali.txt"), NCLASS, tp("sh2/x"));
  ck_assert_msg(run_tool("mkshards", args) == 0, "%s", g_errout);
  int seen2[NU] = {0}, seen_h1[NU] = {0}, seen_h2[NU] = {0};
  utts = 0;
  ck_assert_int_eq(check_shard(tp("sh2/x-001.h5"), seen2, 1, &utts) +
                       check_shard(tp("sh2/x-heldout.h5"), seen_h2, 1, &utts),
                   expect);
  utts = 0;
  check_shard(tp("sh/train-heldout.h5"), seen_h1, 0, &utts);
  for (int u = 0; u < NU; u++) ck_assert_int_eq(seen_h1[u], seen_h2[u]);

  /* --num-classes omitted: largest + 1 with a warning */
  snprintf(args, sizeof args, "--feats=%s --ali=%s --out=%s", tp("feats.scp"), tp("ali.txt"),
           tp("sh3/y"));
  ck_assert_msg(run_tool("mkshards", args) == 0, "%s", g_errout);
  ck_assert_ptr_nonnull(strstr(g_errout, "--num-classes not given"));
  ngt_shard *sh;
  ngt_err err = {0};
  ck_assert_int_eq(ngt_shard_open(tp("sh3/y-001.h5"), &sh, &err), 0);
  ck_assert_int_eq(sh->num_classes, NCLASS - 1);
  ngt_shard_close(sh);
}
END_TEST

START_TEST(test_mkshards_bad_input) {
  make_corpus();
  char args[4096];
  /* --strict: the first bad utterance is an error, nothing is written */
  snprintf(args, sizeof args, "--feats=%s --ali=%s --num-classes=%d --strict --out=%s",
           tp("feats.scp"), tp("ali.txt"), NCLASS, tp("o/s"));
  ck_assert_int_eq(run_tool("mkshards", args), 1);
  ck_assert_ptr_nonnull(strstr(g_errout, "utt002"));
  ck_assert_ptr_nonnull(strstr(g_errout, "no alignment"));
  ck_assert_ptr_nonnull(strstr(g_errout, "--strict"));
  ck_assert_int_eq(count_files("o/*"), 0);
  /* a label beyond --num-classes */
  snprintf(args, sizeof args, "--feats=%s --ali=%s --num-classes=3 --out=%s", tp("feats.scp"),
           tp("ali.txt"), tp("o/s"));
  ck_assert_int_eq(run_tool("mkshards", args), 1);
  ck_assert_ptr_nonnull(strstr(g_errout, "--num-classes=3"));
  ck_assert_int_eq(count_files("o/*"), 0);
  /* a truncated archive: named utterance and file, no shard left behind */
  FILE *f = fopen(tp("feats.ark"), "rb");
  unsigned char buf[1 << 14];
  size_t n = fread(buf, 1, sizeof buf, f);
  fclose(f);
  f = fopen(tp("cut.ark"), "wb");
  fwrite(buf, 1, n - 7, f);
  fclose(f);
  snprintf(args, sizeof args, "--feats=ark:%s --ali=%s --num-classes=%d --num-shards=2 --out=%s",
           tp("cut.ark"), tp("ali.txt"), NCLASS, tp("o/s"));
  ck_assert_int_eq(run_tool("mkshards", args), 1);
  ck_assert_ptr_nonnull(strstr(g_errout, "truncated"));
  ck_assert_ptr_nonnull(strstr(g_errout, "utt008"));
  ck_assert_ptr_nonnull(strstr(g_errout, "cut.ark"));
  ck_assert_int_eq(count_files("o/*"), 0);
  /* an scp pointing past the end of its archive */
  f = fopen(tp("past.scp"), "w");
  fprintf(f, "utt000 %s:999999\n", tp("feats.ark"));
  fclose(f);
  snprintf(args, sizeof args, "--feats=%s --ali=%s --out=%s", tp("past.scp"), tp("ali.txt"),
           tp("o/s"));
  ck_assert_int_eq(run_tool("mkshards", args), 1);
  ck_assert_ptr_nonnull(strstr(g_errout, "past the end"));
  ck_assert_ptr_nonnull(strstr(g_errout, "utt000"));
  /* an unknown matrix token and wrong magic */
  f = fopen(tp("vec.ark"), "wb");
  fwrite("u1 \0BFV \4\1\0\0\0\0\0\200\77", 1, 16, f);
  fclose(f);
  snprintf(args, sizeof args, "--feats=ark:%s --ali=%s --out=%s", tp("vec.ark"), tp("ali.txt"),
           tp("o/s"));
  ck_assert_int_eq(run_tool("mkshards", args), 1);
  ck_assert_ptr_nonnull(strstr(g_errout, "unknown matrix token 'FV'"));
  f = fopen(tp("magic.ark"), "wb");
  fwrite("u1 \0XFM ", 1, 8, f);
  fclose(f);
  snprintf(args, sizeof args, "--feats=ark:%s --ali=%s --out=%s", tp("magic.ark"), tp("ali.txt"),
           tp("o/s"));
  ck_assert_int_eq(run_tool("mkshards", args), 1);
  ck_assert_ptr_nonnull(strstr(g_errout, "wrong magic"));
  /* an empty utterance is skipped and named; with --strict an error */
  f = fopen(tp("empty.ark"), "wb");
  fwrite("utt000 \0BFM \4\0\0\0\0\4\0\0\0\0", 1, 22, f);
  fclose(f);
  FILE *s = fopen(tp("withempty.scp"), "w"); /* the empty utt000, then utt001 of feats.scp */
  char line[1024];
  FILE *fs = fopen(tp("feats.scp"), "r");
  ck_assert_ptr_nonnull(fgets(line, sizeof line, fs));
  ck_assert_ptr_nonnull(fgets(line, sizeof line, fs)); /* utt001 */
  fclose(fs);
  fprintf(s, "utt000 %s:7\n%s", tp("empty.ark"), line);
  fclose(s);
  snprintf(args, sizeof args, "--feats=%s --ali=%s --num-classes=%d --out=%s", tp("withempty.scp"),
           tp("ali.txt"), NCLASS, tp("o/e"));
  ck_assert_msg(run_tool("mkshards", args) == 0, "%s", g_errout);
  ck_assert_ptr_nonnull(strstr(g_errout, "'utt000'"));
  ck_assert_ptr_nonnull(strstr(g_errout, "no frames"));
  ck_assert_ptr_nonnull(strstr(g_out, "1 empty"));
  snprintf(args, sizeof args, "--feats=%s --ali=%s --num-classes=%d --strict --out=%s",
           tp("withempty.scp"), tp("ali.txt"), NCLASS, tp("o/f"));
  ck_assert_int_eq(run_tool("mkshards", args), 1);
  ck_assert_ptr_nonnull(strstr(g_errout, "utt000"));
  ck_assert_int_eq(count_files("o/f*"), 0);
  /* too many shards for the data */
  snprintf(args, sizeof args, "--feats=%s --ali=%s --num-shards=50 --out=%s", tp("feats.scp"),
           tp("ali.txt"), tp("o/g"));
  ck_assert_int_eq(run_tool("mkshards", args), 1);
  ck_assert_ptr_nonnull(strstr(g_errout, "--num-shards=50"));
  ck_assert_int_eq(count_files("o/g*"), 0);
  /* option errors */
  ck_assert_int_eq(run_tool("mkshards", "--feats=x.ark --out=y"), 1);
  ck_assert_ptr_nonnull(strstr(g_errout, "--ali"));
  ck_assert_int_eq(run_tool("mkshards", "--help"), 0);
  ck_assert_ptr_nonnull(strstr(g_out, "e.g."));
  ck_assert_ptr_nonnull(strstr(g_out, "--num-shards"));
}
END_TEST

/* ---- npy ---- */
static void write_npy(const char *path, const char *descr, const char *shape, const void *data,
                      size_t nbytes, int fortran) {
  char dict[256];
  snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }", descr,
           fortran ? "True" : "False", shape);
  size_t len = strlen(dict), total = 10 + len + 1, pad = (64 - total % 64) % 64;
  size_t hlen = len + pad + 1;
  FILE *f = fopen(path, "wb");
  unsigned char pre[10] = {
      0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)hlen, (unsigned char)(hlen >> 8)};
  fwrite(pre, 1, 10, f);
  fwrite(dict, 1, len, f);
  for (size_t i = 0; i < pad; i++) fputc(' ', f);
  fputc('\n', f);
  fwrite(data, 1, nbytes, f);
  fclose(f);
}

START_TEST(test_mkshards_npy) {
  float x[20 * 2];
  int64_t y[20], off[4] = {0, 5, 12, 20};
  for (int t = 0; t < 20; t++) {
    x[2 * t] = (float)t;
    x[2 * t + 1] = -(float)t;
    y[t] = t % 4;
  }
  write_npy(tp("x.npy"), "<f4", "(20, 2)", x, sizeof x, 0);
  write_npy(tp("y.npy"), "<i8", "(20,)", y, sizeof y, 0);
  write_npy(tp("o.npy"), "<i8", "(4,)", off, sizeof off, 0);
  char args[4096];
  snprintf(args, sizeof args,
           "--npy-feats=%s --npy-labels=%s --npy-utt-offsets=%s "
           "--num-classes=4 --out=%s",
           tp("x.npy"), tp("y.npy"), tp("o.npy"), tp("n/a"));
  ck_assert_msg(run_tool("mkshards", args) == 0, "%s", g_errout);
  ngt_err err = {0};
  ngt_shard *sh;
  ck_assert_int_eq(ngt_shard_open(tp("n/a-001.h5"), &sh, &err), 0);
  ck_assert_int_eq(sh->num_frames, 20);
  ck_assert_int_eq(sh->num_utts, 3);
  ck_assert_int_eq(sh->feat_dim, 2);
  char **ids;
  ck_assert_int_eq(ngt_shard_read_ids(sh, &ids, &err), 0);
  float fx[40];
  int32_t fy[20];
  ck_assert_int_eq(ngt_shard_read(sh, 0, 20, fx, fy, &err), 0);
  for (int k = 0; k < 3; k++) {
    int u = ids[k][4] - '0';
    int64_t s = sh->utt_offsets[k];
    ck_assert_int_eq(sh->utt_offsets[k + 1] - s, off[u + 1] - off[u]);
    for (int64_t t = 0; t < off[u + 1] - off[u]; t++) {
      ck_assert_float_eq(fx[2 * (s + t)], (float)(off[u] + t));
      ck_assert_int_eq(fy[s + t], (off[u] + t) % 4);
    }
  }
  ngt_shard_free_ids(ids, sh->num_utts);
  ngt_shard_close(sh);
  /* without offsets: one utterance per row, two shards */
  snprintf(args, sizeof args, "--npy-feats=%s --npy-labels=%s --num-shards=2 --out=%s",
           tp("x.npy"), tp("y.npy"), tp("n/b"));
  ck_assert_msg(run_tool("mkshards", args) == 0, "%s", g_errout);
  ck_assert_int_eq(ngt_shard_open(tp("n/b-002.h5"), &sh, &err), 0);
  ck_assert_int_eq(sh->num_frames, 10);
  ck_assert_int_eq(sh->num_utts, 10);
  ngt_shard_close(sh);
  /* bad: labels beyond int32, Fortran order, unsupported dtype, length mismatch */
  y[3] = (int64_t)1 << 33;
  write_npy(tp("ybig.npy"), "<i8", "(20,)", y, sizeof y, 0);
  snprintf(args, sizeof args, "--npy-feats=%s --npy-labels=%s --out=%s", tp("x.npy"),
           tp("ybig.npy"), tp("n/c"));
  ck_assert_int_eq(run_tool("mkshards", args), 1);
  ck_assert_ptr_nonnull(strstr(g_errout, "does not fit int32"));
  ck_assert_ptr_nonnull(strstr(g_errout, "ybig.npy"));
  write_npy(tp("xf.npy"), "<f4", "(20, 2)", x, sizeof x, 1);
  snprintf(args, sizeof args, "--npy-feats=%s --npy-labels=%s --out=%s", tp("xf.npy"), tp("y.npy"),
           tp("n/c"));
  ck_assert_int_eq(run_tool("mkshards", args), 1);
  ck_assert_ptr_nonnull(strstr(g_errout, "Fortran"));
  write_npy(tp("xc.npy"), "<c8", "(20, 2)", x, sizeof x, 0);
  snprintf(args, sizeof args, "--npy-feats=%s --npy-labels=%s --out=%s", tp("xc.npy"), tp("y.npy"),
           tp("n/c"));
  ck_assert_int_eq(run_tool("mkshards", args), 1);
  ck_assert_ptr_nonnull(strstr(g_errout, "unsupported dtype '<c8'"));
  write_npy(tp("y19.npy"), "<i8", "(19,)", y, 19 * 8, 0);
  snprintf(args, sizeof args, "--npy-feats=%s --npy-labels=%s --out=%s", tp("x.npy"),
           tp("y19.npy"), tp("n/c"));
  ck_assert_int_eq(run_tool("mkshards", args), 1);
  ck_assert_ptr_nonnull(strstr(g_errout, "do not match"));
  int64_t boff[3] = {0, 7, 7};
  write_npy(tp("oe.npy"), "<i8", "(3,)", boff, sizeof boff, 0);
  snprintf(args, sizeof args,
           "--npy-feats=%s --npy-labels=%s --npy-utt-offsets=%s --strict "
           "--out=%s",
           tp("x.npy"), tp("y.npy"), tp("oe.npy"), tp("n/c"));
  ck_assert_int_eq(run_tool("mkshards", args), 1);
  ck_assert_ptr_nonnull(strstr(g_errout, "no frames"));
  ck_assert_int_eq(count_files("n/c*"), 0);
}
END_TEST

/* ---- nnforward ---- */

/* A small model with random (non-zero) parameters and priors, saved to path. */
static ngt_nnet *make_model(const char *path, int with_priors) {
  ngt_err err = {0};
  ngt_nnet *net;
  const char *cfg = "input dim=3 context=-2..1\nlayer type=relu dim=8\noutput dim=6\n";
  ck_assert_msg(ngt_nnet_from_config(cfg, "test.cfg", &net, &err) == 0, "%s", err.msg);
  ngt_nnet_init_params(net, 5);
  ngt_rng r = ngt_rng_make(11, NGT_RNG_STREAM_TEST);
  for (size_t i = 0; i < net->num_params; i++) net->params[i] = 0.5f * (float)ngt_rng_normal(&r);
  if (with_priors) {
    float p[NCLASS] = {0.3f, 0.2f, 0.1f, 0.15f, 0.05f, 0.2f};
    ngt_nnet_set_priors(net, p);
  }
  ck_assert_msg(ngt_nnet_save(net, path, NULL, 0, &err) == 0, "%s", err.msg);
  return net;
}

/* Expected output for utterance feats (T, D) by the library: splice + forward, row by row
 * in one minibatch of T rows. */
static void expected_logprobs(const ngt_nnet *net, const float *feats, int T, float *out) {
  ngt_nnet_ws *ws = ngt_nnet_ws_new(net, T);
  ngt_mat X = ngt_mat_alloc(T, net->input_dim);
  for (int t = 0; t < T; t++)
    ngt_splice_frame(feats, net->feat_dim, 0, T, t, net->ctx_left, net->ctx_right,
                     &NGT_AT(X, t, 0));
  ngt_nnet_forward(net, ws, X);
  ngt_mat y = ws->out[net->num_comps - 1];
  for (int t = 0; t < T; t++)
    memcpy(out + (size_t)t * net->num_classes, &NGT_AT(y, t, 0), sizeof(float) * net->num_classes);
  ngt_mat_free(&X);
  ngt_nnet_ws_free(ws);
}

static void corpus_feats(int u, float *x) {
  for (int t = 0; t < g_T[u]; t++)
    for (int d = 0; d < D; d++) x[t * D + d] = feat_val(u, t, d);
}

START_TEST(test_nnforward_ark) {
  make_corpus();
  ngt_nnet *net = make_model(tp("model.h5"), 1);
  char args[4096];
  for (int ap = 0; ap <= 1; ap++) {
    /* minibatch 4 < utterance lengths: exercises the minibatch boundaries */
    snprintf(args, sizeof args, "%s--minibatch-size=4 %s scp:%s ark:%s",
             ap ? "--apply-priors " : "", tp("model.h5"), tp("feats.scp"), tp("out.ark"));
    ck_assert_msg(run_tool("nnforward", args) == 0, "%s", g_errout);
    ngt_err err = {0};
    ngt_kaldi_reader *r;
    ck_assert_int_eq(ngt_kaldi_reader_open(tp("out.ark"), &r, &err), 0);
    ngt_kaldi_entry e;
    int n = 0;
    float x[64 * D], want[64 * NCLASS];
    while (ngt_kaldi_reader_next(r, 1, &e, &err) == 1) {
      int u = utt_index(e.key);
      ck_assert_int_eq(u, n);
      ck_assert_int_eq(e.format, NGT_KALDI_FM);
      ck_assert_int_eq(e.mat.rows, g_T[u]);
      ck_assert_int_eq(e.mat.cols, NCLASS);
      corpus_feats(u, x);
      expected_logprobs(net, x, g_T[u], want);
      for (int t = 0; t < g_T[u]; t++) {
        double psum = 0;
        for (int c = 0; c < NCLASS; c++) {
          double w = want[t * NCLASS + c] - (ap ? log(net->priors[c]) : 0.0);
          ck_assert_double_eq_tol(NGT_AT(e.mat, t, c), w, 1e-4);
          psum += exp(want[t * NCLASS + c]);
        }
        ck_assert_double_eq_tol(psum, 1.0, 1e-4);
      }
      n++;
    }
    ck_assert_int_eq(n, NU);
    ngt_kaldi_reader_close(r);
  }
  /* errors: model without priors, wrong feature dim, missing input; no output left */
  ngt_nnet *np = make_model(tp("nopriors.h5"), 0);
  snprintf(args, sizeof args, "--apply-priors %s scp:%s ark:%s", tp("nopriors.h5"),
           tp("feats.scp"), tp("bad.ark"));
  ck_assert_int_eq(run_tool("nnforward", args), 1);
  ck_assert_ptr_nonnull(strstr(g_errout, "no class priors"));
  ck_assert_int_eq(count_files("bad.ark*"), 0);
  FILE *f = fopen(tp("d2.ark"), "wb");
  float v[2] = {1, 2};
  fwrite("u9 \0BFM \4\1\0\0\0\4\2\0\0\0", 1, 18, f);
  fwrite(v, 4, 2, f);
  fclose(f);
  snprintf(args, sizeof args, "%s ark:%s ark:%s", tp("model.h5"), tp("d2.ark"), tp("bad.ark"));
  ck_assert_int_eq(run_tool("nnforward", args), 1);
  ck_assert_ptr_nonnull(strstr(g_errout, "'u9'"));
  ck_assert_ptr_nonnull(strstr(g_errout, "model expects 3"));
  ck_assert_int_eq(count_files("bad.ark*"), 0);
  snprintf(args, sizeof args, "%s %s ark:%s", tp("model.h5"), tp("none-*.h5"), tp("bad.ark"));
  ck_assert_int_eq(run_tool("nnforward", args), 1);
  ck_assert_ptr_nonnull(strstr(g_errout, "none-*.h5"));
  ck_assert_int_eq(run_tool("nnforward", "--help"), 0);
  ck_assert_ptr_nonnull(strstr(g_out, "e.g."));
  ck_assert_int_eq(run_tool("nnforward", "only-one-arg"), 1);
  ngt_nnet_free(np);
  ngt_nnet_free(net);
}
END_TEST

START_TEST(test_nnforward_shards_h5) {
  make_corpus();
  ngt_nnet *net = make_model(tp("model.h5"), 1);
  char args[4096];
  snprintf(args, sizeof args, "--feats=%s --ali=%s --num-classes=%d --num-shards=2 --out=%s",
           tp("feats.scp"), tp("ali.txt"), NCLASS, tp("s/tr"));
  ck_assert_msg(run_tool("mkshards", args) == 0, "%s", g_errout);
  snprintf(args, sizeof args, "--apply-priors %s '%s' %s", tp("model.h5"), tp("s/tr-*.h5"),
           tp("lp.h5"));
  ck_assert_msg(run_tool("nnforward", args) == 0, "%s", g_errout);
  hid_t f = H5Fopen(tp("lp.h5"), H5F_ACC_RDONLY, H5P_DEFAULT);
  ck_assert_int_ge(f, 0);
  hid_t d = H5Dopen2(f, "logprobs", H5P_DEFAULT), s = H5Dget_space(d);
  hsize_t dims[2];
  ck_assert_int_eq(H5Sget_simple_extent_ndims(s), 2);
  H5Sget_simple_extent_dims(s, dims, NULL);
  int64_t expect = 0;
  for (int u = 0; u < NU; u++)
    if (u != 2 && u != 5) expect += g_T[u];
  ck_assert_int_eq((int64_t)dims[0], expect);
  ck_assert_int_eq((int)dims[1], NCLASS);
  float *lp = malloc(sizeof(float) * dims[0] * dims[1]);
  ck_assert_int_ge(H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, lp), 0);
  H5Sclose(s);
  H5Dclose(d);
  int64_t off[NU + 1];
  d = H5Dopen2(f, "utt_offsets", H5P_DEFAULT);
  s = H5Dget_space(d);
  H5Sget_simple_extent_dims(s, dims, NULL);
  ck_assert_int_eq((int)dims[0], NU - 2 + 1);
  ck_assert_int_ge(H5Dread(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, off), 0);
  H5Sclose(s);
  H5Dclose(d);
  char *ids[NU];
  d = H5Dopen2(f, "utt_ids", H5P_DEFAULT);
  hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, H5T_VARIABLE);
  H5Tset_cset(t, H5T_CSET_UTF8);
  ck_assert_int_ge(H5Dread(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, ids), 0);
  float x[64 * D], want[64 * NCLASS];
  int seen[NU] = {0};
  for (int k = 0; k < NU - 2; k++) {
    int u = utt_index(ids[k]);
    seen[u]++;
    ck_assert_int_eq(off[k + 1] - off[k], g_T[u]);
    corpus_feats(u, x);
    expected_logprobs(net, x, g_T[u], want);
    for (int tt = 0; tt < g_T[u]; tt++)
      for (int c = 0; c < NCLASS; c++)
        ck_assert_double_eq_tol(lp[(off[k] + tt) * NCLASS + c],
                                want[tt * NCLASS + c] - log(net->priors[c]), 1e-4);
  }
  for (int u = 0; u < NU; u++) ck_assert_int_eq(seen[u], u == 2 || u == 5 ? 0 : 1);
  hid_t sp = H5Dget_space(d);
  H5Dvlen_reclaim(t, sp, H5P_DEFAULT, ids);
  H5Sclose(sp);
  H5Tclose(t);
  H5Dclose(d);
  H5Fclose(f);
  free(lp);
  ngt_nnet_free(net);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("tools");
  TCase *tc = tcase_create("core");
  tcase_set_timeout(tc, 300);
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, test_mkshards_kaldi);
  tcase_add_test(tc, test_mkshards_bad_input);
  tcase_add_test(tc, test_mkshards_npy);
  tcase_add_test(tc, test_nnforward_ark);
  tcase_add_test(tc, test_nnforward_shards_h5);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed != 0;
}
