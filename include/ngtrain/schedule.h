/* schedule.h — Kaldi's iteration schedule (docs/algorithm.md §4.2): number of iterations,
 * jobs per iteration, effective learning rate, final-combination window (§4.4).
 *
 * Units: an "archive" is samples_per_iter frames (Kaldi's egs archive); a job processes
 * one archive per iteration. A = total_frames / samples_per_iter archives (a real
 * number in general; the trainer's default shared placement passes total_frames =
 * A x samples_per_iter for the integer A of archives.h, so num_epochs x A reads cover
 * every frame num_epochs times);
 * W = max(1, floor(num_epochs * A)) archive-visits; I = max(1, floor(2W / (J0 + J1))).
 *
 *   ngt_schedule s;
 *   if (ngt_schedule_init(&s, epochs, frames, spi, j0, j1, js, lr0, lr1, &err)) ...
 *   for (int i = 0; i < s.num_iters; i++) { int n = ngt_schedule_jobs(&s, i);
 *     double lr = n * ngt_schedule_lrate_eff(&s, i); }
 */
#ifndef NGTRAIN_SCHEDULE_H
#define NGTRAIN_SCHEDULE_H

#include <stdint.h>

#include "ngtrain/log.h"

typedef struct ngt_schedule {
  double num_archives;                     /* A */
  int64_t archives_to_process;             /* W */
  int num_iters;                           /* I */
  int jobs_initial, jobs_final, jobs_step; /* J0, J1, Js */
  double lrate_initial, lrate_final;       /* effective learning rates */
} ngt_schedule;

int ngt_schedule_init(ngt_schedule *s, double num_epochs, int64_t total_frames,
                      int64_t samples_per_iter, int j0, int j1, int js, double lr0, double lr1,
                      ngt_err *err);
/* Kaldi's get_current_num_jobs(i, I, J0, Js, J1). */
int ngt_schedule_jobs_raw(int iter, int num_iters, int j0, int js, int j1);
int ngt_schedule_jobs(const ngt_schedule *s, int iter);
/* p_i: archive-visits processed before iteration i (sum of jobs of earlier iterations). */
int64_t ngt_schedule_processed(const ngt_schedule *s, int iter);
/* η_eff(i) (§4.2): exponential in p_i; the last iteration gets lrate_final. */
double ngt_schedule_lrate_eff(const ngt_schedule *s, int iter);
/* Epochs of data processed before iteration i: p_i / A. */
double ngt_schedule_epoch(const ngt_schedule *s, int iter);
/* Number of newest models the final combination considers (§4.4):
 * min(max_models_combine, max(1, floor(I/2))) — the newest first, I included. */
int ngt_schedule_combine_count(const ngt_schedule *s, int max_models_combine);

#endif
