/* shard.c — HDF5 shard files in and out; see include/ngtrain/shard.h and docs/design.md §5.1
 * "Formats".
 *
 * Contract:
 *   - ngt_shard_open validates everything that is cheap to validate from metadata:
 *     the file is HDF5, attrs format/version/feat_dim/num_classes, the shapes and types
 *     of /feats [T, D] (any float type), /labels [T] (any int type), /utt_offsets [U+1]
 *     (any int type; first 0, last T, strictly increasing). It keeps the two big
 *     datasets open and the offsets in memory.
 *   - ngt_shard_read reads a frame range by hyperslab and validates what it read:
 *     labels in [0, C), features finite.
 *   - Writing (whole or streaming) goes to ngt_tmp_path(path) and is renamed into place
 *     by ngt_commit_tmp on success; objects carry no timestamps
 *     (H5Pset_obj_track_times(0)), so equal contents give equal files.
 * Every error message names the file, the offending value and what to do.
 *
 * Dimension letters: T frames, D feature dim, U utterances, C classes.
 */
#include "ngtrain/shard.h"

#include <errno.h>
#include <glob.h>
#include <hdf5.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ngtrain/fileio.h"
#include "ngtrain/h5util.h"

#define MKSHARDS_HINT "make shards with mkshards (or mkdata for example data)"

/* ---------------------------------------------------------------- small helpers */

static void close_id(hid_t *id, herr_t (*fn)(hid_t)) {
  if (*id >= 0) fn(*id);
  *id = -1;
}

/* Reads an integer attribute on / into *v (h5util). Returns 1 present, 0 absent, <0 error. */
static int attr_int(hid_t f, const char *path, const char *name, long long *v, ngt_err *err) {
  ngt_err e = {0};
  int r = ngt_h5_attr_read_i64(f, name, v, path, &e);
  if (r == 0) return 1;
  if (r == 1) return 0;
  return ngt_err_set(err, r, "shard %s; %s", e.msg, MKSHARDS_HINT);
}

/* Reads a string attribute (fixed or variable length) on / into buf (h5util). Returns 1
 * present, 0 absent, <0 error. */
static int attr_str(hid_t f, const char *path, const char *name, char *buf, size_t len,
                    ngt_err *err) {
  ngt_err e = {0};
  char *s = NULL;
  int r = ngt_h5_attr_read_str(f, name, &s, path, &e);
  if (r == 1) return 0;
  if (r < 0) return ngt_err_set(err, r, "shard %s; %s", e.msg, MKSHARDS_HINT);
  snprintf(buf, len, "%s", s);
  free(s);
  return 1;
}

/* Opens dataset /name, checks its type class and rank, returns its dims. */
static int open_dataset(hid_t f, const char *path, const char *name, H5T_class_t cls,
                        const char *cls_name, int rank, hsize_t *dims, hid_t dapl, hid_t *out,
                        ngt_err *err) {
  *out = -1;
  htri_t ex = H5Lexists(f, name, H5P_DEFAULT);
  if (ex <= 0)
    return ngt_err_set(err, NGT_EFORMAT, "shard '%s': dataset %s is missing; %s", path, name,
                       MKSHARDS_HINT);
  hid_t d = H5Dopen2(f, name, dapl);
  if (d < 0)
    return ngt_err_set(err, NGT_EFORMAT,
                       "shard '%s': %s is not a readable dataset (corrupt "
                       "file?)",
                       path, name);
  hid_t t = H5Dget_type(d), s = H5Dget_space(d);
  int rc = 0;
  if (t < 0 || s < 0) {
    rc = ngt_err_set(err, NGT_EFORMAT, "shard '%s': cannot read the type of %s (corrupt file?)",
                     path, name);
  } else if (H5Tget_class(t) != cls) {
    rc = ngt_err_set(err, NGT_EFORMAT, "shard '%s': %s must hold %s values; %s", path, name,
                     cls_name, MKSHARDS_HINT);
  } else if (H5Sget_simple_extent_ndims(s) != rank) {
    rc = ngt_err_set(err, NGT_EFORMAT, "shard '%s': %s has %d dimensions but must have %d; %s",
                     path, name, H5Sget_simple_extent_ndims(s), rank, MKSHARDS_HINT);
  } else {
    H5Sget_simple_extent_dims(s, dims, NULL);
  }
  if (s >= 0) H5Sclose(s);
  if (t >= 0) H5Tclose(t);
  if (rc) {
    H5Dclose(d);
    return rc;
  }
  *out = d;
  return 0;
}

/* ---------------------------------------------------------------- reading */

int ngt_shard_open(const char *path, ngt_shard **out, ngt_err *err) {
  *out = NULL;
  ngt_hdf5_quiet();
  struct stat st;
  if (stat(path, &st) != 0)
    return ngt_err_set(err, NGT_EIO,
                       "shard '%s': cannot open: %s (check the path or the "
                       "--train/--valid pattern)",
                       path, strerror(errno));
  if (!S_ISREG(st.st_mode))
    return ngt_err_set(err, NGT_EIO, "shard '%s': not a regular file", path);
  if (access(path, R_OK) != 0)
    return ngt_err_set(err, NGT_EIO, "shard '%s': cannot read: %s (check the permissions)", path,
                       strerror(errno));
  if (H5Fis_hdf5(path) <= 0)
    return ngt_err_set(err, NGT_EFORMAT, "shard '%s': not an HDF5 file; %s", path, MKSHARDS_HINT);

  ngt_shard *sh = calloc(1, sizeof *sh);
  if (!sh) return ngt_err_set(err, NGT_ENOMEM, "shard '%s': out of memory", path);
  sh->h5file = sh->h5feats = sh->h5labels = -1;
  int rc = 0;
  hid_t dapl = -1, offs = -1;
  sh->path = strdup(path);
  if (!sh->path) {
    rc = ngt_err_set(err, NGT_ENOMEM, "shard '%s': out of memory", path);
    goto fail;
  }
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) {
    rc = ngt_err_set(err, NGT_EFORMAT,
                     "shard '%s': HDF5 cannot open it (truncated or corrupt "
                     "file? if it is on NFS/Lustre try HDF5_USE_FILE_LOCKING=FALSE)",
                     path);
    goto fail;
  }
  sh->h5file = f;

  char fmt[256];
  rc = attr_str(f, path, "format", fmt, sizeof fmt, err);
  if (rc < 0) goto fail;
  if (rc == 0) {
    rc = ngt_err_set(err, NGT_EFORMAT,
                     "shard '%s': not an ngtrain shard (no 'format' "
                     "attribute on /, expected format = \"%s\"); %s",
                     path, NGT_SHARD_FORMAT, MKSHARDS_HINT);
    goto fail;
  }
  if (strcmp(fmt, NGT_SHARD_FORMAT) != 0) {
    rc = ngt_err_set(err, NGT_EFORMAT,
                     "shard '%s': format attribute is \"%s\", expected "
                     "\"%s\"; %s",
                     path, fmt, NGT_SHARD_FORMAT, MKSHARDS_HINT);
    goto fail;
  }
  long long version = 0, feat_dim = 0, num_classes = 0;
  rc = attr_int(f, path, "version", &version, err);
  if (rc < 0) goto fail;
  if (rc == 0 || version != NGT_SHARD_VERSION) {
    if (rc == 0)
      rc = ngt_err_set(err, NGT_EFORMAT, "shard '%s': no 'version' attribute on /; %s", path,
                       MKSHARDS_HINT);
    else
      rc = ngt_err_set(err, NGT_EFORMAT,
                       "shard '%s': format version %lld, but this ngtrain "
                       "reads version %d (remake the shard with this ngtrain's mkshards)",
                       path, version, NGT_SHARD_VERSION);
    goto fail;
  }
  rc = attr_int(f, path, "feat_dim", &feat_dim, err);
  if (rc < 0) goto fail;
  if (rc == 0 || feat_dim <= 0 || feat_dim > INT32_MAX) {
    rc = ngt_err_set(err, NGT_EFORMAT,
                     "shard '%s': attribute feat_dim %s%lld; it must be a "
                     "positive integer; %s",
                     path, rc == 0 ? "is missing, " : "= ", rc == 0 ? 0LL : feat_dim,
                     MKSHARDS_HINT);
    goto fail;
  }
  rc = attr_int(f, path, "num_classes", &num_classes, err);
  if (rc < 0) goto fail;
  if (rc == 0 || num_classes <= 0 || num_classes > INT32_MAX) {
    rc = ngt_err_set(err, NGT_EFORMAT,
                     "shard '%s': attribute num_classes %s%lld; it must be a "
                     "positive integer (mkshards --num-classes)",
                     path, rc == 0 ? "is missing, " : "= ", rc == 0 ? 0LL : num_classes);
    goto fail;
  }
  sh->feat_dim = (int)feat_dim;
  sh->num_classes = (int)num_classes;

  /* A chunk cache that holds a few chunks of /feats, so a range read that ends inside a
   * compressed chunk does not decompress it again for the next range. */
  dapl = H5Pcreate(H5P_DATASET_ACCESS);
  if (dapl < 0 || H5Pset_chunk_cache(dapl, 521, (size_t)8 << 20, 0.75) < 0) {
    rc = ngt_err_set(err, NGT_EIO, "shard '%s': HDF5 property list failed", path);
    goto fail;
  }
  hsize_t fd[2] = {0, 0}, ld[1] = {0}, od[1] = {0};
  rc = open_dataset(f, path, "/feats", H5T_FLOAT, "floating-point", 2, fd, dapl, &sh->h5feats,
                    err);
  if (rc) goto fail;
  if (fd[1] != (hsize_t)feat_dim) {
    rc = ngt_err_set(err, NGT_EFORMAT,
                     "shard '%s': /feats has %llu columns but attribute "
                     "feat_dim = %lld (the file is inconsistent; remake it)",
                     path, (unsigned long long)fd[1], feat_dim);
    goto fail;
  }
  sh->num_frames = (int64_t)fd[0];
  rc = open_dataset(f, path, "/labels", H5T_INTEGER, "integer", 1, ld, dapl, &sh->h5labels, err);
  if (rc) goto fail;
  if (ld[0] != fd[0]) {
    rc = ngt_err_set(err, NGT_EFORMAT,
                     "shard '%s': /labels has %llu entries but /feats has "
                     "%llu frames (the file is inconsistent; remake it)",
                     path, (unsigned long long)ld[0], (unsigned long long)fd[0]);
    goto fail;
  }
  rc = open_dataset(f, path, "/utt_offsets", H5T_INTEGER, "integer", 1, od, H5P_DEFAULT, &offs,
                    err);
  if (rc) goto fail;
  if (od[0] < 1) {
    rc = ngt_err_set(err, NGT_EFORMAT,
                     "shard '%s': /utt_offsets is empty; it must hold U+1 "
                     "entries (0, ..., %" PRId64 ")",
                     path, sh->num_frames);
    goto fail;
  }
  if (od[0] > fd[0] + 1) {
    /* Utterances are non-empty, so U <= T; refusing more entries also keeps the size
     * arithmetic of the allocation below from wrapping (found by fuzzing). */
    rc = ngt_err_set(err, NGT_EFORMAT,
                     "shard '%s': /utt_offsets has %llu entries but the "
                     "shard holds only %" PRId64 " frames, so at most %" PRId64 " utterances "
                     "(the file is damaged; remake it)",
                     path, (unsigned long long)od[0], sh->num_frames, sh->num_frames);
    goto fail;
  }
  sh->num_utts = (int64_t)od[0] - 1;
  sh->utt_offsets = malloc((size_t)od[0] * sizeof *sh->utt_offsets); /* (U+1) */
  if (!sh->utt_offsets) {
    rc = ngt_err_set(err, NGT_ENOMEM, "shard '%s': out of memory for %llu utt_offsets", path,
                     (unsigned long long)od[0]);
    goto fail;
  }
  if (H5Dread(offs, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, sh->utt_offsets) < 0) {
    rc = ngt_err_set(err, NGT_EIO,
                     "shard '%s': cannot read /utt_offsets (truncated or corrupt "
                     "file?)",
                     path);
    goto fail;
  }
  const int64_t *o = sh->utt_offsets, U = sh->num_utts, T = sh->num_frames;
  if (o[0] != 0) {
    rc = ngt_err_set(err, NGT_EFORMAT,
                     "shard '%s': /utt_offsets[0] = %" PRId64 " but must be 0 "
                     "(the first utterance starts at frame 0); remake the shard",
                     path, o[0]);
    goto fail;
  }
  if (o[U] != T) {
    rc = ngt_err_set(err, NGT_EFORMAT,
                     "shard '%s': the last entry of /utt_offsets (index %" PRId64 ") is %" PRId64
                     " but /feats has T = %" PRId64 " frames; remake the "
                     "shard",
                     path, U, o[U], T);
    goto fail;
  }
  for (int64_t u = 0; u < U; u++) {
    if (o[u + 1] == o[u]) {
      rc = ngt_err_set(err, NGT_EFORMAT,
                       "shard '%s': utterance %" PRId64 " is empty "
                       "(/utt_offsets[%" PRId64 "] = /utt_offsets[%" PRId64 "] = %" PRId64
                       "); every utterance needs at least one frame; remake the shard",
                       path, u, u, u + 1, o[u]);
      goto fail;
    }
    if (o[u + 1] < o[u]) {
      rc = ngt_err_set(err, NGT_EFORMAT,
                       "shard '%s': /utt_offsets decreases at index %" PRId64 " (%" PRId64
                       " then %" PRId64 "); it must be strictly increasing; "
                       "remake the shard",
                       path, u, o[u], o[u + 1]);
      goto fail;
    }
  }
  H5Dclose(offs);
  H5Pclose(dapl);
  *out = sh;
  return 0;
fail:
  if (rc >= 0) rc = NGT_EFORMAT;
  if (offs >= 0) H5Dclose(offs);
  if (dapl >= 0) H5Pclose(dapl);
  ngt_shard_close(sh);
  return rc;
}

void ngt_shard_close(ngt_shard *sh) {
  if (!sh) return;
  if (sh->h5feats >= 0) H5Dclose(sh->h5feats);
  if (sh->h5labels >= 0) H5Dclose(sh->h5labels);
  if (sh->h5file >= 0) H5Fclose(sh->h5file);
  free(sh->utt_offsets);
  free(sh->path);
  free(sh);
}

/* Index of the first non-finite float in x[0, n), or -1. The block test is branch-free
 * over the exponent bits so it vectorises; only a bad block is searched element-wise. */
static int64_t first_nonfinite(const float *x, int64_t n) {
  const int64_t B = 4096;
  for (int64_t b0 = 0; b0 < n; b0 += B) {
    int64_t b1 = b0 + B < n ? b0 + B : n;
    uint32_t bad = 0;
    for (int64_t i = b0; i < b1; i++) {
      uint32_t u;
      memcpy(&u, &x[i], sizeof u);
      bad |= (uint32_t)((u & 0x7f800000u) == 0x7f800000u);
    }
    if (bad)
      for (int64_t i = b0; i < b1; i++)
        if (!isfinite(x[i])) return i;
  }
  return -1;
}

int ngt_shard_read(ngt_shard *sh, int64_t frame0, int64_t n, float *feats, int32_t *labels,
                   ngt_err *err) {
  NGT_ASSERT(sh != NULL);
  if (frame0 < 0 || n < 0 || frame0 > sh->num_frames - n)
    return ngt_err_set(err, NGT_EINVAL,
                       "shard '%s': cannot read frames [%" PRId64 ", %" PRId64
                       "): the shard has frames [0, %" PRId64 ")",
                       sh->path, frame0, frame0 + n, sh->num_frames);
  if (n == 0) return 0;
  const int D = sh->feat_dim;
  int rc = 0;
  hid_t fs = -1, ms = -1;
  if (feats) {
    hsize_t start[2] = {(hsize_t)frame0, 0}, count[2] = {(hsize_t)n, (hsize_t)D};
    fs = H5Dget_space((hid_t)sh->h5feats);
    ms = H5Screate_simple(2, count, NULL);
    if (fs < 0 || ms < 0 ||
        H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
        H5Dread((hid_t)sh->h5feats, H5T_NATIVE_FLOAT, ms, fs, H5P_DEFAULT, feats) < 0) {
      rc = ngt_err_set(err, NGT_EIO,
                       "shard '%s': cannot read /feats frames [%" PRId64 ", %" PRId64
                       ") (file truncated, corrupt or changed while reading? check it "
                       "with h5dump)",
                       sh->path, frame0, frame0 + n);
      goto out;
    }
    close_id(&ms, H5Sclose);
    close_id(&fs, H5Sclose);
    int64_t bad = first_nonfinite(feats, n * (int64_t)D);
    if (bad >= 0) {
      rc = ngt_err_set(err, NGT_EFORMAT,
                       "shard '%s': /feats frame %" PRId64 ", dim %d is %s; "
                       "features must be finite (check the feature extraction or the shard "
                       "conversion)",
                       sh->path, frame0 + bad / D, (int)(bad % D),
                       isnan(feats[bad]) ? "NaN" : (feats[bad] > 0 ? "+Inf" : "-Inf"));
      goto out;
    }
  }
  if (labels) {
    hsize_t start[1] = {(hsize_t)frame0}, count[1] = {(hsize_t)n};
    fs = H5Dget_space((hid_t)sh->h5labels);
    ms = H5Screate_simple(1, count, NULL);
    if (fs < 0 || ms < 0 ||
        H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
        H5Dread((hid_t)sh->h5labels, H5T_NATIVE_INT32, ms, fs, H5P_DEFAULT, labels) < 0) {
      rc = ngt_err_set(err, NGT_EIO,
                       "shard '%s': cannot read /labels frames [%" PRId64 ", %" PRId64
                       ") (file truncated, corrupt or changed while reading? check it "
                       "with h5dump)",
                       sh->path, frame0, frame0 + n);
      goto out;
    }
    const int32_t C = sh->num_classes;
    for (int64_t i = 0; i < n; i++) {
      if (labels[i] < 0 || labels[i] >= C) {
        rc = ngt_err_set(err, NGT_EFORMAT,
                         "shard '%s': frame %" PRId64 " has label %" PRId32
                         " but num_classes = %d (labels must be in [0, %d); check mkshards "
                         "--num-classes)",
                         sh->path, frame0 + i, labels[i], (int)C, (int)C);
        goto out;
      }
    }
  }
out:
  close_id(&ms, H5Sclose);
  close_id(&fs, H5Sclose);
  return rc;
}

int ngt_shard_read_ids(ngt_shard *sh, char ***ids, ngt_err *err) {
  NGT_ASSERT(sh != NULL);
  *ids = NULL;
  hid_t f = (hid_t)sh->h5file;
  htri_t ex = H5Lexists(f, "/utt_ids", H5P_DEFAULT);
  if (ex < 0)
    return ngt_err_set(err, NGT_EFORMAT, "shard '%s': cannot look up /utt_ids (corrupt file?)",
                       sh->path);
  if (ex == 0) return 0;
  hsize_t dims[1] = {0};
  hid_t d = -1, t = -1, mt = -1;
  int rc = open_dataset(f, sh->path, "/utt_ids", H5T_STRING, "string", 1, dims, H5P_DEFAULT, &d,
                        err);
  if (rc) return rc;
  const int64_t U = sh->num_utts;
  char **out = NULL;
  if ((int64_t)dims[0] != U) {
    rc = ngt_err_set(err, NGT_EFORMAT,
                     "shard '%s': /utt_ids has %llu names but the shard has "
                     "%" PRId64 " utterances (remake the shard)",
                     sh->path, (unsigned long long)dims[0], U);
    goto out;
  }
  out = calloc((size_t)U + 1, sizeof *out); /* (U) strings */
  t = H5Dget_type(d);
  mt = H5Tcopy(H5T_C_S1);
  if (!out || t < 0 || mt < 0 || H5Tset_cset(mt, H5Tget_cset(t)) < 0) {
    rc = ngt_err_set(err, NGT_ENOMEM, "shard '%s': out of memory reading /utt_ids", sh->path);
    goto out;
  }
  if (U == 0) goto done;
  if (H5Tis_variable_str(t) > 0) {
    char **raw = calloc((size_t)U, sizeof *raw);
    if (!raw || H5Tset_size(mt, H5T_VARIABLE) < 0 ||
        H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, raw) < 0) {
      free(raw);
      rc = ngt_err_set(err, NGT_EIO, "shard '%s': cannot read /utt_ids (corrupt file?)", sh->path);
      goto out;
    }
    for (int64_t u = 0; u < U; u++) {
      out[u] = strdup(raw[u] ? raw[u] : "");
      if (raw[u]) H5free_memory(raw[u]);
      if (!out[u]) rc = NGT_ENOMEM;
    }
    free(raw);
  } else {
    size_t sz = H5Tget_size(t);
    char *buf = calloc((size_t)U, sz + 1);
    if (!buf || H5Tset_size(mt, sz + 1) < 0 || H5Tset_strpad(mt, H5T_STR_NULLTERM) < 0 ||
        H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
      free(buf);
      rc = ngt_err_set(err, NGT_EIO, "shard '%s': cannot read /utt_ids (corrupt file?)", sh->path);
      goto out;
    }
    for (int64_t u = 0; u < U; u++) {
      out[u] = strdup(buf + (size_t)u * (sz + 1));
      if (!out[u]) rc = NGT_ENOMEM;
    }
    free(buf);
  }
  if (rc) {
    rc = ngt_err_set(err, NGT_ENOMEM, "shard '%s': out of memory reading /utt_ids", sh->path);
    goto out;
  }
done:
  *ids = out;
  out = NULL;
out:
  if (out) ngt_shard_free_ids(out, U);
  close_id(&mt, H5Tclose);
  close_id(&t, H5Tclose);
  close_id(&d, H5Dclose);
  return rc;
}

void ngt_shard_free_ids(char **ids, int64_t n) {
  if (!ids) return;
  for (int64_t i = 0; i < n; i++) free(ids[i]);
  free(ids);
}

/* ---------------------------------------------------------------- writing */

struct ngt_shard_writer {
  char *path;           /* final path (owned) */
  char *tmp;            /* temp path written until commit (owned) */
  int D, C;             /* feat_dim, num_classes */
  int compress;         /* gzip level 0..9 */
  int64_t chunk_frames; /* rows per HDF5 chunk; also the size of the write buffer */
  hid_t file, feats, labels;
  int64_t T; /* frames written to the datasets so far */
  /* Frames are buffered up to one HDF5 chunk and written chunk-aligned, so the streaming
   * and the whole writer produce the same chunks and compressed chunks are written once. */
  float *buf_feats;    /* (chunk_frames, D) */
  int32_t *buf_labels; /* (chunk_frames) */
  int64_t buf_n;       /* frames in the buffer */
  int64_t U, cap_u;    /* utterances added; capacity of offsets/ids */
  int64_t *offsets;    /* (cap_u + 1): offsets[0..U] */
  char **ids;          /* (cap_u): NULL where no id was given */
  int any_id;          /* write /utt_ids if any utterance had an id */
};

static void writer_close_h5(ngt_shard_writer *w) {
  close_id(&w->feats, H5Dclose);
  close_id(&w->labels, H5Dclose);
  close_id(&w->file, H5Fclose);
}

static void writer_free(ngt_shard_writer *w) {
  if (!w) return;
  writer_close_h5(w);
  if (w->ids)
    for (int64_t u = 0; u < w->U; u++) free(w->ids[u]);
  free(w->ids);
  free(w->offsets);
  free(w->buf_feats);
  free(w->buf_labels);
  free(w->tmp);
  free(w->path);
  free(w);
}

void ngt_shard_writer_abort(ngt_shard_writer *w) {
  if (!w) return;
  writer_close_h5(w);
  if (w->tmp) unlink(w->tmp);
  writer_free(w);
}

/* Creates an extendible chunked dataset [0, cols] (rank 1 if cols == 0). */
static hid_t create_extendible(hid_t file, const char *name, hid_t type, int64_t chunk, int cols,
                               int compress) {
  int rank = cols > 0 ? 2 : 1;
  hsize_t dims[2] = {0, (hsize_t)cols}, maxd[2] = {H5S_UNLIMITED, (hsize_t)cols},
          ch[2] = {(hsize_t)chunk, (hsize_t)cols};
  hid_t s = H5Screate_simple(rank, dims, maxd), p = H5Pcreate(H5P_DATASET_CREATE), d = -1;
  if (s >= 0 && p >= 0 && H5Pset_chunk(p, rank, ch) >= 0 && H5Pset_obj_track_times(p, 0) >= 0 &&
      (compress == 0 || (H5Pset_shuffle(p) >= 0 && H5Pset_deflate(p, (unsigned)compress) >= 0)))
    d = H5Dcreate2(file, name, type, s, H5P_DEFAULT, p, H5P_DEFAULT);
  if (p >= 0) H5Pclose(p);
  if (s >= 0) H5Sclose(s);
  return d;
}

int ngt_shard_writer_open(const char *path, int D, int num_classes,
                          const ngt_shard_write_opts *opts, ngt_shard_writer **out, ngt_err *err) {
  *out = NULL;
  ngt_hdf5_quiet();
  int compress = opts ? opts->compress : 0;
  int64_t chunk = opts && opts->chunk_frames > 0 ? opts->chunk_frames : 4096;
  if (D <= 0)
    return ngt_err_set(err, NGT_EINVAL, "shard '%s': feat_dim = %d, must be positive", path, D);
  if (num_classes <= 0)
    return ngt_err_set(err, NGT_EINVAL,
                       "shard '%s': num_classes = %d, must be positive "
                       "(mkshards --num-classes)",
                       path, num_classes);
  if (compress < 0 || compress > 9)
    return ngt_err_set(err, NGT_EINVAL, "shard '%s': compression level %d, must be 0..9", path,
                       compress);
  if (chunk > ((int64_t)1 << 28) / D) /* HDF5 chunks must stay below 4 GiB; keep them < 1 GiB */
    return ngt_err_set(err, NGT_EINVAL,
                       "shard '%s': chunk of %" PRId64 " frames x %d dims is "
                       "too large for HDF5; use a smaller chunk",
                       path, chunk, D);
  ngt_shard_writer *w = calloc(1, sizeof *w);
  if (!w) return ngt_err_set(err, NGT_ENOMEM, "shard '%s': out of memory", path);
  w->file = w->feats = w->labels = -1;
  w->D = D;
  w->C = num_classes;
  w->compress = compress;
  w->chunk_frames = chunk;
  w->cap_u = 64;
  size_t tlen = strlen(path) + 32;
  w->path = strdup(path);
  w->tmp = malloc(tlen);
  w->buf_feats = malloc((size_t)chunk * (size_t)D * sizeof *w->buf_feats);
  w->buf_labels = malloc((size_t)chunk * sizeof *w->buf_labels);
  w->offsets = malloc((size_t)(w->cap_u + 1) * sizeof *w->offsets);
  w->ids = calloc((size_t)w->cap_u, sizeof *w->ids);
  if (!w->path || !w->tmp || !w->buf_feats || !w->buf_labels || !w->offsets || !w->ids) {
    writer_free(w);
    return ngt_err_set(err, NGT_ENOMEM, "shard '%s': out of memory", path);
  }
  w->offsets[0] = 0;
  ngt_tmp_path(path, w->tmp, tlen);
  hid_t fcpl = H5Pcreate(H5P_FILE_CREATE);
  if (fcpl >= 0) H5Pset_obj_track_times(fcpl, 0); /* the root group: no timestamps either */
  errno = 0;
  w->file = H5Fcreate(w->tmp, H5F_ACC_TRUNC, fcpl >= 0 ? fcpl : H5P_DEFAULT, H5P_DEFAULT);
  if (fcpl >= 0) H5Pclose(fcpl);
  if (w->file < 0) {
    int e = errno;
    ngt_err_set(err, NGT_EIO,
                "shard '%s': cannot create the temporary file '%s' (%s; does the "
                "directory exist and is it writable?)",
                path, w->tmp, e ? strerror(e) : "HDF5 error");
    unlink(w->tmp);
    writer_free(w);
    return NGT_EIO;
  }
  w->feats = create_extendible(w->file, "feats", H5T_IEEE_F32LE, chunk, D, compress);
  w->labels = create_extendible(w->file, "labels", H5T_STD_I32LE, chunk, 0, compress);
  if (w->feats < 0 || w->labels < 0) {
    ngt_shard_writer_abort(w);
    return ngt_err_set(err, NGT_EIO, "shard '%s': cannot create the datasets in '%s'", path, path);
  }
  *out = w;
  return 0;
}

/* Appends the buffered frames to the datasets. */
static int writer_flush(ngt_shard_writer *w, ngt_err *err) {
  if (w->buf_n == 0) return 0;
  hsize_t nd[2] = {(hsize_t)(w->T + w->buf_n), (hsize_t)w->D};
  hsize_t start[2] = {(hsize_t)w->T, 0}, count[2] = {(hsize_t)w->buf_n, (hsize_t)w->D};
  int ok = 0;
  hid_t fs = -1, ms = -1;
  if (H5Dset_extent(w->feats, nd) < 0) goto out;
  fs = H5Dget_space(w->feats);
  ms = H5Screate_simple(2, count, NULL);
  if (fs < 0 || ms < 0 || H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
      H5Dwrite(w->feats, H5T_NATIVE_FLOAT, ms, fs, H5P_DEFAULT, w->buf_feats) < 0)
    goto out;
  close_id(&ms, H5Sclose);
  close_id(&fs, H5Sclose);
  if (H5Dset_extent(w->labels, nd) < 0) goto out;
  fs = H5Dget_space(w->labels);
  ms = H5Screate_simple(1, count, NULL);
  if (fs < 0 || ms < 0 || H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
      H5Dwrite(w->labels, H5T_NATIVE_INT32, ms, fs, H5P_DEFAULT, w->buf_labels) < 0)
    goto out;
  ok = 1;
  w->T += w->buf_n;
  w->buf_n = 0;
out:
  close_id(&ms, H5Sclose);
  close_id(&fs, H5Sclose);
  if (!ok)
    return ngt_err_set(err, NGT_EIO,
                       "shard '%s': writing frames [%" PRId64 ", %" PRId64 ") to "
                       "'%s' failed (disk full?)",
                       w->path, w->T, w->T + w->buf_n, w->tmp);
  return 0;
}

int ngt_shard_writer_add(ngt_shard_writer *w, const char *utt_id, const float *feats, int64_t T,
                         const int32_t *labels, ngt_err *err) {
  NGT_ASSERT(w != NULL);
  const int D = w->D;
  const char *name = utt_id ? utt_id : "";
  if (T <= 0)
    return ngt_err_set(err, NGT_EINVAL,
                       "shard '%s': utterance %" PRId64 " '%s' has %" PRId64
                       " frames; every utterance needs at least one frame",
                       w->path, w->U, name, T);
  for (int64_t t = 0; t < T; t++) {
    if (labels[t] < 0 || labels[t] >= w->C)
      return ngt_err_set(err, NGT_EINVAL,
                         "shard '%s': utterance %" PRId64 " '%s' frame %" PRId64
                         " has label %" PRId32 " but num_classes = %d (check "
                         "--num-classes and the alignments)",
                         w->path, w->U, name, t, labels[t], w->C);
  }
  int64_t bad = first_nonfinite(feats, T * (int64_t)D);
  if (bad >= 0)
    return ngt_err_set(err, NGT_EINVAL,
                       "shard '%s': utterance %" PRId64 " '%s' frame %" PRId64
                       ", dim %d is not finite (%g); check the features",
                       w->path, w->U, name, bad / D, (int)(bad % D), (double)feats[bad]);
  if (w->U == w->cap_u) {
    int64_t nc = w->cap_u * 2;
    int64_t *no = realloc(w->offsets, (size_t)(nc + 1) * sizeof *no);
    if (no) w->offsets = no;
    char **ni = no ? realloc(w->ids, (size_t)nc * sizeof *ni) : NULL;
    if (!no || !ni)
      return ngt_err_set(err, NGT_ENOMEM, "shard '%s': out of memory at utterance %" PRId64,
                         w->path, w->U);
    w->ids = ni;
    w->cap_u = nc;
  }
  char *idcopy = NULL;
  if (utt_id) {
    idcopy = strdup(utt_id);
    if (!idcopy) return ngt_err_set(err, NGT_ENOMEM, "shard '%s': out of memory", w->path);
  }
  for (int64_t t = 0; t < T;) {
    int64_t k = w->chunk_frames - w->buf_n;
    if (k > T - t) k = T - t;
    memcpy(w->buf_feats + (size_t)w->buf_n * (size_t)D, feats + (size_t)t * (size_t)D,
           (size_t)k * (size_t)D * sizeof *feats);
    memcpy(w->buf_labels + w->buf_n, labels + t, (size_t)k * sizeof *labels);
    w->buf_n += k;
    t += k;
    if (w->buf_n == w->chunk_frames) {
      int rc = writer_flush(w, err);
      if (rc) {
        free(idcopy);
        return rc;
      }
    }
  }
  w->ids[w->U] = idcopy;
  if (utt_id) w->any_id = 1;
  w->offsets[w->U + 1] = w->offsets[w->U] + T;
  w->U++;
  return 0;
}

static hid_t vlen_str_type(void) {
  hid_t t = H5Tcopy(H5T_C_S1);
  if (t < 0) return -1;
  if (H5Tset_size(t, H5T_VARIABLE) < 0 || H5Tset_cset(t, H5T_CSET_UTF8) < 0) {
    H5Tclose(t);
    return -1;
  }
  return t;
}

/* Writes a fixed-size 1-D dataset (contiguous, no timestamps) from buf. */
static int write_dataset_1d(hid_t f, const char *name, hid_t ftype, hid_t mtype, hsize_t n,
                            const void *buf) {
  hid_t s = H5Screate_simple(1, &n, NULL), p = H5Pcreate(H5P_DATASET_CREATE), d = -1;
  int ok = s >= 0 && p >= 0 && H5Pset_obj_track_times(p, 0) >= 0 &&
           (d = H5Dcreate2(f, name, ftype, s, H5P_DEFAULT, p, H5P_DEFAULT)) >= 0 &&
           (n == 0 || H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0);
  if (d >= 0) H5Dclose(d);
  if (p >= 0) H5Pclose(p);
  if (s >= 0) H5Sclose(s);
  return ok ? 0 : -1;
}

int ngt_shard_writer_commit(ngt_shard_writer *w, ngt_err *err) {
  NGT_ASSERT(w != NULL);
  int rc = writer_flush(w, err);
  if (rc) goto fail;
  NGT_ASSERT(w->offsets[w->U] == w->T);
  if (write_dataset_1d(w->file, "utt_offsets", H5T_STD_I64LE, H5T_NATIVE_INT64,
                       (hsize_t)(w->U + 1), w->offsets) < 0)
    goto fail_io;
  if (w->any_id) {
    const char **names = malloc((size_t)(w->U + 1) * sizeof *names); /* (U) */
    if (!names) {
      rc = ngt_err_set(err, NGT_ENOMEM, "shard '%s': out of memory", w->path);
      goto fail;
    }
    for (int64_t u = 0; u < w->U; u++) names[u] = w->ids[u] ? w->ids[u] : "";
    hid_t t = vlen_str_type();
    int bad = t < 0 || write_dataset_1d(w->file, "utt_ids", t, t, (hsize_t)w->U, names) < 0;
    if (t >= 0) H5Tclose(t);
    free(names);
    if (bad) goto fail_io;
  }
  ngt_err ae = {0};
  if (ngt_h5_attr_write_vstr(w->file, "format", NGT_SHARD_FORMAT, w->tmp, &ae) ||
      ngt_h5_attr_write_int(w->file, "version", NGT_SHARD_VERSION, w->tmp, &ae) ||
      ngt_h5_attr_write_int(w->file, "feat_dim", w->D, w->tmp, &ae) ||
      ngt_h5_attr_write_int(w->file, "num_classes", w->C, w->tmp, &ae)) {
    rc = ngt_err_set(err, NGT_EIO, "shard '%s': %s (disk full?)", w->path, ae.msg);
    goto fail;
  }
  close_id(&w->feats, H5Dclose);
  close_id(&w->labels, H5Dclose);
  herr_t cl = H5Fclose(w->file);
  w->file = -1;
  if (cl < 0) goto fail_io;
  rc = ngt_commit_tmp(w->tmp, w->path, err); /* removes tmp on failure */
  writer_free(w);
  return rc;
fail_io:
  rc = ngt_err_set(err, NGT_EIO,
                   "shard '%s': writing the temporary file '%s' failed (disk "
                   "full?)",
                   w->path, w->tmp);
fail:
  ngt_shard_writer_abort(w);
  return rc;
}

int ngt_shard_write(const char *path, const float *feats, int64_t T, int D, const int32_t *labels,
                    const int64_t *utt_offsets, int64_t U, const char *const *utt_ids,
                    int num_classes, const ngt_shard_write_opts *opts, ngt_err *err) {
  if (U < 0 || T < 0 || utt_offsets[0] != 0 || utt_offsets[U] != T)
    return ngt_err_set(err, NGT_EINVAL,
                       "shard '%s': utt_offsets must run from 0 to T = %" PRId64 " (got %" PRId64
                       " .. %" PRId64 ")",
                       path, T, utt_offsets[0], U >= 0 ? utt_offsets[U] : -1);
  for (int64_t u = 0; u < U; u++)
    if (utt_offsets[u + 1] <= utt_offsets[u])
      return ngt_err_set(err, NGT_EINVAL,
                         "shard '%s': utterance %" PRId64 " is empty or "
                         "utt_offsets decreases there (%" PRId64 " then %" PRId64 ")",
                         path, u, utt_offsets[u], utt_offsets[u + 1]);
  ngt_shard_writer *w;
  int rc = ngt_shard_writer_open(path, D, num_classes, opts, &w, err);
  if (rc) return rc;
  for (int64_t u = 0; u < U; u++) {
    int64_t t0 = utt_offsets[u];
    rc = ngt_shard_writer_add(w, utt_ids ? utt_ids[u] : NULL, feats + (size_t)t0 * (size_t)D,
                              utt_offsets[u + 1] - t0, labels + t0, err);
    if (rc) {
      ngt_shard_writer_abort(w);
      return rc;
    }
  }
  return ngt_shard_writer_commit(w, err);
}

/* ---------------------------------------------------------------- globbing */

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int ngt_glob_paths(const char *pattern, char ***paths, int *n, ngt_err *err) {
  *paths = NULL;
  *n = 0;
  struct stat st;
  if (stat(pattern, &st) == 0 && S_ISREG(st.st_mode)) { /* an existing file, even if its
                                                          * name has glob characters */
    char **one = calloc(1, sizeof *one);
    if (one) one[0] = strdup(pattern);
    if (!one || !one[0]) {
      free(one);
      return ngt_err_set(err, NGT_ENOMEM, "out of memory expanding '%s'", pattern);
    }
    *paths = one;
    *n = 1;
    return 0;
  }
  glob_t g;
  memset(&g, 0, sizeof g);
  int rc = glob(pattern, 0, NULL, &g);
  if (rc == GLOB_NOMATCH || (rc == 0 && g.gl_pathc == 0)) {
    globfree(&g);
    return ngt_err_set(err, NGT_EIO,
                       "no file matches '%s' (check the path; quote the pattern "
                       "so the shell does not expand it)",
                       pattern);
  }
  if (rc != 0) {
    globfree(&g);
    return ngt_err_set(err, NGT_EIO, "cannot expand '%s': %s", pattern,
                       rc == GLOB_NOSPACE ? "out of memory" : "read error");
  }
  char **out = calloc(g.gl_pathc, sizeof *out);
  if (!out) {
    globfree(&g);
    return ngt_err_set(err, NGT_ENOMEM, "out of memory expanding '%s'", pattern);
  }
  for (size_t i = 0; i < g.gl_pathc; i++) {
    out[i] = strdup(g.gl_pathv[i]);
    if (!out[i]) {
      ngt_paths_free(out, (int)i);
      globfree(&g);
      return ngt_err_set(err, NGT_ENOMEM, "out of memory expanding '%s'", pattern);
    }
  }
  /* glob sorts by the locale's collation; sort bytewise so the order (and with it the
   * data order) does not depend on LC_COLLATE. */
  qsort(out, g.gl_pathc, sizeof *out, cmp_str);
  *n = (int)g.gl_pathc;
  *paths = out;
  globfree(&g);
  return 0;
}

void ngt_paths_free(char **paths, int n) {
  if (!paths) return;
  for (int i = 0; i < n; i++) free(paths[i]);
  free(paths);
}
