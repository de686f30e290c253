/* fuzz_kaldi_io.c — libFuzzer harness for the Kaldi table readers (include/ngtrain/
 * kaldi_io.h): feature archives and scp lists, alignments, compressed-matrix payloads.
 *
 * Input: one mode byte, then the body. Mode (first byte % 5):
 *   0  body is an archive, read sequentially with data          ("ark:P")
 *   1  body is an archive, read shape-only (with_data = 0)
 *   2  body is an scp list, read in order; for the seeds to point at, the harness
 *      writes ARCH_DIR/a.ark (three FM matrices, 4x3, 1x5, 2x2, with ngt_kaldi_writer)
 *      and ARCH_DIR/t.ark (the same as text) at start-up
 *   3  body is an alignment file (text or binary); every key at the start of a line
 *      or before " \0B" is looked up
 *   4  body is a compressed-matrix payload: byte 1 % 3 picks CM/CM2/CM3, the rest is
 *      the payload; rows and cols come from its 16-byte header (as the reader does)
 * Every returned matrix is touched in full (ASan sees an undersized buffer).
 */
#include <sys/stat.h>

#include "fuzz_common.h"
#include "ngtrain/kaldi_io.h"

/* fixed, so the seeds' scp lines can name it (gen_seeds.c writes the same files) */
#define ARCH_DIR "/tmp/ngt-fuzz-kaldi"

static void setup_archives(void) {
  static int done;
  if (done) return;
  done = 1;
  mkdir(ARCH_DIR, 0755);
  const char *specs[2] = {"ark:" ARCH_DIR "/a.ark", "ark,t:" ARCH_DIR "/t.ark"};
  for (int s = 0; s < 2; s++) {
    ngt_kaldi_writer *w = NULL;
    ngt_err err = {0};
    if (ngt_kaldi_writer_open(specs[s], &w, &err)) {
      fprintf(stderr, "fuzz_kaldi_io: %s\n", err.msg);
      abort();
    }
    const int shapes[3][2] = {{4, 3}, {1, 5}, {2, 2}};
    const char *keys[3] = {"utt1", "utt2", "utt3"};
    for (int k = 0; k < 3; k++) {
      ngt_mat m = ngt_mat_alloc(shapes[k][0], shapes[k][1]);
      for (int i = 0; i < m.rows * m.cols; i++) m.data[i] = (float)(k * 100 + i) * 0.25f;
      if (ngt_kaldi_writer_write(w, keys[k], m, &err)) {
        fprintf(stderr, "fuzz_kaldi_io: %s\n", err.msg);
        abort();
      }
      ngt_mat_free(&m);
    }
    if (ngt_kaldi_writer_close(w, &err)) {
      fprintf(stderr, "fuzz_kaldi_io: %s\n", err.msg);
      abort();
    }
  }
}

static void touch(const ngt_kaldi_entry *e, int with_data) {
  if (!e->key || !e->file) abort();
  if (e->mat.rows < 0 || e->mat.cols < 0) abort();
  if (!with_data || (int64_t)e->mat.rows * e->mat.cols == 0) return;
  if (!e->mat.data) abort();
  volatile float s = 0;
  (void)s;
  for (int i = 0; i < e->mat.rows; i++)
    for (int j = 0; j < e->mat.cols; j++)
      s += e->mat.data[(size_t)i * (size_t)e->mat.stride + (size_t)j];
  (void)strlen(e->key);
}

static void read_table(const char *spec, int with_data) {
  ngt_kaldi_reader *r = NULL;
  ngt_err err = {0};
  int rc = ngt_kaldi_reader_open(spec, &r, &err);
  fz_check_err(&err);
  if (rc) {
    if (r || err.code == 0) abort();
    return;
  }
  ngt_kaldi_entry e;
  for (int k = 0; k < 100000; k++) {
    err = (ngt_err){0};
    rc = ngt_kaldi_reader_next(r, with_data, &e, &err);
    fz_check_err(&err);
    if (rc == 1) {
      touch(&e, with_data);
      continue;
    }
    if (rc < 0 && err.code == 0) abort();
    if (rc > 1) abort();
    break;
  }
  ngt_kaldi_reader_close(r);
}

static void read_ali(const char *path, const uint8_t *body, size_t n) {
  ngt_kaldi_ali *a = NULL;
  ngt_err err = {0};
  int rc = ngt_kaldi_ali_open(path, &a, &err);
  fz_check_err(&err);
  if (rc) {
    if (a || err.code == 0) abort();
    return;
  }
  /* candidate keys: the token at the start of each line, and the token before each "\0B" */
  int tried = 0;
  for (size_t i = 0; i < n && tried < 64; i++) {
    size_t start;
    if (i == 0 || body[i - 1] == '\n') {
      start = i;
    } else if (body[i] == '\0' && i + 1 < n && body[i + 1] == 'B' && i >= 2 &&
               body[i - 1] == ' ') {
      size_t j = i - 1;
      while (j > 0 && body[j - 1] != ' ' && body[j - 1] != '\n' && body[j - 1] != '\0' &&
             body[j - 1] != 'B')
        j--;
      start = j;
    } else {
      continue;
    }
    char key[256];
    size_t k = 0;
    while (start + k < n && k + 1 < sizeof key && body[start + k] != ' ' &&
           body[start + k] != '\n' && body[start + k] != '\0' && body[start + k] != '\t')
      key[k] = (char)body[start + k], k++;
    key[k] = '\0';
    const int32_t *labels = NULL;
    int64_t nl = -1;
    err = (ngt_err){0};
    rc = ngt_kaldi_ali_get(a, key, &labels, &nl, &err);
    fz_check_err(&err);
    tried++;
    if (rc == 1) {
      if (nl < 0 || (nl > 0 && !labels)) abort();
      volatile int64_t s = 0;
      (void)s;
      for (int64_t t = 0; t < nl; t++) s += labels[t];
    } else if (rc < 0 && err.code == 0) {
      abort();
    }
  }
  if (ngt_kaldi_ali_num_utts(a) < 0) abort();
  ngt_kaldi_ali_free(a);
}

static void decompress(const uint8_t *body, size_t n) {
  if (n < 17) return;
  static const int fmts[3] = {NGT_KALDI_CM, NGT_KALDI_CM2, NGT_KALDI_CM3};
  int format = fmts[body[0] % 3];
  const unsigned char *p = body + 1;
  int64_t nbytes = (int64_t)n - 1;
  int32_t rows, cols;
  memcpy(&rows, p + 8, 4);
  memcpy(&cols, p + 12, 4);
  if (rows < 0 || cols < 0 || (int64_t)rows * cols > (1 << 22)) return;
  float *out = malloc(sizeof(float) * ((size_t)rows * (size_t)cols + 1));
  if (!out) return;
  ngt_err err = {0};
  int rc = ngt_kaldi_decompress(format, p, nbytes, out, rows, cols, &err);
  fz_check_err(&err);
  if (rc && err.code == 0) abort();
  free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_init();
  setup_archives();
  if (size < 1) return 0;
  int mode = data[0] % 5;
  const uint8_t *body = data + 1;
  size_t n = size - 1;
  char path[512], spec[600];
  switch (mode) {
    case 0:
    case 1:
      fz_write("in.ark", body, n, path, sizeof path);
      snprintf(spec, sizeof spec, "ark:%s", path);
      read_table(spec, mode == 0);
      break;
    case 2:
      fz_write("in.scp", body, n, path, sizeof path);
      snprintf(spec, sizeof spec, "scp:%s", path);
      read_table(spec, 1);
      break;
    case 3:
      fz_write("ali.txt", body, n, path, sizeof path);
      read_ali(path, body, n);
      break;
    default: decompress(body, n);
  }
  return 0;
}
