/* h5util.c — HDF5 attribute readers/writers and object checksums; contract in
 * include/ngtrain/h5util.h. */
#include "ngtrain/h5util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ngtrain/hash.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "ngtrain's file checksums are defined over little-endian bytes; port ngt_h5_checksum first"
#endif

/* ------------------------------------------------------------------------------------ */
/* HDF5 error text and object names                                                      */

typedef struct h5err_buf {
  char desc[256];
  int got;
} h5err_buf;

static herr_t h5err_walk(unsigned n, const H5E_error2_t *e, void *data) {
  (void)n;
  h5err_buf *b = data;
  if (!b->got && e->desc && e->desc[0]) {
    snprintf(b->desc, sizeof b->desc, "%s", e->desc);
    b->got = 1;
  }
  return 0;
}

const char *ngt_h5_last_error(char *buf, size_t n) {
  h5err_buf b = {{0}, 0};
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, h5err_walk, &b);
  H5Eclear2(H5E_DEFAULT);
  snprintf(buf, n, "%s", b.got ? b.desc : "unknown HDF5 error");
  return buf;
}

/* The HDF5 path of obj ("/components/003"), or "(unnamed object)". */
static const char *obj_name(hid_t obj, char *buf, size_t n) {
  ssize_t k = H5Iget_name(obj, buf, n);
  if (k <= 0) snprintf(buf, n, "(unnamed object)");
  return buf;
}

/* ------------------------------------------------------------------------------------ */
/* Writers                                                                               */

static int attr_write(hid_t obj, const char *name, hid_t ftype, hid_t mtype, const void *v,
                      const char *file, ngt_err *err) {
  hid_t sp = H5Screate(H5S_SCALAR), a = -1;
  herr_t rc = sp < 0 ? -1 : 0;
  if (rc >= 0) rc = (a = H5Acreate2(obj, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT)) < 0 ? -1 : 0;
  if (rc >= 0) rc = H5Awrite(a, mtype, v);
  char h5msg[256] = "", on[256];
  if (rc < 0) ngt_h5_last_error(h5msg, sizeof h5msg); /* before the closes clear the stack */
  if (a >= 0 && H5Aclose(a) < 0 && rc >= 0) {
    rc = -1;
    ngt_h5_last_error(h5msg, sizeof h5msg);
  }
  if (sp >= 0) H5Sclose(sp);
  if (rc < 0)
    return ngt_err_set(err, NGT_EIO, "'%s': cannot write attribute '%s' of %s: %s", file, name,
                       obj_name(obj, on, sizeof on), h5msg);
  return 0;
}

int ngt_h5_attr_write_int(hid_t obj, const char *name, int v, const char *file, ngt_err *err) {
  return attr_write(obj, name, H5T_STD_I32LE, H5T_NATIVE_INT, &v, file, err);
}
int ngt_h5_attr_write_i64(hid_t obj, const char *name, int64_t v, const char *file, ngt_err *err) {
  return attr_write(obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &v, file, err);
}
int ngt_h5_attr_write_u64(hid_t obj, const char *name, uint64_t v, const char *file,
                          ngt_err *err) {
  return attr_write(obj, name, H5T_STD_U64LE, H5T_NATIVE_UINT64, &v, file, err);
}
int ngt_h5_attr_write_double(hid_t obj, const char *name, double v, const char *file,
                             ngt_err *err) {
  return attr_write(obj, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &v, file, err);
}

static int str_write(hid_t obj, const char *name, const char *v, int vlen, const char *file,
                     ngt_err *err) {
  char h5msg[256], on[256];
  hid_t t = H5Tcopy(H5T_C_S1);
  herr_t r = t < 0 ? -1 : 0;
  if (r >= 0 && vlen) r = H5Tset_size(t, H5T_VARIABLE);
  if (r >= 0 && vlen) r = H5Tset_cset(t, H5T_CSET_UTF8);
  if (r >= 0 && !vlen) r = H5Tset_size(t, strlen(v) + 1);
  if (r >= 0 && !vlen) r = H5Tset_strpad(t, H5T_STR_NULLTERM);
  if (r < 0) {
    ngt_h5_last_error(h5msg, sizeof h5msg);
    if (t >= 0) H5Tclose(t);
    return ngt_err_set(err, NGT_EIO,
                       "'%s': cannot make the string type of attribute '%s' of "
                       "%s: %s",
                       file, name, obj_name(obj, on, sizeof on), h5msg);
  }
  int rc = attr_write(obj, name, t, t, vlen ? (const void *)&v : (const void *)v, file, err);
  H5Tclose(t);
  return rc;
}

int ngt_h5_attr_write_str(hid_t obj, const char *name, const char *v, const char *file,
                          ngt_err *err) {
  return str_write(obj, name, v ? v : "", 0, file, err);
}
int ngt_h5_attr_write_vstr(hid_t obj, const char *name, const char *v, const char *file,
                           ngt_err *err) {
  return str_write(obj, name, v ? v : "", 1, file, err);
}

/* ------------------------------------------------------------------------------------ */
/* Readers                                                                               */

/* Open attribute name of obj and check it is one value of class cls (or cls2).
 * 0 ok (*a, *t open), 1 absent, < 0 error with err set. */
static int attr_open(hid_t obj, const char *name, H5T_class_t cls, H5T_class_t cls2,
                     const char *what, hid_t *a, hid_t *t, const char *file, ngt_err *err) {
  char on[256];
  *a = *t = -1;
  htri_t ex = H5Aexists(obj, name);
  if (ex == 0) return 1;
  hid_t sp = -1;
  if (ex < 0 || (*a = H5Aopen(obj, name, H5P_DEFAULT)) < 0 || (*t = H5Aget_type(*a)) < 0 ||
      (sp = H5Aget_space(*a)) < 0) {
    char h5msg[256];
    ngt_h5_last_error(h5msg, sizeof h5msg);
    if (sp >= 0) H5Sclose(sp);
    if (*t >= 0) H5Tclose(*t);
    if (*a >= 0) H5Aclose(*a);
    *a = *t = -1;
    return ngt_err_set(err, NGT_EFORMAT,
                       "'%s': cannot read attribute '%s' of %s: %s (the file "
                       "is damaged)",
                       file, name, obj_name(obj, on, sizeof on), h5msg);
  }
  H5T_class_t c = H5Tget_class(*t);
  hssize_t np = H5Sget_simple_extent_npoints(sp);
  H5Sclose(sp);
  if ((c != cls && c != cls2) || np != 1) {
    H5Tclose(*t);
    H5Aclose(*a);
    *a = *t = -1;
    return ngt_err_set(err, NGT_EFORMAT,
                       "'%s': attribute '%s' of %s is not one %s (the file is "
                       "damaged, or was not written by ngtrain)",
                       file, name, obj_name(obj, on, sizeof on), what);
  }
  return 0;
}

static int attr_read_num(hid_t obj, const char *name, H5T_class_t cls2, hid_t mtype, void *v,
                         const char *what, const char *file, ngt_err *err) {
  hid_t a, t;
  int rc = attr_open(obj, name, H5T_INTEGER, cls2, what, &a, &t, file, err);
  if (rc) return rc;
  if (H5Aread(a, mtype, v) < 0) {
    char h5msg[256], on[256];
    ngt_h5_last_error(h5msg, sizeof h5msg);
    rc = ngt_err_set(err, NGT_EFORMAT,
                     "'%s': cannot read attribute '%s' of %s: %s (the file is "
                     "damaged)",
                     file, name, obj_name(obj, on, sizeof on), h5msg);
  }
  H5Tclose(t);
  H5Aclose(a);
  return rc;
}

int ngt_h5_attr_read_i64(hid_t obj, const char *name, long long *v, const char *file,
                         ngt_err *err) {
  return attr_read_num(obj, name, H5T_INTEGER, H5T_NATIVE_LLONG, v, "integer", file, err);
}
int ngt_h5_attr_read_u64(hid_t obj, const char *name, uint64_t *v, const char *file,
                         ngt_err *err) {
  return attr_read_num(obj, name, H5T_INTEGER, H5T_NATIVE_UINT64, v, "integer", file, err);
}
int ngt_h5_attr_read_double(hid_t obj, const char *name, double *v, const char *file,
                            ngt_err *err) {
  return attr_read_num(obj, name, H5T_FLOAT, H5T_NATIVE_DOUBLE, v, "number", file, err);
}

int ngt_h5_attr_read_str(hid_t obj, const char *name, char **out, const char *file, ngt_err *err) {
  *out = NULL;
  hid_t a, t, mt = -1;
  int rc = attr_open(obj, name, H5T_STRING, H5T_STRING, "string", &a, &t, file, err);
  if (rc) return rc;
  rc = -1;
  /* HDF5 converts no strings between character sets: read in the stored one. */
  mt = H5Tcopy(H5T_C_S1);
  if (mt >= 0 && H5Tset_cset(mt, H5Tget_cset(t)) >= 0) {
    if (H5Tis_variable_str(t) > 0) {
      char *s = NULL;
      if (H5Tset_size(mt, H5T_VARIABLE) >= 0 && H5Aread(a, mt, &s) >= 0) {
        *out = strdup(s ? s : "");
        if (s) H5free_memory(s);
        rc = *out ? 0 : NGT_ENOMEM;
      }
    } else {
      size_t n = H5Tget_size(t);
      char *buf = n ? calloc(n + 1, 1) : NULL;
      if (!n || !buf) {
        rc = n ? NGT_ENOMEM : -1;
      } else if (H5Tset_size(mt, n + 1) >= 0 && H5Tset_strpad(mt, H5T_STR_NULLTERM) >= 0 &&
                 H5Aread(a, mt, buf) >= 0) {
        *out = buf;
        rc = 0;
      } else {
        free(buf);
      }
    }
  }
  char on[256];
  if (rc == NGT_ENOMEM) {
    rc = ngt_err_set(err, NGT_ENOMEM, "'%s': out of memory reading attribute '%s' of %s", file,
                     name, obj_name(obj, on, sizeof on));
  } else if (rc < 0) {
    char h5msg[256];
    ngt_h5_last_error(h5msg, sizeof h5msg);
    rc = ngt_err_set(err, NGT_EFORMAT,
                     "'%s': cannot read string attribute '%s' of %s: %s (the "
                     "file is damaged)",
                     file, name, obj_name(obj, on, sizeof on), h5msg);
  }
  if (mt >= 0) H5Tclose(mt);
  H5Tclose(t);
  H5Aclose(a);
  return rc;
}

/* ------------------------------------------------------------------------------------ */
/* XXH64 (the specification in https://github.com/Cyan4973/xxHash), one shot            */

#define P1 0x9E3779B185EBCA87ULL
#define P2 0xC2B2AE3D27D4EB4FULL
#define P3 0x165667B19E3779F9ULL
#define P4 0x85EBCA77C2B2AE63ULL
#define P5 0x27D4EB2F165667C5ULL

static inline uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
static inline uint64_t rd64(const unsigned char *p) {
  uint64_t v;
  memcpy(&v, p, 8);
  return v;
}
static inline uint32_t rd32(const unsigned char *p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return v;
}
static inline uint64_t xround(uint64_t acc, uint64_t in) {
  acc += in * P2;
  return rotl64(acc, 31) * P1;
}
static inline uint64_t xmerge(uint64_t acc, uint64_t v) {
  acc ^= xround(0, v);
  return acc * P1 + P4;
}

uint64_t ngt_xxh64(const void *data, size_t n, uint64_t seed) {
  const unsigned char *p = data, *end = p + n;
  uint64_t h;
  if (n >= 32) {
    uint64_t v1 = seed + P1 + P2, v2 = seed + P2, v3 = seed, v4 = seed - P1;
    const unsigned char *lim = end - 32;
    do {
      v1 = xround(v1, rd64(p));
      v2 = xround(v2, rd64(p + 8));
      v3 = xround(v3, rd64(p + 16));
      v4 = xround(v4, rd64(p + 24));
      p += 32;
    } while (p <= lim);
    h = rotl64(v1, 1) + rotl64(v2, 7) + rotl64(v3, 12) + rotl64(v4, 18);
    h = xmerge(h, v1);
    h = xmerge(h, v2);
    h = xmerge(h, v3);
    h = xmerge(h, v4);
  } else {
    h = seed + P5;
  }
  h += (uint64_t)n;
  for (; p + 8 <= end; p += 8) {
    h ^= xround(0, rd64(p));
    h = rotl64(h, 27) * P1 + P4;
  }
  if (p + 4 <= end) {
    h ^= (uint64_t)rd32(p) * P1;
    h = rotl64(h, 23) * P2 + P3;
    p += 4;
  }
  for (; p < end; p++) {
    h ^= (*p) * P5;
    h = rotl64(h, 11) * P1;
  }
  h ^= h >> 33;
  h *= P2;
  h ^= h >> 29;
  h *= P3;
  h ^= h >> 32;
  return h;
}

/* ------------------------------------------------------------------------------------ */
/* Checksums                                                                             */

typedef struct sum_ctx {
  uint64_t h;
  const char *file;
  ngt_err *err;
  int failed;
} sum_ctx;

static void hash_u64(sum_ctx *c, uint64_t v) { c->h = ngt_fnv1a64(&v, sizeof v, c->h); }
static void hash_str(sum_ctx *c, const char *s) { c->h = ngt_fnv1a64(s, strlen(s) + 1, c->h); }

#define MAX_ATTR_POINTS 65536 /* ngtrain writes scalars; a damaged dataspace may claim more */

static herr_t sum_attr(hid_t loc, const char *name, const H5A_info_t *info, void *data) {
  (void)info;
  sum_ctx *c = data;
  if (strcmp(name, NGT_H5_CHECKSUM_ATTR) == 0) return 0;
  char on[256], h5msg[256];
  hid_t a = H5Aopen(loc, name, H5P_DEFAULT), t = -1, sp = -1;
  int ok = a >= 0 && (t = H5Aget_type(a)) >= 0 && (sp = H5Aget_space(a)) >= 0;
  H5T_class_t cls = ok ? H5Tget_class(t) : H5T_NO_CLASS;
  hssize_t np = ok ? H5Sget_simple_extent_npoints(sp) : -1;
  const char *why = NULL;
  if (!ok || np < 0) {
    why = "cannot be read";
  } else if (np > MAX_ATTR_POINTS) {
    why = "claims too many values";
  } else if (cls == H5T_INTEGER || cls == H5T_FLOAT) {
    int isint = cls == H5T_INTEGER;
    void *v = malloc(np ? (size_t)np * 8 : 1);
    if (!v || (np > 0 && H5Aread(a, isint ? H5T_NATIVE_INT64 : H5T_NATIVE_DOUBLE, v) < 0)) {
      why = v ? "cannot be read" : "does not fit in memory";
    } else {
      hash_str(c, name);
      hash_u64(c, isint ? 'i' : 'f');
      hash_u64(c, (uint64_t)np);
      c->h = ngt_fnv1a64(v, (size_t)np * 8, c->h);
    }
    free(v);
  } else if (cls == H5T_STRING && np == 1) {
    char *s = NULL;
    ngt_err e = {0};
    if (ngt_h5_attr_read_str(loc, name, &s, c->file, &e) != 0) {
      why = "cannot be read";
    } else {
      hash_str(c, name);
      hash_u64(c, 's');
      hash_str(c, s);
    }
    free(s);
  } else {
    why = "has a type ngtrain does not write";
  }
  if (why) {
    ngt_h5_last_error(h5msg, sizeof h5msg);
    ngt_err_set(c->err, NGT_EFORMAT, "'%s': attribute '%s' of %s %s (%s): the file is damaged",
                c->file, name, obj_name(loc, on, sizeof on), why, h5msg);
    c->failed = 1;
  }
  if (sp >= 0) H5Sclose(sp);
  if (t >= 0) H5Tclose(t);
  if (a >= 0) H5Aclose(a);
  return why ? -1 : 0;
}

static herr_t sum_link(hid_t g, const char *name, const H5L_info_t *info, void *data) {
  (void)g;
  (void)info;
  hash_str(data, name);
  return 0;
}

int ngt_h5_checksum(hid_t obj, const void *data, size_t n, size_t es, uint64_t *out,
                    const char *file, ngt_err *err) {
  char on[256], h5msg[256];
  sum_ctx c = {NGT_FNV1A64_INIT, file, err, 0};
  H5I_type_t it = H5Iget_type(obj);
  hsize_t idx = 0;
  if (H5Aiterate2(obj, H5_INDEX_NAME, H5_ITER_INC, &idx, sum_attr, &c) < 0) {
    if (!c.failed)
      ngt_err_set(err, NGT_EFORMAT,
                  "'%s': the attributes of %s cannot be listed (%s): the file "
                  "is damaged",
                  file, obj_name(obj, on, sizeof on), ngt_h5_last_error(h5msg, sizeof h5msg));
    return NGT_EFORMAT;
  }
  if (it == H5I_GROUP || it == H5I_FILE) {
    hash_u64(&c, 'G');
    idx = 0;
    if (H5Literate(obj, H5_INDEX_NAME, H5_ITER_INC, &idx, sum_link, &c) < 0)
      return ngt_err_set(err, NGT_EFORMAT,
                         "'%s': the members of group %s cannot be listed (%s): "
                         "the file is damaged",
                         file, obj_name(obj, on, sizeof on),
                         ngt_h5_last_error(h5msg, sizeof h5msg));
  } else if (it == H5I_DATASET) {
    hash_u64(&c, 'D');
    hid_t sp = H5Dget_space(obj);
    int r = sp < 0 ? -1 : H5Sget_simple_extent_ndims(sp);
    hsize_t d[H5S_MAX_RANK];
    size_t np = 1;
    if (r >= 0 && r <= H5S_MAX_RANK && H5Sget_simple_extent_dims(sp, d, NULL) >= 0) {
      hash_u64(&c, (uint64_t)r);
      for (int i = 0; i < r; i++) {
        hash_u64(&c, (uint64_t)d[i]);
        np *= (size_t)d[i];
      }
    } else {
      r = -1;
    }
    if (sp >= 0) H5Sclose(sp);
    if (r < 0 || np != n || (es != 4 && es != 8) || (n > 0 && !data))
      return ngt_err_set(err, NGT_EFORMAT,
                         "'%s': dataset %s has %s, not the %zu elements "
                         "read (the file is damaged)",
                         file, obj_name(obj, on, sizeof on),
                         r < 0 ? "an unreadable shape" : "another number of elements", n);
    hash_u64(&c, (uint64_t)es);
    hash_u64(&c, ngt_xxh64(data, n * es, 0));
  } else {
    return ngt_err_set(err, NGT_EINVAL,
                       "'%s': checksum of an HDF5 object that is neither a "
                       "group nor a dataset",
                       file);
  }
  *out = c.h;
  return 0;
}

int ngt_h5_seal(hid_t obj, const void *data, size_t n, size_t es, const char *file, ngt_err *err) {
  uint64_t h;
  int rc = ngt_h5_checksum(obj, data, n, es, &h, file, err);
  if (rc) return rc;
  if (H5Aexists(obj, NGT_H5_CHECKSUM_ATTR) > 0 && H5Adelete(obj, NGT_H5_CHECKSUM_ATTR) < 0) {
    char on[256], h5msg[256];
    return ngt_err_set(err, NGT_EIO, "'%s': cannot replace the checksum of %s: %s", file,
                       obj_name(obj, on, sizeof on), ngt_h5_last_error(h5msg, sizeof h5msg));
  }
  return ngt_h5_attr_write_u64(obj, NGT_H5_CHECKSUM_ATTR, h, file, err);
}

int ngt_h5_verify(hid_t obj, const void *data, size_t n, size_t es, const char *file,
                  ngt_err *err) {
  uint64_t stored, h;
  int rc = ngt_h5_attr_read_u64(obj, NGT_H5_CHECKSUM_ATTR, &stored, file, err);
  if (rc) return rc;
  if ((rc = ngt_h5_checksum(obj, data, n, es, &h, file, err))) return rc;
  if (h != stored) {
    char on[256];
    return ngt_err_set(err, NGT_EFORMAT,
                       "'%s': %s %s fails its checksum (stored 0x%016llx, "
                       "computed 0x%016llx): the file is damaged",
                       file, H5Iget_type(obj) == H5I_DATASET ? "dataset" : "group",
                       obj_name(obj, on, sizeof on), (unsigned long long)stored,
                       (unsigned long long)h);
  }
  return 0;
}
