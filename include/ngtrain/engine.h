/* engine.h — the compute engine: which precision the GEMMs of forward, backward and
 * gradient run in, on how many threads, on which ISA.
 *
 * Two precisions:
 *   fp32  OpenBLAS SGEMM (as before);
 *   bf16  oneDNN matmul primitives, bf16 inputs and fp32 accumulation/outputs (created
 *         once per shape and cached; no per-step primitive creation).
 * Master weights, the update, averaging, checkpoints, NG statistics and all reductions
 * stay fp32/fp64: only the GEMM operands are rounded to bf16 (weights once per step,
 * activations and derivatives as they are produced).
 *
 * The engine is process-wide: ngt_engine_setup() once at start-up (ngtrain, nneval,
 * nnforward); workspaces and optimisers created afterwards take its precision.
 *
 *   ngt_err e = {0};
 *   if (ngt_engine_setup(NGT_PREC_AUTO, 2, &e)) ngt_die("%s", e.msg);
 *   char line[256]; ngt_engine_describe(line, sizeof line);   // the start line
 *
 * Threads: ngt_engine_setup gives the T threads to one pool, OpenMP's, so one worker uses T
 * cores and never runs two spinning pools: it runs the GEMMs (bf16: oneDNN, built on OpenMP;
 * fp32: ngt_gemm's blocks, one single-threaded OpenBLAS SGEMM each), the elementwise passes
 * and the optimiser's layer tasks; OpenBLAS has 1 thread.
 * Without oneDNN at build time (NGT_HAVE_DNNL undefined) only fp32 exists; auto
 * resolves to fp32 and an explicit bf16 is an error naming why.
 */
#ifndef NGTRAIN_ENGINE_H
#define NGTRAIN_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "ngtrain/log.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum ngt_precision {
  NGT_PREC_AUTO = 0, /* bf16 where the CPU has native bf16 dot products, else fp32 */
  NGT_PREC_FP32 = 1,
  NGT_PREC_BF16 = 2
} ngt_precision;

/* "auto" | "fp32" | "bf16" -> NGT_PREC_*; error names the value and the choices. */
int ngt_precision_parse(const char *s, int *out, ngt_err *err);
const char *ngt_precision_name(int p);

/* 1 if this build has oneDNN. */
int ngt_engine_have_dnnl(void);
/* 1 if the CPU has native bf16 dot products (avx512_bf16 or amx_bf16). */
int ngt_engine_cpu_bf16(void);
/* Why bf16 cannot run here (NULL if it can): "built without oneDNN" or "CPU lacks ...". */
const char *ngt_engine_bf16_unavailable(void);
/* Best ISA name of this CPU for the GEMMs: "amx_bf16", "avx512_bf16", "avx512", "avx2", ... */
const char *ngt_engine_isa(void);

/* Resolve and install the process-wide precision and thread count (threads >= 1).
 * Fails (NGT_EINVAL) for an explicit bf16 that cannot run here. */
int ngt_engine_setup(int precision, int threads, ngt_err *err);
/* Resolved precision in force (NGT_PREC_FP32 before any setup). */
int ngt_engine_precision(void);
int ngt_engine_threads(void);
/* One line: "precision bf16 (auto), engine oneDNN 2.6.3 matmul bf16/fp32-accumulate, ISA
 * avx512_bf16, 2 thread(s), OpenBLAS Haswell kernels". */
void ngt_engine_describe(char *buf, size_t n);

/* fp32 -> bf16, round to nearest even (NaN stays NaN), rows x cols, times scale. */
void ngt_bf16_from_f32(uint16_t *dst, int ldd, const float *src, int lds, int rows, int cols,
                       float scale);
/* One row, AVX-512 BF16 instructions: call only where ngt_cpu_avx512bf16(). */
void ngt_bf16_row_avx512(uint16_t *d, const float *s, int n, float scale);
int ngt_cpu_avx512bf16(void);
/* Tests: on = 1 makes the bf16 helpers above and below take their scalar code even where
 * the CPU has avx512_bf16 (ngt_cpu_avx512bf16() returns 0); on = 0 detects again. */
void ngt_bf16_set_generic(int on);
void ngt_bf16_to_f32(float *dst, int ldd, const uint16_t *src, int lds, int rows, int cols);

/* The low-rank update of the NG preconditioner's bf16 path (docs/algorithm.md §3.5), fused:
 *   Y = bf16(X + Hn W)   (N x D; Hn N x R bf16, W R x D),
 * with fp32 accumulation of the bf16 products (VDPBF16PS where the CPU has it, the same
 * arithmetic in scalar code otherwise), also v[j] += sum_n c[n] (X + Hn W)[n][j] if c is
 * non-NULL, and returns the sum of squares of X + Hn W (before rounding) in double. One
 * pass over X; X is not modified. W is given packed by ngt_bf16_pack_pairs; rows of Hn
 * hold R values padded with a zero to an even count (ldh >= R rounded up to even, even).
 * Deterministic for any thread count (columns are split among OpenMP threads). */
double ngt_bf16_lowrank_update(int N, int D, const float *X, int ldx, const uint16_t *Hn, int ldh,
                               int R, const uint16_t *Wp, uint16_t *Y, int ldy, const float *c,
                               float *v);
/* C (N x R, fp32, ldc) = A B^T (+ bias[r]) for bf16 A (N x K, lda) and B (R x K, ldb) with
 * few rows R (the NG preconditioner's H = X W^T, R = 20..80): both operands are read along
 * K, as VDPBF16PS takes them; fp32 accumulation (scalar code without avx512_bf16). */
void ngt_bf16_gemm_thin(int N, int R, int K, const uint16_t *A, int lda, const uint16_t *B,
                        int ldb, const float *bias, float *C, int ldc);
/* W (R x D fp32, ldw) packed for it: pairs of rows interleaved (rows 2k and 2k+1 of column
 * j at Wp[2 (k Dp + j)] and the next element), columns zero-padded to Dp =
 * ngt_bf16_pack_cols(D), an odd R padded with a zero row: 2 ceil(R/2) Dp values. */
void ngt_bf16_pack_pairs(uint16_t *Wp, const float *W, int ldw, int R, int D);
static inline int ngt_bf16_pack_cols(int D) { return (D + 31) / 32 * 32; }
/* The fp32 value of a bf16 number (exact: bf16 is fp32's upper half). */
static inline float ngt_bf16_value(uint16_t b) {
  union {
    uint32_t u;
    float f;
  } v = {(uint32_t)b << 16};
  return v.f;
}
static inline float ngt_bf16_round(float x) {
  union {
    float f;
    uint32_t u;
  } v = {x};
  if ((v.u & 0x7fffffffu) > 0x7f800000u) return x;
  v.u = (v.u + 0x7fffu + ((v.u >> 16) & 1u)) & 0xffff0000u;
  return v.f;
}

/* C (m x n, fp32, ldc) = op(A) op(B) (+ bias broadcast over rows, if non-NULL): A, B bf16
 * row-major (op = transpose where ta/tb), fp32 accumulation. Needs oneDNN (dies
 * otherwise). The primitive for each (shape, transposes, strides, bias) is created on first
 * use and cached. */
void ngt_gemm_bf16(int ta, int tb, int m, int n, int k, const uint16_t *A, int lda,
                   const uint16_t *B, int ldb, const float *bias, float *C, int ldc);
/* The same with beta: C = op(A) op(B) + beta C for beta 0 or 1 (1: oneDNN sum post-op). */
void ngt_gemm_bf16_beta(int ta, int tb, int m, int n, int k, const uint16_t *A, int lda,
                        const uint16_t *B, int ldb, const float *bias, float beta, float *C,
                        int ldc);
/* Number of cached primitives (tests: no per-step creation). */
int ngt_engine_num_primitives(void);

/* OpenMP helpers (no-ops without OpenMP). */
int ngt_omp_threads(void);

#ifdef __cplusplus
}
#endif
#endif
