/* coordinator.h — the coordinator's decisions as pure functions (no MPI, no I/O):
 * which jobs of an iteration enter the average, and the average itself
 * (docs/algorithm.md §4.3; BMUF: Chen & Huo 2016; docs/design.md §3).
 *
 *   ngt_job_result r[3] = {{-1.2 * 8000, 8000, 1, 1}, {-1.3 * 8000, 8000, 1, 1}, {0, 0, 0, 0}};
 *   int mask[3];
 *   int n = ngt_accept_jobs(r, 3, iter, mask);       // mask[j] = NGT_JOB_ACCEPTED, ...
 *   ngt_average_params(sum, n, P, params);           // params = sum / n
 */
#ifndef NGTRAIN_COORDINATOR_H
#define NGTRAIN_COORDINATOR_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* What acceptance needs to know of one job. */
typedef struct ngt_job_result {
  double obj;    /* sum of log p(label) over the job's frames */
  double frames; /* frames trained on */
  int finite;    /* objective and parameters finite */
  int active;    /* the rank ran a job this iteration */
} ngt_job_result;

typedef enum {
  NGT_JOB_IDLE = 0, /* no job (inactive, or no frames) */
  NGT_JOB_ACCEPTED = 1,
  NGT_JOB_NOT_BEST = 2,  /* iteration 0: only the best job's model is taken */
  NGT_JOB_NONFINITE = 3, /* objective or parameters not finite */
  NGT_JOB_BELOW_BEST = 4 /* objective per frame more than 1.0 below the best */
} ngt_job_verdict;

/* §4.3: iteration 0 takes the best job (highest finite objective per frame; the first on
 * ties); later iterations take every finite job within 1.0 of the best per-frame
 * objective. mask[j] gets the verdict of job j; returns the number accepted (0 when every
 * job diverged: the caller retries). */
int ngt_accept_jobs(const ngt_job_result *jobs, int n, int iter, int *mask);

/* Model average: out[i] = sum[i] · (1/n) in float (out may alias sum). */
void ngt_average_params(const float *sum, int n, size_t P, float *out);

/* BMUF with Nesterov block momentum, given the sum of n accepted models that started from
 * the look-ahead W_b = W_g + η Δ:  G = sum/n − W_b;  Δ ← η Δ + ζ G;  W_g ← W_g + Δ.
 * (Measuring G from W_g instead counts η Δ twice and diverges for η > 1/2.) */
void ngt_bmuf_update(const float *sum, int n, size_t P, float eta, float zeta, float *global,
                     float *delta);
/* The look-ahead the jobs start from: out = W_g + η Δ. */
void ngt_bmuf_lookahead(const float *global, const float *delta, size_t P, float eta, float *out);

#ifdef __cplusplus
}
#endif
#endif
