/* comm.c — see include/ngtrain/comm.h. The only file that includes mpi.h. */
#include "ngtrain/comm.h"

#include <limits.h>
#include <mpi.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int g_rank = 0, g_size = 1, g_inited = 0;
static double g_wait_s = 0.0;

static void die_hook(int code) {
  if (g_inited && g_size > 1) MPI_Abort(MPI_COMM_WORLD, code);
}

void ngt_comm_init(int *argc, char ***argv) {
  int provided = 0;
  if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
    ngt_die("MPI_Init failed (is Open MPI installed and the job started with mpirun?)");
  g_inited = 1;
  /* A file-size limit (ulimit -f) would kill the process with SIGXFSZ in the middle of a
   * checkpoint write, with no word of what happened; ignored, the write fails with EFBIG
   * and the checkpoint writer reports it (tests/e2e/faults.sh). */
  signal(SIGXFSZ, SIG_IGN);
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &g_size);
  ngt_log_set_rank(g_rank, g_size);
  ngt_set_die_hook(die_hook);
}

int ngt_comm_rank(void) { return g_rank; }
int ngt_comm_size(void) { return g_size; }

void ngt_comm_finalize(void) {
  if (g_inited) MPI_Finalize();
  g_inited = 0;
}

_Noreturn void ngt_comm_fail_all(const char *msg) {
  if (g_rank == 0) {
    fprintf(stderr, "ngtrain: error: %s\n", msg);
    fflush(stderr);
  }
  fflush(stdout);
  ngt_comm_finalize();
  exit(1);
}

double ngt_comm_take_wait_seconds(void) {
  double w = g_wait_s;
  g_wait_s = 0.0;
  return w;
}

static int check(int rc, const char *what, ngt_err *err) {
  if (rc == MPI_SUCCESS) return 0;
  char s[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, s, &len);
  return ngt_err_set(err, NGT_EMPI, "MPI %s failed on rank %d: %s (did another rank die?)", what,
                     g_rank, s);
}

/* Poll with a growing sleep: MPI's blocking waits spin a core (issue: no busy waiting). */
static int wait_sleepy(MPI_Request *req, const char *what, ngt_err *err) {
  double t0 = ngt_now();
  long ns = 20000;
  for (;;) {
    int flag = 0;
    int rc = MPI_Test(req, &flag, MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS) return check(rc, what, err);
    if (flag) break;
    struct timespec ts = {0, ns};
    nanosleep(&ts, NULL);
    if (ns < 2000000) ns = ns * 3 / 2;
  }
  g_wait_s += ngt_now() - t0;
  return 0;
}

/* Open MPI's non-blocking collectives progress only inside MPI_Test, so a data-heavy
 * Ireduce polled with sleeps would take one sleep per pipeline round. Instead every
 * collective first waits, sleeping, until all ranks have arrived (an Ibarrier: a few
 * rounds), then runs the blocking collective, which with everyone present completes at
 * full speed without a long spin. */
static int arrive(const char *what, ngt_err *err) {
  MPI_Request r;
  int rc = check(MPI_Ibarrier(MPI_COMM_WORLD, &r), what, err);
  if (!rc) rc = wait_sleepy(&r, what, err);
  return rc;
}

#define CHUNK ((size_t)1 << 28)

int ngt_comm_bcast(void *buf, size_t bytes, int root, ngt_err *err) {
  if (g_size == 1) return 0;
  char *p = buf;
  for (size_t off = 0; off < bytes || (bytes == 0 && off == 0); off += CHUNK) {
    int n = (int)(bytes - off < CHUNK ? bytes - off : CHUNK);
    int rc = arrive("broadcast", err);
    if (!rc) rc = check(MPI_Bcast(p + off, n, MPI_BYTE, root, MPI_COMM_WORLD), "broadcast", err);
    if (rc) return rc;
    if (bytes == 0) break;
  }
  return 0;
}

static int reduce_sum(const void *send, void *recv, size_t n, MPI_Datatype t, size_t esize,
                      int root, ngt_err *err) {
  if (g_size == 1) {
    if (recv != send) memcpy(recv, send, n * esize);
    return 0;
  }
  for (size_t off = 0; off < n; off += CHUNK / esize) {
    size_t m = n - off < CHUNK / esize ? n - off : CHUNK / esize;
    const char *s = (const char *)send + off * esize;
    char *d = recv ? (char *)recv + off * esize : NULL;
    int rc = arrive("reduce", err);
    if (!rc)
      rc = check(MPI_Reduce(s, g_rank == root ? d : NULL, (int)m, t, MPI_SUM, root,
                            MPI_COMM_WORLD),
                 "reduce", err);
    if (rc) return rc;
  }
  return 0;
}

int ngt_comm_reduce_sum_f32(const float *send, float *recv, size_t n, int root, ngt_err *err) {
  return reduce_sum(send, recv, n, MPI_FLOAT, sizeof(float), root, err);
}
int ngt_comm_reduce_sum_f64(const double *send, double *recv, size_t n, int root, ngt_err *err) {
  return reduce_sum(send, recv, n, MPI_DOUBLE, sizeof(double), root, err);
}

int ngt_comm_gather(const void *send, size_t bytes, void *recv, int root, ngt_err *err) {
  if (g_size == 1) {
    memcpy(recv, send, bytes);
    return 0;
  }
  if (bytes > (size_t)INT_MAX)
    return ngt_err_set(err, NGT_EMPI, "gather of %zu bytes is too large", bytes);
  int rc = arrive("gather", err);
  if (!rc)
    rc = check(MPI_Gather(send, (int)bytes, MPI_BYTE, recv, (int)bytes, MPI_BYTE, root,
                          MPI_COMM_WORLD),
               "gather", err);
  return rc;
}

int ngt_comm_gatherv(const void *send, size_t my_bytes, void *recv, const size_t *bytes, int root,
                     ngt_err *err) {
  if (g_size == 1) {
    if (my_bytes) memcpy(recv, send, my_bytes);
    return 0;
  }
  int *counts = NULL, *displs = NULL;
  if (g_rank == root) {
    counts = ngt_xcalloc((size_t)g_size, sizeof(int));
    displs = ngt_xcalloc((size_t)g_size, sizeof(int));
    size_t off = 0;
    for (int r = 0; r < g_size; r++) {
      if (bytes[r] > (size_t)INT_MAX || off > (size_t)INT_MAX) {
        free(counts);
        free(displs);
        return ngt_err_set(err, NGT_EMPI, "gather of %zu bytes is too large", off + bytes[r]);
      }
      counts[r] = (int)bytes[r];
      displs[r] = (int)off;
      off += bytes[r];
    }
  }
  int rc = arrive("gatherv", err);
  if (!rc)
    rc = check(MPI_Gatherv(send, (int)my_bytes, MPI_BYTE, recv, counts, displs, MPI_BYTE, root,
                           MPI_COMM_WORLD),
               "gatherv", err);
  free(counts);
  free(displs);
  return rc;
}

int ngt_comm_barrier(ngt_err *err) {
  if (g_size == 1) return 0;
  MPI_Request r;
  int rc = check(MPI_Ibarrier(MPI_COMM_WORLD, &r), "barrier", err);
  if (!rc) rc = wait_sleepy(&r, "barrier", err);
  return rc;
}
