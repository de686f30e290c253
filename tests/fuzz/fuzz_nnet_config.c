/* fuzz_nnet_config.c — libFuzzer harness for the network config parser
 * (ngt_nnet_from_config, include/ngtrain/nnet.h).
 *
 * Input: config text (a NUL byte ends it early, as it would for a C string). A config
 * that parses must describe a network the library can use: the harness checks the
 * invariants the rest of ngtrain relies on (dims chain from input to output, the
 * parameter offsets tile params exactly) and, for small networks, runs init, a copy,
 * a forward pass on two rows and the backward pass.
 */
#include <math.h>

#include "fuzz_common.h"
#include "ngtrain/nnet.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_init();
  char *text = malloc(size + 1);
  if (!text) return 0;
  memcpy(text, data, size);
  text[size] = '\0';
  ngt_nnet *net = NULL;
  ngt_err err = {0};
  int rc = ngt_nnet_from_config(text, "fuzz.cfg", &net, &err);
  fz_check_err(&err);
  if (rc) {
    if (net || err.code == 0 || strncmp(err.msg, "fuzz.cfg", 8) != 0) abort();
    free(text);
    return 0;
  }
  /* invariants of a parsed network */
  if (!net || net->num_comps < 2 ||
      net->input_dim != net->feat_dim * (net->ctx_left + net->ctx_right + 1))
    abort();
  size_t off = 0;
  int dim = net->input_dim;
  for (int c = 0; c < net->num_comps; c++) {
    const ngt_comp *k = &net->comps[c];
    if (k->in_dim != dim || k->out_dim <= 0) abort();
    if (k->type == NGT_COMP_AFFINE) {
      if (k->w_off != off || k->b_off != off + (size_t)k->out_dim * (size_t)k->in_dim) abort();
      off = k->b_off + (size_t)k->out_dim;
    }
    dim = k->out_dim;
  }
  if (off != net->num_params || dim != net->num_classes ||
      net->comps[net->num_comps - 1].type != NGT_COMP_LOGSOFTMAX)
    abort();
  if (net->num_params <= 200000 && net->input_dim <= 4096) {
    int widest = net->input_dim;
    for (int c = 0; c < net->num_comps; c++)
      if (net->comps[c].out_dim > widest) widest = net->comps[c].out_dim;
    if (widest <= 20000) {
      ngt_nnet_init_params(net, 1);
      ngt_nnet *cp = ngt_nnet_copy(net);
      char why[256];
      if (!ngt_nnet_same_structure(net, cp, why, sizeof why)) abort();
      ngt_nnet_ws *ws = ngt_nnet_ws_new(net, 2);
      ngt_mat X = ngt_mat_alloc(2, net->input_dim);
      for (int j = 0; j < net->input_dim; j++) X.data[j] = (float)(j % 7) - 3.0f;
      ngt_nnet_forward(net, ws, X);
      int32_t y[2] = {0, net->num_classes - 1};
      int nc = 0;
      double obj = ngt_nnet_objective(net, ws, y, &nc);
      if (!(obj <= 0) || nc < 0 || nc > 2) abort();
      ngt_nnet_backward(net, ws, y);
      ngt_mat_free(&X);
      ngt_nnet_ws_free(ws);
      ngt_nnet_free(cp);
    }
  }
  ngt_nnet_free(net);
  free(text);
  return 0;
}
