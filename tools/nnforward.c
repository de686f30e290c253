/* nnforward — per-frame log-posteriors (or prior-divided log-likelihoods) of a model, for
 * hybrid decoding with Kaldi (latgen-faster-mapped) or for inspection.
 *
 *   nnforward exp/run1/final.h5 scp:data/test/feats.scp ark:exp/run1/logpost.ark
 *   nnforward --apply-priors exp/run1/final.h5 scp:data/test/feats.scp ark:- | \
 *     latgen-faster-mapped ... ark:- ark:lat.ark
 *   nnforward exp/run1/final.h5 'shards/dev-*.h5' out.h5
 *
 * Contract:
 *  - input: HDF5 shards (a path or a quoted glob) or a Kaldi feature table (ark:/scp:, or a
 *    path ending in .ark/.scp); per utterance, the model's splicing (context
 *    nnet->ctx_left/right, clamped at the utterance edges as Kaldi does) and its fixed input
 *    transform (inside ngt_nnet_forward) are applied, in minibatches of --minibatch-size;
 *  - output per frame: log p(s | x) (the network's log-softmax), or with --apply-priors
 *    log p(s | x) - log prior(s) (docs/algorithm.md §4.5; an error if the model has no priors);
 *  - output file: a Kaldi binary archive of float matrices [T, C] ("ark:out.ark",
 *    "ark,scp:out.ark,out.scp", "ark,t:" text, "ark:-" stdout), or HDF5 (a .h5 name or
 *    --output-format=h5) with /logprobs float32 [T, C], /utt_offsets int64 [U+1],
 *    /utt_ids string [U] and attributes format = "ngtrain-logprobs", version, num_classes,
 *    kind ("log-posterior" | "log-likelihood"), model. Files appear only when complete.
 *  - messages go to stderr (stdout may be the archive). Exit status 0, or 1 on any error.
 */
#include <errno.h>
#include <hdf5.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ngtrain/batcher.h"
#include "ngtrain/engine.h"
#include "ngtrain/fileio.h"
#include "ngtrain/h5util.h"
#include "ngtrain/kaldi_io.h"
#include "ngtrain/log.h"
#include "ngtrain/nnet.h"
#include "ngtrain/nnet_io.h"
#include "ngtrain/opts.h"
#include "ngtrain/shard.h"

#define LOG_PRIOR_FLOOR 1e-20 /* a zero prior would give +inf log-likelihoods */

static const ngt_tool tool = {
    "nnforward",
    "per-frame log-posteriors of a model (or, with --apply-priors, log-likelihoods\n"
    "log p(s|x) - log prior(s) for hybrid decoding), for HDF5 shards or a Kaldi feature table.\n"
    "The model's splicing and input transform are applied per utterance. Messages go to\n"
    "stderr (stdout may be the archive).",
    "nnforward [options] model.h5 <shards.h5|'glob'|ark:feats.ark|scp:feats.scp> <out>\n"
    "  out: ark:FILE (Kaldi binary archive of [T, C] float matrices, readable by copy-feats),\n"
    "       ark,scp:FILE.ark,FILE.scp, ark,t:FILE (text), ark:- (stdout), or FILE.h5 (HDF5:\n"
    "       /logprobs [T, C], /utt_offsets [U+1], /utt_ids [U])",
    "nnforward --apply-priors exp/run1/final.h5 scp:data/test/feats.scp ark:- | \\\n"
    "  latgen-faster-mapped --acoustic-scale=0.1 --word-symbol-table=words.txt \\\n"
    "  final.mdl HCLG.fst ark:- 'ark:|gzip -c > lat.1.gz'\n"
    "nnforward exp/run1/final.h5 'shards/dev-*.h5' exp/run1/dev_logpost.h5",
    NULL,
    3,
    3};

/* ---------------------------------------------------------------------------------- */
/* HDF5 output, streamed: /logprobs grows by utterance; offsets and ids at the end.      */

typedef struct h5out {
  char *path, *tmp;
  hid_t f, d;
  int C;
  int64_t T;     /* frames written */
  int64_t *offs; /* (U+1) */
  char **ids;    /* (U) */
  size_t U, cap;
} h5out;

static void h5out_abort(h5out *o) {
  if (!o) return;
  if (o->d >= 0) H5Dclose(o->d);
  if (o->f >= 0) H5Fclose(o->f);
  if (o->tmp) unlink(o->tmp);
  for (size_t u = 0; u < o->U; u++) free(o->ids[u]);
  free(o->ids);
  free(o->offs);
  free(o->path);
  free(o->tmp);
  free(o);
}

static int h5out_open(const char *path, int C, h5out **out, ngt_err *err) {
  ngt_hdf5_quiet();
  h5out *o = calloc(1, sizeof *o);
  if (!o) return ngt_err_set(err, NGT_ENOMEM, "out of memory");
  o->f = o->d = -1;
  o->C = C;
  char tmp[4096];
  ngt_tmp_path(path, tmp, sizeof tmp);
  o->path = strdup(path);
  o->tmp = strdup(tmp);
  o->cap = 1024;
  o->offs = malloc(sizeof(int64_t) * (o->cap + 1));
  o->ids = malloc(sizeof(char *) * o->cap);
  if (!o->path || !o->tmp || !o->offs || !o->ids) {
    h5out_abort(o);
    return ngt_err_set(err, NGT_ENOMEM, "out of memory");
  }
  o->offs[0] = 0;
  hid_t fcpl = H5Pcreate(H5P_FILE_CREATE);
  if (fcpl >= 0) H5Pset_obj_track_times(fcpl, 0);
  o->f = H5Fcreate(tmp, H5F_ACC_TRUNC, fcpl >= 0 ? fcpl : H5P_DEFAULT, H5P_DEFAULT);
  if (fcpl >= 0) H5Pclose(fcpl);
  if (o->f < 0) {
    free(o->tmp);
    o->tmp = NULL;
    h5out_abort(o);
    return ngt_err_set(err, NGT_EIO,
                       "cannot create '%s' (does the directory exist and is it "
                       "writable?)",
                       tmp);
  }
  /* chunks of about 1 MB: whole rows */
  hsize_t rows = (hsize_t)((1 << 18) / C);
  if (rows < 1) rows = 1;
  if (rows > 4096) rows = 4096;
  hsize_t dims[2] = {0, (hsize_t)C}, maxd[2] = {H5S_UNLIMITED, (hsize_t)C},
          ch[2] = {rows, (hsize_t)C};
  hid_t s = H5Screate_simple(2, dims, maxd), p = H5Pcreate(H5P_DATASET_CREATE);
  if (s >= 0 && p >= 0 && H5Pset_chunk(p, 2, ch) >= 0 && H5Pset_obj_track_times(p, 0) >= 0)
    o->d = H5Dcreate2(o->f, "logprobs", H5T_IEEE_F32LE, s, H5P_DEFAULT, p, H5P_DEFAULT);
  if (p >= 0) H5Pclose(p);
  if (s >= 0) H5Sclose(s);
  if (o->d < 0) {
    h5out_abort(o);
    return ngt_err_set(err, NGT_EIO, "cannot create /logprobs in '%s'", tmp);
  }
  *out = o;
  return 0;
}

static int h5out_add(h5out *o, const char *key, const float *x, int64_t T, ngt_err *err) {
  if (o->U == o->cap) {
    size_t nc = 2 * o->cap;
    int64_t *no = realloc(o->offs, sizeof(int64_t) * (nc + 1));
    if (no) o->offs = no;
    char **ni = no ? realloc(o->ids, sizeof(char *) * nc) : NULL;
    if (!ni) return ngt_err_set(err, NGT_ENOMEM, "out of memory");
    o->ids = ni;
    o->cap = nc;
  }
  char *id = strdup(key);
  if (!id) return ngt_err_set(err, NGT_ENOMEM, "out of memory");
  if (T > 0) {
    hsize_t nd[2] = {(hsize_t)(o->T + T), (hsize_t)o->C};
    hsize_t start[2] = {(hsize_t)o->T, 0}, count[2] = {(hsize_t)T, (hsize_t)o->C};
    hid_t fs = -1, ms = -1;
    int ok = H5Dset_extent(o->d, nd) >= 0 && (fs = H5Dget_space(o->d)) >= 0 &&
             (ms = H5Screate_simple(2, count, NULL)) >= 0 &&
             H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL) >= 0 &&
             H5Dwrite(o->d, H5T_NATIVE_FLOAT, ms, fs, H5P_DEFAULT, x) >= 0;
    if (ms >= 0) H5Sclose(ms);
    if (fs >= 0) H5Sclose(fs);
    if (!ok) {
      free(id);
      return ngt_err_set(err, NGT_EIO, "writing utterance '%s' to '%s' failed (disk full?)", key,
                         o->tmp);
    }
  }
  o->T += T;
  o->ids[o->U] = id;
  o->offs[++o->U] = o->T;
  return 0;
}

/* Write offsets, ids and attributes, close and rename into place; frees o. */
static int h5out_close(h5out *o, const char *kind, const char *model, ngt_err *err) {
  int ok = 1;
  hsize_t n = (hsize_t)(o->U + 1);
  hid_t s = H5Screate_simple(1, &n, NULL), p = H5Pcreate(H5P_DATASET_CREATE), d = -1;
  ok = s >= 0 && p >= 0 && H5Pset_obj_track_times(p, 0) >= 0 &&
       (d = H5Dcreate2(o->f, "utt_offsets", H5T_STD_I64LE, s, H5P_DEFAULT, p, H5P_DEFAULT)) >= 0 &&
       H5Dwrite(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, o->offs) >= 0;
  if (d >= 0) H5Dclose(d);
  if (s >= 0) H5Sclose(s);
  d = s = -1;
  if (ok) {
    n = (hsize_t)o->U;
    hid_t t = H5Tcopy(H5T_C_S1);
    s = H5Screate_simple(1, &n, NULL);
    ok = t >= 0 && s >= 0 && H5Tset_size(t, H5T_VARIABLE) >= 0 &&
         H5Tset_cset(t, H5T_CSET_UTF8) >= 0 &&
         (d = H5Dcreate2(o->f, "utt_ids", t, s, H5P_DEFAULT, p, H5P_DEFAULT)) >= 0 &&
         (o->U == 0 || H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, o->ids) >= 0);
    if (d >= 0) H5Dclose(d);
    if (s >= 0) H5Sclose(s);
    if (t >= 0) H5Tclose(t);
  }
  if (p >= 0) H5Pclose(p);
  ok = ok && ngt_h5_attr_write_vstr(o->f, "format", "ngtrain-logprobs", o->path, err) == 0 &&
       ngt_h5_attr_write_int(o->f, "version", 1, o->path, err) == 0 &&
       ngt_h5_attr_write_int(o->f, "num_classes", o->C, o->path, err) == 0 &&
       ngt_h5_attr_write_vstr(o->f, "kind", kind, o->path, err) == 0 &&
       ngt_h5_attr_write_vstr(o->f, "model", model, o->path, err) == 0;
  if (H5Dclose(o->d) < 0) ok = 0;
  o->d = -1;
  if (H5Fclose(o->f) < 0) ok = 0;
  o->f = -1;
  if (!ok) {
    h5out_abort(o);
    return ngt_err_set(err, NGT_EIO, "cannot write '%s' (disk full?)", o->path);
  }
  int rc = ngt_commit_tmp(o->tmp, o->path, err);
  free(o->tmp);
  o->tmp = NULL; /* committed, or removed by ngt_commit_tmp */
  h5out_abort(o);
  return rc;
}

/* ---------------------------------------------------------------------------------- */

typedef struct fwd {
  const ngt_nnet *net;
  ngt_nnet_ws *ws;
  int mb;
  ngt_mat X; /* (mb, input_dim) spliced frames */
  float *out;
  size_t out_cap;   /* (T, C) of the current utterance */
  float *log_prior; /* (C) or NULL */
  ngt_kaldi_writer *ark;
  h5out *h5;
  int64_t utts, frames, empty;
  double t0, t_last;
} fwd;

/* Forward one utterance feats (T, D) and write it. */
static int forward_utt(fwd *F, const char *key, const float *feats, int64_t T, ngt_err *err) {
  const ngt_nnet *net = F->net;
  const int D = net->feat_dim, C = net->num_classes, L = net->ctx_left, R = net->ctx_right;
  if (T > INT_MAX)
    return ngt_err_set(err, NGT_EINVAL,
                       "utterance '%s' has %" PRId64 " frames, more than one "
                       "output matrix can hold",
                       key, T);
  size_t need = (size_t)T * (size_t)C;
  if (need > F->out_cap) {
    float *no = realloc(F->out, sizeof(float) * need);
    if (!no)
      return ngt_err_set(err, NGT_ENOMEM,
                         "out of memory for utterance '%s' (%" PRId64 " frames x %d classes)", key,
                         T, C);
    F->out = no;
    F->out_cap = need;
  }
  const int last = net->num_comps - 1;
  for (int64_t t0 = 0; t0 < T; t0 += F->mb) {
    int n = (int)(T - t0 < F->mb ? T - t0 : F->mb);
    for (int i = 0; i < n; i++)
      ngt_splice_frame(feats, D, 0, T, t0 + i, L, R, &NGT_AT(F->X, i, 0));
    ngt_nnet_forward(net, F->ws, ngt_mat_rows(F->X, 0, n));
    ngt_mat y = F->ws->out[last]; /* (n, C) log-probabilities */
    for (int i = 0; i < n; i++) {
      float *dst = F->out + (size_t)(t0 + i) * (size_t)C;
      memcpy(dst, &NGT_AT(y, i, 0), sizeof(float) * (size_t)C);
      if (F->log_prior)
        for (int c = 0; c < C; c++) dst[c] -= F->log_prior[c];
    }
  }
  int rc = F->ark ? ngt_kaldi_writer_write(F->ark, key, ngt_mat_view(F->out, (int)T, C, C), err)
                  : h5out_add(F->h5, key, F->out, T, err);
  if (rc) return rc;
  F->utts++;
  F->frames += T;
  double now = ngt_now();
  if (now - F->t_last > 10) {
    F->t_last = now;
    fprintf(stderr, "nnforward: %" PRId64 " utterances, %" PRId64 " frames (%.0f frames/s)\n",
            F->utts, F->frames, (double)F->frames / (now - F->t0));
  }
  return 0;
}

static int is_kaldi_spec(const char *s) {
  size_t n = strlen(s);
  if (!strncmp(s, "ark:", 4) || !strncmp(s, "scp:", 4) || !strncmp(s, "ark,", 4) ||
      !strncmp(s, "scp,", 4))
    return 1;
  return (n > 4 && (!strcmp(s + n - 4, ".ark") || !strcmp(s + n - 4, ".scp")));
}

static int run_kaldi(fwd *F, const char *spec) {
  ngt_err err = {0};
  ngt_kaldi_reader *r;
  if (ngt_kaldi_reader_open(spec, &r, &err)) return ngt_fail("%s", err.msg);
  ngt_kaldi_entry e;
  int rc;
  while ((rc = ngt_kaldi_reader_next(r, 1, &e, &err)) == 1) {
    if (e.mat.rows == 0) {
      F->empty++;
      ngt_warn("utterance '%s' in '%s' has no frames; skipped", e.key, e.file);
      continue;
    }
    if (e.mat.cols != F->net->feat_dim) {
      rc = ngt_fail("utterance '%s' in '%s' has %d-dimensional features but the model expects %d "
                    "(same features as in training? same --cmn?)",
                    e.key, e.file, e.mat.cols, F->net->feat_dim);
      break;
    }
    if (forward_utt(F, e.key, e.mat.data, e.mat.rows, &err)) {
      rc = ngt_fail("%s", err.msg);
      break;
    }
  }
  if (rc < 0) rc = ngt_fail("%s", err.msg);
  ngt_kaldi_reader_close(r);
  return rc;
}

static int run_shards(fwd *F, const char *pattern) {
  ngt_err err = {0};
  char **paths = NULL;
  int np = 0;
  if (ngt_glob_paths(pattern, &paths, &np, &err)) return ngt_fail("%s", err.msg);
  int rc = 0;
  float *feats = NULL;
  size_t cap = 0;
  for (int p = 0; p < np && !rc; p++) {
    ngt_shard *sh;
    if (ngt_shard_open(paths[p], &sh, &err)) {
      rc = ngt_fail("%s", err.msg);
      break;
    }
    if (sh->feat_dim != F->net->feat_dim) {
      rc = ngt_fail("shard '%s' has feat_dim %d but the model expects %d", paths[p], sh->feat_dim,
                    F->net->feat_dim);
      ngt_shard_close(sh);
      break;
    }
    char **ids = NULL;
    if (ngt_shard_read_ids(sh, &ids, &err)) {
      rc = ngt_fail("%s", err.msg);
      ngt_shard_close(sh);
      break;
    }
    char base[256];
    {
      char *dup = strdup(paths[p]);
      if (!dup) ngt_die("out of memory");
      snprintf(base, sizeof base, "%s", basename(dup));
      free(dup);
      size_t bl = strlen(base);
      if (bl > 3 && !strcmp(base + bl - 3, ".h5")) base[bl - 3] = '\0';
    }
    for (int64_t u = 0; u < sh->num_utts && !rc; u++) {
      int64_t s = sh->utt_offsets[u], T = sh->utt_offsets[u + 1] - s;
      size_t need = (size_t)T * (size_t)sh->feat_dim;
      if (need > cap) {
        float *nf = realloc(feats, sizeof(float) * need);
        if (!nf) {
          rc = ngt_fail("out of memory");
          break;
        }
        feats = nf;
        cap = need;
      }
      if (ngt_shard_read(sh, s, T, feats, NULL, &err)) {
        rc = ngt_fail("%s", err.msg);
        break;
      }
      char key[512];
      if (ids && ids[u][0]) snprintf(key, sizeof key, "%s", ids[u]);
      else
        snprintf(key, sizeof key, "%s-%06" PRId64, base, u);
      if (forward_utt(F, key, feats, T, &err)) rc = ngt_fail("%s", err.msg);
    }
    if (ids) ngt_shard_free_ids(ids, sh->num_utts);
    ngt_shard_close(sh);
  }
  free(feats);
  ngt_paths_free(paths, np);
  return rc;
}

int main(int argc, char **argv) {
  int apply_priors = 0, mb = 512;
  const char *format = "";
  const char *precision = "fp32"; /* posteriors for decoding: exact unless asked */
  ngt_opt table[] = {
      {"apply-priors", NGT_OPT_BOOL, &apply_priors,
       "output log p(s|x) - log prior(s) (log-likelihoods for decoding); needs model priors", 0},
      {"output-format", NGT_OPT_STRING, &format,
       "ark or h5 (default: h5 if the output name ends in .h5, else ark)", 0},
      {"minibatch-size", NGT_OPT_INT, &mb, "frames per forward pass", 0},
      {"precision", NGT_OPT_STRING, &precision,
       "GEMM precision: fp32, bf16 or auto (bf16 where the CPU has it)", 0},
      {0, 0, 0, 0, 0}};
  char **pos = NULL;
  int npos = 0, code = 0;
  ngt_err err = {0};
  if (ngt_opts_tool(&tool, table, argc, argv, &pos, &npos, &code)) return code;
  const char *model = pos[0], *input = pos[1], *output = pos[2];
  if (mb < 1) {
    free(pos);
    return ngt_fail("--minibatch-size=%d must be >= 1", mb);
  }
  int prec = NGT_PREC_AUTO;
  if (ngt_precision_parse(precision, &prec, &err) || ngt_engine_setup(prec, 1, &err)) {
    free(pos);
    return ngt_fail("%s", err.msg);
  }
  int want_h5;
  size_t ol = strlen(output);
  if (!strcmp(format, "h5")) want_h5 = 1;
  else if (!strcmp(format, "ark"))
    want_h5 = 0;
  else if (!*format)
    want_h5 = ol > 3 && !strcmp(output + ol - 3, ".h5") && strncmp(output, "ark", 3);
  else {
    free(pos);
    return ngt_fail("--output-format='%s': expected ark or h5", format);
  }
  if (want_h5 &&
      (!strncmp(output, "ark:", 4) || !strncmp(output, "ark,", 4) || !strcmp(output, "-"))) {
    free(pos);
    return ngt_fail("--output-format=h5 needs a file name, not '%s'", output);
  }

  ngt_nnet *net = NULL;
  if (ngt_nnet_load(model, &net, &err)) {
    free(pos);
    return ngt_fail("%s", err.msg);
  }
  fwd F;
  memset(&F, 0, sizeof F);
  F.net = net;
  F.mb = mb;
  int rc = 0;
  if (apply_priors) {
    if (!net->priors) {
      rc = ngt_fail("model '%s' has no class priors, so --apply-priors cannot divide by them; "
                    "use a final model from ngtrain (it stores the priors) or drop --apply-priors",
                    model);
      goto out_net;
    }
    F.log_prior = malloc(sizeof(float) * (size_t)net->num_classes);
    if (!F.log_prior) {
      rc = ngt_fail("out of memory");
      goto out_net;
    }
    int floored = 0;
    for (int c = 0; c < net->num_classes; c++) {
      double p = net->priors[c];
      if (!(p >= LOG_PRIOR_FLOOR)) {
        p = LOG_PRIOR_FLOOR;
        floored++;
      }
      F.log_prior[c] = (float)log(p);
    }
    if (floored)
      ngt_warn("%d class prior(s) in '%s' are zero; floored at %g", floored, model,
               LOG_PRIOR_FLOOR);
  }
  F.ws = ngt_nnet_ws_new(net, mb);
  F.X = ngt_mat_alloc(mb, net->input_dim);
  if (want_h5) {
    if (h5out_open(output, net->num_classes, &F.h5, &err)) {
      rc = ngt_fail("%s", err.msg);
      goto out_ws;
    }
  } else {
    if (ngt_kaldi_writer_open(output, &F.ark, &err)) {
      rc = ngt_fail("%s", err.msg);
      goto out_ws;
    }
  }
  F.t0 = F.t_last = ngt_now();
  rc = is_kaldi_spec(input) ? run_kaldi(&F, input) : run_shards(&F, input);
  if (!rc && F.utts == 0)
    rc = ngt_fail("'%s' holds no utterances with frames; nothing written", input);
  if (rc) {
    ngt_kaldi_writer_abort(F.ark);
    h5out_abort(F.h5);
    goto out_ws;
  }
  const char *kind = apply_priors ? "log-likelihood" : "log-posterior";
  if (F.ark ? ngt_kaldi_writer_close(F.ark, &err) : h5out_close(F.h5, kind, model, &err)) {
    rc = ngt_fail("%s", err.msg);
    goto out_ws;
  }
  {
    double el = ngt_now() - F.t0;
    fprintf(stderr,
            "nnforward: wrote %s of %" PRId64 " utterances, %" PRId64 " frames x %d "
            "classes to %s in %.1f s (%.0f frames/s)%s\n",
            apply_priors ? "log-likelihoods" : "log-posteriors", F.utts, F.frames,
            net->num_classes, output, el, el > 0 ? (double)F.frames / el : 0.0,
            F.empty ? "; empty utterances skipped" : "");
  }
out_ws:
  ngt_mat_free(&F.X);
  ngt_nnet_ws_free(F.ws);
  free(F.out);
  free(F.log_prior);
out_net:
  ngt_nnet_free(net);
  free(pos);
  return rc;
}
