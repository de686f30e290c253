/* fuzz_opts.c — libFuzzer harness for the command-line option parser (ngt_opts_parse,
 * include/ngtrain/opts.h) with the trainer's option table (copied from src/ngtrain.c;
 * keep in step with it: same names and types).
 *
 * Input: the arguments, separated by NUL or newline bytes (argv[0] is "ngtrain").
 * Checks beyond "no crash": positional arguments and string values point into argv,
 * the count of positionals is within argc, and printing the resolved values and the
 * help works for whatever was parsed.
 */
#include "fuzz_common.h"
#include "ngtrain/opts.h"

#define MAX_ARGS 256

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_init();
  static FILE *devnull;
  if (!devnull) devnull = fopen("/dev/null", "w");
  char *buf = malloc(size + 1);
  if (!buf) return 0;
  memcpy(buf, data, size);
  buf[size] = '\0';
  char *argv[MAX_ARGS + 2];
  int argc = 0;
  argv[argc++] = "ngtrain";
  char *start = buf;
  for (size_t i = 0; i <= size && argc < MAX_ARGS; i++) {
    if (i == size || buf[i] == '\0' || buf[i] == '\n') {
      buf[i] = '\0';
      argv[argc++] = start;
      start = buf + i + 1;
    }
  }
  argv[argc] = NULL;

  /* the trainer's table (src/ngtrain.c), with its defaults */
  const char *config = NULL, *train = NULL, *valid = NULL, *dir = NULL, *precond = "online",
             *itrans = "lda", *averaging = "average", *placement = "shared";
  double num_epochs = 8, lr0 = 0.0003, lr1 = 0.00003, nsh = 2000, alpha = 4, lda_wcf = 0.001,
         lda_msv = 5, bm = -1, blr = 1;
  int j0 = 1, j1 = 0, js = 1, mb = 512, ng = 1, rin = 0, rout = 0, up = 4, reset = 0, keep = 3,
      mmc = 20, dfc = 1, retries = 3, threads = 1, progress = -1, verbose = 0, stop = 0, dsj = 0;
  int64_t spi = 400000, cf = 10000, pss = 20000, vf = 0, ldaf = 200000, sbuf = 500000;
  float mpc = 2.0f;
  uint64_t seed = 0;
  ngt_opt table[] = {{"config", NGT_OPT_STRING, &config, "", 0},
                     {"train", NGT_OPT_STRING, &train, "", 0},
                     {"valid", NGT_OPT_STRING, &valid, "", 0},
                     {"dir", NGT_OPT_STRING, &dir, "", 0},
                     {"num-epochs", NGT_OPT_DOUBLE, &num_epochs, "", 0},
                     {"initial-effective-lrate", NGT_OPT_DOUBLE, &lr0, "", 0},
                     {"final-effective-lrate", NGT_OPT_DOUBLE, &lr1, "", 0},
                     {"num-jobs-initial", NGT_OPT_INT, &j0, "", 0},
                     {"num-jobs-final", NGT_OPT_INT, &j1, "", 0},
                     {"num-jobs-step", NGT_OPT_INT, &js, "", 0},
                     {"samples-per-iter", NGT_OPT_INT64, &spi, "", 0},
                     {"minibatch-size", NGT_OPT_INT, &mb, "", 0},
                     {"max-param-change", NGT_OPT_FLOAT, &mpc, "", 0},
                     {"use-natural-gradient", NGT_OPT_BOOL, &ng, "", 0},
                     {"preconditioner", NGT_OPT_STRING, &precond, "", 0},
                     {"rank-in", NGT_OPT_INT, &rin, "", 0},
                     {"rank-out", NGT_OPT_INT, &rout, "", 0},
                     {"update-period", NGT_OPT_INT, &up, "", 0},
                     {"num-samples-history", NGT_OPT_DOUBLE, &nsh, "", 0},
                     {"alpha", NGT_OPT_DOUBLE, &alpha, "", 0},
                     {"ng-reset-each-iter", NGT_OPT_BOOL, &reset, "", 0},
                     {"seed", NGT_OPT_UINT64, &seed, "", 0},
                     {"keep-models", NGT_OPT_INT, &keep, "", 0},
                     {"max-models-combine", NGT_OPT_INT, &mmc, "", 0},
                     {"do-final-combination", NGT_OPT_BOOL, &dfc, "", 0},
                     {"combine-frames", NGT_OPT_INT64, &cf, "", 0},
                     {"prior-subset-size", NGT_OPT_INT64, &pss, "", 0},
                     {"valid-frames", NGT_OPT_INT64, &vf, "", 0},
                     {"input-transform", NGT_OPT_STRING, &itrans, "", 0},
                     {"lda-frames", NGT_OPT_INT64, &ldaf, "", 0},
                     {"lda-within-class-factor", NGT_OPT_DOUBLE, &lda_wcf, "", 0},
                     {"lda-max-singular-value", NGT_OPT_DOUBLE, &lda_msv, "", 0},
                     {"shuffle-buffer", NGT_OPT_INT64, &sbuf, "", 0},
                     {"data-placement", NGT_OPT_STRING, &placement, "", 0},
                     {"averaging", NGT_OPT_STRING, &averaging, "", 0},
                     {"block-momentum", NGT_OPT_DOUBLE, &bm, "", 0},
                     {"block-lr", NGT_OPT_DOUBLE, &blr, "", 0},
                     {"max-retries", NGT_OPT_INT, &retries, "", 0},
                     {"num-threads", NGT_OPT_INT, &threads, "", 0},
                     {"progress", NGT_OPT_INT, &progress, "", 0},
                     {"verbose", NGT_OPT_INT, &verbose, "", 0},
                     {"stop-after", NGT_OPT_INT, &stop, "", 0},
                     {"debug-save-jobs", NGT_OPT_BOOL, &dsj, "", 0},
                     {0, 0, 0, 0, 0}};

  char *pos[MAX_ARGS + 2];
  int npos = -1, help = -1;
  ngt_err err = {0};
  int rc = ngt_opts_parse(table, argc, argv, pos, &npos, &help, &err);
  fz_check_err(&err);
  if (rc == 0) {
    if (err.code != 0 || npos < 0 || npos > argc - 1 || (help != 0 && help != 1)) abort();
    for (int i = 0; i < npos; i++) {
      int found = 0;
      for (int k = 1; k < argc; k++) found |= pos[i] == argv[k];
      if (!found) abort();
    }
    const char *strs[] = {config, train, valid, dir, precond, itrans, averaging, placement};
    for (size_t s = 0; s < sizeof strs / sizeof *strs; s++) {
      if (!strs[s]) continue;
      int inside = strs[s] == precond && strcmp(precond, "online") == 0;
      inside |= strs[s] == itrans && strcmp(itrans, "lda") == 0;
      inside |= strs[s] == averaging && strcmp(averaging, "average") == 0;
      inside |= strs[s] == placement && strcmp(placement, "shared") == 0;
      if (strs[s] >= buf && strs[s] <= buf + size) inside = 1;
      if (!inside) abort();
    }
    ngt_opts_print_values(table, devnull);
    ngt_opts_print_help(table, devnull);
  } else if (err.code == 0 || err.msg[0] == '\0') {
    abort();
  }
  free(buf);
  return 0;
}
