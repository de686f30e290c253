/* npy.c — see include/ngtrain/npy.h.
 *
 * The header dict is parsed by hand (no Python): keys in any order, single or double
 * quotes, True/False, a shape tuple of non-negative integers ("()", "(5,)", "(3, 4)").
 */
#include "ngtrain/npy.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define NPY_BLOCK 65536 /* elements converted per read */

static int npy_host_le(void) {
  const uint16_t one = 1;
  unsigned char b;
  memcpy(&b, &one, 1);
  return b == 1;
}

void ngt_npy_close(ngt_npy *a) {
  if (!a) return;
  if (a->f) fclose(a->f);
  free(a->scratch);
  free(a->path);
  free(a);
}

void ngt_npy_shape_str(const ngt_npy *a, char *buf, size_t len) {
  size_t k = 0;
  k += (size_t)snprintf(buf + k, len - k, "(");
  for (int i = 0; i < a->ndim && k < len; i++)
    k += (size_t)snprintf(buf + k, len - k, "%s%lld", i ? ", " : "", (long long)a->shape[i]);
  if (k < len) k += (size_t)snprintf(buf + k, len - k, a->ndim == 1 ? ",)" : ")");
}

static const char *skip_ws(const char *p) {
  while (*p && isspace((unsigned char)*p)) p++;
  return p;
}

/* Parse a quoted string at p into out; returns the char after the closing quote or NULL. */
static const char *parse_str(const char *p, char *out, size_t len) {
  char q = *p;
  if (q != '\'' && q != '"') return NULL;
  p++;
  size_t k = 0;
  while (*p && *p != q) {
    if (k + 1 < len) out[k++] = *p;
    p++;
  }
  if (*p != q) return NULL;
  out[k] = '\0';
  return p + 1;
}

static int bad_header(ngt_err *err, const char *path, const char *hdr, const char *what) {
  return ngt_err_set(err, NGT_EFORMAT,
                     "npy '%s': malformed header (%s): %.200s (write it with "
                     "numpy.save)",
                     path, what, hdr);
}

static int parse_header(ngt_npy *a, const char *hdr, ngt_err *err) {
  const char *p = skip_ws(hdr);
  if (*p != '{') return bad_header(err, a->path, hdr, "expected '{'");
  p++;
  int have_descr = 0, have_order = 0, have_shape = 0, fortran = 0;
  for (;;) {
    p = skip_ws(p);
    if (*p == '}') break;
    char key[32];
    p = parse_str(p, key, sizeof key);
    if (!p) return bad_header(err, a->path, hdr, "expected a quoted key");
    p = skip_ws(p);
    if (*p != ':') return bad_header(err, a->path, hdr, "expected ':' after a key");
    p = skip_ws(p + 1);
    if (!strcmp(key, "descr")) {
      if (*p == '[')
        return ngt_err_set(err, NGT_EFORMAT,
                           "npy '%s': structured dtype %.100s is not "
                           "supported (save a plain numeric array)",
                           a->path, p);
      p = parse_str(p, a->descr, sizeof a->descr);
      if (!p) return bad_header(err, a->path, hdr, "'descr' is not a string");
      have_descr = 1;
    } else if (!strcmp(key, "fortran_order")) {
      if (!strncmp(p, "True", 4)) {
        fortran = 1;
        p += 4;
      } else if (!strncmp(p, "False", 5)) {
        fortran = 0;
        p += 5;
      } else
        return bad_header(err, a->path, hdr, "'fortran_order' is not True or False");
      have_order = 1;
    } else if (!strcmp(key, "shape")) {
      if (*p != '(') return bad_header(err, a->path, hdr, "'shape' is not a tuple");
      p = skip_ws(p + 1);
      a->ndim = 0;
      while (*p != ')') {
        if (!isdigit((unsigned char)*p))
          return bad_header(err, a->path, hdr, "'shape' holds something other than integers");
        if (a->ndim == NGT_NPY_MAX_DIMS)
          return ngt_err_set(err, NGT_EFORMAT, "npy '%s': more than %d dimensions", a->path,
                             NGT_NPY_MAX_DIMS);
        errno = 0;
        char *end;
        long long v = strtoll(p, &end, 10);
        if (errno) return bad_header(err, a->path, hdr, "a dimension is too large");
        a->shape[a->ndim++] = v;
        p = skip_ws(end);
        /* numpy writes "2L" in very old Python 2 files */
        if (*p == 'L') p = skip_ws(p + 1);
        if (*p == ',') p = skip_ws(p + 1);
        else if (*p != ')')
          return bad_header(err, a->path, hdr, "expected ',' or ')' in 'shape'");
      }
      p++;
      have_shape = 1;
    } else {
      return bad_header(err, a->path, hdr, "unknown key");
    }
    p = skip_ws(p);
    if (*p == ',') p++;
    else if (*p != '}')
      return bad_header(err, a->path, hdr, "expected ',' or '}'");
  }
  if (!have_descr || !have_order || !have_shape)
    return bad_header(err, a->path, hdr, "needs 'descr', 'fortran_order' and 'shape'");
  const char *d = a->descr;
  char order = d[0];
  if (order != '<' && order != '>' && order != '|' && order != '=')
    return ngt_err_set(err, NGT_EFORMAT,
                       "npy '%s': unsupported dtype '%s' (supported: <f4 <f8 "
                       "<i1 <i2 <i4 <i8 <u1 <u2 <u4 <u8 |b1)",
                       a->path, d);
  char kind = d[1];
  char *end;
  long isz = strtol(d + 2, &end, 10);
  int ok_kind = kind == 'f' || kind == 'i' || kind == 'u' || kind == 'b';
  int ok_size = *end == '\0' && (isz == 1 || isz == 2 || isz == 4 || isz == 8) &&
                !(kind == 'f' && isz < 4) && !(kind == 'b' && isz != 1);
  if (!ok_kind || !ok_size)
    return ngt_err_set(err, NGT_EFORMAT,
                       "npy '%s': unsupported dtype '%s' (supported: float32, "
                       "float64, int8..int64, uint8..uint64, bool; convert with "
                       "arr.astype(np.float32) or np.int32)",
                       a->path, d);
  if (isz > 1 && order == '|')
    return ngt_err_set(err, NGT_EFORMAT,
                       "npy '%s': dtype '%s' has no byte order but %ld-byte "
                       "elements; write it with numpy.save",
                       a->path, d, isz);
  if (isz > 1 && (order == '>' || (order == '=' && !npy_host_le())))
    return ngt_err_set(err, NGT_EFORMAT,
                       "npy '%s': dtype '%s' is big-endian; ngtrain reads "
                       "little-endian data (convert with arr.astype('<%c%ld'))",
                       a->path, d, kind, isz);
  if (fortran)
    return ngt_err_set(err, NGT_EFORMAT,
                       "npy '%s': the array is stored in Fortran (column-"
                       "major) order; save a C-ordered copy: np.save(path, "
                       "np.ascontiguousarray(arr))",
                       a->path);
  a->kind = kind;
  a->itemsize = (int)isz;
  a->numel = 1;
  for (int i = 0; i < a->ndim; i++) {
    if (a->shape[i] != 0 && a->numel > INT64_MAX / 16 / a->shape[i])
      return ngt_err_set(err, NGT_EFORMAT, "npy '%s': shape too large", a->path);
    a->numel *= a->shape[i];
  }
  return 0;
}

int ngt_npy_open(const char *path, ngt_npy **out, ngt_err *err) {
  *out = NULL;
  ngt_npy *a = calloc(1, sizeof *a);
  if (!a) return ngt_err_set(err, NGT_ENOMEM, "out of memory");
  int rc = 0;
  char *hdr = NULL;
  a->path = strdup(path);
  if (!a->path) {
    rc = ngt_err_set(err, NGT_ENOMEM, "out of memory");
    goto fail;
  }
  a->f = fopen(path, "rb");
  if (!a->f) {
    rc = ngt_err_set(err, NGT_EIO, "cannot open npy '%s': %s", path, strerror(errno));
    goto fail;
  }
  struct stat st;
  int64_t fsize = fstat(fileno(a->f), &st) == 0 && S_ISREG(st.st_mode) ? (int64_t)st.st_size : -1;
  unsigned char pre[12];
  size_t got = fread(pre, 1, 10, a->f);
  if (got < 10 || memcmp(pre, "\x93NUMPY", 6) != 0) {
    rc = ngt_err_set(err, NGT_EFORMAT,
                     "npy '%s': wrong magic: not a NumPy .npy file (expected "
                     "\"\\x93NUMPY\" at byte 0%s)",
                     path, got < 10 ? "; the file is too short" : "");
    goto fail;
  }
  a->major = pre[6];
  a->minor = pre[7];
  uint32_t hlen;
  int64_t pre_len;
  if (a->major == 1) {
    hlen = (uint32_t)(pre[8] | (pre[9] << 8));
    pre_len = 10;
  } else if (a->major == 2 || a->major == 3) {
    if (fread(pre + 10, 1, 2, a->f) != 2) {
      rc = ngt_err_set(err, NGT_EFORMAT, "npy '%s': truncated header", path);
      goto fail;
    }
    hlen = (uint32_t)pre[8] | ((uint32_t)pre[9] << 8) | ((uint32_t)pre[10] << 16) |
           ((uint32_t)pre[11] << 24);
    pre_len = 12;
  } else {
    rc = ngt_err_set(err, NGT_EFORMAT,
                     "npy '%s': format version %d.%d is not supported "
                     "(1.0, 2.0 and 3.0 are)",
                     path, a->major, a->minor);
    goto fail;
  }
  if (hlen > (1u << 24) || (fsize >= 0 && pre_len + (int64_t)hlen > fsize)) {
    rc = ngt_err_set(err, NGT_EFORMAT,
                     "npy '%s': header length %u does not fit the file "
                     "(%lld bytes): truncated or not an npy file",
                     path, hlen, (long long)fsize);
    goto fail;
  }
  hdr = malloc((size_t)hlen + 1);
  if (!hdr) {
    rc = ngt_err_set(err, NGT_ENOMEM, "out of memory");
    goto fail;
  }
  if (fread(hdr, 1, hlen, a->f) != hlen) {
    rc = ngt_err_set(err, NGT_EFORMAT, "npy '%s': truncated header", path);
    goto fail;
  }
  hdr[hlen] = '\0';
  if (strlen(hdr) != hlen) {
    rc = bad_header(err, path, hdr, "NUL byte inside the header");
    goto fail;
  }
  rc = parse_header(a, hdr, err);
  if (rc) goto fail;
  a->data_offset = pre_len + hlen;
  int64_t need = a->numel * a->itemsize;
  if (fsize >= 0 && a->data_offset + need > fsize) {
    char sh[160];
    ngt_npy_shape_str(a, sh, sizeof sh);
    rc = ngt_err_set(err, NGT_EFORMAT,
                     "npy '%s': truncated: shape %s of %s needs %lld data "
                     "bytes but the file has %lld after the header",
                     path, sh, a->descr, (long long)need, (long long)(fsize - a->data_offset));
    goto fail;
  }
  a->scratch = malloc((size_t)NPY_BLOCK * 8);
  if (!a->scratch) {
    rc = ngt_err_set(err, NGT_ENOMEM, "out of memory");
    goto fail;
  }
  free(hdr);
  *out = a;
  return 0;
fail:
  free(hdr);
  ngt_npy_close(a);
  return rc;
}

/* Read elements [first, first+n) block by block; call conv(block, k, out + done) per block. */
static int read_blocks(ngt_npy *a, int64_t first, int64_t n, ngt_err *err,
                       int (*conv)(ngt_npy *, const unsigned char *, int64_t, int64_t, void *,
                                   ngt_err *),
                       void *out, size_t out_elem) {
  if (first < 0 || n < 0 || first + n > a->numel)
    return ngt_err_set(err, NGT_EINVAL,
                       "npy '%s': elements [%lld, %lld) requested but the array "
                       "has %lld",
                       a->path, (long long)first, (long long)(first + n), (long long)a->numel);
  if (n == 0) return 0;
  if (fseeko(a->f, (off_t)(a->data_offset + first * a->itemsize), SEEK_SET) != 0)
    return ngt_err_set(err, NGT_EIO, "npy '%s': cannot seek: %s", a->path, strerror(errno));
  int64_t done = 0;
  while (done < n) {
    int64_t k = n - done < NPY_BLOCK ? n - done : NPY_BLOCK;
    size_t bytes = (size_t)k * (size_t)a->itemsize;
    if (fread(a->scratch, 1, bytes, a->f) != bytes)
      return ngt_err_set(err, NGT_EIO, "npy '%s': read error or truncated data at element %lld",
                         a->path, (long long)(first + done));
    int rc = conv(a, a->scratch, k, first + done, (char *)out + (size_t)done * out_elem, err);
    if (rc) return rc;
    done += k;
  }
  return 0;
}

/* Element i of a block as double / int64 (little-endian). */
static uint64_t le_bits(const unsigned char *p, int n) {
  uint64_t u = 0;
  for (int i = n - 1; i >= 0; i--) u = (u << 8) | p[i];
  return u;
}
static double elem_double(const ngt_npy *a, const unsigned char *p) {
  uint64_t u = le_bits(p, a->itemsize);
  switch (a->kind) {
    case 'f':
      if (a->itemsize == 4) {
        uint32_t w = (uint32_t)u;
        float f;
        memcpy(&f, &w, 4);
        return f;
      } else {
        double d;
        memcpy(&d, &u, 8);
        return d;
      }
    case 'i': {
      int sh = 64 - 8 * a->itemsize;
      int64_t s = (int64_t)(u << sh) >> sh; /* sign-extend */
      return (double)s;
    }
    default: return (double)u;
  }
}

static int conv_f32(ngt_npy *a, const unsigned char *b, int64_t k, int64_t e0, void *out,
                    ngt_err *err) {
  (void)e0;
  (void)err;
  float *o = out;
  if (a->kind == 'f' && a->itemsize == 4 && npy_host_le()) {
    memcpy(o, b, (size_t)k * 4);
    return 0;
  }
  for (int64_t i = 0; i < k; i++) o[i] = (float)elem_double(a, b + i * a->itemsize);
  return 0;
}

static int int_value(ngt_npy *a, const unsigned char *p, int64_t idx, int64_t *v, ngt_err *err) {
  uint64_t u = le_bits(p, a->itemsize);
  if (a->kind == 'i') {
    int sh = 64 - 8 * a->itemsize;
    *v = (int64_t)(u << sh) >> sh;
  } else {
    if (u > (uint64_t)INT64_MAX)
      return ngt_err_set(err, NGT_EFORMAT, "npy '%s': element %lld = %llu does not fit int64",
                         a->path, (long long)idx, (unsigned long long)u);
    *v = (int64_t)u;
  }
  return 0;
}

static int need_int(const ngt_npy *a, ngt_err *err) {
  if (a->kind == 'f')
    return ngt_err_set(err, NGT_EFORMAT,
                       "npy '%s': dtype '%s' is floating point but integers "
                       "are needed here (labels / offsets); save with arr.astype(np.int32)",
                       a->path, a->descr);
  return 0;
}

static int conv_i64(ngt_npy *a, const unsigned char *b, int64_t k, int64_t e0, void *out,
                    ngt_err *err) {
  int64_t *o = out;
  for (int64_t i = 0; i < k; i++) {
    int rc = int_value(a, b + i * a->itemsize, e0 + i, &o[i], err);
    if (rc) return rc;
  }
  return 0;
}

static int conv_i32(ngt_npy *a, const unsigned char *b, int64_t k, int64_t e0, void *out,
                    ngt_err *err) {
  int32_t *o = out;
  for (int64_t i = 0; i < k; i++) {
    int64_t v = 0;
    int rc = int_value(a, b + i * a->itemsize, e0 + i, &v, err);
    if (rc) return rc;
    if (v < INT32_MIN || v > INT32_MAX)
      return ngt_err_set(err, NGT_EFORMAT, "npy '%s': element %lld = %lld does not fit int32",
                         a->path, (long long)(e0 + i), (long long)v);
    o[i] = (int32_t)v;
  }
  return 0;
}

int ngt_npy_read_f32(ngt_npy *a, int64_t first, int64_t n, float *out, ngt_err *err) {
  return read_blocks(a, first, n, err, conv_f32, out, sizeof *out);
}

int ngt_npy_read_i64(ngt_npy *a, int64_t first, int64_t n, int64_t *out, ngt_err *err) {
  int rc = need_int(a, err);
  return rc ? rc : read_blocks(a, first, n, err, conv_i64, out, sizeof *out);
}

int ngt_npy_read_i32(ngt_npy *a, int64_t first, int64_t n, int32_t *out, ngt_err *err) {
  int rc = need_int(a, err);
  return rc ? rc : read_blocks(a, first, n, err, conv_i32, out, sizeof *out);
}
