/* gen_seeds.c — writes the binary part of the fuzz seed corpus (tests/fuzz/corpus/) from
 * the example data in data/, through the library's own writers. Run by make_corpus.sh:
 *   gen_seeds SRCDIR OUTDIR        (OUTDIR gets nnet_load/ shard/ kaldi_io/ npy/)
 * Everything is small (a few utterances of data/dev.h5, tiny networks) so libFuzzer's
 * mutations stay cheap; the output is deterministic (HDF5 objects carry no timestamps).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ngtrain/kaldi_io.h"
#include "ngtrain/log.h"
#include "ngtrain/mat.h"
#include "ngtrain/nnet.h"
#include "ngtrain/nnet_io.h"
#include "ngtrain/shard.h"

static const char *out_dir;
static ngt_err err;

static void check(int rc, const char *what) {
  if (rc) {
    fprintf(stderr, "gen_seeds: %s: %s\n", what, err.msg);
    exit(1);
  }
}

static void path_of(const char *sub, const char *name, char *buf, size_t n) {
  snprintf(buf, n, "%s/%s/%s", out_dir, sub, name);
}

static void write_bytes(const char *sub, const char *name, const void *data, size_t n) {
  char p[4096];
  path_of(sub, name, p, sizeof p);
  FILE *f = fopen(p, "wb");
  if (!f || (n && fwrite(data, 1, n, f) != n) || fclose(f)) {
    perror(p);
    exit(1);
  }
}

/* mode byte + file contents (the kaldi_io harness's input layout) */
static void write_kaldi_seed(const char *name, int mode, const char *file) {
  FILE *f = fopen(file, "rb");
  if (!f) {
    perror(file);
    exit(1);
  }
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *buf = malloc((size_t)n + 1);
  buf[0] = (unsigned char)mode;
  if (n && fread(buf + 1, 1, (size_t)n, f) != (size_t)n) {
    perror(file);
    exit(1);
  }
  fclose(f);
  write_bytes("kaldi_io", name, buf, (size_t)n + 1);
  free(buf);
}

static void copy_file_seed(const char *sub, const char *name, const char *from) {
  FILE *f = fopen(from, "rb");
  if (!f) {
    perror(from);
    exit(1);
  }
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *buf = malloc((size_t)n + 1);
  if (n && fread(buf, 1, (size_t)n, f) != (size_t)n) {
    perror(from);
    exit(1);
  }
  fclose(f);
  write_bytes(sub, name, buf, (size_t)n);
  free(buf);
}

/* ------------------------------------------------------------------ example data */

typedef struct utts {
  int U, D, C;
  int64_t T;
  float *feats;     /* T x D */
  int32_t *labels;  /* T */
  int64_t *offsets; /* U+1 */
  char **ids;       /* U */
} utts;

/* The first U utterances of a shard, at most max_frames frames each (cut). */
static utts take_utts(const char *path, int U, int max_frames) {
  ngt_shard *sh;
  check(ngt_shard_open(path, &sh, &err), path);
  char **ids = NULL;
  check(ngt_shard_read_ids(sh, &ids, &err), "ids");
  utts u = {U, sh->feat_dim, sh->num_classes, 0, NULL, NULL, NULL, NULL};
  u.offsets = calloc((size_t)U + 1, sizeof(int64_t));
  u.ids = calloc((size_t)U, sizeof(char *));
  for (int k = 0; k < U; k++) {
    int64_t len = sh->utt_offsets[k + 1] - sh->utt_offsets[k];
    if (len > max_frames) len = max_frames;
    u.offsets[k + 1] = u.offsets[k] + len;
    u.ids[k] = strdup(ids ? ids[k] : "utt");
  }
  u.T = u.offsets[U];
  u.feats = malloc(sizeof(float) * (size_t)(u.T * u.D));
  u.labels = malloc(sizeof(int32_t) * (size_t)u.T);
  for (int k = 0; k < U; k++) {
    int64_t len = u.offsets[k + 1] - u.offsets[k];
    check(ngt_shard_read(sh, sh->utt_offsets[k], len, u.feats + u.offsets[k] * u.D,
                         u.labels + u.offsets[k], &err),
          "read");
  }
  if (ids) ngt_shard_free_ids(ids, sh->num_utts);
  ngt_shard_close(sh);
  return u;
}

/* ------------------------------------------------------------------ shards */

static void gen_shards(const utts *u) {
  char p[4096];
  ngt_shard_write_opts o = {0, 16};
  path_of("shard", "dev3-plain.h5", p, sizeof p);
  check(ngt_shard_write(p, u->feats, u->T, u->D, u->labels, u->offsets, u->U,
                        (const char *const *)u->ids, u->C, &o, &err),
        p);
  o.compress = 6;
  path_of("shard", "dev3-gzip.h5", p, sizeof p);
  check(ngt_shard_write(p, u->feats, u->T, u->D, u->labels, u->offsets, u->U,
                        (const char *const *)u->ids, u->C, &o, &err),
        p);
  o.compress = 0;
  o.chunk_frames = 32;
  path_of("shard", "dev1-noids.h5", p, sizeof p);
  int64_t off1[2] = {0, u->offsets[1]};
  check(ngt_shard_write(p, u->feats, off1[1], u->D, u->labels, off1, 1, NULL, u->C, &o, &err), p);
  /* a 1-frame, 1-dim, 1-class shard */
  float f1 = 0.5f;
  int32_t l1 = 0;
  int64_t o1[2] = {0, 1};
  const char *id1 = "x";
  path_of("shard", "tiny.h5", p, sizeof p);
  check(ngt_shard_write(p, &f1, 1, 1, &l1, o1, 1, &id1, 1, &o, &err), p);
}

/* ------------------------------------------------------------------ models */

static ngt_nnet *make_net(const char *cfg, uint64_t seed) {
  ngt_nnet *net;
  check(ngt_nnet_from_config(cfg, "seed.cfg", &net, &err), cfg);
  ngt_nnet_init_params(net, seed);
  return net;
}

static void gen_models(const char *srcdir) {
  char p[4096];
  /* plain tiny model */
  ngt_nnet *a = make_net("input dim=3 context=-1..1\nlayer type=relu dim=4\noutput dim=3\n", 1);
  path_of("nnet_load", "tiny-relu.h5", p, sizeof p);
  check(ngt_nnet_save(a, p, NULL, 0, &err), p);
  /* with an LDA transform, priors and a checkpoint's train_state */
  size_t D = (size_t)a->input_dim;
  float *T = calloc(D * (D + 1), sizeof(float));
  for (size_t i = 0; i < D; i++) T[i * (D + 1) + i] = 1.0f, T[i * (D + 1) + D] = -0.1f * (float)i;
  ngt_nnet_set_transform(a, NGT_TRANSFORM_LDA, T);
  float pr[3] = {0.5f, 0.25f, 0.25f};
  ngt_nnet_set_priors(a, pr);
  int64_t iter = 7, nit = 20, pos[2] = {1234, 5678};
  double sig[4] = {1, 3, 8000, 2}, pend[3] = {6, 2, -1.5};
  double ng[6] = {1, 2, 3, 4, 5, 6};
  float bd[4] = {0.1f, -0.2f, 0.3f, 0};
  ngt_blob b[] = {{"iter", NGT_BLOB_I64, 1, &iter},    {"num_iters", NGT_BLOB_I64, 1, &nit},
                  {"positions", NGT_BLOB_I64, 2, pos}, {"signature", NGT_BLOB_F64, 4, sig},
                  {"pending", NGT_BLOB_F64, 3, pend},  {"ngstate", NGT_BLOB_F64, 6, ng},
                  {"bmuf_delta", NGT_BLOB_F32, 4, bd}};
  path_of("nnet_load", "tiny-ckpt.h5", p, sizeof p);
  check(ngt_nnet_save(a, p, b, (int)(sizeof b / sizeof *b), &err), p);
  free(T);
  ngt_nnet_free(a);
  /* every component type, a CMVN transform, per-layer keys */
  ngt_nnet *c = make_net("input dim=2 context=0..0\n"
                         "layer type=pnorm dim=6 group=3 max-change=0.5\n"
                         "layer type=relu-renorm dim=3 learning-rate-factor=0.5\n"
                         "layer type=affine dim=2 use-natural-gradient=false\n"
                         "output dim=2 rank-in=1 rank-out=1 alpha=2\n",
                         2);
  float Tc[6] = {2, 0, -1, 0, 0.5f, 0.25f};
  ngt_nnet_set_transform(c, NGT_TRANSFORM_CMVN, Tc);
  path_of("nnet_load", "tiny-alltypes.h5", p, sizeof p);
  check(ngt_nnet_save(c, p, NULL, 0, &err), p);
  ngt_nnet_free(c);
  /* the example network (data/nnet-small.cfg), as a trainer would save it */
  char cfgp[4096];
  snprintf(cfgp, sizeof cfgp, "%s/data/nnet-small.cfg", srcdir);
  ngt_nnet *s;
  check(ngt_nnet_from_config_file(cfgp, &s, &err), cfgp);
  ngt_nnet_init_params(s, 3);
  path_of("nnet_load", "nnet-small.h5", p, sizeof p);
  check(ngt_nnet_save(s, p, NULL, 0, &err), p);
  ngt_nnet_free(s);
}

/* ------------------------------------------------------------------ Kaldi */

static void put_i32(FILE *f, int32_t v) {
  fputc(4, f);
  fwrite(&v, 4, 1, f);
}

static void gen_kaldi(const utts *u, const char *tmp) {
  char ark[4096], scp[4096], spec[8300];
  /* the same a.ark / t.ark the harness writes at start-up, with an scp of offsets */
  if (chdir(tmp) != 0) {
    perror(tmp);
    exit(1);
  }
  const int shapes[3][2] = {{4, 3}, {1, 5}, {2, 2}};
  const char *keys[3] = {"utt1", "utt2", "utt3"};
  const char *specs[2] = {"ark,scp:a.ark,a.scp", "ark,t,scp:t.ark,t.scp"};
  for (int s = 0; s < 2; s++) {
    ngt_kaldi_writer *w;
    check(ngt_kaldi_writer_open(specs[s], &w, &err), specs[s]);
    for (int k = 0; k < 3; k++) {
      ngt_mat m = ngt_mat_alloc(shapes[k][0], shapes[k][1]);
      for (int i = 0; i < m.rows * m.cols; i++) m.data[i] = (float)(k * 100 + i) * 0.25f;
      check(ngt_kaldi_writer_write(w, keys[k], m, &err), "write");
      ngt_mat_free(&m);
    }
    check(ngt_kaldi_writer_close(w, &err), "close");
  }
  /* the harness's archives live in /tmp/ngt-fuzz-kaldi (fuzz_kaldi_io.c ARCH_DIR) */
  const char *scps[2] = {"a.scp", "t.scp"};
  for (int s = 0; s < 2; s++) {
    char line[512];
    FILE *f = fopen(scps[s], "rb"), *g = fopen("tmp.scp", "wb");
    while (fgets(line, sizeof line, f)) {
      char *sp = strchr(line, ' ');
      if (!sp) exit(1);
      *sp = '\0';
      fprintf(g, "%s /tmp/ngt-fuzz-kaldi/%s", line, sp + 1);
    }
    fclose(f);
    fclose(g);
    if (rename("tmp.scp", scps[s])) exit(1);
  }
  write_kaldi_seed("scp-a", 2, "a.scp");
  write_kaldi_seed("scp-t", 2, "t.scp");
  /* hand-made scp lines: ranges, no offset, a missing file, a pipe */
  {
    FILE *f = fopen("a.scp", "rb");
    char line[3][256];
    for (int k = 0; k < 3; k++)
      if (!fgets(line[k], sizeof line[k], f)) exit(1);
    fclose(f);
    for (int k = 0; k < 3; k++) line[k][strcspn(line[k], "\n")] = '\0';
    FILE *g = fopen("r.scp", "wb");
    fprintf(g, "%s[1:2]\n%s[0:0,1:3]\n%s[:,0:0]\nnooff /tmp/ngt-fuzz-kaldi/t.ark\n", line[0],
            line[1], line[2]);
    fclose(g);
    write_kaldi_seed("scp-ranges", 2, "r.scp");
    g = fopen("m.scp", "wb");
    fprintf(g, "%s\nmissing /tmp/ngt-fuzz-kaldi/b.ark:12\n", line[2]);
    fclose(g);
    write_kaldi_seed("scp-missing", 2, "m.scp");
  }
  /* archives from the example data: binary float, text */
  snprintf(ark, sizeof ark, "%s/dev-fm.ark", tmp);
  snprintf(spec, sizeof spec, "ark:%s", ark);
  ngt_kaldi_writer *w;
  check(ngt_kaldi_writer_open(spec, &w, &err), spec);
  for (int k = 0; k < 2; k++) {
    ngt_mat m = ngt_mat_view(u->feats + u->offsets[k] * u->D,
                             (int)(u->offsets[k + 1] - u->offsets[k]), u->D, u->D);
    if (m.rows > 6) m.rows = 6;
    check(ngt_kaldi_writer_write(w, u->ids[k], m, &err), "write");
  }
  check(ngt_kaldi_writer_close(w, &err), "close");
  write_kaldi_seed("dev-fm-data", 0, ark);
  write_kaldi_seed("dev-fm-shape", 1, ark);
  snprintf(ark, sizeof ark, "%s/dev-t.ark", tmp);
  snprintf(spec, sizeof spec, "ark,t:%s", ark);
  check(ngt_kaldi_writer_open(spec, &w, &err), spec);
  ngt_mat m3 = ngt_mat_view(u->feats, 3, u->D, u->D);
  check(ngt_kaldi_writer_write(w, u->ids[0], m3, &err), "write");
  check(ngt_kaldi_writer_close(w, &err), "close");
  write_kaldi_seed("dev-text", 0, ark);
  (void)scp;

  /* DM, CM, CM2, CM3 and an empty matrix, by hand (Kaldi's binary layouts) */
  snprintf(ark, sizeof ark, "%s/mixed.ark", tmp);
  FILE *f = fopen(ark, "wb");
  fputs("dm ", f);
  fwrite("\0BDM ", 1, 5, f);
  put_i32(f, 2);
  put_i32(f, 2);
  double dv[4] = {1.5, -2, 3.25, 1e-3};
  fwrite(dv, 8, 4, f);
  float hdr[2] = {-1.0f, 4.0f};
  int32_t rc2[2] = {3, 2};
  fputs("cm2 ", f);
  fwrite("\0BCM2 ", 1, 6, f);
  fwrite(hdr, 4, 2, f);
  fwrite(rc2, 4, 2, f);
  uint16_t v16[6] = {0, 100, 65535, 30000, 2, 40000};
  fwrite(v16, 2, 6, f);
  fputs("cm3 ", f);
  fwrite("\0BCM3 ", 1, 6, f);
  fwrite(hdr, 4, 2, f);
  fwrite(rc2, 4, 2, f);
  unsigned char v8[6] = {0, 1, 2, 250, 255, 128};
  fwrite(v8, 1, 6, f);
  fputs("cm ", f);
  fwrite("\0BCM ", 1, 5, f);
  fwrite(hdr, 4, 2, f);
  fwrite(rc2, 4, 2, f);
  uint16_t ph[2][4] = {{0, 1000, 50000, 65535}, {10, 20, 30, 40}};
  fwrite(ph, 2, 8, f);
  unsigned char cb[6] = {0, 64, 255, 10, 192, 200}; /* column by column */
  fwrite(cb, 1, 6, f);
  fputs("empty ", f);
  fwrite("\0BFM ", 1, 5, f);
  put_i32(f, 0);
  put_i32(f, 0);
  fputs("txt [\n 1 2 3\n 4 5 6 ]\n", f);
  fclose(f);
  write_kaldi_seed("mixed-data", 0, ark);
  write_kaldi_seed("mixed-shape", 1, ark);

  /* alignments: text and binary (ali-to-pdf ark,t: and ark:) */
  snprintf(ark, sizeof ark, "%s/ali.txt", tmp);
  f = fopen(ark, "wb");
  for (int k = 0; k < 2; k++) {
    fprintf(f, "%s", u->ids[k]);
    for (int64_t t = u->offsets[k]; t < u->offsets[k + 1] && t < u->offsets[k] + 12; t++)
      fprintf(f, " %d", u->labels[t]);
    fputc('\n', f);
  }
  fprintf(f, "empty\n");
  fclose(f);
  write_kaldi_seed("ali-text", 3, ark);
  snprintf(ark, sizeof ark, "%s/ali.bin", tmp);
  f = fopen(ark, "wb");
  for (int k = 0; k < 2; k++) {
    fprintf(f, "%s ", u->ids[k]);
    fwrite("\0B", 1, 2, f);
    int32_t n = 5;
    fputc(4, f);
    fwrite(&n, 4, 1, f);
    for (int t = 0; t < n; t++) put_i32(f, u->labels[u->offsets[k] + t]);
  }
  fclose(f);
  write_kaldi_seed("ali-bin", 3, ark);

  /* compressed payloads for ngt_kaldi_decompress: selector byte + header + data */
  unsigned char pl[1 + 16 + 64];
  int32_t r22[2] = {2, 2};
  for (int fmt = 0; fmt < 3; fmt++) {
    size_t n = 0;
    pl[n++] = (unsigned char)fmt;
    memcpy(pl + n, hdr, 8);
    n += 8;
    memcpy(pl + n, r22, 8);
    n += 8;
    size_t body = fmt == 0 ? 2 * 8 + 4 : fmt == 1 ? 8 : 4;
    for (size_t i = 0; i < body; i++) pl[n++] = (unsigned char)(i * 37 + 5);
    char name[32];
    snprintf(name, sizeof name, "decompress-%s", fmt == 0 ? "cm" : fmt == 1 ? "cm2" : "cm3");
    unsigned char seed[1 + sizeof pl];
    seed[0] = 4;
    memcpy(seed + 1, pl, n);
    write_bytes("kaldi_io", name, seed, n + 1);
  }
}

/* ------------------------------------------------------------------ npy */

static void npy_write_o(const char *name, int major, const char *descr, int fortran,
                        const char *shape, const void *data, size_t nbytes) {
  char dict[256];
  int dl = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }",
                    descr, fortran ? "True" : "False", shape);
  size_t pre = major == 1 ? 10 : 12, align = major == 1 ? 16 : 64;
  size_t hl = (size_t)dl + 1;
  while ((pre + hl) % align) hl++;
  size_t total = pre + hl + nbytes;
  unsigned char *b = malloc(total);
  memcpy(b, "\x93NUMPY", 6);
  b[6] = (unsigned char)major;
  b[7] = 0;
  if (major == 1) {
    b[8] = (unsigned char)(hl & 0xff);
    b[9] = (unsigned char)(hl >> 8);
  } else {
    uint32_t h32 = (uint32_t)hl;
    memcpy(b + 8, &h32, 4);
  }
  memset(b + pre, ' ', hl);
  memcpy(b + pre, dict, (size_t)dl);
  b[pre + hl - 1] = '\n';
  if (nbytes) memcpy(b + pre + hl, data, nbytes);
  write_bytes("npy", name, b, total);
  free(b);
}

static void npy_write(const char *name, int major, const char *descr, const char *shape,
                      const void *data, size_t nbytes) {
  npy_write_o(name, major, descr, 0, shape, data, nbytes);
}

static void gen_npy(const utts *u) {
  int T = 5, D = u->D;
  char shape[64];
  snprintf(shape, sizeof shape, "(%d, %d)", T, D);
  npy_write("feats-f4.npy", 1, "<f4", shape, u->feats, sizeof(float) * (size_t)(T * D));
  double *dd = malloc(sizeof(double) * (size_t)(T * D));
  for (int i = 0; i < T * D; i++) dd[i] = u->feats[i];
  npy_write("feats-f8-v2.npy", 2, "<f8", shape, dd, sizeof(double) * (size_t)(T * D));
  free(dd);
  snprintf(shape, sizeof shape, "(%d,)", 12);
  npy_write("labels-i4.npy", 1, "<i4", shape, u->labels, sizeof(int32_t) * 12);
  int64_t l64[12];
  unsigned char l8[12];
  uint16_t l16[12];
  for (int i = 0; i < 12; i++)
    l64[i] = u->labels[i], l8[i] = (unsigned char)u->labels[i], l16[i] = (uint16_t)u->labels[i];
  npy_write("labels-i8.npy", 1, "<i8", shape, l64, sizeof l64);
  npy_write("labels-u1.npy", 1, "|u1", shape, l8, sizeof l8);
  npy_write("labels-u2-v3.npy", 3, "<u2", shape, l16, sizeof l16);
  unsigned char bools[4] = {0, 1, 1, 0};
  npy_write("bool-2x2.npy", 1, "|b1", "(2, 2)", bools, 4);
  float sc = 3.5f;
  npy_write("scalar-f4.npy", 1, "<f4", "()", &sc, 4);
  npy_write("empty-0x13.npy", 1, "<f4", "(0, 13)", NULL, 0);
  int8_t i1[8] = {-128, -1, 0, 1, 2, 3, 127, 5};
  npy_write("i1-2x2x2.npy", 1, "|i1", "(2, 2, 2)", i1, 8);
  uint64_t u8[2] = {1, (uint64_t)1 << 63};
  npy_write("u8-big.npy", 1, "<u8", "(2,)", u8, 16);
  /* refused: big-endian, Fortran order, truncated data */
  npy_write("bigendian.npy", 1, ">f4", "(1,)", &sc, 4);
  npy_write_o("fortran.npy", 1, "<f4", 1, "(2, 2)", u->feats, 16);
  npy_write("truncated.npy", 1, "<f4", "(100, 13)", u->feats, 64);
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: gen_seeds SRCDIR OUTDIR\n");
    return 2;
  }
  const char *src = argv[1];
  out_dir = argv[2];
  const char *subs[] = {"nnet_load", "shard", "kaldi_io", "npy"};
  char p[4096];
  for (int i = 0; i < 4; i++) {
    snprintf(p, sizeof p, "%s/%s", out_dir, subs[i]);
    mkdir(p, 0755);
  }
  snprintf(p, sizeof p, "%s/data/dev.h5", src);
  utts u = take_utts(p, 3, 40);
  gen_shards(&u);
  gen_models(src);
  /* a shard where a model is expected and a model where a shard is expected */
  path_of("shard", "dev3-plain.h5", p, sizeof p);
  copy_file_seed("nnet_load", "is-a-shard.h5", p);
  path_of("nnet_load", "tiny-relu.h5", p, sizeof p);
  copy_file_seed("shard", "is-a-model.h5", p);
  char tmp[] = "/tmp/ngt-gen-seeds.XXXXXX";
  if (!mkdtemp(tmp)) {
    perror("mkdtemp");
    return 1;
  }
  gen_kaldi(&u, tmp);
  gen_npy(&u);
  char cmd[4200];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
  if (system(cmd) != 0) return 1;
  return 0;
}
