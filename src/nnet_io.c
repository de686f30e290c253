/* nnet_io.c — models and checkpoints to and from HDF5, written atomically.
 * Contract and file layout: include/ngtrain/nnet_io.h.
 *
 * Writing: everything goes to ngt_tmp_path(path) ("<path>.tmp.<pid>"), the file is
 * closed, then ngt_commit_tmp() fsyncs, renames over path and fsyncs the directory
 * (redis rdbSave), so readers see the old model or the new one, never half of one.
 * Every group and dataset (and the root group, through the file-creation property
 * list) is created with H5Pset_obj_track_times(.., 0): HDF5 otherwise stamps object
 * headers with the creation time and equal models would give different bytes.
 *
 * Reading trusts nothing: the format/version attributes, the stored config (parsed
 * again with ngt_nnet_from_config, which is the source of truth for the structure),
 * every component group's type and dims against that config, every dataset's class
 * and shape, finiteness of all parameters, the transform's shape and type, the priors'
 * length, sign and sum. Every message names the file and the dataset or attribute.
 */
#include "ngtrain/nnet_io.h"

#include <errno.h>
#include <hdf5.h>
#include <libgen.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MODEL_FORMAT "ngtrain-model"
#define MODEL_VERSION 1
#define MAX_CONFIG_BYTES 60000 /* an HDF5 compact attribute holds < 64 KiB */

/* ------------------------------------------------------------------------------------ */
/* HDF5 error text                                                                        */

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

/* The most specific message on HDF5's error stack (e.g. "truncated file: eof = ..."),
 * or "unknown HDF5 error"; clears the stack. */
static const char *h5_last_error(char *buf, size_t n) {
  h5err_buf b = {{0}, 0};
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, h5err_walk, &b);
  H5Eclear2(H5E_DEFAULT);
  snprintf(buf, n, "%s", b.got ? b.desc : "unknown HDF5 error");
  return buf;
}

/* The error text of the first failure while writing: captured at once, because every
 * later successful HDF5 call (the cleanup closes) clears HDF5's error stack. */
static _Thread_local char g_write_err[256];

static void h5_capture(void) {
  if (!g_write_err[0]) h5_last_error(g_write_err, sizeof g_write_err);
}

/* ------------------------------------------------------------------------------------ */
/* Writing helpers: each returns < 0 on failure                                           */

static herr_t attr_write(hid_t obj, const char *name, hid_t ftype, hid_t mtype, const void *v) {
  hid_t sp = H5Screate(H5S_SCALAR);
  if (sp < 0) return -1;
  hid_t a = H5Acreate2(obj, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT);
  herr_t rc = a < 0 ? -1 : H5Awrite(a, mtype, v);
  if (rc < 0) h5_capture();
  if (a >= 0 && H5Aclose(a) < 0) rc = -1;
  H5Sclose(sp);
  return rc;
}
static herr_t attr_write_int(hid_t obj, const char *name, int v) {
  return attr_write(obj, name, H5T_STD_I32LE, H5T_NATIVE_INT, &v);
}
static herr_t attr_write_i64(hid_t obj, const char *name, long long v) {
  return attr_write(obj, name, H5T_STD_I64LE, H5T_NATIVE_LLONG, &v);
}
static herr_t attr_write_double(hid_t obj, const char *name, double v) {
  return attr_write(obj, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &v);
}
/* Fixed-length, NUL-terminated ASCII string (h5py reads it as bytes). */
static herr_t attr_write_str(hid_t obj, const char *name, const char *s) {
  hid_t t = H5Tcopy(H5T_C_S1);
  if (t < 0) return -1;
  herr_t rc = H5Tset_size(t, strlen(s) + 1);
  if (rc >= 0) rc = H5Tset_strpad(t, H5T_STR_NULLTERM);
  if (rc >= 0) rc = attr_write(obj, name, t, t, s);
  H5Tclose(t);
  return rc;
}

/* A dataset of rank 1 or 2 (dims), file type ftype, written from memory type mtype. */
static herr_t dset_write(hid_t loc, const char *name, int rank, const hsize_t *dims, hid_t ftype,
                         hid_t mtype, const void *data, hid_t dcpl, hid_t *out_ds) {
  hid_t sp = H5Screate_simple(rank, dims, NULL);
  if (sp < 0) return -1;
  hid_t ds = H5Dcreate2(loc, name, ftype, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  hsize_t n = 1;
  for (int i = 0; i < rank; i++) n *= dims[i];
  herr_t rc = ds < 0 ? -1 : 0;
  if (rc >= 0 && n > 0) rc = H5Dwrite(ds, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
  if (rc < 0) h5_capture();
  if (out_ds && rc >= 0) *out_ds = ds;
  else if (ds >= 0 && H5Dclose(ds) < 0) rc = -1;
  H5Sclose(sp);
  return rc;
}

static int blob_name_ok(const char *s) {
  if (!s || !*s) return 0;
  for (; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
          *s == '_'))
      return 0;
  return 1;
}

static const char *blob_type_name(int type) {
  switch (type) {
    case NGT_BLOB_F32: return "float32";
    case NGT_BLOB_F64: return "float64";
    case NGT_BLOB_I64: return "int64";
    default: return "unknown";
  }
}

static int blob_types(int type, hid_t *ftype, hid_t *mtype, size_t *elsize) {
  switch (type) {
    case NGT_BLOB_F32: *ftype = H5T_IEEE_F32LE; *mtype = H5T_NATIVE_FLOAT; *elsize = 4; return 0;
    case NGT_BLOB_F64: *ftype = H5T_IEEE_F64LE; *mtype = H5T_NATIVE_DOUBLE; *elsize = 8; return 0;
    case NGT_BLOB_I64: *ftype = H5T_STD_I64LE; *mtype = H5T_NATIVE_INT64; *elsize = 8; return 0;
    default: return -1;
  }
}

/* Write the whole model into the open file f. On failure names the object in what. */
static herr_t write_model(hid_t f, const ngt_nnet *net, const ngt_blob *extra, int n_extra,
                          hid_t gcpl, hid_t dcpl, char *what, size_t whatlen) {
#define TRY(expr, ...)                                \
  do {                                                \
    if ((expr) < 0) {                                 \
      snprintf(what, whatlen, __VA_ARGS__);           \
      goto out_fail;                                  \
    }                                                 \
  } while (0)
  hid_t comps = -1, g = -1, ds = -1, ts = -1;
  TRY(attr_write_str(f, "format", MODEL_FORMAT), "attribute /format");
  TRY(attr_write_int(f, "version", MODEL_VERSION), "attribute /version");
  TRY(attr_write_str(f, "config", net->config_text ? net->config_text : ""), "attribute /config");
  TRY(attr_write_int(f, "feat_dim", net->feat_dim), "attribute /feat_dim");
  TRY(attr_write_int(f, "ctx_left", net->ctx_left), "attribute /ctx_left");
  TRY(attr_write_int(f, "ctx_right", net->ctx_right), "attribute /ctx_right");
  TRY(attr_write_int(f, "num_classes", net->num_classes), "attribute /num_classes");
  TRY(attr_write_i64(f, "num_params", (long long)net->num_params), "attribute /num_params");

  TRY(comps = H5Gcreate2(f, "components", H5P_DEFAULT, gcpl, H5P_DEFAULT), "group /components");
  for (int c = 0; c < net->num_comps; c++) {
    const ngt_comp *cp = &net->comps[c];
    char name[32];
    snprintf(name, sizeof name, "%03d", c);
    TRY(g = H5Gcreate2(comps, name, H5P_DEFAULT, gcpl, H5P_DEFAULT), "group /components/%s", name);
    TRY(attr_write_int(g, "type", (int)cp->type), "/components/%s attributes", name);
    TRY(attr_write_str(g, "type_name", ngt_comp_type_name(cp->type)), "/components/%s attributes", name);
    TRY(attr_write_int(g, "in_dim", cp->in_dim), "/components/%s attributes", name);
    TRY(attr_write_int(g, "out_dim", cp->out_dim), "/components/%s attributes", name);
    TRY(attr_write_int(g, "layer", cp->layer), "/components/%s attributes", name);
    if (cp->type == NGT_COMP_AFFINE) {
      hsize_t wd[2] = {(hsize_t)cp->out_dim, (hsize_t)cp->in_dim}, bd[1] = {(hsize_t)cp->out_dim};
      TRY(dset_write(g, "W", 2, wd, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, net->params + cp->w_off,
                     dcpl, NULL), "/components/%s/W", name);
      TRY(dset_write(g, "b", 1, bd, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, net->params + cp->b_off,
                     dcpl, NULL), "/components/%s/b", name);
      TRY(attr_write_double(g, "max_change", cp->max_change), "/components/%s attributes", name);
      TRY(attr_write_double(g, "lr_factor", cp->lr_factor), "/components/%s attributes", name);
      TRY(attr_write_double(g, "param_stddev", cp->param_stddev), "/components/%s attributes", name);
      TRY(attr_write_double(g, "bias_stddev", cp->bias_stddev), "/components/%s attributes", name);
      TRY(attr_write_int(g, "use_natural_gradient", cp->ng.use_ng), "/components/%s attributes", name);
      TRY(attr_write_int(g, "rank_in", cp->ng.rank_in), "/components/%s attributes", name);
      TRY(attr_write_int(g, "rank_out", cp->ng.rank_out), "/components/%s attributes", name);
      TRY(attr_write_int(g, "update_period", cp->ng.update_period), "/components/%s attributes", name);
      TRY(attr_write_double(g, "num_samples_history", cp->ng.num_samples_history),
          "/components/%s attributes", name);
      TRY(attr_write_double(g, "alpha", cp->ng.alpha), "/components/%s attributes", name);
    }
    if (cp->type == NGT_COMP_PNORM)
      TRY(attr_write_int(g, "group", cp->group), "/components/%s attributes", name);
    TRY(H5Gclose(g), "group /components/%s", name);
    g = -1;
  }
  TRY(H5Gclose(comps), "group /components");
  comps = -1;

  if (net->transform && net->transform_type != NGT_TRANSFORM_NONE) {
    hsize_t td[2] = {(hsize_t)net->input_dim, (hsize_t)net->input_dim + 1};
    TRY(dset_write(f, "input_transform", 2, td, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, net->transform,
                   dcpl, &ds), "/input_transform");
    TRY(attr_write_int(ds, "type", net->transform_type), "/input_transform attributes");
    TRY(attr_write_str(ds, "type_name", net->transform_type == NGT_TRANSFORM_LDA ? "lda" : "cmvn"),
        "/input_transform attributes");
    TRY(H5Dclose(ds), "/input_transform");
    ds = -1;
  }
  if (net->priors) {
    hsize_t pd[1] = {(hsize_t)net->num_classes};
    TRY(dset_write(f, "priors", 1, pd, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, net->priors, dcpl, NULL),
        "/priors");
  }
  if (n_extra > 0) {
    TRY(ts = H5Gcreate2(f, "train_state", H5P_DEFAULT, gcpl, H5P_DEFAULT), "group /train_state");
    for (int i = 0; i < n_extra; i++) {
      hid_t ft = -1, mt = -1;
      size_t es = 0;
      (void)blob_types(extra[i].type, &ft, &mt, &es); /* validated by the caller */
      hsize_t d[1] = {(hsize_t)extra[i].n};
      TRY(dset_write(ts, extra[i].name, 1, d, ft, mt, extra[i].data, dcpl, NULL),
          "/train_state/%s", extra[i].name);
    }
    TRY(H5Gclose(ts), "group /train_state");
    ts = -1;
  }
  return 0;
out_fail:
  /* The file is closed with H5F_CLOSE_STRONG, which closes anything left open. */
  return -1;
#undef TRY
}

int ngt_nnet_save(const ngt_nnet *net, const char *path, const ngt_blob *extra, int n_extra,
                  ngt_err *err) {
  ngt_hdf5_quiet();
  char h5msg[256];
  /* Validate what the caller passed before touching the disk. */
  if (net->config_text && strlen(net->config_text) > MAX_CONFIG_BYTES)
    return ngt_err_set(err, NGT_EINVAL,
                       "cannot write model '%s': the network config is %zu bytes, more than the "
                       "%d an HDF5 attribute holds (remove comments from the config)",
                       path, strlen(net->config_text), MAX_CONFIG_BYTES);
  for (int i = 0; i < n_extra; i++) {
    hid_t ft = -1, mt = -1;
    size_t es = 0;
    if (!blob_name_ok(extra[i].name))
      return ngt_err_set(err, NGT_EINVAL, "cannot write model '%s': bad train_state name '%s' "
                         "(use letters, digits and '_')", path, extra[i].name ? extra[i].name : "(null)");
    if (blob_types(extra[i].type, &ft, &mt, &es) != 0)
      return ngt_err_set(err, NGT_EINVAL, "cannot write model '%s': train_state '%s' has unknown "
                         "type %d", path, extra[i].name, extra[i].type);
    if (extra[i].n > 0 && !extra[i].data)
      return ngt_err_set(err, NGT_EINVAL, "cannot write model '%s': train_state '%s' has %zu "
                         "elements but no data", path, extra[i].name, extra[i].n);
    for (int j = 0; j < i; j++)
      if (strcmp(extra[i].name, extra[j].name) == 0)
        return ngt_err_set(err, NGT_EINVAL, "cannot write model '%s': train_state '%s' given twice",
                           path, extra[i].name);
  }
  /* A clear message for the commonest mistake: the directory does not exist. */
  char *pcopy = strdup(path);
  if (!pcopy) return ngt_err_set(err, NGT_ENOMEM, "out of memory");
  const char *dir = dirname(pcopy);
  struct stat st;
  if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
    int e = errno;
    int rc = ngt_err_set(err, NGT_EIO, "cannot write model '%s': directory '%s' %s (create it "
                         "first, or check the path)", path, dir,
                         e == ENOENT || e == 0 ? "does not exist" : strerror(e));
    free(pcopy);
    return rc;
  }
  free(pcopy);

  char tmp[4096];
  ngt_tmp_path(path, tmp, sizeof tmp);
  int rc = 0;
  hid_t fcpl = H5Pcreate(H5P_FILE_CREATE), fapl = H5Pcreate(H5P_FILE_ACCESS),
        gcpl = H5Pcreate(H5P_GROUP_CREATE), dcpl = H5Pcreate(H5P_DATASET_CREATE), f = -1;
  if (fcpl < 0 || fapl < 0 || gcpl < 0 || dcpl < 0 || H5Pset_obj_track_times(fcpl, 0) < 0 ||
      H5Pset_obj_track_times(gcpl, 0) < 0 || H5Pset_obj_track_times(dcpl, 0) < 0 ||
      H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG) < 0) {
    rc = ngt_err_set(err, NGT_EIO, "cannot write model '%s': HDF5 property setup failed: %s", path,
                     h5_last_error(h5msg, sizeof h5msg));
    goto out_props;
  }
  errno = 0;
  f = H5Fcreate(tmp, H5F_ACC_TRUNC, fcpl, fapl);
  if (f < 0) {
    int e = errno;
    rc = ngt_err_set(err, NGT_EIO, "cannot write model '%s': cannot create '%s': %s%s%s", path,
                     tmp, h5_last_error(h5msg, sizeof h5msg), e ? ": " : "", e ? strerror(e) : "");
    unlink(tmp);
    goto out_props;
  }
  char what[128] = "";
  g_write_err[0] = '\0';
  if (write_model(f, net, extra, n_extra, gcpl, dcpl, what, sizeof what) < 0) {
    h5_capture();
    rc = ngt_err_set(err, NGT_EIO, "cannot write model '%s': writing %s to '%s' failed: %s (is the "
                     "disk full?)", path, what, tmp, g_write_err);
    H5Fclose(f);
    unlink(tmp);
    goto out_props;
  }
  if (H5Fclose(f) < 0) {
    rc = ngt_err_set(err, NGT_EIO, "cannot write model '%s': closing '%s' failed: %s (is the disk "
                     "full?)", path, tmp, h5_last_error(h5msg, sizeof h5msg));
    unlink(tmp);
    goto out_props;
  }
  rc = ngt_commit_tmp(tmp, path, err);
out_props:
  if (dcpl >= 0) H5Pclose(dcpl);
  if (gcpl >= 0) H5Pclose(gcpl);
  if (fapl >= 0) H5Pclose(fapl);
  if (fcpl >= 0) H5Pclose(fcpl);
  return rc;
}

/* ------------------------------------------------------------------------------------ */
/* Reading helpers                                                                        */

/* 0 ok, 1 missing, -1 wrong class / not a single value / read failed. */
static int attr_read_i64(hid_t obj, const char *name, long long *v) {
  if (H5Aexists(obj, name) <= 0) return 1;
  hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
  if (a < 0) return -1;
  hid_t t = H5Aget_type(a), sp = H5Aget_space(a);
  int rc = -1;
  if (t >= 0 && sp >= 0 && H5Tget_class(t) == H5T_INTEGER && H5Sget_simple_extent_npoints(sp) == 1 &&
      H5Aread(a, H5T_NATIVE_LLONG, v) >= 0)
    rc = 0;
  if (t >= 0) H5Tclose(t);
  if (sp >= 0) H5Sclose(sp);
  H5Aclose(a);
  return rc;
}

/* String attribute (fixed or variable length) into a malloc'd buffer. */
static int attr_read_str(hid_t obj, const char *name, char **out) {
  *out = NULL;
  if (H5Aexists(obj, name) <= 0) return 1;
  hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
  if (a < 0) return -1;
  hid_t t = H5Aget_type(a), sp = H5Aget_space(a), mt = -1;
  int rc = -1;
  if (t < 0 || sp < 0 || H5Tget_class(t) != H5T_STRING || H5Sget_simple_extent_npoints(sp) != 1)
    goto out_close;
  if (H5Tis_variable_str(t) > 0) {
    char *s = NULL;
    mt = H5Tcopy(H5T_C_S1);
    if (mt < 0 || H5Tset_size(mt, H5T_VARIABLE) < 0 || H5Aread(a, mt, &s) < 0) goto out_close;
    *out = strdup(s ? s : "");
    if (s) H5free_memory(s);
    rc = *out ? 0 : -1;
  } else {
    size_t n = H5Tget_size(t);
    char *buf = calloc(n + 1, 1);
    if (!buf) goto out_close;
    if (H5Aread(a, t, buf) < 0) { free(buf); goto out_close; }
    buf[n] = '\0';
    *out = buf;
    rc = 0;
  }
out_close:
  if (mt >= 0) H5Tclose(mt);
  if (t >= 0) H5Tclose(t);
  if (sp >= 0) H5Sclose(sp);
  H5Aclose(a);
  return rc;
}

static void fmt_dims(char *buf, size_t n, int rank, const hsize_t *d) {
  size_t k = (size_t)snprintf(buf, n, "[");
  for (int i = 0; i < rank && k < n; i++)
    k += (size_t)snprintf(buf + k, n - k, "%s%llu", i ? ", " : "", (unsigned long long)d[i]);
  if (k < n) snprintf(buf + k, n - k, "]");
}

/* Read the float dataset loc/name (shown as `where`) of exactly `rank` x want dims into
 * dst, and check every value is finite. */
static int read_f32(const char *path, hid_t loc, const char *name, const char *where, int rank,
                    const hsize_t *want, float *dst, ngt_err *err) {
  char h5msg[256], got_s[96], want_s[96];
  if (H5Lexists(loc, name, H5P_DEFAULT) <= 0)
    return ngt_err_set(err, NGT_EFORMAT, "model '%s': %s is missing (the file is damaged; use "
                       "another checkpoint)", path, where);
  hid_t ds = H5Dopen2(loc, name, H5P_DEFAULT);
  if (ds < 0)
    return ngt_err_set(err, NGT_EFORMAT, "model '%s': cannot open %s as a dataset: %s", path,
                       where, h5_last_error(h5msg, sizeof h5msg));
  int rc = 0;
  hid_t t = H5Dget_type(ds), sp = H5Dget_space(ds);
  if (t < 0 || H5Tget_class(t) != H5T_FLOAT) {
    rc = ngt_err_set(err, NGT_EFORMAT, "model '%s': %s is not a float dataset (expected float32)",
                     path, where);
    goto out_close;
  }
  int r = sp < 0 ? -1 : H5Sget_simple_extent_ndims(sp);
  hsize_t got[H5S_MAX_RANK] = {0};
  if (r >= 0 && r <= H5S_MAX_RANK) H5Sget_simple_extent_dims(sp, got, NULL);
  int same = r == rank;
  for (int i = 0; same && i < rank; i++) same = got[i] == want[i];
  if (!same) {
    fmt_dims(got_s, sizeof got_s, r < 0 ? 0 : r, got);
    fmt_dims(want_s, sizeof want_s, rank, want);
    rc = ngt_err_set(err, NGT_EFORMAT, "model '%s': %s has shape %s but the config says %s (the "
                     "file was modified or damaged)", path, where, got_s, want_s);
    goto out_close;
  }
  size_t n = 1;
  for (int i = 0; i < rank; i++) n *= (size_t)want[i];
  if (n > 0 && H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst) < 0) {
    rc = ngt_err_set(err, NGT_EFORMAT, "model '%s': cannot read %s: %s (the file is truncated or "
                     "damaged)", path, where, h5_last_error(h5msg, sizeof h5msg));
    goto out_close;
  }
  for (size_t k = 0; k < n; k++) {
    if (!isfinite(dst[k])) {
      char idx[64];
      if (rank == 2) snprintf(idx, sizeof idx, "[%zu, %zu]", k / (size_t)want[1], k % (size_t)want[1]);
      else snprintf(idx, sizeof idx, "[%zu]", k);
      rc = ngt_err_set(err, NGT_ENUM, "model '%s': %s%s is %s (the model diverged; use an "
                       "earlier checkpoint or a smaller learning rate)", path, where, idx,
                       isnan(dst[k]) ? "NaN" : "infinite");
      goto out_close;
    }
  }
out_close:
  if (t >= 0) H5Tclose(t);
  if (sp >= 0) H5Sclose(sp);
  H5Dclose(ds);
  return rc;
}

/* Open path read-only as an ngtrain model and check format and version. */
static int open_model(const char *path, hid_t *out, ngt_err *err) {
  char h5msg[256];
  *out = -1;
  ngt_hdf5_quiet();
  struct stat st;
  if (stat(path, &st) != 0)
    return ngt_err_set(err, NGT_EIO, "model '%s': cannot open: %s", path, strerror(errno));
  if (S_ISDIR(st.st_mode))
    return ngt_err_set(err, NGT_EIO, "model '%s' is a directory, not a model file", path);
  if (st.st_size == 0)
    return ngt_err_set(err, NGT_EFORMAT, "model '%s' is empty (0 bytes; was its write "
                       "interrupted?)", path);
  htri_t is = H5Fis_hdf5(path);
  H5Eclear2(H5E_DEFAULT);
  if (is <= 0)
    return ngt_err_set(err, NGT_EFORMAT, "model '%s' is not an HDF5 file (or is truncated before "
                       "its header); was it written by ngtrain?", path);
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  if (fapl < 0 || H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG) < 0) {
    if (fapl >= 0) H5Pclose(fapl);
    return ngt_err_set(err, NGT_EIO, "model '%s': HDF5 setup failed: %s", path,
                       h5_last_error(h5msg, sizeof h5msg));
  }
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, fapl);
  if (f < 0) {
    /* read the HDF5 error stack before any other HDF5 call clears it */
    ngt_err_set(err, NGT_EFORMAT, "model '%s': cannot open as HDF5: %s (the file is truncated or "
                "corrupt; restore it or use another checkpoint)", path,
                h5_last_error(h5msg, sizeof h5msg));
    H5Pclose(fapl);
    return NGT_EFORMAT;
  }
  H5Pclose(fapl);
  char *fmt = NULL;
  int rc = attr_read_str(f, "format", &fmt);
  if (rc == 1) {
    rc = ngt_err_set(err, NGT_EFORMAT, "model '%s': not an ngtrain model (attribute 'format' "
                     "missing); was it written by ngtrain?", path);
    goto out_fail;
  }
  if (rc < 0) {
    rc = ngt_err_set(err, NGT_EFORMAT, "model '%s': attribute 'format' is not a string; was it "
                     "written by ngtrain?", path);
    goto out_fail;
  }
  if (strcmp(fmt, MODEL_FORMAT) != 0) {
    rc = ngt_err_set(err, NGT_EFORMAT, "model '%s': attribute 'format' is '%.100s', not '%s'%s", path,
                     fmt, MODEL_FORMAT,
                     strcmp(fmt, "ngtrain-shard") == 0 ? " (this is a data shard, not a model)"
                                                       : " (not an ngtrain model)");
    goto out_fail;
  }
  long long ver;
  rc = attr_read_i64(f, "version", &ver);
  if (rc != 0) {
    rc = ngt_err_set(err, NGT_EFORMAT, "model '%s': attribute 'version' is %s (the file is "
                     "damaged)", path, rc == 1 ? "missing" : "not an integer");
    goto out_fail;
  }
  if (ver != MODEL_VERSION) {
    rc = ngt_err_set(err, NGT_EFORMAT, "model '%s' has format version %lld but this ngtrain reads "
                     "version %d (use the ngtrain that wrote it)", path, ver, MODEL_VERSION);
    goto out_fail;
  }
  free(fmt);
  *out = f;
  return 0;
out_fail:
  free(fmt);
  H5Fclose(f);
  return rc;
}

/* Check that integer attribute `name` of obj (shown as where) equals want. */
static int check_int_attr(const char *path, hid_t obj, const char *where, const char *name,
                          long long want, const char *wantwhat, ngt_err *err) {
  long long v;
  int r = attr_read_i64(obj, name, &v);
  if (r == 1)
    return ngt_err_set(err, NGT_EFORMAT, "model '%s': %s attribute '%s' is missing (the file is "
                       "damaged)", path, where, name);
  if (r < 0)
    return ngt_err_set(err, NGT_EFORMAT, "model '%s': %s attribute '%s' is not an integer", path,
                       where, name);
  if (v != want)
    return ngt_err_set(err, NGT_EFORMAT, "model '%s': %s attribute '%s' is %lld but %s %lld (the "
                       "file was modified or damaged)", path, where, name, v, wantwhat, want);
  return 0;
}

int ngt_nnet_load(const char *path, ngt_nnet **out, ngt_err *err) {
  *out = NULL;
  hid_t f;
  int rc = open_model(path, &f, err);
  if (rc) return rc;
  ngt_nnet *net = NULL;
  char *cfg = NULL;
  hid_t comps = -1, g = -1;
  char h5msg[256];

  int r = attr_read_str(f, "config", &cfg);
  if (r != 0) {
    rc = ngt_err_set(err, NGT_EFORMAT, "model '%s': attribute 'config' is %s (the file is "
                     "damaged)", path, r == 1 ? "missing" : "not a string");
    goto out_close;
  }
  char src[512];
  snprintf(src, sizeof src, "config stored in model '%s'", path);
  if ((rc = ngt_nnet_from_config(cfg, src, &net, err))) {
    if (rc == NGT_EINVAL) {
      rc = NGT_EFORMAT;
      if (err) err->code = rc;
    }
    goto out_close;
  }
  const char *sc = "the stored config says";
  if ((rc = check_int_attr(path, f, "/", "feat_dim", net->feat_dim, sc, err)) ||
      (rc = check_int_attr(path, f, "/", "ctx_left", net->ctx_left, sc, err)) ||
      (rc = check_int_attr(path, f, "/", "ctx_right", net->ctx_right, sc, err)) ||
      (rc = check_int_attr(path, f, "/", "num_classes", net->num_classes, sc, err)) ||
      (rc = check_int_attr(path, f, "/", "num_params", (long long)net->num_params, sc, err)))
    goto out_close;

  if (H5Lexists(f, "components", H5P_DEFAULT) <= 0 ||
      (comps = H5Gopen2(f, "components", H5P_DEFAULT)) < 0) {
    rc = ngt_err_set(err, NGT_EFORMAT, "model '%s': group /components is missing (the file is "
                     "damaged)", path);
    goto out_close;
  }
  H5G_info_t gi;
  if (H5Gget_info(comps, &gi) < 0 || gi.nlinks != (hsize_t)net->num_comps) {
    rc = ngt_err_set(err, NGT_EFORMAT, "model '%s': /components has %llu entries but the stored "
                     "config makes %d components (the file was modified or damaged)", path,
                     (unsigned long long)gi.nlinks, net->num_comps);
    goto out_close;
  }
  for (int c = 0; c < net->num_comps; c++) {
    const ngt_comp *cp = &net->comps[c];
    char name[32], where[64], wh2[80];
    snprintf(name, sizeof name, "%03d", c);
    snprintf(where, sizeof where, "/components/%s", name);
    if (H5Lexists(comps, name, H5P_DEFAULT) <= 0 || (g = H5Gopen2(comps, name, H5P_DEFAULT)) < 0) {
      rc = ngt_err_set(err, NGT_EFORMAT, "model '%s': group %s is missing (the file is damaged)",
                       path, where);
      goto out_close;
    }
    long long ty;
    r = attr_read_i64(g, "type", &ty);
    if (r != 0) {
      rc = ngt_err_set(err, NGT_EFORMAT, "model '%s': %s attribute 'type' is %s (the file is "
                       "damaged)", path, where, r == 1 ? "missing" : "not an integer");
      goto out_close;
    }
    if (ty != cp->type) {
      rc = ngt_err_set(err, NGT_EFORMAT, "model '%s': %s attribute 'type' is %lld (%s) but the "
                       "stored config says %d (%s) (the file was modified or damaged)", path,
                       where, ty, ngt_comp_type_name((int)ty), (int)cp->type,
                       ngt_comp_type_name(cp->type));
      goto out_close;
    }
    if ((rc = check_int_attr(path, g, where, "in_dim", cp->in_dim, sc, err)) ||
        (rc = check_int_attr(path, g, where, "out_dim", cp->out_dim, sc, err)))
      goto out_close;
    if (cp->type == NGT_COMP_PNORM &&
        (rc = check_int_attr(path, g, where, "group", cp->group, sc, err)))
      goto out_close;
    if (cp->type == NGT_COMP_AFFINE) {
      hsize_t wd[2] = {(hsize_t)cp->out_dim, (hsize_t)cp->in_dim}, bd[1] = {(hsize_t)cp->out_dim};
      snprintf(wh2, sizeof wh2, "%s/W", where);
      if ((rc = read_f32(path, g, "W", wh2, 2, wd, net->params + cp->w_off, err))) goto out_close;
      snprintf(wh2, sizeof wh2, "%s/b", where);
      if ((rc = read_f32(path, g, "b", wh2, 1, bd, net->params + cp->b_off, err))) goto out_close;
    }
    H5Gclose(g);
    g = -1;
  }
  H5Gclose(comps);
  comps = -1;

  if (H5Lexists(f, "input_transform", H5P_DEFAULT) > 0) {
    int D = net->input_dim;
    size_t n = (size_t)D * (size_t)(D + 1);
    float *T = malloc(n * sizeof *T);
    if (!T) { rc = ngt_err_set(err, NGT_ENOMEM, "model '%s': out of memory", path); goto out_close; }
    hsize_t td[2] = {(hsize_t)D, (hsize_t)D + 1};
    if ((rc = read_f32(path, f, "input_transform", "/input_transform", 2, td, T, err))) {
      free(T);
      goto out_close;
    }
    hid_t ds = H5Dopen2(f, "input_transform", H5P_DEFAULT);
    long long tt = -1;
    int ar = ds < 0 ? -1 : attr_read_i64(ds, "type", &tt);
    if (ds >= 0) H5Dclose(ds);
    if (ar != 0 || (tt != NGT_TRANSFORM_LDA && tt != NGT_TRANSFORM_CMVN)) {
      free(T);
      if (ar != 0)
        rc = ngt_err_set(err, NGT_EFORMAT, "model '%s': /input_transform attribute 'type' is %s",
                         path, ar == 1 ? "missing" : "not an integer");
      else
        rc = ngt_err_set(err, NGT_EFORMAT, "model '%s': /input_transform has unknown type %lld "
                         "(known: %d = lda, %d = cmvn; written by a newer ngtrain?)", path, tt,
                         NGT_TRANSFORM_LDA, NGT_TRANSFORM_CMVN);
      goto out_close;
    }
    ngt_nnet_set_transform(net, (int)tt, T);
    free(T);
  }
  if (H5Lexists(f, "priors", H5P_DEFAULT) > 0) {
    int C = net->num_classes;
    float *P = malloc((size_t)C * sizeof *P);
    if (!P) { rc = ngt_err_set(err, NGT_ENOMEM, "model '%s': out of memory", path); goto out_close; }
    hsize_t pd[1] = {(hsize_t)C};
    if ((rc = read_f32(path, f, "priors", "/priors", 1, pd, P, err))) { free(P); goto out_close; }
    double s = 0.0;
    int neg = -1;
    for (int k = 0; k < C; k++) {
      if (P[k] < 0 && neg < 0) neg = k;
      s += P[k];
    }
    if (neg >= 0 || fabs(s - 1.0) > 1e-3) {
      if (neg >= 0)
        rc = ngt_err_set(err, NGT_EFORMAT, "model '%s': /priors[%d] = %g is negative (re-estimate "
                         "the priors)", path, neg, (double)P[neg]);
      else
        rc = ngt_err_set(err, NGT_EFORMAT, "model '%s': /priors sum to %g, not 1 (re-estimate the "
                         "priors)", path, s);
      free(P);
      goto out_close;
    }
    ngt_nnet_set_priors(net, P);
    free(P);
  }
  if (H5Fclose(f) < 0) {
    f = -1;
    rc = ngt_err_set(err, NGT_EIO, "model '%s': closing failed: %s", path,
                     h5_last_error(h5msg, sizeof h5msg));
    goto out_close;
  }
  f = -1;
  free(cfg);
  *out = net;
  return 0;

out_close:
  if (g >= 0) H5Gclose(g);
  if (comps >= 0) H5Gclose(comps);
  if (f >= 0) H5Fclose(f);
  H5Eclear2(H5E_DEFAULT);
  free(cfg);
  ngt_nnet_free(net);
  return rc;
}

int ngt_nnet_load_blob(const char *path, const char *name, int type, void **data, size_t *n,
                       ngt_err *err) {
  *data = NULL;
  *n = 0;
  hid_t ft = -1, mt = -1;
  size_t es = 0;
  if (blob_types(type, &ft, &mt, &es) != 0)
    return ngt_err_set(err, NGT_EINVAL, "model '%s': train_state '%s' requested with unknown type "
                       "%d", path, name, type);
  if (!blob_name_ok(name))
    return ngt_err_set(err, NGT_EINVAL, "model '%s': bad train_state name '%s'", path, name);
  hid_t f;
  int rc = open_model(path, &f, err);
  if (rc) return rc;
  char h5msg[256];
  hid_t ts = -1, ds = -1, t = -1, sp = -1;
  if (H5Lexists(f, "train_state", H5P_DEFAULT) <= 0 ||
      (ts = H5Gopen2(f, "train_state", H5P_DEFAULT)) < 0 ||
      H5Lexists(ts, name, H5P_DEFAULT) <= 0) {
    rc = ngt_err_set(err, NGT_EFORMAT, "model '%s' has no /train_state/%s (is it a checkpoint, "
                     "not a final model?)", path, name);
    goto out_close;
  }
  if ((ds = H5Dopen2(ts, name, H5P_DEFAULT)) < 0 || (t = H5Dget_type(ds)) < 0 ||
      (sp = H5Dget_space(ds)) < 0) {
    rc = ngt_err_set(err, NGT_EFORMAT, "model '%s': cannot open /train_state/%s: %s", path, name,
                     h5_last_error(h5msg, sizeof h5msg));
    goto out_close;
  }
  H5T_class_t cls = H5Tget_class(t);
  size_t sz = H5Tget_size(t);
  const char *got = cls == H5T_FLOAT && sz == 4   ? "float32"
                    : cls == H5T_FLOAT && sz == 8 ? "float64"
                    : cls == H5T_INTEGER && sz == 8 && H5Tget_sign(t) == H5T_SGN_2 ? "int64"
                    : cls == H5T_INTEGER ? "another integer type"
                    : cls == H5T_FLOAT   ? "another float type"
                                         : "not numeric";
  if (strcmp(got, blob_type_name(type)) != 0) {
    rc = ngt_err_set(err, NGT_EFORMAT, "model '%s': /train_state/%s is %s, expected %s (written by "
                     "another ngtrain version?)", path, name, got, blob_type_name(type));
    goto out_close;
  }
  if (H5Sget_simple_extent_ndims(sp) != 1) {
    rc = ngt_err_set(err, NGT_EFORMAT, "model '%s': /train_state/%s is not 1-dimensional", path,
                     name);
    goto out_close;
  }
  hsize_t d;
  H5Sget_simple_extent_dims(sp, &d, NULL);
  if (d > (hsize_t)(SIZE_MAX / es)) { /* d * es would wrap: a tiny buffer for a huge read */
    rc = ngt_err_set(err, NGT_EFORMAT, "model '%s': /train_state/%s claims %llu elements, more "
                     "than memory can hold (the file is damaged; use an earlier checkpoint)",
                     path, name, (unsigned long long)d);
    goto out_close;
  }
  void *buf = malloc(d ? (size_t)d * es : 1);
  if (!buf) {
    rc = ngt_err_set(err, NGT_ENOMEM, "model '%s': out of memory reading /train_state/%s (%llu "
                     "elements)", path, name, (unsigned long long)d);
    goto out_close;
  }
  if (d > 0 && H5Dread(ds, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
    free(buf);
    rc = ngt_err_set(err, NGT_EFORMAT, "model '%s': cannot read /train_state/%s: %s (the file is "
                     "truncated or damaged)", path, name, h5_last_error(h5msg, sizeof h5msg));
    goto out_close;
  }
  *data = buf;
  *n = (size_t)d;
  rc = 0;
out_close:
  if (sp >= 0) H5Sclose(sp);
  if (t >= 0) H5Tclose(t);
  if (ds >= 0) H5Dclose(ds);
  if (ts >= 0) H5Gclose(ts);
  H5Fclose(f);
  H5Eclear2(H5E_DEFAULT);
  return rc;
}
