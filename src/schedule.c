/* schedule.c — see include/ngtrain/schedule.h and docs/algorithm.md §4.2. */
#include "ngtrain/schedule.h"

#include <math.h>

int ngt_schedule_init(ngt_schedule *s, double num_epochs, int64_t total_frames,
                      int64_t samples_per_iter, int j0, int j1, int js, double lr0, double lr1,
                      ngt_err *err) {
  if (!(num_epochs > 0))
    return ngt_err_set(err, NGT_EINVAL, "--num-epochs=%g must be > 0", num_epochs);
  if (total_frames <= 0) return ngt_err_set(err, NGT_EINVAL, "the training shards hold no frames");
  if (samples_per_iter <= 0)
    return ngt_err_set(err, NGT_EINVAL, "--samples-per-iter=%lld must be > 0",
                       (long long)samples_per_iter);
  if (j0 < 1 || j1 < 1 || js < 1)
    return ngt_err_set(
        err, NGT_EINVAL,
        "--num-jobs-initial=%d, --num-jobs-final=%d and --num-jobs-step=%d must all be >= 1", j0,
        j1, js);
  if (j1 < j0)
    return ngt_err_set(err, NGT_EINVAL, "--num-jobs-final=%d is below --num-jobs-initial=%d", j1,
                       j0);
  if (!(lr0 > 0) || !(lr1 > 0))
    return ngt_err_set(
        err, NGT_EINVAL,
        "learning rates must be > 0 (--initial-effective-lrate=%g, --final-effective-lrate=%g)",
        lr0, lr1);
  s->num_archives = (double)total_frames / (double)samples_per_iter;
  double w = floor(num_epochs * s->num_archives);
  s->archives_to_process = w < 1 ? 1 : (int64_t)w;
  int64_t I = (2 * s->archives_to_process) / (j0 + j1);
  s->num_iters = I < 1 ? 1 : (int)I;
  s->jobs_initial = j0;
  s->jobs_final = j1;
  s->jobs_step = js;
  s->lrate_initial = lr0;
  s->lrate_final = lr1;
  return 0;
}

int ngt_schedule_jobs_raw(int iter, int num_iters, int j0, int js, int j1) {
  double ideal = (double)j0 + (double)(j1 - j0) * (double)iter / (double)num_iters;
  if (ideal < js) return (int)(0.5 + ideal);
  return (int)(0.5 + ideal / js) * js;
}

int ngt_schedule_jobs(const ngt_schedule *s, int iter) {
  int n = ngt_schedule_jobs_raw(iter, s->num_iters, s->jobs_initial, s->jobs_step, s->jobs_final);
  return n < 1 ? 1 : n;
}

int64_t ngt_schedule_processed(const ngt_schedule *s, int iter) {
  int64_t p = 0;
  for (int i = 0; i < iter; i++) p += ngt_schedule_jobs(s, i);
  return p;
}

double ngt_schedule_lrate_eff(const ngt_schedule *s, int iter) {
  if (iter + 1 >= s->num_iters) return s->lrate_final;
  double p = (double)ngt_schedule_processed(s, iter);
  return s->lrate_initial *
         exp(p * log(s->lrate_final / s->lrate_initial) / (double)s->archives_to_process);
}

double ngt_schedule_epoch(const ngt_schedule *s, int iter) {
  return (double)ngt_schedule_processed(s, iter) / s->num_archives;
}

int ngt_schedule_combine_count(const ngt_schedule *s, int max_models_combine) {
  int n = s->num_iters / 2;
  if (n < 1) n = 1;
  if (max_models_combine >= 1 && n > max_models_combine) n = max_models_combine;
  return n;
}
