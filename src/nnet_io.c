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
 * Checksums (h5util.h): every group and dataset is sealed with ngt_checksum once its
 * attributes and members are written, the root last; the file is in the HDF5 1.10 format
 * (H5Pset_libver_bounds V110), so HDF5 checksums its own metadata. A reader verifies each
 * object right after reading it and before using it (a damaged weight must be reported as
 * damage, not as a diverged model).
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

#include "ngtrain/h5util.h"

#define MODEL_FORMAT "ngtrain-model"
#define MODEL_VERSION 1
#define MAX_CONFIG_BYTES 60000 /* an HDF5 compact attribute holds < 64 KiB */
#define MAX_COMPACT 65535      /* links/attributes per object kept compact (HDF5's maximum) */

/* The first line of advice for a damaged file, after "the file is damaged". */
#define DAMAGED_HINT                                                                   \
  "; restore it from a copy or delete it (a resumed run falls back to the checkpoint " \
  "before it by itself)"

/* ------------------------------------------------------------------------------------ */
/* Writing helpers: each returns 0 or an NGT_E* code with err naming the file and object  */

/* A dataset of rank 1 or 2 (dims), file type ftype, written from memory type mtype;
 * left open in *out_ds (sealed by the caller once its attributes are written). */
static int dset_write(hid_t loc, const char *name, int rank, const hsize_t *dims, hid_t ftype,
                      hid_t mtype, const void *data, hid_t dcpl, hid_t *out_ds, const char *file,
                      ngt_err *err) {
  *out_ds = -1;
  hid_t sp = H5Screate_simple(rank, dims, NULL);
  hid_t ds = sp < 0 ? -1 : H5Dcreate2(loc, name, ftype, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  hsize_t n = 1;
  for (int i = 0; i < rank; i++) n *= dims[i];
  herr_t rc = ds < 0 ? -1 : 0;
  if (rc >= 0 && n > 0) rc = H5Dwrite(ds, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
  int code = 0;
  if (rc < 0) {
    char h5msg[256];
    ngt_h5_last_error(h5msg, sizeof h5msg);
    code = ngt_err_set(err, NGT_EIO, "'%s': cannot write dataset '%s': %s", file, name, h5msg);
    if (ds >= 0) H5Dclose(ds);
  } else {
    *out_ds = ds;
  }
  if (sp >= 0) H5Sclose(sp);
  return code;
}

/* Write, seal and close a dataset that has no attributes. */
static int dset_write_sealed(hid_t loc, const char *name, int rank, const hsize_t *dims,
                             hid_t ftype, hid_t mtype, size_t es, const void *data, hid_t dcpl,
                             const char *file, ngt_err *err) {
  hid_t ds;
  int rc = dset_write(loc, name, rank, dims, ftype, mtype, data, dcpl, &ds, file, err);
  if (rc) return rc;
  size_t n = 1;
  for (int i = 0; i < rank; i++) n *= (size_t)dims[i];
  rc = ngt_h5_seal(ds, data, n, es, file, err);
  H5Dclose(ds);
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
    case NGT_BLOB_F32:
      *ftype = H5T_IEEE_F32LE;
      *mtype = H5T_NATIVE_FLOAT;
      *elsize = 4;
      return 0;
    case NGT_BLOB_F64:
      *ftype = H5T_IEEE_F64LE;
      *mtype = H5T_NATIVE_DOUBLE;
      *elsize = 8;
      return 0;
    case NGT_BLOB_I64:
      *ftype = H5T_STD_I64LE;
      *mtype = H5T_NATIVE_INT64;
      *elsize = 8;
      return 0;
    default: return -1;
  }
}

/* Write the whole model into the open file f (named file in messages); every group and
 * dataset is sealed with its checksum after its attributes and members are written, the
 * root last. */
static int write_model(hid_t f, const char *file, const ngt_nnet *net, const ngt_blob *extra,
                       int n_extra, hid_t gcpl, hid_t dcpl, ngt_err *err) {
#define TRY(expr)                     \
  do {                                \
    if ((rc = (expr)) != 0) goto out; \
  } while (0)
#define GROUP(var, loc, name)                                                          \
  do {                                                                                 \
    if ((var = H5Gcreate2(loc, name, H5P_DEFAULT, gcpl, H5P_DEFAULT)) < 0) {           \
      char h5msg[256];                                                                 \
      rc = ngt_err_set(err, NGT_EIO, "'%s': cannot create group '%s': %s", file, name, \
                       ngt_h5_last_error(h5msg, sizeof h5msg));                        \
      goto out;                                                                        \
    }                                                                                  \
  } while (0)
  int rc = 0;
  hid_t comps = -1, g = -1, ds = -1, ts = -1;
  TRY(ngt_h5_attr_write_str(f, "format", MODEL_FORMAT, file, err));
  TRY(ngt_h5_attr_write_int(f, "version", MODEL_VERSION, file, err));
  TRY(ngt_h5_attr_write_str(f, "config", net->config_text ? net->config_text : "", file, err));
  TRY(ngt_h5_attr_write_int(f, "feat_dim", net->feat_dim, file, err));
  TRY(ngt_h5_attr_write_int(f, "ctx_left", net->ctx_left, file, err));
  TRY(ngt_h5_attr_write_int(f, "ctx_right", net->ctx_right, file, err));
  TRY(ngt_h5_attr_write_int(f, "num_classes", net->num_classes, file, err));
  TRY(ngt_h5_attr_write_i64(f, "num_params", (int64_t)net->num_params, file, err));

  GROUP(comps, f, "components");
  for (int c = 0; c < net->num_comps; c++) {
    const ngt_comp *cp = &net->comps[c];
    char name[32];
    snprintf(name, sizeof name, "%03d", c);
    GROUP(g, comps, name);
    TRY(ngt_h5_attr_write_int(g, "type", (int)cp->type, file, err));
    TRY(ngt_h5_attr_write_str(g, "type_name", ngt_comp_type_name(cp->type), file, err));
    TRY(ngt_h5_attr_write_int(g, "in_dim", cp->in_dim, file, err));
    TRY(ngt_h5_attr_write_int(g, "out_dim", cp->out_dim, file, err));
    TRY(ngt_h5_attr_write_int(g, "layer", cp->layer, file, err));
    if (cp->type == NGT_COMP_AFFINE) {
      hsize_t wd[2] = {(hsize_t)cp->out_dim, (hsize_t)cp->in_dim}, bd[1] = {(hsize_t)cp->out_dim};
      TRY(dset_write_sealed(g, "W", 2, wd, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, sizeof(float),
                            net->params + cp->w_off, dcpl, file, err));
      TRY(dset_write_sealed(g, "b", 1, bd, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, sizeof(float),
                            net->params + cp->b_off, dcpl, file, err));
      TRY(ngt_h5_attr_write_double(g, "max_change", cp->max_change, file, err));
      TRY(ngt_h5_attr_write_double(g, "lr_factor", cp->lr_factor, file, err));
      TRY(ngt_h5_attr_write_double(g, "param_stddev", cp->param_stddev, file, err));
      TRY(ngt_h5_attr_write_double(g, "bias_stddev", cp->bias_stddev, file, err));
      TRY(ngt_h5_attr_write_int(g, "use_natural_gradient", cp->ng.use_ng, file, err));
      TRY(ngt_h5_attr_write_int(g, "rank_in", cp->ng.rank_in, file, err));
      TRY(ngt_h5_attr_write_int(g, "rank_out", cp->ng.rank_out, file, err));
      TRY(ngt_h5_attr_write_int(g, "update_period", cp->ng.update_period, file, err));
      TRY(ngt_h5_attr_write_double(g, "num_samples_history", cp->ng.num_samples_history, file,
                                   err));
      TRY(ngt_h5_attr_write_double(g, "alpha", cp->ng.alpha, file, err));
    }
    if (cp->type == NGT_COMP_PNORM) TRY(ngt_h5_attr_write_int(g, "group", cp->group, file, err));
    TRY(ngt_h5_seal(g, NULL, 0, 0, file, err));
    H5Gclose(g);
    g = -1;
  }
  TRY(ngt_h5_seal(comps, NULL, 0, 0, file, err));
  H5Gclose(comps);
  comps = -1;

  if (net->transform && net->transform_type != NGT_TRANSFORM_NONE) {
    hsize_t td[2] = {(hsize_t)net->input_dim, (hsize_t)net->input_dim + 1};
    TRY(dset_write(f, "input_transform", 2, td, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, net->transform,
                   dcpl, &ds, file, err));
    TRY(ngt_h5_attr_write_int(ds, "type", net->transform_type, file, err));
    TRY(ngt_h5_attr_write_str(ds, "type_name",
                              net->transform_type == NGT_TRANSFORM_LDA ? "lda" : "cmvn", file,
                              err));
    TRY(ngt_h5_seal(ds, net->transform, (size_t)td[0] * (size_t)td[1], sizeof(float), file, err));
    H5Dclose(ds);
    ds = -1;
  }
  if (net->priors) {
    hsize_t pd[1] = {(hsize_t)net->num_classes};
    TRY(dset_write_sealed(f, "priors", 1, pd, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, sizeof(float),
                          net->priors, dcpl, file, err));
  }
  if (n_extra > 0) {
    GROUP(ts, f, "train_state");
    for (int i = 0; i < n_extra; i++) {
      hid_t ft = -1, mt = -1;
      size_t es = 0;
      (void)blob_types(extra[i].type, &ft, &mt, &es); /* validated by the caller */
      hsize_t d[1] = {(hsize_t)extra[i].n};
      TRY(dset_write_sealed(ts, extra[i].name, 1, d, ft, mt, es, extra[i].data, dcpl, file, err));
    }
    TRY(ngt_h5_seal(ts, NULL, 0, 0, file, err));
    H5Gclose(ts);
    ts = -1;
  }
  TRY(ngt_h5_seal(f, NULL, 0, 0, file, err));
out:
  /* The file is closed with H5F_CLOSE_STRONG, which closes anything left open. */
  return rc;
#undef TRY
#undef GROUP
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
      return ngt_err_set(err, NGT_EINVAL,
                         "cannot write model '%s': bad train_state name '%s' "
                         "(use letters, digits and '_')",
                         path, extra[i].name ? extra[i].name : "(null)");
    if (blob_types(extra[i].type, &ft, &mt, &es) != 0)
      return ngt_err_set(err, NGT_EINVAL,
                         "cannot write model '%s': train_state '%s' has unknown "
                         "type %d",
                         path, extra[i].name, extra[i].type);
    if (extra[i].n > 0 && !extra[i].data)
      return ngt_err_set(err, NGT_EINVAL,
                         "cannot write model '%s': train_state '%s' has %zu "
                         "elements but no data",
                         path, extra[i].name, extra[i].n);
    for (int j = 0; j < i; j++)
      if (strcmp(extra[i].name, extra[j].name) == 0)
        return ngt_err_set(err, NGT_EINVAL,
                           "cannot write model '%s': train_state '%s' given twice", path,
                           extra[i].name);
  }
  /* A clear message for the commonest mistake: the directory does not exist. */
  char *pcopy = strdup(path);
  if (!pcopy) return ngt_err_set(err, NGT_ENOMEM, "out of memory");
  const char *dir = dirname(pcopy);
  struct stat st;
  if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
    int e = errno;
    int rc = ngt_err_set(err, NGT_EIO,
                         "cannot write model '%s': directory '%s' %s (create it "
                         "first, or check the path)",
                         path, dir, e == ENOENT || e == 0 ? "does not exist" : strerror(e));
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
      H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG) < 0 ||
      H5Pset_libver_bounds(fapl, H5F_LIBVER_V110, H5F_LIBVER_V110) < 0 ||
      /* links and attributes stay in the object headers, which HDF5 checksums, never in
       * "dense" storage (fractal heaps: unchecksummed names, and libhdf5 1.10.8 frees an
       * invalid pointer in H5G__dense_iterate on a damaged one) */
      H5Pset_link_phase_change(fcpl, MAX_COMPACT, MAX_COMPACT - 1) < 0 ||
      H5Pset_link_phase_change(gcpl, MAX_COMPACT, MAX_COMPACT - 1) < 0 ||
      H5Pset_attr_phase_change(fcpl, MAX_COMPACT, MAX_COMPACT - 1) < 0 ||
      H5Pset_attr_phase_change(gcpl, MAX_COMPACT, MAX_COMPACT - 1) < 0 ||
      H5Pset_attr_phase_change(dcpl, MAX_COMPACT, MAX_COMPACT - 1) < 0) {
    rc = ngt_err_set(err, NGT_EIO, "cannot write model '%s': HDF5 property setup failed: %s", path,
                     ngt_h5_last_error(h5msg, sizeof h5msg));
    goto out_props;
  }
  errno = 0;
  f = H5Fcreate(tmp, H5F_ACC_TRUNC, fcpl, fapl);
  if (f < 0) {
    int e = errno;
    rc = ngt_err_set(err, NGT_EIO, "cannot write model '%s': cannot create '%s': %s%s%s", path,
                     tmp, ngt_h5_last_error(h5msg, sizeof h5msg), e ? ": " : "",
                     e ? strerror(e) : "");
    unlink(tmp);
    goto out_props;
  }
  ngt_err we = {0};
  if (write_model(f, tmp, net, extra, n_extra, gcpl, dcpl, &we) != 0) {
    rc = ngt_err_set(err, we.code ? we.code : NGT_EIO,
                     "cannot write model '%s': %s (is the disk "
                     "full?)",
                     path, we.msg);
    H5Fclose(f);
    unlink(tmp);
    goto out_props;
  }
  if (H5Fclose(f) < 0) {
    rc = ngt_err_set(err, NGT_EIO,
                     "cannot write model '%s': closing '%s' failed: %s (is the disk "
                     "full?)",
                     path, tmp, ngt_h5_last_error(h5msg, sizeof h5msg));
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

/* 0 ok, 1 missing, < 0 wrong class / not a single value / read failed (callers word the
 * message). */
static int attr_read_i64(hid_t obj, const char *name, long long *v) {
  return ngt_h5_attr_read_i64(obj, name, v, "", NULL);
}
/* String attribute (fixed or variable length, either character set), malloc'd. */
static int attr_read_str(hid_t obj, const char *name, char **out) {
  return ngt_h5_attr_read_str(obj, name, out, "", NULL);
}

/* Check obj's checksum against what was read from it (data: n elements of es bytes for a
 * dataset, NULL for a group). Files from before checksums (legacy) are not checked. */
static int verify(const char *path, int legacy, hid_t obj, const void *data, size_t n, size_t es,
                  ngt_err *err) {
  if (legacy) return 0;
  ngt_err e = {0};
  int r = ngt_h5_verify(obj, data, n, es, path, &e);
  if (r == 0) return 0;
  if (r == 1) {
    char on[256];
    if (H5Iget_name(obj, on, sizeof on) <= 0) snprintf(on, sizeof on, "an object");
    return ngt_err_set(err, NGT_EFORMAT,
                       "model '%s': %s has no checksum (attribute '%s' is "
                       "missing) though the file is in the checksummed format: the file is "
                       "damaged" DAMAGED_HINT,
                       path, on, NGT_H5_CHECKSUM_ATTR);
  }
  return ngt_err_set(err, r, "model %s" DAMAGED_HINT, e.msg);
}

static void fmt_dims(char *buf, size_t n, int rank, const hsize_t *d) {
  size_t k = (size_t)snprintf(buf, n, "[");
  for (int i = 0; i < rank && k < n; i++)
    k += (size_t)snprintf(buf + k, n - k, "%s%llu", i ? ", " : "", (unsigned long long)d[i]);
  if (k < n) snprintf(buf + k, n - k, "]");
}

/* Read the float dataset loc/name (shown as `where`) of exactly `rank` x want dims into
 * dst, and check every value is finite. */
static int read_f32(const char *path, int legacy, hid_t loc, const char *name, const char *where,
                    int rank, const hsize_t *want, float *dst, ngt_err *err) {
  char h5msg[256], got_s[96], want_s[96];
  if (H5Lexists(loc, name, H5P_DEFAULT) <= 0)
    return ngt_err_set(err, NGT_EFORMAT,
                       "model '%s': %s is missing (the file is damaged; use "
                       "another checkpoint)",
                       path, where);
  hid_t ds = H5Dopen2(loc, name, H5P_DEFAULT);
  if (ds < 0)
    return ngt_err_set(err, NGT_EFORMAT,
                       "model '%s': cannot open %s as a dataset: %s (the file "
                       "is damaged" DAMAGED_HINT ")",
                       path, where, ngt_h5_last_error(h5msg, sizeof h5msg));
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
    rc = ngt_err_set(err, NGT_EFORMAT,
                     "model '%s': %s has shape %s but the config says %s (the "
                     "file was modified or damaged)",
                     path, where, got_s, want_s);
    goto out_close;
  }
  size_t n = 1;
  for (int i = 0; i < rank; i++) n *= (size_t)want[i];
  if (n > 0 && H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst) < 0) {
    rc = ngt_err_set(err, NGT_EFORMAT,
                     "model '%s': cannot read %s: %s (the file is truncated or "
                     "damaged)",
                     path, where, ngt_h5_last_error(h5msg, sizeof h5msg));
    goto out_close;
  }
  /* before the finiteness check: a damaged value is not a diverged model */
  if ((rc = verify(path, legacy, ds, dst, n, sizeof(float), err))) goto out_close;
  for (size_t k = 0; k < n; k++) {
    if (!isfinite(dst[k])) {
      char idx[64];
      if (rank == 2)
        snprintf(idx, sizeof idx, "[%zu, %zu]", k / (size_t)want[1], k % (size_t)want[1]);
      else
        snprintf(idx, sizeof idx, "[%zu]", k);
      rc = ngt_err_set(err, NGT_ENUM,
                       "model '%s': %s%s is %s (the model diverged; use an "
                       "earlier checkpoint or a smaller learning rate)",
                       path, where, idx, isnan(dst[k]) ? "NaN" : "infinite");
      goto out_close;
    }
  }
out_close:
  if (t >= 0) H5Tclose(t);
  if (sp >= 0) H5Sclose(sp);
  H5Dclose(ds);
  return rc;
}

/* One warning per file for models from before checksums. */
static void warn_legacy(const char *path, unsigned super) {
  static _Thread_local char last[4096];
  if (strcmp(last, path) == 0) return;
  snprintf(last, sizeof last, "%s", path);
  NGT_LOG(NGT_WARN,
          "model '%s' was written before ngtrain checksummed its files (HDF5 "
          "superblock version %u, no /%s): it is read without a check for damage; save it "
          "again with this ngtrain to add one",
          path, super, NGT_H5_CHECKSUM_ATTR);
}

/* Open path read-only as an ngtrain model, check format, the root's checksum and the
 * version. *legacy = 1 for a file from before checksums (HDF5 superblock < 2, no root
 * checksum): read with a warning, unchecked. */
static int open_model(const char *path, hid_t *out, int *legacy, ngt_err *err) {
  char h5msg[256];
  *out = -1;
  *legacy = 0;
  ngt_hdf5_quiet();
  struct stat st;
  if (stat(path, &st) != 0)
    return ngt_err_set(err, NGT_EIO, "model '%s': cannot open: %s", path, strerror(errno));
  if (S_ISDIR(st.st_mode))
    return ngt_err_set(err, NGT_EIO, "model '%s' is a directory, not a model file", path);
  if (st.st_size == 0)
    return ngt_err_set(err, NGT_EFORMAT,
                       "model '%s' is empty (0 bytes; was its write "
                       "interrupted?)",
                       path);
  htri_t is = H5Fis_hdf5(path);
  H5Eclear2(H5E_DEFAULT);
  if (is <= 0)
    return ngt_err_set(err, NGT_EFORMAT,
                       "model '%s' is not an HDF5 file (or is truncated before "
                       "its header); was it written by ngtrain?",
                       path);
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  if (fapl < 0 || H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG) < 0) {
    if (fapl >= 0) H5Pclose(fapl);
    return ngt_err_set(err, NGT_EIO, "model '%s': HDF5 setup failed: %s", path,
                       ngt_h5_last_error(h5msg, sizeof h5msg));
  }
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, fapl);
  if (f < 0) {
    /* read the HDF5 error stack before any other HDF5 call clears it */
    ngt_err_set(err, NGT_EFORMAT,
                "model '%s': cannot open as HDF5: %s (the file is truncated or "
                "corrupt; restore it or use another checkpoint)",
                path, ngt_h5_last_error(h5msg, sizeof h5msg));
    H5Pclose(fapl);
    return NGT_EFORMAT;
  }
  H5Pclose(fapl);
  char *fmt = NULL;
  ngt_err fe = {0};
  int rc = ngt_h5_attr_read_str(f, "format", &fmt, path, &fe);
  if (rc == 1) {
    rc = ngt_err_set(err, NGT_EFORMAT,
                     "model '%s': not an ngtrain model (attribute 'format' "
                     "missing); was it written by ngtrain?",
                     path);
    goto out_fail;
  }
  if (rc < 0) { /* h5util's message names the file and says why (e.g. a metadata checksum) */
    rc = ngt_err_set(err, NGT_EFORMAT,
                     "model %s; if it was written by ngtrain, restore it from a "
                     "copy or delete it (a resumed run falls back to the checkpoint before it by "
                     "itself)",
                     fe.msg);
    goto out_fail;
  }
  if (strcmp(fmt, MODEL_FORMAT) != 0) {
    rc = ngt_err_set(err, NGT_EFORMAT, "model '%s': attribute 'format' is '%.100s', not '%s'%s",
                     path, fmt, MODEL_FORMAT,
                     strcmp(fmt, "ngtrain-shard") == 0 ? " (this is a data shard, not a model)"
                                                       : " (not an ngtrain model)");
    goto out_fail;
  }
  uint64_t stored;
  if (ngt_h5_attr_read_u64(f, NGT_H5_CHECKSUM_ATTR, &stored, path, NULL) == 1) {
    H5F_info2_t fi;
    if (H5Fget_info2(f, &fi) >= 0 && fi.super.version < 2) {
      *legacy = 1;
      warn_legacy(path, fi.super.version);
    }
  }
  if ((rc = verify(path, *legacy, f, NULL, 0, 0, err))) goto out_fail;
  long long ver;
  rc = attr_read_i64(f, "version", &ver);
  if (rc != 0) {
    rc = ngt_err_set(err, NGT_EFORMAT,
                     "model '%s': attribute 'version' is %s (the file is "
                     "damaged)",
                     path, rc == 1 ? "missing" : "not an integer");
    goto out_fail;
  }
  if (ver != MODEL_VERSION) {
    rc = ngt_err_set(err, NGT_EFORMAT,
                     "model '%s' has format version %lld but this ngtrain reads "
                     "version %d (use the ngtrain that wrote it)",
                     path, ver, MODEL_VERSION);
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

/* Read /train_state/<name> (of any of the blob types) and check its checksum. */
typedef struct ts_ctx {
  const char *path;
  ngt_err *err;
  int rc;
} ts_ctx;

static herr_t verify_blob(hid_t ts, const char *name, const H5L_info_t *info, void *data) {
  (void)info;
  ts_ctx *c = data;
  char h5msg[256];
  hid_t ds = H5Dopen2(ts, name, H5P_DEFAULT), t = -1, sp = -1;
  if (ds < 0 || (t = H5Dget_type(ds)) < 0 || (sp = H5Dget_space(ds)) < 0) {
    c->rc = ngt_err_set(c->err, NGT_EFORMAT,
                        "model '%s': cannot open /train_state/%s: %s (the "
                        "file is damaged" DAMAGED_HINT ")",
                        c->path, name, ngt_h5_last_error(h5msg, sizeof h5msg));
    goto out;
  }
  H5T_class_t cls = H5Tget_class(t);
  size_t sz = H5Tget_size(t);
  hid_t mt = cls == H5T_FLOAT ? (sz == 4 ? H5T_NATIVE_FLOAT : H5T_NATIVE_DOUBLE)
                              : H5T_NATIVE_INT64;
  size_t es = mt == H5T_NATIVE_FLOAT ? 4 : 8;
  hssize_t np = H5Sget_simple_extent_npoints(sp);
  if ((cls != H5T_FLOAT && cls != H5T_INTEGER) || np < 0 || (size_t)np > SIZE_MAX / es) {
    c->rc = ngt_err_set(c->err, NGT_EFORMAT,
                        "model '%s': /train_state/%s is not a numeric array "
                        "ngtrain wrote (the file is damaged" DAMAGED_HINT ")",
                        c->path, name);
    goto out;
  }
  void *buf = malloc(np ? (size_t)np * es : 1);
  if (!buf) {
    c->rc = ngt_err_set(c->err, NGT_ENOMEM,
                        "model '%s': out of memory checking /train_state/%s "
                        "(%lld elements)",
                        c->path, name, (long long)np);
    goto out;
  }
  if (np > 0 && H5Dread(ds, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)
    c->rc = ngt_err_set(c->err, NGT_EFORMAT,
                        "model '%s': cannot read /train_state/%s: %s (the "
                        "file is truncated or damaged" DAMAGED_HINT ")",
                        c->path, name, ngt_h5_last_error(h5msg, sizeof h5msg));
  else
    c->rc = verify(c->path, 0, ds, buf, (size_t)np, es, c->err);
  free(buf);
out:
  if (sp >= 0) H5Sclose(sp);
  if (t >= 0) H5Tclose(t);
  if (ds >= 0) H5Dclose(ds);
  return c->rc ? -1 : 0;
}

static int verify_train_state(const char *path, hid_t f, ngt_err *err) {
  char h5msg[256];
  hid_t ts = H5Gopen2(f, "train_state", H5P_DEFAULT);
  if (ts < 0)
    return ngt_err_set(err, NGT_EFORMAT,
                       "model '%s': cannot open group /train_state: %s (the "
                       "file is damaged" DAMAGED_HINT ")",
                       path, ngt_h5_last_error(h5msg, sizeof h5msg));
  int rc = verify(path, 0, ts, NULL, 0, 0, err);
  if (!rc) {
    ts_ctx c = {path, err, 0};
    hsize_t idx = 0;
    if (H5Literate(ts, H5_INDEX_NAME, H5_ITER_INC, &idx, verify_blob, &c) < 0)
      rc = c.rc ? c.rc
                : ngt_err_set(err, NGT_EFORMAT,
                              "model '%s': the members of /train_state cannot "
                              "be listed: %s (the file is damaged" DAMAGED_HINT ")",
                              path, ngt_h5_last_error(h5msg, sizeof h5msg));
  }
  H5Gclose(ts);
  return rc;
}

/* Check that integer attribute `name` of obj (shown as where) equals want. */
static int check_int_attr(const char *path, hid_t obj, const char *where, const char *name,
                          long long want, const char *wantwhat, ngt_err *err) {
  long long v;
  int r = attr_read_i64(obj, name, &v);
  if (r == 1)
    return ngt_err_set(err, NGT_EFORMAT,
                       "model '%s': %s attribute '%s' is missing (the file is "
                       "damaged)",
                       path, where, name);
  if (r < 0)
    return ngt_err_set(err, NGT_EFORMAT, "model '%s': %s attribute '%s' is not an integer", path,
                       where, name);
  if (v != want)
    return ngt_err_set(err, NGT_EFORMAT,
                       "model '%s': %s attribute '%s' is %lld but %s %lld (the "
                       "file was modified or damaged)",
                       path, where, name, v, wantwhat, want);
  return 0;
}

int ngt_nnet_load(const char *path, ngt_nnet **out, ngt_err *err) {
  *out = NULL;
  hid_t f;
  int legacy;
  int rc = open_model(path, &f, &legacy, err);
  if (rc) return rc;
  ngt_nnet *net = NULL;
  char *cfg = NULL;
  hid_t comps = -1, g = -1;
  char h5msg[256];

  int r = attr_read_str(f, "config", &cfg);
  if (r != 0) {
    rc = ngt_err_set(err, NGT_EFORMAT,
                     "model '%s': attribute 'config' is %s (the file is "
                     "damaged)",
                     path, r == 1 ? "missing" : "not a string");
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

  htri_t ex = H5Lexists(f, "components", H5P_DEFAULT);
  if (ex <= 0 || (comps = H5Gopen2(f, "components", H5P_DEFAULT)) < 0) {
    rc = ngt_err_set(err, NGT_EFORMAT,
                     "model '%s': group /components %s%s (the file is "
                     "damaged" DAMAGED_HINT ")",
                     path, ex > 0 ? "cannot be opened: " : "is missing",
                     ex > 0 ? ngt_h5_last_error(h5msg, sizeof h5msg) : "");
    goto out_close;
  }
  if ((rc = verify(path, legacy, comps, NULL, 0, 0, err))) goto out_close;
  H5G_info_t gi;
  if (H5Gget_info(comps, &gi) < 0 || gi.nlinks != (hsize_t)net->num_comps) {
    rc = ngt_err_set(err, NGT_EFORMAT,
                     "model '%s': /components has %llu entries but the stored "
                     "config makes %d components (the file was modified or damaged)",
                     path, (unsigned long long)gi.nlinks, net->num_comps);
    goto out_close;
  }
  for (int c = 0; c < net->num_comps; c++) {
    const ngt_comp *cp = &net->comps[c];
    char name[32], where[64], wh2[80];
    snprintf(name, sizeof name, "%03d", c);
    snprintf(where, sizeof where, "/components/%s", name);
    ex = H5Lexists(comps, name, H5P_DEFAULT);
    if (ex <= 0 || (g = H5Gopen2(comps, name, H5P_DEFAULT)) < 0) {
      rc = ngt_err_set(err, NGT_EFORMAT,
                       "model '%s': group %s %s%s (the file is damaged" DAMAGED_HINT ")", path,
                       where, ex > 0 ? "cannot be opened: " : "is missing",
                       ex > 0 ? ngt_h5_last_error(h5msg, sizeof h5msg) : "");
      goto out_close;
    }
    if ((rc = verify(path, legacy, g, NULL, 0, 0, err))) goto out_close;
    long long ty;
    r = attr_read_i64(g, "type", &ty);
    if (r != 0) {
      rc = ngt_err_set(err, NGT_EFORMAT,
                       "model '%s': %s attribute 'type' is %s (the file is "
                       "damaged)",
                       path, where, r == 1 ? "missing" : "not an integer");
      goto out_close;
    }
    if (ty != cp->type) {
      rc = ngt_err_set(err, NGT_EFORMAT,
                       "model '%s': %s attribute 'type' is %lld (%s) but the "
                       "stored config says %d (%s) (the file was modified or damaged)",
                       path, where, ty, ngt_comp_type_name((int)ty), (int)cp->type,
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
      if ((rc = read_f32(path, legacy, g, "W", wh2, 2, wd, net->params + cp->w_off, err)))
        goto out_close;
      snprintf(wh2, sizeof wh2, "%s/b", where);
      if ((rc = read_f32(path, legacy, g, "b", wh2, 1, bd, net->params + cp->b_off, err)))
        goto out_close;
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
    if (!T) {
      rc = ngt_err_set(err, NGT_ENOMEM, "model '%s': out of memory", path);
      goto out_close;
    }
    hsize_t td[2] = {(hsize_t)D, (hsize_t)D + 1};
    if ((rc = read_f32(path, legacy, f, "input_transform", "/input_transform", 2, td, T, err))) {
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
        rc = ngt_err_set(err, NGT_EFORMAT,
                         "model '%s': /input_transform has unknown type %lld "
                         "(known: %d = lda, %d = cmvn; written by a newer ngtrain?)",
                         path, tt, NGT_TRANSFORM_LDA, NGT_TRANSFORM_CMVN);
      goto out_close;
    }
    ngt_nnet_set_transform(net, (int)tt, T);
    free(T);
  }
  if (H5Lexists(f, "priors", H5P_DEFAULT) > 0) {
    int C = net->num_classes;
    float *P = malloc((size_t)C * sizeof *P);
    if (!P) {
      rc = ngt_err_set(err, NGT_ENOMEM, "model '%s': out of memory", path);
      goto out_close;
    }
    hsize_t pd[1] = {(hsize_t)C};
    if ((rc = read_f32(path, legacy, f, "priors", "/priors", 1, pd, P, err))) {
      free(P);
      goto out_close;
    }
    double s = 0.0;
    int neg = -1;
    for (int k = 0; k < C; k++) {
      if (P[k] < 0 && neg < 0) neg = k;
      s += P[k];
    }
    if (neg >= 0 || fabs(s - 1.0) > 1e-3) {
      if (neg >= 0)
        rc = ngt_err_set(err, NGT_EFORMAT,
                         "model '%s': /priors[%d] = %g is negative (re-estimate "
                         "the priors)",
                         path, neg, (double)P[neg]);
      else
        rc = ngt_err_set(err, NGT_EFORMAT,
                         "model '%s': /priors sum to %g, not 1 (re-estimate the "
                         "priors)",
                         path, s);
      free(P);
      goto out_close;
    }
    ngt_nnet_set_priors(net, P);
    free(P);
  }
  /* A checkpoint's /train_state is checked here too, so that a model that loads is a file
   * that is whole: a damaged optimizer state must not be resumed from either. */
  if (!legacy && H5Lexists(f, "train_state", H5P_DEFAULT) > 0 &&
      (rc = verify_train_state(path, f, err)))
    goto out_close;
  if (H5Fclose(f) < 0) {
    f = -1;
    rc = ngt_err_set(err, NGT_EIO, "model '%s': closing failed: %s", path,
                     ngt_h5_last_error(h5msg, sizeof h5msg));
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
    return ngt_err_set(err, NGT_EINVAL,
                       "model '%s': train_state '%s' requested with unknown type "
                       "%d",
                       path, name, type);
  if (!blob_name_ok(name))
    return ngt_err_set(err, NGT_EINVAL, "model '%s': bad train_state name '%s'", path, name);
  hid_t f;
  int legacy;
  int rc = open_model(path, &f, &legacy, err);
  if (rc) return rc;
  char h5msg[256];
  hid_t ts = -1, ds = -1, t = -1, sp = -1;
  if (H5Lexists(f, "train_state", H5P_DEFAULT) <= 0 ||
      (ts = H5Gopen2(f, "train_state", H5P_DEFAULT)) < 0 ||
      H5Lexists(ts, name, H5P_DEFAULT) <= 0) {
    rc = ngt_err_set(err, NGT_EFORMAT,
                     "model '%s' has no /train_state/%s (is it a checkpoint, "
                     "not a final model?)",
                     path, name);
    goto out_close;
  }
  if ((rc = verify(path, legacy, ts, NULL, 0, 0, err))) goto out_close;
  if ((ds = H5Dopen2(ts, name, H5P_DEFAULT)) < 0 || (t = H5Dget_type(ds)) < 0 ||
      (sp = H5Dget_space(ds)) < 0) {
    rc = ngt_err_set(err, NGT_EFORMAT, "model '%s': cannot open /train_state/%s: %s", path, name,
                     ngt_h5_last_error(h5msg, sizeof h5msg));
    goto out_close;
  }
  H5T_class_t cls = H5Tget_class(t);
  size_t sz = H5Tget_size(t);
  const char *got = cls == H5T_FLOAT && sz == 4                                    ? "float32"
                    : cls == H5T_FLOAT && sz == 8                                  ? "float64"
                    : cls == H5T_INTEGER && sz == 8 && H5Tget_sign(t) == H5T_SGN_2 ? "int64"
                    : cls == H5T_INTEGER ? "another integer type"
                    : cls == H5T_FLOAT   ? "another float type"
                                         : "not numeric";
  if (strcmp(got, blob_type_name(type)) != 0) {
    rc = ngt_err_set(err, NGT_EFORMAT,
                     "model '%s': /train_state/%s is %s, expected %s (written by "
                     "another ngtrain version?)",
                     path, name, got, blob_type_name(type));
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
    rc = ngt_err_set(err, NGT_EFORMAT,
                     "model '%s': /train_state/%s claims %llu elements, more "
                     "than memory can hold (the file is damaged; use an earlier checkpoint)",
                     path, name, (unsigned long long)d);
    goto out_close;
  }
  void *buf = malloc(d ? (size_t)d * es : 1);
  if (!buf) {
    rc = ngt_err_set(err, NGT_ENOMEM,
                     "model '%s': out of memory reading /train_state/%s (%llu "
                     "elements)",
                     path, name, (unsigned long long)d);
    goto out_close;
  }
  if (d > 0 && H5Dread(ds, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
    free(buf);
    rc = ngt_err_set(err, NGT_EFORMAT,
                     "model '%s': cannot read /train_state/%s: %s (the file is "
                     "truncated or damaged)",
                     path, name, ngt_h5_last_error(h5msg, sizeof h5msg));
    goto out_close;
  }
  if ((rc = verify(path, legacy, ds, buf, (size_t)d, es, err))) {
    free(buf);
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
