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
 * Threads: ngt_engine_setup gives the T threads to the one pool that runs the precision's
 * GEMMs, so one worker uses T cores and never runs two spinning pools: fp32, OpenBLAS T
 * threads and OpenMP 1 (the elementwise passes on the calling thread); bf16, OpenMP T
 * threads (oneDNN is built on OpenMP; the elementwise passes use it too) and OpenBLAS 1.
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
void ngt_bf16_to_f32(float *dst, int ldd, const uint16_t *src, int lds, int rows, int cols);
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
