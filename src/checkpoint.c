/* checkpoint.c — the typed training state of a checkpoint; see include/ngtrain/checkpoint.h
 * and docs/design.md ("Checkpoints": exact resume). */
#include "ngtrain/checkpoint.h"

#include <dirent.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ngtrain/nnet_io.h"

#define SF(name, f) \
  { name, offsetof(ngt_train_signature, f) }
const ngt_field ngt_train_signature_fields[] = {SF("--seed", seed),
                                                SF("number of MPI ranks", ranks),
                                                SF("--samples-per-iter", samples_per_iter),
                                                SF("--num-epochs", num_epochs),
                                                SF("--initial-effective-lrate", initial_lrate),
                                                SF("--final-effective-lrate", final_lrate),
                                                SF("--num-jobs-initial", jobs_initial),
                                                SF("--num-jobs-final", jobs_final),
                                                SF("--num-jobs-step", jobs_step),
                                                SF("--minibatch-size", minibatch),
                                                SF("--max-param-change", max_param_change),
                                                SF("--use-natural-gradient", natural_gradient),
                                                SF("--preconditioner", preconditioner),
                                                SF("the network config (--config)", config),
                                                SF("the training shards (--train)", train),
                                                SF("--averaging", bmuf),
                                                SF("--data-placement", data_placement),
                                                SF("--optimizer", optimizer),
                                                SF("--momentum", momentum),
                                                SF("--adam-beta1", adam_beta1),
                                                SF("--adam-beta2", adam_beta2),
                                                SF("--adam-epsilon", adam_epsilon)};
#undef SF
const int ngt_train_signature_nfields = (int)(sizeof ngt_train_signature_fields /
                                              sizeof ngt_train_signature_fields[0]);

#define MF(f) \
  { #f, offsetof(ngt_train_metrics, f) }
const ngt_field ngt_train_metrics_fields[] = {MF(iter),
                                              MF(jobs),
                                              MF(lr),
                                              MF(objective),
                                              MF(accuracy),
                                              MF(frames),
                                              MF(seconds),
                                              MF(compute_s),
                                              MF(data_wait_s),
                                              MF(comm_s),
                                              MF(avg_s),
                                              MF(max_change),
                                              MF(max_param_change),
                                              MF(refused),
                                              MF(accepted),
                                              MF(epoch),
                                              MF(cpu_s),
                                              MF(elapsed_s)};
#undef MF
const int ngt_train_metrics_nfields = (int)(sizeof ngt_train_metrics_fields /
                                            sizeof ngt_train_metrics_fields[0]);

_Static_assert(sizeof(ngt_train_signature) == 22 * sizeof(double), "signature: 22 doubles");
_Static_assert(sizeof(ngt_train_metrics) == 18 * sizeof(double), "metrics: 18 doubles");

static double *field(void *s, const ngt_field *f) { return (double *)((char *)s + f->offset); }
static double cfield(const void *s, const ngt_field *f) {
  return *(const double *)((const char *)s + f->offset);
}

static void pack(const void *s, const ngt_field *fs, int n, double *out) {
  for (int i = 0; i < n; i++) out[i] = cfield(s, &fs[i]);
}
static void unpack(const double *in, const ngt_field *fs, int n, void *s) {
  for (int i = 0; i < n; i++) *field(s, &fs[i]) = in[i];
}

void ngt_train_state_init(ngt_train_state *st) { memset(st, 0, sizeof *st); }

void ngt_train_state_deinit(ngt_train_state *st) {
  if (!st) return;
  free(st->positions);
  free(st->ngstate);
  free(st->bmuf_delta);
  ngt_train_state_init(st);
}

void ngt_train_state_alloc(ngt_train_state *st, int W, size_t ng_doubles, size_t bmuf_n) {
  st->num_workers = W;
  st->positions = ngt_xcalloc((size_t)W, sizeof(int64_t));
  st->ng_doubles = ng_doubles;
  st->ngstate = ng_doubles ? ngt_xcalloc((size_t)W * ng_doubles, sizeof(double)) : NULL;
  st->bmuf_n = bmuf_n;
  st->bmuf_delta = bmuf_n ? ngt_xcalloc(bmuf_n, sizeof(float)) : NULL;
}

void ngt_checkpoint_path(const char *dir, int iter, char *buf, size_t n) {
  snprintf(buf, n, "%s/%d.h5", dir, iter);
}

int ngt_checkpoint_write(const char *path, const ngt_nnet *net, const ngt_train_state *st,
                         ngt_err *err) {
  double sig[sizeof(ngt_train_signature) / sizeof(double)],
      pend[sizeof(ngt_train_metrics) / sizeof(double)];
  int64_t arch[2] = {st->archives_done, st->num_archives};
  pack(&st->sig, ngt_train_signature_fields, ngt_train_signature_nfields, sig);
  pack(&st->pending, ngt_train_metrics_fields, ngt_train_metrics_nfields, pend);
  ngt_blob b[9];
  int nb = 0;
  b[nb++] = (ngt_blob){"iter", NGT_BLOB_I64, 1, &st->iter};
  b[nb++] = (ngt_blob){"num_iters", NGT_BLOB_I64, 1, &st->num_iters};
  b[nb++] = (ngt_blob){"positions", NGT_BLOB_I64, (size_t)st->num_workers, st->positions};
  b[nb++] = (ngt_blob){"signature", NGT_BLOB_F64, (size_t)ngt_train_signature_nfields, sig};
  if (st->have_pending)
    b[nb++] = (ngt_blob){"pending", NGT_BLOB_F64, (size_t)ngt_train_metrics_nfields, pend};
  if (st->ng_doubles)
    b[nb++] = (ngt_blob){"ngstate", NGT_BLOB_F64, (size_t)st->num_workers * st->ng_doubles,
                         st->ngstate};
  if (st->bmuf_n) b[nb++] = (ngt_blob){"bmuf_delta", NGT_BLOB_F32, st->bmuf_n, st->bmuf_delta};
  if (st->num_archives > 0) b[nb++] = (ngt_blob){"archives", NGT_BLOB_I64, 2, arch};
  return ngt_nnet_save(net, path, b, nb, err);
}

int ngt_checkpoint_read_state(const char *path, ngt_train_state *st, ngt_err *err) {
  ngt_train_state_deinit(st);
  void *itb = NULL, *nit = NULL, *sig = NULL, *pos = NULL, *pend = NULL;
  size_t n_it = 0, n_nit = 0, nsig = 0, npos = 0, npend = 0, nng = 0;
  int rc = ngt_nnet_load_blob(path, "iter", NGT_BLOB_I64, &itb, &n_it, err);
  if (!rc) rc = ngt_nnet_load_blob(path, "signature", NGT_BLOB_F64, &sig, &nsig, err);
  if (!rc) rc = ngt_nnet_load_blob(path, "positions", NGT_BLOB_I64, &pos, &npos, err);
  if (!rc && ngt_nnet_load_blob(path, "num_iters", NGT_BLOB_I64, &nit, &n_nit, NULL) != 0) {
    nit = NULL;
    n_nit = 0;
  }
  if (!rc &&
      (n_it != 1 || nsig != (size_t)ngt_train_signature_nfields || npos < 1 || npos > INT32_MAX))
    rc = ngt_err_set(err, NGT_EFORMAT,
                     "checkpoint '%s': /train_state has %zu iter, %zu signature and %zu positions "
                     "values (expected 1, %d and at least 1)",
                     path, n_it, nsig, npos, ngt_train_signature_nfields);
  if (!rc) {
    st->iter = *(int64_t *)itb;
    st->num_iters = n_nit == 1 ? *(int64_t *)nit : 0;
    st->num_workers = (int)npos;
    st->positions = pos;
    pos = NULL;
    unpack(sig, ngt_train_signature_fields, ngt_train_signature_nfields, &st->sig);
    if (ngt_nnet_load_blob(path, "pending", NGT_BLOB_F64, &pend, &npend, NULL) == 0 &&
        npend == (size_t)ngt_train_metrics_nfields) {
      unpack(pend, ngt_train_metrics_fields, ngt_train_metrics_nfields, &st->pending);
      st->have_pending = 1;
    }
    void *ng = NULL, *bd = NULL;
    if (ngt_nnet_load_blob(path, "ngstate", NGT_BLOB_F64, &ng, &nng, NULL) == 0) {
      st->ngstate = ng;
      st->ng_doubles = nng / (size_t)st->num_workers;
      if (nng % (size_t)st->num_workers)
        rc = ngt_err_set(err, NGT_EFORMAT,
                         "checkpoint '%s': /train_state/ngstate has %zu values, "
                         "not a multiple of the %d workers",
                         path, nng, st->num_workers);
    }
    if (!rc && ngt_nnet_load_blob(path, "bmuf_delta", NGT_BLOB_F32, &bd, &st->bmuf_n, NULL) == 0)
      st->bmuf_delta = bd;
    void *ar = NULL;
    size_t nar = 0;
    if (!rc && ngt_nnet_load_blob(path, "archives", NGT_BLOB_I64, &ar, &nar, NULL) == 0) {
      if (nar == 2 && ((int64_t *)ar)[1] > 0) {
        st->archives_done = ((int64_t *)ar)[0];
        st->num_archives = ((int64_t *)ar)[1];
      }
      free(ar);
    }
  }
  free(itb);
  free(nit);
  free(sig);
  free(pos);
  free(pend);
  if (rc) ngt_train_state_deinit(st);
  return rc;
}

int ngt_train_signature_diff(const ngt_train_signature *a, const ngt_train_signature *b) {
  for (int j = 0; j < ngt_train_signature_nfields; j++)
    if (cfield(a, &ngt_train_signature_fields[j]) != cfield(b, &ngt_train_signature_fields[j]))
      return j;
  return -1;
}

void ngt_train_state_print(const ngt_train_state *st, FILE *out) {
  fprintf(out, "train state (/train_state, a checkpoint):\n");
  fprintf(out, "  iteration                %" PRId64 " of %" PRId64 "\n", st->iter, st->num_iters);
  fprintf(out, "  workers                  %d\n", st->num_workers);
  if (st->num_archives > 0) {
    fprintf(out,
            "  data placement           shared: Kaldi's archive round-robin over %" PRId64
            " archives\n",
            st->num_archives);
    fprintf(out,
            "  positions (archive sequence) %" PRId64 " reads handed out; next: epoch %" PRId64
            ", archive %" PRId64 " of %" PRId64
            " (job j of the next iteration reads archive (%" PRId64 " + j) mod %" PRId64 ")\n",
            st->archives_done, st->archives_done / st->num_archives,
            st->archives_done % st->num_archives, st->num_archives, st->archives_done,
            st->num_archives);
  } else {
    fprintf(out, "  data placement           local: worker w reads shards w, w+W, ...\n");
    fprintf(out, "  positions (frames read)  ");
    for (int w = 0; w < st->num_workers; w++)
      fprintf(out, "%s%" PRId64, w ? " " : "", st->positions[w]);
    fprintf(out, "\n");
  }
  fprintf(out, "  signature (a resuming command must agree):\n");
  for (int j = 0; j < ngt_train_signature_nfields; j++)
    fprintf(out, "    %-30s %.17g\n", ngt_train_signature_fields[j].name,
            cfield(&st->sig, &ngt_train_signature_fields[j]));
  if (st->have_pending) {
    fprintf(out, "  pending metrics (iteration %.0f, logged when this model is validated):\n",
            st->pending.iter);
    for (int j = 0; j < ngt_train_metrics_nfields; j++)
      fprintf(out, "    %-30s %.6g\n", ngt_train_metrics_fields[j].name,
              cfield(&st->pending, &ngt_train_metrics_fields[j]));
  } else {
    fprintf(out, "  pending metrics: none\n");
  }
  if (st->ng_doubles)
    fprintf(out, "  ngstate                  %zu doubles per worker (NG, momentum, Adam state)\n",
            st->ng_doubles);
  else
    fprintf(out, "  ngstate                  none (plain SGD, no momentum)\n");
  if (st->bmuf_n)
    fprintf(out, "  bmuf_delta               %zu floats (BMUF block momentum)\n", st->bmuf_n);
}

static int cmp_int_desc(const void *a, const void *b) {
  int x = *(const int *)a, y = *(const int *)b;
  return (x < y) - (x > y);
}

/* Check one checkpoint against the run; 0 = usable, else err says why. fatal is set for
 * a checkpoint of another run. */
static int check_one(const char *path, const ngt_train_state *expect, const ngt_nnet *net,
                     const ngt_nnet *m, const ngt_train_state *st, int *fatal, ngt_err *err) {
  int j = ngt_train_signature_diff(&st->sig, &expect->sig);
  if (j >= 0) {
    *fatal = 1;
    return ngt_err_set(err, NGT_EINVAL,
                       "holds checkpoints of another run: %s differs (checkpoint "
                       "%g, now %g). Use a new --dir, or delete the old one to start over",
                       ngt_train_signature_fields[j].name,
                       cfield(&st->sig, &ngt_train_signature_fields[j]),
                       cfield(&expect->sig, &ngt_train_signature_fields[j]));
  }
  if (st->num_workers != expect->num_workers || st->ng_doubles != expect->ng_doubles ||
      st->bmuf_n != expect->bmuf_n)
    return ngt_err_set(err, NGT_EFORMAT, "checkpoint '%s' does not match this run's layout", path);
  char why[512];
  if (!ngt_nnet_compare_structure(m, net, NGT_NNET_CMP_IGNORE_TRANSFORM, why, sizeof why))
    return ngt_err_set(err, NGT_EFORMAT, "checkpoint '%s' has another network: %s", path, why);
  return 0;
}

int ngt_checkpoint_load_latest(const char *dir, const ngt_train_state *expect, ngt_nnet *net,
                               ngt_train_state *out, ngt_err *err) {
  DIR *d = opendir(dir);
  if (!d) return -1;
  int cap = 64, n = 0, *its = ngt_xmalloc(sizeof(int) * (size_t)cap);
  struct dirent *de;
  while ((de = readdir(d))) {
    char *end;
    long v = strtol(de->d_name, &end, 10);
    if (end == de->d_name || strcmp(end, ".h5") != 0 || v < 0) continue;
    if (n == cap) its = realloc(its, sizeof(int) * (size_t)(cap *= 2));
    NGT_ASSERT(its);
    its[n++] = (int)v;
  }
  closedir(d);
  qsort(its, (size_t)n, sizeof(int), cmp_int_desc);
  int found = -1;
  for (int k = 0; k < n && found < 0; k++) {
    char path[4096];
    ngt_checkpoint_path(dir, its[k], path, sizeof path);
    ngt_err e = {0};
    ngt_nnet *m = NULL;
    ngt_train_state st;
    ngt_train_state_init(&st);
    int fatal = 0;
    int rc = ngt_nnet_load(path, &m, &e);
    if (!rc) rc = ngt_checkpoint_read_state(path, &st, &e);
    if (!rc) rc = check_one(path, expect, net, m, &st, &fatal, &e);
    if (fatal) {
      ngt_err_set(err, NGT_EINVAL, "--dir=%s %s", dir, e.msg);
      ngt_nnet_free(m);
      ngt_train_state_deinit(&st);
      free(its);
      return -1;
    }
    if (rc) {
      NGT_LOG(NGT_WARN, "checkpoint '%s' is unusable (%s); falling back to the one before", path,
              e.msg);
      ngt_train_state_deinit(&st);
    } else {
      memcpy(net->params, m->params, sizeof(float) * m->num_params);
      if (m->transform) ngt_nnet_set_transform(net, m->transform_type, m->transform);
      ngt_train_state_deinit(out);
      *out = st;
      found = (int)st.iter;
    }
    ngt_nnet_free(m);
  }
  free(its);
  return found;
}

int ngt_checkpoint_remove_stale_tmp(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return 0;
  int n = 0;
  struct dirent *de;
  while ((de = readdir(d))) {
    const char *t = strstr(de->d_name, ".tmp.");
    if (!t || t == de->d_name || t[5] == '\0' || strspn(t + 5, "0123456789") != strlen(t + 5))
      continue;
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
    if (unlink(p) == 0) n++;
  }
  closedir(d);
  return n;
}
