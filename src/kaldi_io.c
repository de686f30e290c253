/* kaldi_io.c — see include/ngtrain/kaldi_io.h.
 *
 * Kaldi's binary table format, as read here (all integers little-endian):
 *   archive   := (key ' ' object)*              key: non-empty, no whitespace
 *   object    := "\0B" token payload            (binary)   |   '[' numbers ']' (text)
 *   FM / DM   := "FM " | "DM "  4 int32:rows  4 int32:cols  rows*cols float32|float64
 *                (each int32 is preceded by a size byte, 4, as WriteBasicType writes it)
 *   CM* hdr   := "CM " | "CM2" | "CM3" then ' ', then 16 bytes:
 *                float min_value, float range, int32 rows, int32 cols   (no size bytes)
 * Compressed payloads (Kaldi matrix/compressed-matrix.{h,cc}, CompressedMatrix::CopyToMat):
 *   CM  (kOneByteWithColHeaders): cols x PerColHeader {uint16 p0, p25, p75, p100}, then
 *       the bytes COLUMN by column (byte of (row i, col j) at j*rows + i). Per column
 *         P(v) = min_value + range * (1/65535) * v                 for v in {p0,..,p100}
 *       and a byte c decodes by 3-piece linear interpolation
 *         c <= 64 : P0  + (P25  - P0 ) * c        / 64
 *         c <= 192: P25 + (P75  - P25) * (c - 64) / 128
 *         else    : P75 + (P100 - P75) * (c - 192) / 63
 *   CM2 (kTwoByte): rows*cols uint16 row-major, x = min_value + v * (range / 65535)
 *   CM3 (kOneByte): rows*cols uint8  row-major, x = min_value + v * (range / 255)
 * The arithmetic below uses the same float/double mix as Kaldi so values match bit for
 * bit: P() in float with the float constant 1.52590218966964e-05, the interpolation
 * in double, the CM2/CM3 increment computed in double and rounded to float once.
 * A header with cols == 0 is an empty matrix and has no payload.
 */
#include "ngtrain/kaldi_io.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ngtrain/fileio.h"
#include "ngtrain/hash.h"

#define CACHE_FILES 8 /* archives kept open for scp / random access */

/* ------------------------------------------------------------------------------------ */
/* little helpers                                                                        */

static int host_le(void) {
  const uint16_t one = 1;
  unsigned char b;
  memcpy(&b, &one, 1);
  return b == 1;
}
static uint16_t rd_u16(const unsigned char *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t rd_u32(const unsigned char *p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static int32_t rd_i32(const unsigned char *p) {
  uint32_t u = rd_u32(p);
  int32_t v;
  memcpy(&v, &u, 4);
  return v;
}
static float rd_f32(const unsigned char *p) {
  uint32_t u = rd_u32(p);
  float v;
  memcpy(&v, &u, 4);
  return v;
}
static double rd_f64(const unsigned char *p) {
  uint64_t u = (uint64_t)rd_u32(p) | ((uint64_t)rd_u32(p + 4) << 32);
  double v;
  memcpy(&v, &u, 8);
  return v;
}
static void wr_u32(unsigned char *p, uint32_t u) {
  p[0] = (unsigned char)u;
  p[1] = (unsigned char)(u >> 8);
  p[2] = (unsigned char)(u >> 16);
  p[3] = (unsigned char)(u >> 24);
}

/* Grow *buf to hold at least n bytes (amortised; the buffer is reused across entries). */
static int grow(void **buf, size_t *cap, size_t n) {
  if (n <= *cap) return 0;
  size_t c = *cap ? *cap : 4096;
  while (c < n) c *= 2;
  void *nb = realloc(*buf, c);
  if (!nb) return -1;
  *buf = nb;
  *cap = c;
  return 0;
}

/* Error context: which file, utterance and byte offset a message is about. */
typedef struct loc {
  const char *file;
  const char *key; /* may be NULL */
  int64_t off;     /* -1 unknown */
} loc;

__attribute__((format(printf, 4, 5))) static int loc_err(ngt_err *err, int code, const loc *l,
                                                         const char *fmt, ...) {
  char body[768];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(body, sizeof body, fmt, ap);
  va_end(ap);
  char where[256] = "", key[101] = "";
  if (l->key) { /* a corrupt file can put any bytes in a "key": print them safely */
    size_t k = 0;
    for (; l->key[k] && k + 1 < sizeof key; k++)
      key[k] = isprint((unsigned char)l->key[k]) ? l->key[k] : '?';
    key[k] = '\0';
  }
  if (l->key && l->off >= 0)
    snprintf(where, sizeof where, ": utterance '%s' at byte %lld", key, (long long)l->off);
  else if (l->key)
    snprintf(where, sizeof where, ": utterance '%s'", key);
  else if (l->off >= 0)
    snprintf(where, sizeof where, ": at byte %lld", (long long)l->off);
  return ngt_err_set(err, code, "archive '%s'%s: %s", l->file, where, body);
}

/* ------------------------------------------------------------------------------------ */
/* compressed matrices                                                                   */

/* Kaldi Uint16ToFloat: float arithmetic, constant 1/65535 as a float. */
static float cm_u16_to_float(float min_value, float range, uint16_t v) {
  return min_value + range * 1.52590218966964e-05F * (float)v;
}
/* Kaldi CharToFloat: 3-piece linear, evaluated in double then rounded to float. */
static float cm_char_to_float(float p0, float p25, float p75, float p100, int c) {
  if (c <= 64) return (float)(p0 + (p25 - p0) * (float)c * (1 / 64.0));
  if (c <= 192) return (float)(p25 + (p75 - p25) * (float)(c - 64) * (1 / 128.0));
  return (float)(p75 + (p100 - p75) * (float)(c - 192) * (1 / 63.0));
}

static int64_t cm_payload_bytes(int format, int64_t rows, int64_t cols) {
  if (cols == 0) return 16;
  switch (format) {
    case NGT_KALDI_CM: return 16 + cols * (8 + rows);
    case NGT_KALDI_CM2: return 16 + 2 * rows * cols;
    case NGT_KALDI_CM3: return 16 + rows * cols;
    default: return -1;
  }
}

int ngt_kaldi_decompress(int format, const unsigned char *payload, int64_t nbytes, float *out,
                         int rows, int cols, ngt_err *err) {
  if (nbytes < 16)
    return ngt_err_set(err, NGT_EFORMAT,
                       "compressed matrix: %lld bytes, need at least the "
                       "16-byte header",
                       (long long)nbytes);
  float min_value = rd_f32(payload), range = rd_f32(payload + 4);
  int32_t hr = rd_i32(payload + 8), hc = rd_i32(payload + 12);
  if (hr != rows || hc != cols)
    return ngt_err_set(err, NGT_EFORMAT,
                       "compressed matrix: header says %d x %d, caller "
                       "expected %d x %d",
                       hr, hc, rows, cols);
  int64_t need = cm_payload_bytes(format, rows, cols);
  if (need < 0)
    return ngt_err_set(err, NGT_EINVAL, "compressed matrix: unknown format %d", format);
  if (need != nbytes)
    return ngt_err_set(err, NGT_EFORMAT,
                       "compressed matrix %d x %d: payload is %lld bytes, "
                       "the format needs %lld",
                       rows, cols, (long long)nbytes, (long long)need);
  if (cols == 0 || rows == 0) return 0;
  const unsigned char *d = payload + 16;
  const size_t R = (size_t)rows, C = (size_t)cols;
  if (format == NGT_KALDI_CM) {
    const unsigned char *bytes = d + 8 * C; /* column-major */
    for (size_t j = 0; j < C; j++) {
      const unsigned char *h = d + 8 * j;
      float p0 = cm_u16_to_float(min_value, range, rd_u16(h));
      float p25 = cm_u16_to_float(min_value, range, rd_u16(h + 2));
      float p75 = cm_u16_to_float(min_value, range, rd_u16(h + 4));
      float p100 = cm_u16_to_float(min_value, range, rd_u16(h + 6));
      const unsigned char *col = bytes + j * R;
      for (size_t i = 0; i < R; i++) out[i * C + j] = cm_char_to_float(p0, p25, p75, p100, col[i]);
    }
  } else if (format == NGT_KALDI_CM2) {
    float inc = (float)(range * (1.0 / 65535.0));
    for (size_t k = 0; k < R * C; k++) out[k] = min_value + (float)rd_u16(d + 2 * k) * inc;
  } else {
    float inc = (float)(range * (1.0 / 255.0));
    for (size_t k = 0; k < R * C; k++) out[k] = min_value + (float)d[k] * inc;
  }
  return 0;
}

/* ------------------------------------------------------------------------------------ */
/* reader                                                                                */

typedef struct scp_line {
  const char *key;  /* into scp_text */
  const char *file; /* interned */
  int64_t offset;   /* -1: no offset given (a single-object file, read from byte 0) */
  int64_t lineno;
  int has_range;
  int r0, r1, c0, c1; /* inclusive; -1 = open end */
} scp_line;

typedef struct cached_file {
  const char *path; /* interned, NULL = free slot */
  FILE *f;
  int64_t size;  /* bytes, -1 if not a regular file */
  uint64_t used; /* LRU tick */
} cached_file;

struct ngt_kaldi_reader {
  char *spec_path; /* owned: the ark or scp path */
  int is_scp;
  /* sequential archive */
  FILE *ark; /* NULL until first next(); stdin for "-" */
  int ark_is_stdin;
  int64_t ark_size;     /* -1 unknown */
  int64_t ark_pos;      /* our own byte counter (works on pipes) */
  const char *ark_name; /* interned */
  int ark_done;
  /* scp */
  char *scp_text;  /* owned, lines point into it */
  scp_line *lines; /* owned, n_lines */
  int64_t n_lines, next_line;
  /* interned file names (stable until close) */
  char **names;
  int n_names, cap_names;
  cached_file cache[CACHE_FILES];
  uint64_t tick;
  /* buffers reused across entries */
  char *key;
  size_t key_cap;
  float *data;
  size_t data_cap; /* bytes */
  unsigned char *raw;
  size_t raw_cap; /* bytes */
  char tok[128];
  unsigned char skipbuf[4096]; /* for skipping data on pipes */
};

static const char *intern(ngt_kaldi_reader *r, const char *name) {
  if (r->n_names > 0 && strcmp(r->names[r->n_names - 1], name) == 0)
    return r->names[r->n_names - 1];
  for (int i = 0; i < r->n_names; i++)
    if (strcmp(r->names[i], name) == 0) return r->names[i];
  if (r->n_names == r->cap_names) {
    int nc = r->cap_names ? 2 * r->cap_names : 8;
    char **nn = realloc(r->names, sizeof *nn * (size_t)nc);
    if (!nn) return NULL;
    r->names = nn;
    r->cap_names = nc;
  }
  char *c = strdup(name);
  if (!c) return NULL;
  r->names[r->n_names++] = c;
  return c;
}

static int64_t file_size_of(FILE *f) {
  struct stat st;
  if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) return -1;
  return (int64_t)st.st_size;
}

/* Open (or reuse) an archive for random access. */
static int cache_get(ngt_kaldi_reader *r, const char *path, cached_file **out, ngt_err *err) {
  int victim = 0;
  for (int i = 0; i < CACHE_FILES; i++) {
    if (r->cache[i].path == path) {
      r->cache[i].used = ++r->tick;
      *out = &r->cache[i];
      return 0;
    }
    if (!r->cache[i].path) victim = i;
    else if (r->cache[victim].path && r->cache[i].used < r->cache[victim].used)
      victim = i;
  }
  cached_file *c = &r->cache[victim];
  if (c->f) fclose(c->f);
  memset(c, 0, sizeof *c);
  FILE *f = fopen(path, "rb");
  if (!f) return ngt_err_set(err, NGT_EIO, "cannot open archive '%s': %s", path, strerror(errno));
  int64_t size = file_size_of(f);
  if (size < 0) {
    fclose(f);
    return ngt_err_set(err, NGT_EIO,
                       "archive '%s' is not a regular file; scp entries need "
                       "random access (write the archive to a file first)",
                       path);
  }
  c->path = path;
  c->f = f;
  c->size = size;
  c->used = ++r->tick;
  *out = c;
  return 0;
}

/* A byte source with position tracking and known size (or -1), for object parsing. */
typedef struct src {
  FILE *f;
  int64_t pos;  /* current byte offset */
  int64_t size; /* -1 unknown (pipe) */
  int seekable;
} src;

static int src_getc(src *s) {
  int c = getc(s->f);
  if (c != EOF) s->pos++;
  return c;
}
static void src_ungetc(src *s, int c) {
  if (c == EOF) return;
  ungetc(c, s->f);
  s->pos--;
}
static int src_read(src *s, void *buf, size_t n) {
  size_t got = fread(buf, 1, n, s->f);
  s->pos += (int64_t)got;
  return got == n ? 0 : -1;
}
/* Skip n bytes (seek if we can, else read). Assumes the caller checked the size. */
static int src_skip(src *s, int64_t n, unsigned char *tmp, size_t tmpn) {
  if (s->seekable) {
    if (fseeko(s->f, (off_t)(s->pos + n), SEEK_SET) != 0) return -1;
    s->pos += n;
    return 0;
  }
  while (n > 0) {
    size_t k = (size_t)(n < (int64_t)tmpn ? n : (int64_t)tmpn);
    if (src_read(s, tmp, k)) return -1;
    n -= (int64_t)k;
  }
  return 0;
}
/* Are n more bytes in the file? (always yes when the size is unknown) */
static int src_has(const src *s, int64_t n) { return s->size < 0 || s->pos + n <= s->size; }

static int truncated(ngt_err *err, const loc *l, const src *s, const char *what, int64_t need) {
  if (s->size >= 0)
    return loc_err(err, NGT_EFORMAT, l,
                   "truncated: %s needs %lld bytes but only %lld remain "
                   "in the file (is the archive complete? was it still being written?)",
                   what, (long long)need, (long long)(s->size - s->pos));
  return loc_err(err, NGT_EFORMAT, l,
                 "truncated: unexpected end of input inside %s (is the "
                 "archive complete?)",
                 what);
}

static int read_sized_i32(src *s, const loc *l, const char *what, int32_t *v, ngt_err *err) {
  unsigned char b[5];
  if (!src_has(s, 5) || src_read(s, b, 5)) return truncated(err, l, s, what, 5);
  if (b[0] != 4)
    return loc_err(err, NGT_EFORMAT, l,
                   "%s: expected the int32 size byte 4, found %d (not a "
                   "Kaldi little-endian binary archive, or a corrupt one)",
                   what, (int)(signed char)b[0]);
  *v = rd_i32(b + 1);
  return 0;
}

/* Parse a text matrix "[ 1 2 \n 3 4 ]" starting at the '[' (already consumed). */
static int read_text_matrix(ngt_kaldi_reader *r, src *s, const loc *l, ngt_kaldi_entry *e,
                            ngt_err *err) {
  int64_t rows = 0, cols = -1, cur = 0, n = 0;
  for (;;) {
    int c = src_getc(s);
    if (c == EOF) return truncated(err, l, s, "the text matrix (no closing ']')", 1);
    if (c == '\n' || c == ']') {
      if (cur > 0) {
        if (cols >= 0 && cur != cols)
          return loc_err(err, NGT_EFORMAT, l,
                         "text matrix row %lld has %lld values but row 0 "
                         "has %lld",
                         (long long)rows, (long long)cur, (long long)cols);
        cols = cur;
        rows++;
        cur = 0;
      }
      if (c == ']') break;
      continue;
    }
    if (isspace(c)) continue;
    size_t k = 0;
    while (c != EOF && !isspace(c) && c != ']') {
      if (k + 1 < sizeof r->tok) r->tok[k++] = (char)c;
      c = src_getc(s);
    }
    src_ungetc(s, c);
    r->tok[k] = '\0';
    char *end;
    errno = 0;
    float v = strtof(r->tok, &end);
    if (end == r->tok || *end != '\0')
      return loc_err(err, NGT_EFORMAT, l, "text matrix row %lld: '%s' is not a number",
                     (long long)rows, r->tok);
    if (grow((void **)&r->data, &r->data_cap, sizeof(float) * (size_t)(n + 1)))
      return loc_err(err, NGT_ENOMEM, l, "out of memory for a text matrix of %lld values",
                     (long long)n);
    r->data[n++] = v;
    cur++;
  }
  if (rows > INT_MAX || cols > INT_MAX)
    return loc_err(err, NGT_EFORMAT, l, "text matrix too large");
  e->format = NGT_KALDI_TEXT;
  e->mat = ngt_mat_view(r->data, (int)rows, cols < 0 ? 0 : (int)cols, cols < 0 ? 0 : (int)cols);
  return 0;
}

/* Read one object at the source's position (its "\0B" or, for text, whitespace then '['). */
static int read_object(ngt_kaldi_reader *r, src *s, const loc *l0, int with_data,
                       ngt_kaldi_entry *e, ngt_err *err) {
  loc l = *l0;
  l.off = s->f == stdin ? -1 : s->pos;
  e->offset = l.off;
  int c = src_getc(s);
  if (c == '\0') {
    int b = src_getc(s);
    if (b != 'B')
      return loc_err(err, NGT_EFORMAT, &l,
                     "wrong magic: expected the binary marker \"\\0B\", "
                     "found \"\\0%c\" (a corrupt archive, or a wrong scp offset)",
                     b == EOF ? '?' : (isprint(b) ? b : '?'));
    /* token: up to the first space */
    size_t k = 0;
    int t;
    while ((t = src_getc(s)) != EOF && t != ' ' && k + 1 < 8) r->tok[k++] = (char)t;
    r->tok[k] = '\0';
    if (t == EOF) return truncated(err, &l, s, "the matrix type token", 4);
    int format;
    if (!strcmp(r->tok, "FM")) format = NGT_KALDI_FM;
    else if (!strcmp(r->tok, "DM"))
      format = NGT_KALDI_DM;
    else if (!strcmp(r->tok, "CM"))
      format = NGT_KALDI_CM;
    else if (!strcmp(r->tok, "CM2"))
      format = NGT_KALDI_CM2;
    else if (!strcmp(r->tok, "CM3"))
      format = NGT_KALDI_CM3;
    else {
      for (size_t i = 0; i < k; i++)
        if (!isprint((unsigned char)r->tok[i])) r->tok[i] = '?';
      return loc_err(err, NGT_EFORMAT, &l,
                     "unknown matrix token '%s' (expected FM, DM, CM, CM2 "
                     "or CM3: a float/double or compressed feature matrix; vectors and other "
                     "objects are not features)",
                     r->tok);
    }
    if (t != ' ')
      return loc_err(err, NGT_EFORMAT, &l,
                     "unknown matrix token '%s...' (expected FM, DM, CM, "
                     "CM2 or CM3)",
                     r->tok);
    e->format = format;
    int32_t rows, cols;
    if (format == NGT_KALDI_FM || format == NGT_KALDI_DM) {
      int rc;
      if ((rc = read_sized_i32(s, &l, "the number of rows", &rows, err))) return rc;
      if ((rc = read_sized_i32(s, &l, "the number of columns", &cols, err))) return rc;
      if (rows < 0 || cols < 0 || (rows > 0 && cols == 0))
        return loc_err(err, NGT_EFORMAT, &l, "bad %s matrix size %d x %d", r->tok, rows, cols);
      if (rows == 0) cols = 0;
      int64_t esz = format == NGT_KALDI_FM ? 4 : 8;
      if ((int64_t)rows * cols > INT64_MAX / (int64_t)esz) /* would overflow (found by fuzzing) */
        return loc_err(err, NGT_EFORMAT, &l,
                       "%s matrix size %d x %d is impossibly large "
                       "(corrupt archive)",
                       r->tok, rows, cols);
      int64_t nbytes = (int64_t)rows * cols * esz;
      char what[96];
      snprintf(what, sizeof what, "the %.8s data of %d x %d %s", r->tok, rows, cols,
               format == NGT_KALDI_FM ? "floats" : "doubles");
      if (!src_has(s, nbytes)) return truncated(err, &l, s, what, nbytes);
      if (!with_data) {
        if (src_skip(s, nbytes, r->skipbuf, sizeof r->skipbuf))
          return truncated(err, &l, s, what, nbytes);
        e->mat = ngt_mat_view(NULL, rows, cols, cols);
        return 0;
      }
      size_t nel = (size_t)rows * (size_t)cols;
      if (grow((void **)&r->data, &r->data_cap, nel * sizeof(float) + 1))
        return loc_err(err, NGT_ENOMEM, &l, "out of memory for a %d x %d matrix", rows, cols);
      if (format == NGT_KALDI_FM) {
        if (src_read(s, r->data, (size_t)nbytes)) return truncated(err, &l, s, what, nbytes);
        if (!host_le())
          for (size_t i = 0; i < nel; i++) r->data[i] = rd_f32((unsigned char *)(r->data + i));
      } else {
        if (grow((void **)&r->raw, &r->raw_cap, (size_t)nbytes + 1))
          return loc_err(err, NGT_ENOMEM, &l, "out of memory for a %d x %d matrix", rows, cols);
        if (src_read(s, r->raw, (size_t)nbytes)) return truncated(err, &l, s, what, nbytes);
        for (size_t i = 0; i < nel; i++) r->data[i] = (float)rd_f64(r->raw + 8 * i);
      }
      e->mat = ngt_mat_view(r->data, rows, cols, cols);
      return 0;
    }
    /* compressed */
    unsigned char h[16];
    if (!src_has(s, 16) || src_read(s, h, 16))
      return truncated(err, &l, s, "the compressed-matrix header", 16);
    float min_value = rd_f32(h), range = rd_f32(h + 4);
    rows = rd_i32(h + 8);
    cols = rd_i32(h + 12);
    if (rows < 0 || cols < 0)
      return loc_err(err, NGT_EFORMAT, &l, "bad %s matrix size %d x %d", r->tok, rows, cols);
    if (cols == 0) rows = 0;
    if (!isfinite(min_value) || !isfinite(range))
      return loc_err(err, NGT_EFORMAT, &l, "%s header has non-finite min %g or range %g", r->tok,
                     min_value, range);
    int64_t total = cm_payload_bytes(format, rows, cols);
    int64_t body = total - 16;
    char what[96];
    snprintf(what, sizeof what, "the %.8s data of a %d x %d matrix", r->tok, rows, cols);
    if (!src_has(s, body)) return truncated(err, &l, s, what, body);
    if (!with_data) {
      if (src_skip(s, body, r->skipbuf, sizeof r->skipbuf))
        return truncated(err, &l, s, what, body);
      e->mat = ngt_mat_view(NULL, rows, cols, cols);
      return 0;
    }
    if (grow((void **)&r->raw, &r->raw_cap, (size_t)total) ||
        grow((void **)&r->data, &r->data_cap, (size_t)rows * (size_t)cols * sizeof(float) + 1))
      return loc_err(err, NGT_ENOMEM, &l, "out of memory for a %d x %d matrix", rows, cols);
    memcpy(r->raw, h, 16);
    if (body > 0 && src_read(s, r->raw + 16, (size_t)body))
      return truncated(err, &l, s, what, body);
    if (cols == 0) wr_u32(r->raw + 8, 0); /* rows of an empty matrix are meaningless */
    ngt_err e2 = {0};
    int rc = ngt_kaldi_decompress(format, r->raw, total, r->data, rows, cols, &e2);
    if (rc) return loc_err(err, rc, &l, "%s", e2.msg);
    e->mat = ngt_mat_view(r->data, rows, cols, cols);
    return 0;
  }
  /* text: optional whitespace, then '[' */
  while (c != EOF && isspace(c)) c = src_getc(s);
  if (c == '[') {
    int rc = read_text_matrix(r, s, &l, e, err);
    if (rc == 0 && !with_data) e->mat.data = NULL;
    return rc;
  }
  if (c == EOF) return truncated(err, &l, s, "a matrix (nothing after the key)", 1);
  return loc_err(err, NGT_EFORMAT, &l,
                 "wrong magic: expected a binary matrix (\"\\0B\") or a "
                 "text matrix ('['), found byte 0x%02x (a corrupt archive, a wrong scp offset, "
                 "or not a Kaldi archive)",
                 c);
}

/* Apply an scp range [r0:r1,c0:c1] (inclusive) to the entry. */
static int apply_range(const scp_line *ln, const loc *l, ngt_kaldi_entry *e, ngt_err *err) {
  e->has_range = 0;
  e->row0 = e->col0 = 0;
  if (!ln->has_range) return 0;
  int R = e->mat.rows, C = e->mat.cols;
  int r0 = ln->r0 < 0 ? 0 : ln->r0, r1 = ln->r1 < 0 ? R - 1 : ln->r1;
  int c0 = ln->c0 < 0 ? 0 : ln->c0, c1 = ln->c1 < 0 ? C - 1 : ln->c1;
  if (r0 > r1 || r1 >= R || c0 > c1 || c1 >= C)
    return loc_err(err, NGT_EFORMAT, l,
                   "scp range rows %d:%d, columns %d:%d does not fit the "
                   "stored %d x %d matrix",
                   r0, r1, c0, c1, R, C);
  int nr = r1 - r0 + 1, nc = c1 - c0 + 1;
  if (e->mat.data) {
    float *d = e->mat.data;
    for (int i = 0; i < nr; i++)
      memmove(d + (size_t)i * nc, d + (size_t)(r0 + i) * C + c0, sizeof(float) * (size_t)nc);
    e->mat = ngt_mat_view(d, nr, nc, nc);
  } else {
    e->mat = ngt_mat_view(NULL, nr, nc, nc);
  }
  e->has_range = 1;
  e->row0 = r0;
  e->col0 = c0;
  return 0;
}

/* Read an object at (path, offset) through the cache; ln may carry a range. */
static int read_located(ngt_kaldi_reader *r, const char *file, int64_t offset, const char *key,
                        const scp_line *ln, const char *scp_path, int with_data,
                        ngt_kaldi_entry *e, ngt_err *err) {
  memset(e, 0, sizeof *e);
  e->key = key;
  e->file = file;
  cached_file *cf = NULL;
  loc l = {file, key, offset < 0 ? 0 : offset};
  int rc = cache_get(r, file, &cf, err);
  if (rc) {
    if (scp_path)
      ngt_err_prefix(err, "scp '%s' line %lld (utterance '%s')", scp_path, (long long)ln->lineno,
                     key);
    else
      ngt_err_prefix(err, "utterance '%s'", key);
    return rc;
  }
  int64_t off = offset < 0 ? 0 : offset;
  if (off >= cf->size) {
    if (scp_path)
      return ngt_err_set(err, NGT_EFORMAT,
                         "scp '%s' line %lld: utterance '%s' points at byte "
                         "%lld of '%s', past the end of the file (%lld bytes); the archive was "
                         "truncated or rewritten after the scp was made",
                         scp_path, (long long)ln->lineno, key, (long long)off, file,
                         (long long)cf->size);
    return loc_err(err, NGT_EFORMAT, &l, "offset %lld is past the end of the file (%lld bytes)",
                   (long long)off, (long long)cf->size);
  }
  if (fseeko(cf->f, (off_t)off, SEEK_SET) != 0)
    return loc_err(err, NGT_EIO, &l, "cannot seek: %s", strerror(errno));
  src s = {cf->f, off, cf->size, 1};
  if (offset < 0) {
    /* No offset: a file holding one object. Tolerate an archive (key first) too. */
    int c0 = src_getc(&s);
    src_ungetc(&s, c0);
    if (c0 != '\0' && c0 != '[' && c0 != EOF && !isspace(c0)) {
      int c;
      while ((c = src_getc(&s)) != EOF && !isspace(c)) {}
    }
  }
  rc = read_object(r, &s, &l, with_data, e, err);
  if (rc) return rc;
  e->key = key;
  e->file = file;
  if (ln) {
    loc lr = {file, key, e->offset};
    return apply_range(ln, &lr, e, err);
  }
  return 0;
}

static int parse_int_part(const char *s, const char *end, int *v) {
  if (s == end) {
    *v = -1;
    return 0;
  }
  long x = 0;
  for (const char *p = s; p < end; p++) {
    if (!isdigit((unsigned char)*p)) return -1;
    x = x * 10 + (*p - '0');
    if (x > INT_MAX) return -1;
  }
  *v = (int)x;
  return 0;
}

/* "a:b" or ":" or "" -> (lo, hi), -1 = open */
static int parse_range_pair(const char *s, const char *end, int *lo, int *hi) {
  if (s == end) {
    *lo = *hi = -1;
    return 0;
  }
  const char *colon = memchr(s, ':', (size_t)(end - s));
  if (!colon) return -1;
  return parse_int_part(s, colon, lo) || parse_int_part(colon + 1, end, hi) ? -1 : 0;
}

static int parse_scp(ngt_kaldi_reader *r, ngt_err *err) {
  int rc = ngt_read_text_file(r->spec_path, &r->scp_text, err);
  if (rc) return rc;
  int64_t cap = 0;
  char *p = r->scp_text;
  int64_t lineno = 0;
  while (*p) {
    char *line = p;
    char *nl = strchr(p, '\n');
    if (nl) {
      *nl = '\0';
      p = nl + 1;
    } else
      p += strlen(p);
    lineno++;
    /* trim */
    while (isspace((unsigned char)*line)) line++;
    char *end = line + strlen(line);
    while (end > line && isspace((unsigned char)end[-1])) *--end = '\0';
    if (!*line) continue;
    char *key = line, *q = line;
    while (*q && !isspace((unsigned char)*q)) q++;
    if (!*q)
      return ngt_err_set(err, NGT_EFORMAT,
                         "scp '%s' line %lld: '%s' has a key but no file "
                         "(expected 'utt-id path.ark:offset')",
                         r->spec_path, (long long)lineno, key);
    *q++ = '\0';
    while (isspace((unsigned char)*q)) q++;
    char *rx = q;
    size_t n = strlen(rx);
    if (rx[n - 1] == '|' || rx[0] == '|')
      return ngt_err_set(err, NGT_EINVAL,
                         "scp '%s' line %lld: utterance '%s' is a pipe ('%s'); "
                         "ngtrain reads files only: run the command into an archive first "
                         "(e.g. copy-feats scp:in.scp ark,scp:out.ark,out.scp)",
                         r->spec_path, (long long)lineno, key, rx);
    scp_line ln;
    memset(&ln, 0, sizeof ln);
    ln.key = key;
    ln.lineno = lineno;
    ln.r0 = ln.r1 = ln.c0 = ln.c1 = -1;
    if (rx[n - 1] == ']') {
      char *lb = strrchr(rx, '[');
      if (!lb || lb == rx)
        return ngt_err_set(err, NGT_EFORMAT,
                           "scp '%s' line %lld: cannot parse the range in "
                           "'%s'",
                           r->spec_path, (long long)lineno, rx);
      char *in = lb + 1, *ie = rx + n - 1;
      char *comma = memchr(in, ',', (size_t)(ie - in));
      int bad = comma ? (parse_range_pair(in, comma, &ln.r0, &ln.r1) ||
                         parse_range_pair(comma + 1, ie, &ln.c0, &ln.c1))
                      : parse_range_pair(in, ie, &ln.r0, &ln.r1);
      if (bad || (ln.r0 >= 0 && ln.r1 >= 0 && ln.r0 > ln.r1) ||
          (ln.c0 >= 0 && ln.c1 >= 0 && ln.c0 > ln.c1))
        return ngt_err_set(err, NGT_EFORMAT,
                           "scp '%s' line %lld: bad range '%s' (Kaldi ranges "
                           "look like [0:99] or [0:99,0:12], inclusive)",
                           r->spec_path, (long long)lineno, lb);
      ln.has_range = 1;
      *lb = '\0';
      n = strlen(rx);
    }
    ln.offset = -1;
    char *colon = strrchr(rx, ':');
    if (colon && colon[1]) {
      char *d = colon + 1;
      while (isdigit((unsigned char)*d)) d++;
      if (!*d) {
        errno = 0;
        long long off = strtoll(colon + 1, NULL, 10);
        if (errno)
          return ngt_err_set(err, NGT_EFORMAT, "scp '%s' line %lld: bad offset '%s'", r->spec_path,
                             (long long)lineno, colon + 1);
        ln.offset = off;
        *colon = '\0';
      }
    }
    if (!*rx)
      return ngt_err_set(err, NGT_EFORMAT,
                         "scp '%s' line %lld: utterance '%s' has an empty "
                         "file name",
                         r->spec_path, (long long)lineno, key);
    ln.file = intern(r, rx);
    if (!ln.file) return ngt_err_set(err, NGT_ENOMEM, "out of memory reading '%s'", r->spec_path);
    if (r->n_lines == cap) {
      int64_t nc = cap ? 2 * cap : 1024;
      scp_line *nlines = realloc(r->lines, sizeof *nlines * (size_t)nc);
      if (!nlines) return ngt_err_set(err, NGT_ENOMEM, "out of memory reading '%s'", r->spec_path);
      r->lines = nlines;
      cap = nc;
    }
    r->lines[r->n_lines++] = ln;
  }
  return 0;
}

/* Split "ark,opts:PATH" / "scp:PATH" / PATH. kind: 'a' ark, 's' scp, 0 unknown prefix. */
static const char *split_spec(const char *spec, char *kind, char *opts, size_t optslen) {
  *kind = 0;
  opts[0] = '\0';
  const char *colon = strchr(spec, ':');
  if (!colon) return spec;
  size_t plen = (size_t)(colon - spec);
  if (plen >= 3 && (!strncmp(spec, "ark", 3) || !strncmp(spec, "scp", 3)) &&
      (plen == 3 || spec[3] == ',')) {
    for (size_t i = 0; i < plen; i++)
      if (!isalnum((unsigned char)spec[i]) && spec[i] != ',') return spec;
    *kind = spec[0] == 'a' ? 'a' : 's';
    snprintf(opts, optslen, "%.*s", (int)plen, spec);
    return colon + 1;
  }
  return spec;
}

static int has_suffix(const char *s, const char *suf) {
  size_t a = strlen(s), b = strlen(suf);
  return a >= b && !strcmp(s + a - b, suf);
}

ngt_kaldi_reader *ngt_kaldi_reader_new_random_access(void) {
  ngt_kaldi_reader *r = calloc(1, sizeof *r);
  if (!r) return NULL;
  r->spec_path = strdup("(random access)");
  if (!r->spec_path) {
    free(r);
    return NULL;
  }
  r->ark_done = 1;
  return r;
}

int ngt_kaldi_reader_open(const char *rspec, ngt_kaldi_reader **out, ngt_err *err) {
  *out = NULL;
  char kind, opts[64];
  const char *path = split_spec(rspec, &kind, opts, sizeof opts);
  if (!*path)
    return ngt_err_set(err, NGT_EINVAL,
                       "empty file name in '%s' (expected ark:PATH or "
                       "scp:PATH)",
                       rspec);
  if (has_suffix(path, "|") || path[0] == '|')
    return ngt_err_set(err, NGT_EINVAL,
                       "'%s' is a pipe; ngtrain reads files only: run the "
                       "command into an archive first",
                       rspec);
  if (!kind) kind = has_suffix(path, ".scp") ? 's' : 'a';
  ngt_kaldi_reader *r = calloc(1, sizeof *r);
  if (!r) return ngt_err_set(err, NGT_ENOMEM, "out of memory opening '%s'", rspec);
  r->spec_path = strdup(path);
  if (!r->spec_path) {
    free(r);
    return ngt_err_set(err, NGT_ENOMEM, "out of memory");
  }
  if (kind == 's') {
    r->is_scp = 1;
    if (!strcmp(path, "-")) {
      ngt_kaldi_reader_close(r);
      return ngt_err_set(err, NGT_EINVAL, "scp from stdin is not supported; give a file");
    }
    int rc = parse_scp(r, err);
    if (rc) {
      ngt_kaldi_reader_close(r);
      return rc;
    }
  } else {
    if (!strcmp(path, "-")) {
      r->ark = stdin;
      r->ark_is_stdin = 1;
      r->ark_size = -1;
    } else {
      r->ark = fopen(path, "rb");
      if (!r->ark) {
        int e = errno;
        ngt_kaldi_reader_close(r);
        return ngt_err_set(err, NGT_EIO, "cannot open archive '%s': %s", path, strerror(e));
      }
      r->ark_size = file_size_of(r->ark);
    }
    r->ark_name = intern(r, path);
    if (!r->ark_name) {
      ngt_kaldi_reader_close(r);
      return ngt_err_set(err, NGT_ENOMEM, "out of memory");
    }
  }
  *out = r;
  return 0;
}

const char *ngt_kaldi_reader_path(const ngt_kaldi_reader *r) { return r->spec_path; }

int ngt_kaldi_reader_next(ngt_kaldi_reader *r, int with_data, ngt_kaldi_entry *e, ngt_err *err) {
  memset(e, 0, sizeof *e);
  if (r->is_scp) {
    if (r->next_line >= r->n_lines) return 0;
    const scp_line *ln = &r->lines[r->next_line++];
    int rc = read_located(r, ln->file, ln->offset, ln->key, ln, r->spec_path, with_data, e, err);
    return rc ? rc : 1;
  }
  if (r->ark_done || !r->ark) return 0;
  src s = {r->ark, r->ark_pos, r->ark_size, !r->ark_is_stdin && r->ark_size >= 0};
  loc l = {r->ark_name, NULL, r->ark_is_stdin ? -1 : s.pos};
  int c;
  /* Skip whitespace between entries (and NULs: Kaldi writes an empty CM matrix with 4
   * stray bytes of header; keys never contain NUL). */
  while ((c = src_getc(&s)) != EOF && (isspace(c) || c == '\0')) {}
  if (c == EOF) {
    r->ark_done = 1;
    r->ark_pos = s.pos;
    if (ferror(r->ark))
      return ngt_err_set(err, NGT_EIO, "error reading archive '%s'", r->ark_name);
    return 0;
  }
  l.off = r->ark_is_stdin ? -1 : s.pos - 1;
  size_t k = 0;
  while (c != EOF && !isspace(c) && c != '\0') {
    if (grow((void **)&r->key, &r->key_cap, k + 2))
      return ngt_err_set(err, NGT_ENOMEM, "out of memory");
    r->key[k++] = (char)c;
    if (k > 65536) {
      r->ark_done = 1;
      return loc_err(err, NGT_EFORMAT, &l,
                     "wrong magic: no key (a run of %zu bytes without a "
                     "space; is this a Kaldi archive, and not e.g. an HDF5 or npy file?)",
                     k);
    }
    c = src_getc(&s);
  }
  r->key[k] = '\0';
  l.key = r->key;
  if (c != ' ') {
    r->ark_done = 1;
    if (c == EOF) return truncated(err, &l, &s, "the entry (a key with no matrix)", 1);
    if (c == '\0')
      return loc_err(err, NGT_EFORMAT, &l,
                     "wrong magic: a NUL byte right after the key (is this "
                     "really a Kaldi archive, and not e.g. an npy or HDF5 file?)");
    /* text archives may have any whitespace after the key: fall through to the parser */
  }
  int rc = read_object(r, &s, &l, with_data, e, err);
  r->ark_pos = s.pos;
  if (rc) {
    r->ark_done = 1;
    return rc;
  }
  e->key = r->key;
  e->file = r->ark_name;
  return 1;
}

int ngt_kaldi_reader_read_at(ngt_kaldi_reader *r, const char *path, int64_t offset,
                             const char *key, int with_data, ngt_kaldi_entry *e, ngt_err *err) {
  const char *file = intern(r, path);
  if (!file) return ngt_err_set(err, NGT_ENOMEM, "out of memory");
  size_t n = strlen(key ? key : "") + 1;
  if (grow((void **)&r->key, &r->key_cap, n)) return ngt_err_set(err, NGT_ENOMEM, "out of memory");
  memcpy(r->key, key ? key : "", n);
  return read_located(r, file, offset, r->key, NULL, NULL, with_data, e, err);
}

void ngt_kaldi_reader_close(ngt_kaldi_reader *r) {
  if (!r) return;
  if (r->ark && !r->ark_is_stdin) fclose(r->ark);
  for (int i = 0; i < CACHE_FILES; i++)
    if (r->cache[i].f) fclose(r->cache[i].f);
  for (int i = 0; i < r->n_names; i++) free(r->names[i]);
  free(r->names);
  free(r->lines);
  free(r->scp_text);
  free(r->spec_path);
  free(r->key);
  free(r->data);
  free(r->raw);
  free(r);
}

/* ------------------------------------------------------------------------------------ */
/* writer                                                                                */

struct ngt_kaldi_writer {
  FILE *f;
  char *path, *tmp; /* NULL for stdout */
  FILE *scp;
  char *scp_path, *scp_tmp;
  int text;
  int64_t pos; /* bytes written to the archive */
  unsigned char *buf;
  size_t buf_cap;
};

static void writer_free(ngt_kaldi_writer *w) {
  free(w->path);
  free(w->tmp);
  free(w->scp_path);
  free(w->scp_tmp);
  free(w->buf);
  free(w);
}

void ngt_kaldi_writer_abort(ngt_kaldi_writer *w) {
  if (!w) return;
  if (w->f && w->f != stdout) fclose(w->f);
  if (w->tmp) unlink(w->tmp);
  if (w->scp) fclose(w->scp);
  if (w->scp_tmp) unlink(w->scp_tmp);
  writer_free(w);
}

static int open_tmp(const char *path, char **pathp, char **tmpp, FILE **fp, ngt_err *err) {
  char tmp[4096];
  ngt_tmp_path(path, tmp, sizeof tmp);
  *pathp = strdup(path);
  *tmpp = strdup(tmp);
  if (!*pathp || !*tmpp) return ngt_err_set(err, NGT_ENOMEM, "out of memory");
  *fp = fopen(tmp, "wb");
  if (!*fp) {
    int e = errno;
    free(*tmpp);
    *tmpp = NULL;
    return ngt_err_set(err, NGT_EIO,
                       "cannot create '%s': %s (does the directory exist and is "
                       "it writable?)",
                       tmp, strerror(e));
  }
  return 0;
}

int ngt_kaldi_writer_open(const char *wspec, ngt_kaldi_writer **out, ngt_err *err) {
  *out = NULL;
  char kind, opts[64];
  const char *path = split_spec(wspec, &kind, opts, sizeof opts);
  if (kind == 's')
    return ngt_err_set(err, NGT_EINVAL,
                       "'%s': write an archive ('ark:out.ark' or "
                       "'ark,scp:out.ark,out.scp'), not an scp alone",
                       wspec);
  int text = 0, with_scp = 0;
  if (kind == 'a') {
    char *save = NULL;
    for (char *t = strtok_r(opts + 3, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
      if (!strcmp(t, "t")) text = 1;
      else if (!strcmp(t, "b"))
        text = 0;
      else if (!strcmp(t, "scp"))
        with_scp = 1;
      else if (strcmp(t, "f") && strcmp(t, "nf") && strcmp(t, "p"))
        return ngt_err_set(err, NGT_EINVAL, "'%s': unknown write option '%s' (known: t, b, scp)",
                           wspec, t);
    }
  }
  char arkp[4096], scpp[4096] = "";
  if (with_scp) {
    const char *comma = strchr(path, ',');
    if (!comma || comma == path || !comma[1])
      return ngt_err_set(err, NGT_EINVAL, "'%s': ark,scp needs two files: ark,scp:OUT.ark,OUT.scp",
                         wspec);
    snprintf(arkp, sizeof arkp, "%.*s", (int)(comma - path), path);
    snprintf(scpp, sizeof scpp, "%s", comma + 1);
  } else {
    snprintf(arkp, sizeof arkp, "%s", path);
  }
  if (!*arkp) return ngt_err_set(err, NGT_EINVAL, "'%s': empty output file name", wspec);
  ngt_kaldi_writer *w = calloc(1, sizeof *w);
  if (!w) return ngt_err_set(err, NGT_ENOMEM, "out of memory");
  w->text = text;
  if (!strcmp(arkp, "-")) {
    if (with_scp) {
      free(w);
      return ngt_err_set(err, NGT_EINVAL, "'%s': an scp needs the archive in a file, not stdout",
                         wspec);
    }
    w->f = stdout;
  } else {
    int rc = open_tmp(arkp, &w->path, &w->tmp, &w->f, err);
    if (rc) {
      ngt_kaldi_writer_abort(w);
      return rc;
    }
  }
  if (with_scp) {
    int rc = open_tmp(scpp, &w->scp_path, &w->scp_tmp, &w->scp, err);
    if (rc) {
      ngt_kaldi_writer_abort(w);
      return rc;
    }
  }
  *out = w;
  return 0;
}

int ngt_kaldi_writer_write(ngt_kaldi_writer *w, const char *key, ngt_mat m, ngt_err *err) {
  const char *name = w->path ? w->path : "(stdout)";
  if (!key || !*key || strpbrk(key, " \t\n\r\v\f"))
    return ngt_err_set(err, NGT_EINVAL,
                       "archive '%s': key '%s' is empty or contains "
                       "whitespace (Kaldi keys cannot)",
                       name, key ? key : "");
  NGT_ASSERT(m.rows >= 0 && m.cols >= 0 && (m.rows == 0 || m.data));
  size_t klen = strlen(key);
  if (fwrite(key, 1, klen, w->f) != klen || fputc(' ', w->f) == EOF) goto fail;
  w->pos += (int64_t)klen + 1;
  if (w->scp && fprintf(w->scp, "%s %s:%lld\n", key, w->path, (long long)w->pos) < 0) goto fail;
  if (w->text) {
    if (m.rows == 0 || m.cols == 0) {
      if (fputs(" [ ]\n", w->f) == EOF) goto fail;
      w->pos += 5;
      return 0;
    }
    int n = fprintf(w->f, " [");
    if (n < 0) goto fail;
    w->pos += n;
    for (int i = 0; i < m.rows; i++) {
      if ((n = fprintf(w->f, "\n ")) < 0) goto fail;
      w->pos += n;
      for (int j = 0; j < m.cols; j++) {
        if ((n = fprintf(w->f, " %.7g", (double)NGT_AT(m, i, j))) < 0) goto fail;
        w->pos += n;
      }
      if (i + 1 < m.rows) {
        if (fputc(' ', w->f) == EOF) goto fail;
        w->pos++;
      }
    }
    if ((n = fprintf(w->f, " ]\n")) < 0) goto fail;
    w->pos += n;
    return 0;
  }
  int rows = m.cols == 0 ? 0 : m.rows, cols = m.rows == 0 ? 0 : m.cols;
  unsigned char hdr[15] = {'\0', 'B', 'F', 'M', ' ', 4, 0, 0, 0, 0, 4, 0, 0, 0, 0};
  wr_u32(hdr + 6, (uint32_t)rows);
  wr_u32(hdr + 11, (uint32_t)cols);
  if (fwrite(hdr, 1, sizeof hdr, w->f) != sizeof hdr) goto fail;
  w->pos += (int64_t)sizeof hdr;
  size_t rowbytes = sizeof(float) * (size_t)cols;
  for (int i = 0; i < rows; i++) {
    const float *row = m.data + (size_t)i * (size_t)m.stride;
    if (host_le()) {
      if (fwrite(row, 1, rowbytes, w->f) != rowbytes) goto fail;
    } else {
      if (grow((void **)&w->buf, &w->buf_cap, rowbytes))
        return ngt_err_set(err, NGT_ENOMEM, "out of memory");
      for (int j = 0; j < cols; j++) {
        uint32_t u;
        memcpy(&u, row + j, 4);
        wr_u32(w->buf + 4 * j, u);
      }
      if (fwrite(w->buf, 1, rowbytes, w->f) != rowbytes) goto fail;
    }
    w->pos += (int64_t)rowbytes;
  }
  return 0;
fail:
  return ngt_err_set(err, NGT_EIO,
                     "cannot write archive '%s' (entry '%s'): %s (is the disk "
                     "full?)",
                     name, key, strerror(errno));
}

int ngt_kaldi_writer_close(ngt_kaldi_writer *w, ngt_err *err) {
  const char *name = w->path ? w->path : "(stdout)";
  int bad = fflush(w->f) != 0 || ferror(w->f);
  int e = errno;
  if (w->f != stdout) {
    if (fclose(w->f) != 0) bad = 1, e = errno;
  }
  w->f = NULL;
  if (w->scp) {
    if (fflush(w->scp) != 0 || ferror(w->scp)) bad = 1, e = errno;
    if (fclose(w->scp) != 0) bad = 1, e = errno;
    w->scp = NULL;
  }
  if (bad) {
    ngt_err_set(err, NGT_EIO, "cannot write archive '%s': %s (is the disk full?)", name,
                strerror(e));
    ngt_kaldi_writer_abort(w);
    return NGT_EIO;
  }
  if (w->tmp) {
    int rc = ngt_commit_tmp(w->tmp, w->path, err);
    if (rc) {
      free(w->tmp);
      w->tmp = NULL; /* commit removed it */
      ngt_kaldi_writer_abort(w);
      return rc;
    }
    free(w->tmp);
    w->tmp = NULL;
  }
  if (w->scp_tmp) {
    int rc = ngt_commit_tmp(w->scp_tmp, w->scp_path, err);
    if (rc) {
      free(w->scp_tmp);
      w->scp_tmp = NULL;
      ngt_kaldi_writer_abort(w);
      return rc;
    }
    free(w->scp_tmp);
    w->scp_tmp = NULL;
  }
  writer_free(w);
  return 0;
}

int ngt_kaldi_write_text_vector(const char *path, const double *v, int n, int as_int,
                                ngt_err *err) {
  char tmp[4096];
  ngt_tmp_path(path, tmp, sizeof tmp);
  FILE *f = fopen(tmp, "w");
  if (!f) return ngt_err_set(err, NGT_EIO, "cannot create '%s': %s", tmp, strerror(errno));
  int bad = fputs("[", f) == EOF;
  for (int i = 0; i < n && !bad; i++)
    bad = (as_int ? fprintf(f, " %.0f", v[i]) : fprintf(f, " %.9g", v[i])) < 0;
  if (!bad) bad = fputs(" ]\n", f) == EOF;
  if (fclose(f) != 0) bad = 1;
  if (bad) {
    unlink(tmp);
    return ngt_err_set(err, NGT_EIO, "cannot write '%s' (is the disk full?)", path);
  }
  return ngt_commit_tmp(tmp, path, err);
}

/* ------------------------------------------------------------------------------------ */
/* alignments                                                                            */

typedef struct ali_slot {
  uint64_t hash;
  size_t key_off1; /* 1 + offset of the key in the arena; 0 = empty slot */
  int64_t off;     /* byte offset of the values (just after "key ") */
  int64_t lineno;
} ali_slot;

struct ngt_kaldi_ali {
  char *path;
  FILE *f;
  int64_t size;
  char *keys;
  size_t keys_len, keys_cap; /* arena of NUL-terminated keys */
  ali_slot *slots;
  size_t nslots, n; /* open addressing, nslots a power of 2 */
  int32_t *buf;
  size_t buf_cap; /* bytes */
  char tok[64];
};

static ali_slot *ali_find_slot(const ngt_kaldi_ali *a, const char *key, uint64_t h) {
  size_t mask = a->nslots - 1;
  for (size_t i = h & mask;; i = (i + 1) & mask) {
    ali_slot *s = &a->slots[i];
    if (!s->key_off1) return s;
    if (s->hash == h && !strcmp(a->keys + s->key_off1 - 1, key)) return s;
  }
}

static int ali_rehash(ngt_kaldi_ali *a) {
  size_t nn = a->nslots ? 2 * a->nslots : 1024;
  ali_slot *old = a->slots;
  size_t on = a->nslots;
  a->slots = calloc(nn, sizeof *a->slots);
  if (!a->slots) {
    a->slots = old;
    return -1;
  }
  a->nslots = nn;
  for (size_t i = 0; i < on; i++)
    if (old[i].key_off1) *ali_find_slot(a, a->keys + old[i].key_off1 - 1, old[i].hash) = old[i];
  free(old);
  return 0;
}

void ngt_kaldi_ali_free(ngt_kaldi_ali *a) {
  if (!a) return;
  if (a->f) fclose(a->f);
  free(a->path);
  free(a->keys);
  free(a->slots);
  free(a->buf);
  free(a);
}

int64_t ngt_kaldi_ali_num_utts(const ngt_kaldi_ali *a) { return (int64_t)a->n; }
const char *ngt_kaldi_ali_path(const ngt_kaldi_ali *a) { return a->path; }

int ngt_kaldi_ali_open(const char *spec, ngt_kaldi_ali **out, ngt_err *err) {
  *out = NULL;
  char kind, opts[64];
  const char *path = split_spec(spec, &kind, opts, sizeof opts);
  if (kind == 's')
    return ngt_err_set(err, NGT_EINVAL,
                       "alignments '%s': scp is not supported; give the "
                       "alignment archive (ali-to-pdf ... ark,t:ali.txt)",
                       spec);
  ngt_kaldi_ali *a = calloc(1, sizeof *a);
  if (!a) return ngt_err_set(err, NGT_ENOMEM, "out of memory");
  a->path = strdup(path);
  a->f = fopen(path, "rb");
  if (!a->path || !a->f) {
    int e = errno;
    ngt_kaldi_ali_free(a);
    return ngt_err_set(err, NGT_EIO, "cannot open alignments '%s': %s", path, strerror(e));
  }
  a->size = file_size_of(a->f);
  if (a->size < 0) {
    ngt_kaldi_ali_free(a);
    return ngt_err_set(err, NGT_EIO,
                       "alignments '%s' are not a regular file (a pipe?); write "
                       "them to a file first (ali-to-pdf ... ark,t:ali.txt)",
                       path);
  }
  int rc = 0;
  if (ali_rehash(a)) goto oom;
  src s = {a->f, 0, a->size, 1};
  int64_t lineno = 1;
  for (;;) {
    int c;
    while ((c = src_getc(&s)) != EOF && isspace(c))
      if (c == '\n') lineno++;
    if (c == EOF) break;
    size_t k0 = a->keys_len;
    while (c != EOF && !isspace(c) && c != '\0') {
      if (grow((void **)&a->keys, &a->keys_cap, a->keys_len + 2)) goto oom;
      a->keys[a->keys_len++] = (char)c;
      c = src_getc(&s);
    }
    if (a->keys_len == k0) { /* no key at all, e.g. a NUL first (found by fuzzing) */
      rc = ngt_err_set(err, NGT_EFORMAT,
                       "alignments '%s' line %lld: expected an utterance key, "
                       "found byte 0x%02x (is this a binary archive without its key?)",
                       path, (long long)lineno, c == EOF ? 0 : (unsigned)c);
      goto fail;
    }
    a->keys[a->keys_len++] = '\0';
    const char *key = a->keys + k0;
    int64_t off = s.pos; /* after the separator */
    if (c == '\0') {
      rc = ngt_err_set(err, NGT_EFORMAT,
                       "alignments '%s' line %lld: utterance '%s': expected a space "
                       "after the key",
                       path, (long long)lineno, key);
      goto fail;
    }
    if (c == EOF || c == '\n') {
      off = c == EOF ? s.pos : s.pos - 1; /* empty alignment */
      if (c == '\n') src_ungetc(&s, c);
    } else {
      int c1 = src_getc(&s);
      if (c1 == '\0') {
        /* binary int32 vector: "\0B" 4 n (4 v)* */
        unsigned char b[7];
        b[0] = 0;
        if (src_read(&s, b + 1, 6) || b[1] != 'B' || b[2] != 4) {
          rc = ngt_err_set(err, NGT_EFORMAT,
                           "alignments '%s': utterance '%s' at byte %lld: not a "
                           "binary int32 vector (wrong magic or truncated)",
                           path, key, (long long)off);
          goto fail;
        }
        int32_t n = rd_i32(b + 3);
        if (n < 0 || !src_has(&s, (int64_t)n * 5)) {
          rc = ngt_err_set(err, NGT_EFORMAT,
                           "alignments '%s': utterance '%s' at byte %lld: "
                           "truncated: %d values announced, %lld bytes remain",
                           path, key, (long long)off, n, (long long)(s.size - s.pos));
          goto fail;
        }
        if (src_skip(&s, (int64_t)n * 5, NULL, 0)) {
          rc = ngt_err_set(err, NGT_EIO, "alignments '%s': cannot seek: %s", path,
                           strerror(errno));
          goto fail;
        }
      } else {
        while (c1 != EOF && c1 != '\n') c1 = src_getc(&s);
        src_ungetc(&s, c1);
      }
    }
    if (2 * (a->n + 1) > a->nslots && ali_rehash(a)) goto oom;
    uint64_t h = ngt_fnv1a64_str(key);
    ali_slot *slot = ali_find_slot(a, key, h);
    if (slot->key_off1) {
      rc = ngt_err_set(err, NGT_EFORMAT,
                       "alignments '%s' line %lld: utterance '%s' appears twice "
                       "(first on line %lld); remove the duplicate",
                       path, (long long)lineno, key, (long long)slot->lineno);
      goto fail;
    }
    slot->hash = h;
    slot->key_off1 = k0 + 1;
    slot->off = off;
    slot->lineno = lineno;
    a->n++;
  }
  if (ferror(a->f)) {
    rc = ngt_err_set(err, NGT_EIO, "error reading alignments '%s'", path);
    goto fail;
  }
  *out = a;
  return 0;
oom:
  rc = ngt_err_set(err, NGT_ENOMEM, "out of memory indexing alignments '%s'", path);
fail:
  ngt_kaldi_ali_free(a);
  return rc;
}

int ngt_kaldi_ali_get(ngt_kaldi_ali *a, const char *key, const int32_t **labels, int64_t *n,
                      ngt_err *err) {
  *labels = NULL;
  *n = 0;
  ali_slot *slot = ali_find_slot(a, key, ngt_fnv1a64_str(key));
  if (!slot->key_off1) return 0;
  if (fseeko(a->f, (off_t)slot->off, SEEK_SET) != 0)
    return ngt_err_set(err, NGT_EIO, "alignments '%s': cannot seek: %s", a->path, strerror(errno));
  src s = {a->f, slot->off, a->size, 1};
  int c = src_getc(&s);
  int64_t cnt = 0;
  if (c == '\0') {
    unsigned char b[6];
    if (src_read(&s, b, 6))
      return ngt_err_set(err, NGT_EFORMAT, "alignments '%s': utterance '%s': truncated", a->path,
                         key);
    int32_t len = rd_i32(b + 2);
    if (grow((void **)&a->buf, &a->buf_cap, sizeof(int32_t) * ((size_t)len + 1)))
      return ngt_err_set(err, NGT_ENOMEM, "out of memory");
    for (int32_t i = 0; i < len; i++) {
      unsigned char e[5];
      if (src_read(&s, e, 5) || e[0] != 4)
        return ngt_err_set(err, NGT_EFORMAT,
                           "alignments '%s': utterance '%s': element %d is "
                           "truncated or not an int32",
                           a->path, key, i);
      int32_t v = rd_i32(e + 1);
      if (v < 0)
        return ngt_err_set(err, NGT_EFORMAT,
                           "alignments '%s': utterance '%s': frame %d has "
                           "negative pdf id %d",
                           a->path, key, i, v);
      a->buf[cnt++] = v;
    }
  } else {
    for (;;) {
      while (c != EOF && c != '\n' && isspace(c)) c = src_getc(&s);
      if (c == EOF || c == '\n') break;
      size_t k = 0;
      while (c != EOF && !isspace(c)) {
        if (k + 1 < sizeof a->tok) a->tok[k++] = (char)c;
        c = src_getc(&s);
      }
      a->tok[k] = '\0';
      char *end;
      errno = 0;
      long long v = strtoll(a->tok, &end, 10);
      if (end == a->tok || *end)
        return ngt_err_set(err, NGT_EFORMAT,
                           "alignments '%s' line %lld: utterance '%s': frame "
                           "%lld: '%s' is not an integer pdf id",
                           a->path, (long long)slot->lineno, key, (long long)cnt, a->tok);
      if (errno == ERANGE || v > INT32_MAX || v < 0)
        return ngt_err_set(err, NGT_EFORMAT,
                           "alignments '%s' line %lld: utterance '%s': frame "
                           "%lld: pdf id %s %s",
                           a->path, (long long)slot->lineno, key, (long long)cnt, a->tok,
                           v < 0 && errno != ERANGE ? "is negative" : "does not fit int32");
      if (grow((void **)&a->buf, &a->buf_cap, sizeof(int32_t) * ((size_t)cnt + 1)))
        return ngt_err_set(err, NGT_ENOMEM, "out of memory");
      a->buf[cnt++] = (int32_t)v;
    }
  }
  *labels = a->buf;
  *n = cnt;
  return 1;
}
