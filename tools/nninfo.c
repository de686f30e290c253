/* nninfo — print what a model, checkpoint or network config contains.
 *
 *   nninfo exp/run1/final.h5
 *   nninfo data/nnet-small.cfg
 *
 * Prints the config text, a table of components (dims, parameter counts, max-change,
 * learning-rate factor and the natural-gradient settings as configured), the total
 * parameter count, the input splicing, the input transform, whether priors are present
 * and, for checkpoints, the training state by name (checkpoint.h). Exit status 0, or 1
 * with a message.
 */
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ngtrain/checkpoint.h"
#include "ngtrain/fileio.h"
#include "ngtrain/log.h"
#include "ngtrain/nnet.h"
#include "ngtrain/nnet_io.h"
#include "ngtrain/opts.h"

static const ngt_tool tool = {
    "nninfo",
    "print the structure of an ngtrain model, checkpoint or network config: the config\n"
    "text, every component (type, dims, parameters, max-change, learning-rate factor,\n"
    "natural-gradient settings), the total parameter count, input splicing, input\n"
    "transform, priors and, for checkpoints, the saved training-state arrays.\n"
    "A file is read as a model if it is HDF5 (or ends in .h5/.hdf5), else as a config.",
    "nninfo MODEL.h5|CONFIG.cfg",
    "nninfo exp/run1/final.h5\n"
    "nninfo data/nnet-small.cfg",
    NULL,
    1,
    1};

static int ends_with(const char *s, const char *suf) {
  size_t n = strlen(s), m = strlen(suf);
  return n >= m && strcmp(s + n - m, suf) == 0;
}

/* A configured value, or Kaldi's default for this layer marked with '*'. */
static void fmt_int_or_default(char *buf, size_t n, long long v, int is_set, long long dflt) {
  if (is_set) snprintf(buf, n, "%lld", v);
  else
    snprintf(buf, n, "%lld*", dflt);
}
static int min_int(int a, int b) { return a < b ? a : b; }

static void print_components(const ngt_nnet *net) {
  printf("components:\n");
  printf("  %3s %5s  %-11s %-16s %10s %6s %6s  %-7s %7s %8s %6s %7s %7s\n", "#", "layer", "type",
         "    in -> out", "params", "max-ch", "lr-f", "ng", "rank-in", "rank-out", "upd-p", "nsh",
         "alpha");
  for (int c = 0; c < net->num_comps; c++) {
    const ngt_comp *cp = &net->comps[c];
    char dims[48], type[32];
    snprintf(dims, sizeof dims, "%6d -> %-6d", cp->in_dim, cp->out_dim);
    if (cp->type == NGT_COMP_PNORM) snprintf(type, sizeof type, "pnorm/%d", cp->group);
    else
      snprintf(type, sizeof type, "%s", ngt_comp_type_name(cp->type));
    if (cp->type != NGT_COMP_AFFINE) {
      printf("  %3d %5d  %-11s %-16s %10s %6s %6s  %-7s %7s %8s %6s %7s %7s\n", c, cp->layer, type,
             dims, "-", "-", "-", "-", "-", "-", "-", "-", "-");
      continue;
    }
    size_t np = (size_t)cp->out_dim * (size_t)cp->in_dim + (size_t)cp->out_dim;
    char mc[16], lr[16], ri[16], ro[16], up[16], nsh[24], al[24];
    const char *ng = cp->ng.use_ng < 0 ? "true*" : cp->ng.use_ng ? "true" : "false";
    if (cp->max_change > 0) snprintf(mc, sizeof mc, "%g", (double)cp->max_change);
    else
      snprintf(mc, sizeof mc, "off");
    snprintf(lr, sizeof lr, "%g", (double)cp->lr_factor);
    fmt_int_or_default(ri, sizeof ri, cp->ng.rank_in, cp->ng.rank_in > 0,
                       min_int(20, (cp->in_dim + 1) / 2));
    fmt_int_or_default(ro, sizeof ro, cp->ng.rank_out, cp->ng.rank_out > 0,
                       min_int(80, (cp->out_dim + 1) / 2));
    fmt_int_or_default(up, sizeof up, cp->ng.update_period, cp->ng.update_period > 0, 4);
    if (cp->ng.num_samples_history > 0)
      snprintf(nsh, sizeof nsh, "%g", cp->ng.num_samples_history);
    else
      snprintf(nsh, sizeof nsh, "2000*");
    if (cp->ng.alpha >= 0) snprintf(al, sizeof al, "%g", cp->ng.alpha);
    else
      snprintf(al, sizeof al, "4*");
    printf("  %3d %5d  %-11s %-16s %10zu %6s %6s  %-7s %7s %8s %6s %7s %7s\n", c, cp->layer, type,
           dims, np, mc, lr, ng, ri, ro, up, nsh, al);
  }
  printf("  (* = not set in the config: Kaldi's default for this layer, rank-in min(20,(I+1)/2), "
         "rank-out min(80,(O+1)/2), update-period 4, num-samples-history 2000, alpha 4; the "
         "same ngtrain option, e.g. --rank-in, overrides it)\n");
}

typedef struct blob_list_ctx {
  int count;
} blob_list_ctx;

static herr_t list_blob(hid_t g, const char *name, const H5L_info_t *info, void *data) {
  (void)info;
  blob_list_ctx *ctx = data;
  hid_t ds = H5Dopen2(g, name, H5P_DEFAULT);
  if (ds < 0) {
    printf("  %-24s (not a dataset)\n", name);
    ctx->count++;
    return 0;
  }
  hid_t t = H5Dget_type(ds), sp = H5Dget_space(ds);
  H5T_class_t cls = H5Tget_class(t);
  size_t sz = H5Tget_size(t);
  char tn[32];
  snprintf(tn, sizeof tn, "%s%zu",
           cls == H5T_FLOAT     ? "float"
           : cls == H5T_INTEGER ? "int"
                                : "other",
           sz * 8);
  long long n = (long long)H5Sget_simple_extent_npoints(sp);
  printf("  %-24s %-8s %12lld elements\n", name, tn, n);
  H5Tclose(t);
  H5Sclose(sp);
  H5Dclose(ds);
  ctx->count++;
  return 0;
}

/* The training state of a checkpoint, by name (checkpoint.h); the raw /train_state arrays
 * if it cannot be interpreted (the model itself was already validated). */
static int print_train_state(const char *path) {
  ngt_hdf5_quiet();
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) return ngt_fail("cannot reopen '%s' to list /train_state", path);
  if (H5Lexists(f, "train_state", H5P_DEFAULT) <= 0) {
    printf("train state: none (a final model, not a checkpoint)\n");
    H5Fclose(f);
    return 0;
  }
  H5Fclose(f);
  ngt_train_state st;
  ngt_train_state_init(&st);
  ngt_err err = {0};
  if (ngt_checkpoint_read_state(path, &st, &err) == 0) {
    ngt_train_state_print(&st, stdout);
    ngt_train_state_deinit(&st);
    return 0;
  }
  ngt_hdf5_quiet();
  f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) {
    fprintf(stderr, "nninfo: cannot reopen '%s' to list /train_state\n", path);
    return 1;
  }
  hid_t g = H5Gopen2(f, "train_state", H5P_DEFAULT);
  printf("train state (/train_state, not interpretable: %s):\n", err.msg);
  blob_list_ctx ctx = {0};
  if (g >= 0) {
    H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, NULL, list_blob, &ctx);
    H5Gclose(g);
  }
  if (ctx.count == 0) printf("  (empty)\n");
  H5Fclose(f);
  return 0;
}

int main(int argc, char **argv) {
  ngt_opt table[] = {{0, 0, 0, 0, 0}};
  char **pos = NULL;
  int npos = 0, code = 0;
  if (ngt_opts_tool(&tool, table, argc, argv, &pos, &npos, &code)) return code;
  const char *path = pos[0];
  free(pos); /* path points into argv */

  ngt_hdf5_quiet();
  htri_t is_h5 = H5Fis_hdf5(path);
  H5Eclear2(H5E_DEFAULT);
  int is_model = is_h5 > 0 || ends_with(path, ".h5") || ends_with(path, ".hdf5");
  ngt_nnet *net = NULL;
  ngt_err err = {0};
  int rc = is_model ? ngt_nnet_load(path, &net, &err)
                    : ngt_nnet_from_config_file(path, &net, &err);
  if (rc) return ngt_fail("%s", err.msg);

  printf("%s: %s\n", is_model ? "model" : "config", path);
  printf("config:\n");
  const char *t = net->config_text;
  while (*t) {
    const char *nl = strchr(t, '\n');
    size_t len = nl ? (size_t)(nl - t) : strlen(t);
    if (len && t[len - 1] == '\r') len--;
    printf("  | %.*s\n", (int)len, t);
    t += nl ? (size_t)(nl - t) + 1 : strlen(t);
  }
  print_components(net);
  printf("total parameters: %zu (%.2f MB as float32)\n", net->num_params,
         (double)net->num_params * 4.0 / 1e6);
  printf("input: feat_dim %d, context -%d..%d (%d frames), input_dim %d\n", net->feat_dim,
         net->ctx_left, net->ctx_right, net->ctx_left + net->ctx_right + 1, net->input_dim);
  printf("classes: %d\n", net->num_classes);
  if (net->transform_type == NGT_TRANSFORM_NONE || !net->transform)
    printf("input transform: none\n");
  else
    printf("input transform: %s (%d x %d)\n",
           net->transform_type == NGT_TRANSFORM_LDA ? "lda" : "cmvn", net->input_dim,
           net->input_dim + 1);
  if (is_model) {
    printf("priors: %s\n", net->priors ? "present" : "absent");
    rc = print_train_state(path);
  } else {
    printf("parameters: not initialised (a config; train it with ngtrain --config=%s)\n", path);
  }
  ngt_nnet_free(net);
  return rc;
}
