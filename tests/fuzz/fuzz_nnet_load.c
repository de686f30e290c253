/* fuzz_nnet_load.c — libFuzzer harness for the model/checkpoint loader (ngt_nnet_load and
 * ngt_nnet_load_blob, include/ngtrain/nnet_io.h).
 *
 * Input: the bytes of a model file (HDF5), written to a scratch file. A model that loads
 * must be usable: the harness reads the checkpoint extras a resume reads, runs a forward
 * pass on one row for small networks, and saves + reloads it, expecting the same
 * structure and bit-identical parameters, transform and priors.
 * HDF5 on random bytes is slow (~1 ms an input): seeds are the useful part here.
 */
#include <math.h>

#include "fuzz_common.h"
#include "ngtrain/fileio.h"
#include "ngtrain/nnet.h"
#include "ngtrain/nnet_io.h"

static void try_blob(const char *path, const char *name, int type) {
  void *d = NULL;
  size_t n = 0;
  ngt_err err = {0};
  int rc = ngt_nnet_load_blob(path, name, type, &d, &n, &err);
  fz_check_err(&err);
  if (rc && d) abort();
  if (!rc && !d) abort();
  if (!rc && n > 0) { /* touch every element: the buffer must hold n of them */
    size_t es = type == NGT_BLOB_F32 ? 4 : 8;
    volatile unsigned char s = 0;
    for (size_t i = 0; i < n * es; i += 61) s ^= ((unsigned char *)d)[i];
    s ^= ((unsigned char *)d)[n * es - 1];
    (void)s;
  }
  free(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_init();
  char path[512];
  fz_write("model.h5", data, size, path, sizeof path);
  ngt_nnet *net = NULL;
  ngt_err err = {0};
  int rc = ngt_nnet_load(path, &net, &err);
  fz_check_err(&err);
  if (rc) {
    if (net || err.code == 0 || !strstr(err.msg, path)) abort();
    return 0;
  }
  if (!net) abort();
  try_blob(path, "iter", NGT_BLOB_I64);
  try_blob(path, "signature", NGT_BLOB_F64);
  try_blob(path, "positions", NGT_BLOB_I64);
  try_blob(path, "ngstate", NGT_BLOB_F64);
  try_blob(path, "bmuf_delta", NGT_BLOB_F32);
  try_blob(path, "pending", NGT_BLOB_F64);
  for (size_t i = 0; i < net->num_params; i++)
    if (!isfinite(net->params[i])) abort(); /* the loader promises finite parameters */

  if (net->num_params <= 200000 && net->input_dim <= 4096) {
    ngt_nnet_ws *ws = ngt_nnet_ws_new(net, 1);
    ngt_mat X = ngt_mat_alloc(1, net->input_dim);
    ngt_nnet_forward(net, ws, X);
    ngt_mat_free(&X);
    ngt_nnet_ws_free(ws);

    char out[512];
    fz_path("resaved.h5", out, sizeof out);
    ngt_nnet *back = NULL;
    if (ngt_nnet_save(net, out, NULL, 0, &err)) {
      fprintf(stderr, "save of a loaded model failed: %s\n", err.msg);
      abort();
    }
    if (ngt_nnet_load(out, &back, &err)) {
      fprintf(stderr, "reload of a saved model failed: %s\n", err.msg);
      abort();
    }
    char why[256];
    if (!ngt_nnet_same_structure(net, back, why, sizeof why) ||
        memcmp(net->params, back->params, sizeof(float) * net->num_params) != 0 ||
        (net->transform == NULL) != (back->transform == NULL) ||
        (net->priors == NULL) != (back->priors == NULL))
      abort();
    if (net->transform &&
        memcmp(net->transform, back->transform,
               sizeof(float) * (size_t)net->input_dim * (size_t)(net->input_dim + 1)) != 0)
      abort();
    if (net->priors && memcmp(net->priors, back->priors, sizeof(float) * (size_t)net->num_classes))
      abort();
    ngt_nnet_free(back);
    unlink(out);
  }
  ngt_nnet_free(net);
  return 0;
}
