/* comm.h — the only module that calls MPI (docs/design.md §8.6).
 *
 * Every collective first waits for all ranks to arrive with a non-blocking barrier polled
 * with MPI_Test and a short, growing sleep (20 µs .. 2 ms), so a coordinator or an idle
 * worker waiting for the others uses almost no CPU (Open MPI's blocking calls spin); then
 * the data moves with the blocking collective, at full speed. Every MPI call is checked
 * (MPI_ERRORS_RETURN) and failures come back as NGT_EMPI with the MPI error string.
 * After ngt_comm_init, ngt_die() calls MPI_Abort so that every rank stops.
 *
 *   ngt_comm_init(&argc, &argv);
 *   if (ngt_comm_rank() == 0) ...;
 *   ngt_comm_bcast(params, n * sizeof(float), 0, &err);
 *   ngt_comm_reduce_sum_f32(mine, sum, n, 0, &err);
 *   ngt_comm_finalize();
 * Without mpirun (a singleton) MPI still initialises with one rank.
 */
#ifndef NGTRAIN_COMM_H
#define NGTRAIN_COMM_H

#include <stddef.h>
#include <stdint.h>

#include "ngtrain/log.h"

#ifdef __cplusplus
extern "C" {
#endif

void ngt_comm_init(int *argc, char ***argv);
int ngt_comm_rank(void);
int ngt_comm_size(void);
void ngt_comm_finalize(void);
/* A collective failure (every rank reached the same error, e.g. a bad option): rank 0
 * prints msg once; every rank finalises MPI and exits with code 1. */
_Noreturn void ngt_comm_fail_all(const char *msg);
/* Seconds spent waiting inside this module since the last call (and reset). */
double ngt_comm_take_wait_seconds(void);

int ngt_comm_bcast(void *buf, size_t bytes, int root, ngt_err *err);
int ngt_comm_reduce_sum_f32(const float *send, float *recv, size_t n, int root, ngt_err *err);
int ngt_comm_reduce_sum_f64(const double *send, double *recv, size_t n, int root, ngt_err *err);
/* Gather `bytes` from every rank (all the same size) into recv on root (size*bytes). */
int ngt_comm_gather(const void *send, size_t bytes, void *recv, int root, ngt_err *err);
/* Gather with per-rank sizes (bytes[r], 0 allowed) into recv packed in rank order. */
int ngt_comm_gatherv(const void *send, size_t my_bytes, void *recv, const size_t *bytes, int root,
                     ngt_err *err);
int ngt_comm_barrier(ngt_err *err);

#ifdef __cplusplus
}
#endif
#endif
