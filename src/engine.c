/* engine.c — see include/ngtrain/engine.h. */
#include "ngtrain/engine.h"

#include <cpuid.h>
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ngtrain/mat.h"

#ifdef _OPENMP
#include <omp.h>
#endif
#ifdef NGT_HAVE_DNNL
#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl_version.h>
#endif

static int g_precision = NGT_PREC_FP32;
static int g_requested = NGT_PREC_FP32;
static int g_threads = 1;

int ngt_precision_parse(const char *s, int *out, ngt_err *err) {
  if (s && !strcmp(s, "auto")) *out = NGT_PREC_AUTO;
  else if (s && !strcmp(s, "fp32"))
    *out = NGT_PREC_FP32;
  else if (s && !strcmp(s, "bf16"))
    *out = NGT_PREC_BF16;
  else
    return ngt_err_set(err, NGT_EINVAL,
                       "--precision=%s: use auto (bf16 where the CPU has native bf16 dot "
                       "products, else fp32), fp32 or bf16",
                       s ? s : "");
  return 0;
}

const char *ngt_precision_name(int p) {
  return p == NGT_PREC_BF16 ? "bf16" : p == NGT_PREC_FP32 ? "fp32" : "auto";
}

int ngt_engine_have_dnnl(void) {
#ifdef NGT_HAVE_DNNL
  return 1;
#else
  return 0;
#endif
}

/* CPUID leaf 7: sub-leaf 1 EAX bit 5 = AVX512_BF16; sub-leaf 0 EDX bit 22 = AMX-BF16.
 * Read directly (not __builtin_cpu_supports, whose feature names differ between gcc and
 * clang); both need the AVX-512 state the OS enables, which avx512f below confirms. */
static int cpuid_bit(unsigned sub, int reg, int bit) {
  unsigned r[4] = {0, 0, 0, 0};
  if (__get_cpuid_max(0, NULL) < 7) return 0;
  __cpuid_count(7, sub, r[0], r[1], r[2], r[3]);
  return (r[reg] >> bit) & 1u;
}
static int cpu_avx512bf16(void) {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && cpuid_bit(1, 0, 5);
}
static int cpu_amxbf16(void) {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && cpuid_bit(0, 3, 22);
}

int ngt_engine_cpu_bf16(void) { return cpu_avx512bf16() || cpu_amxbf16(); }

const char *ngt_engine_bf16_unavailable(void) {
  if (!ngt_engine_have_dnnl())
    return "this build has no oneDNN (install libdnnl-dev, e.g. bash tools/setup.sh, and "
           "reconfigure)";
  if (!ngt_engine_cpu_bf16())
    return "this CPU has no native bf16 dot products (neither avx512_bf16 nor amx_bf16)";
  return NULL;
}

const char *ngt_engine_isa(void) {
  __builtin_cpu_init();
  if (cpu_amxbf16()) return "amx_bf16";
  if (cpu_avx512bf16()) return "avx512_bf16";
  if (__builtin_cpu_supports("avx512f")) return "avx512";
  if (__builtin_cpu_supports("avx2")) return "avx2";
  if (__builtin_cpu_supports("avx")) return "avx";
  return "sse";
}

int ngt_omp_threads(void) {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

int ngt_engine_setup(int precision, int threads, ngt_err *err) {
  if (threads < 1) return ngt_err_set(err, NGT_EINVAL, "--num-threads=%d must be >= 1", threads);
  const char *why = ngt_engine_bf16_unavailable();
  int p = precision;
  if (p == NGT_PREC_AUTO) p = why ? NGT_PREC_FP32 : NGT_PREC_BF16;
  if (p == NGT_PREC_BF16 && why)
    return ngt_err_set(err, NGT_EINVAL,
                       "--precision=bf16 cannot run here: %s (use "
                       "--precision=fp32 or auto)",
                       why);
  if (p != NGT_PREC_FP32 && p != NGT_PREC_BF16)
    return ngt_err_set(err, NGT_EINVAL, "unknown precision %d", precision);
  g_requested = precision;
  g_precision = p;
  g_threads = threads;
  /* One thread pool, OpenMP's, in both precisions. Debian's OpenBLAS is the pthreads build:
   * its workers spin after each threaded call, and libgomp's spin too, so with both pools at
   * T > 1 a T-core worker would run up to 2T busy threads. OpenMP gets the T threads and runs
   * oneDNN's matmuls (bf16), ngt_gemm's blocks of rows or columns (fp32: one single-threaded
   * SGEMM per block, mat.c), the elementwise row loops and the optimiser's layer tasks
   * (optim.c); OpenBLAS has one thread. */
  ngt_blas_set_threads(1);
#ifdef _OPENMP
  omp_set_num_threads(threads);
#endif
  return 0;
}

int ngt_engine_precision(void) { return g_precision; }
int ngt_engine_threads(void) { return g_threads; }

void ngt_engine_describe(char *buf, size_t n) {
  char eng[160];
  if (g_precision == NGT_PREC_BF16) {
#ifdef NGT_HAVE_DNNL
    snprintf(eng, sizeof eng, "oneDNN %d.%d.%d matmul (bf16 operands, fp32 accumulation)",
             DNNL_VERSION_MAJOR, DNNL_VERSION_MINOR, DNNL_VERSION_PATCH);
#else
    snprintf(eng, sizeof eng, "none");
#endif
  } else {
    snprintf(eng, sizeof eng, "OpenBLAS SGEMM (fp32)");
  }
  const char *why = ngt_engine_bf16_unavailable();
  snprintf(buf, n, "precision %s%s, engine %s, OpenBLAS %s kernels, ISA %s, %d thread(s)%s%s",
           ngt_precision_name(g_precision), g_requested == NGT_PREC_AUTO ? " (auto)" : "", eng,
           ngt_blas_corename(), ngt_engine_isa(), g_threads, why ? "; bf16 unavailable: " : "",
           why ? why : "");
}

/* ------------------------------------------------------------------ bf16 conversion */

static inline uint16_t f2bf(float x) {
  union {
    float f;
    uint32_t u;
  } v = {x};
  uint32_t u = v.u;
  uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  uint32_t q = (u >> 16) | 0x40u; /* quiet NaN */
  return (uint16_t)((u & 0x7fffffffu) > 0x7f800000u ? q : r);
}

/* One row with the CPU's own conversion (VCVTNE2PS2BF16: round to nearest even, NaN
 * quiet; fp32 denormals flush to zero). Only called where the CPU has avx512_bf16. */
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) void ngt_bf16_row_avx512(
    uint16_t *d, const float *s, int n, float scale) {
  int j = 0;
  if (scale == 1.0f) {
    for (; j + 32 <= n; j += 32) {
      __m512bh r = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(s + j + 16), _mm512_loadu_ps(s + j));
      _mm512_storeu_si512((void *)(d + j), (__m512i)r);
    }
  } else {
    __m512 sc = _mm512_set1_ps(scale);
    for (; j + 32 <= n; j += 32) {
      __m512bh r = _mm512_cvtne2ps_pbh(_mm512_mul_ps(_mm512_loadu_ps(s + j + 16), sc),
                                       _mm512_mul_ps(_mm512_loadu_ps(s + j), sc));
      _mm512_storeu_si512((void *)(d + j), (__m512i)r);
    }
  }
  for (; j < n; j++) d[j] = f2bf(s[j] * scale);
}

static int g_has_avx512bf16 = -1;
void ngt_bf16_set_generic(int on) { g_has_avx512bf16 = on ? 0 : -1; }
int ngt_cpu_avx512bf16(void) {
  if (g_has_avx512bf16 < 0) {
    __builtin_cpu_init();
    g_has_avx512bf16 = __builtin_cpu_supports("avx512bf16") ? 1 : 0;
  }
  return g_has_avx512bf16;
}

void ngt_bf16_from_f32(uint16_t *dst, int ldd, const float *src, int lds, int rows, int cols,
                       float scale) {
  const int fast = ngt_cpu_avx512bf16();
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (rows >= 64)
#endif
  for (int i = 0; i < rows; i++) {
    const float *s = src + (size_t)i * (size_t)lds;
    uint16_t *d = dst + (size_t)i * (size_t)ldd;
    if (fast) ngt_bf16_row_avx512(d, s, cols, scale);
    else if (scale == 1.0f)
      for (int j = 0; j < cols; j++) d[j] = f2bf(s[j]);
    else
      for (int j = 0; j < cols; j++) d[j] = f2bf(s[j] * scale);
  }
}

void ngt_bf16_to_f32(float *dst, int ldd, const uint16_t *src, int lds, int rows, int cols) {
  for (int i = 0; i < rows; i++)
    for (int j = 0; j < cols; j++)
      dst[(size_t)i * (size_t)ldd + (size_t)j] = ngt_bf16_value(
          src[(size_t)i * (size_t)lds + (size_t)j]);
}

/* ------------------------------------------------------------------ low-rank update */

void ngt_bf16_pack_pairs(uint16_t *Wp, const float *W, int ldw, int R, int D) {
  const int K2 = (R + 1) / 2, Dp = ngt_bf16_pack_cols(D);
  memset(Wp, 0, sizeof(uint16_t) * 2 * (size_t)K2 * (size_t)Dp);
  for (int r = 0; r < R; r++) {
    uint16_t *dst = Wp + (size_t)(r / 2) * (size_t)Dp * 2 + (size_t)(r % 2);
    const float *src = W + (size_t)r * (size_t)ldw;
    for (int j = 0; j < D; j++) dst[2 * (size_t)j] = f2bf(src[j]);
  }
}

/* Rows n0 .. n0+7, columns j0 .. j0+31 (masks m0, m1 for a short last chunk): the eight
 * accumulator pairs start from X and take K2 VDPBF16PS steps each; then Y = bf16(acc),
 * v += c^T acc, and the squares are returned. Zero-padded W columns and masked-off X lanes
 * keep unused lanes at 0, so they add nothing. */
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) static float lowrank_rows8(
    const float *X, int ldx, const uint16_t *Hn, int ldh, int K2, const uint16_t *Wp, int Dp,
    int j0, __mmask16 m0, __mmask16 m1, uint16_t *Y, int ldy, const float *c, float *v) {
  __m512 a[8][2];
  for (int r = 0; r < 8; r++) { /* X is added at the end: its loads stay off the chains */
    a[r][0] = _mm512_setzero_ps();
    a[r][1] = _mm512_setzero_ps();
    _mm_prefetch((const char *)(X + (size_t)r * (size_t)ldx + j0 + 32), _MM_HINT_T0);
    _mm_prefetch((const char *)(X + (size_t)r * (size_t)ldx + j0 + 48), _MM_HINT_T0);
  }
  for (int k = 0; k < K2; k++) {
    const uint16_t *wk = Wp + ((size_t)k * (size_t)Dp + (size_t)j0) * 2;
    __m512bh w0 = (__m512bh)_mm512_loadu_si512((const void *)wk);
    __m512bh w1 = (__m512bh)_mm512_loadu_si512((const void *)(wk + 32));
    for (int r = 0; r < 8; r++) {
      uint32_t hp;
      memcpy(&hp, Hn + (size_t)r * (size_t)ldh + 2 * (size_t)k, sizeof hp);
      __m512bh h = (__m512bh)_mm512_set1_epi32((int)hp);
      a[r][0] = _mm512_dpbf16_ps(a[r][0], h, w0);
      a[r][1] = _mm512_dpbf16_ps(a[r][1], h, w1);
    }
  }
  __m512 ss = _mm512_setzero_ps(), v0 = _mm512_setzero_ps(), v1 = _mm512_setzero_ps();
  for (int r = 0; r < 8; r++) {
    a[r][0] = _mm512_add_ps(a[r][0], _mm512_maskz_loadu_ps(m0, X + (size_t)r * (size_t)ldx + j0));
    a[r][1] = _mm512_add_ps(a[r][1],
                            _mm512_maskz_loadu_ps(m1, X + (size_t)r * (size_t)ldx + j0 + 16));
    ss = _mm512_fmadd_ps(a[r][0], a[r][0], ss);
    ss = _mm512_fmadd_ps(a[r][1], a[r][1], ss);
    uint16_t *y = Y + (size_t)r * (size_t)ldy + j0;
    _mm256_mask_storeu_epi16(y, m0, (__m256i)_mm512_cvtneps_pbh(a[r][0]));
    _mm256_mask_storeu_epi16(y + 16, m1, (__m256i)_mm512_cvtneps_pbh(a[r][1]));
    if (c) {
      __m512 cr = _mm512_set1_ps(c[r]);
      v0 = _mm512_fmadd_ps(a[r][0], cr, v0);
      v1 = _mm512_fmadd_ps(a[r][1], cr, v1);
    }
  }
  if (c) {
    _mm512_mask_storeu_ps(v + j0, m0, _mm512_add_ps(_mm512_maskz_loadu_ps(m0, v + j0), v0));
    _mm512_mask_storeu_ps(v + j0 + 16, m1,
                          _mm512_add_ps(_mm512_maskz_loadu_ps(m1, v + j0 + 16), v1));
  }
  return _mm512_reduce_add_ps(ss);
}

/* The same for one row (the tail of N mod 8 rows). */
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) static float lowrank_row1(
    const float *x, const uint16_t *hn, int K2, const uint16_t *Wp, int Dp, int j0, __mmask16 m0,
    __mmask16 m1, uint16_t *y, float c, float *v) {
  __m512 a0 = _mm512_maskz_loadu_ps(m0, x + j0), a1 = _mm512_maskz_loadu_ps(m1, x + j0 + 16);
  for (int k = 0; k < K2; k++) {
    const uint16_t *wk = Wp + ((size_t)k * (size_t)Dp + (size_t)j0) * 2;
    uint32_t hp;
    memcpy(&hp, hn + 2 * (size_t)k, sizeof hp);
    __m512bh h = (__m512bh)_mm512_set1_epi32((int)hp);
    a0 = _mm512_dpbf16_ps(a0, h, (__m512bh)_mm512_loadu_si512((const void *)wk));
    a1 = _mm512_dpbf16_ps(a1, h, (__m512bh)_mm512_loadu_si512((const void *)(wk + 32)));
  }
  _mm256_mask_storeu_epi16(y + j0, m0, (__m256i)_mm512_cvtneps_pbh(a0));
  _mm256_mask_storeu_epi16(y + j0 + 16, m1, (__m256i)_mm512_cvtneps_pbh(a1));
  if (v) {
    __m512 cr = _mm512_set1_ps(c);
    _mm512_mask_storeu_ps(v + j0, m0, _mm512_fmadd_ps(a0, cr, _mm512_maskz_loadu_ps(m0, v + j0)));
    _mm512_mask_storeu_ps(v + j0 + 16, m1,
                          _mm512_fmadd_ps(a1, cr, _mm512_maskz_loadu_ps(m1, v + j0 + 16)));
  }
  return _mm512_reduce_add_ps(_mm512_fmadd_ps(a1, a1, _mm512_mul_ps(a0, a0)));
}

double ngt_bf16_lowrank_update(int N, int D, const float *X, int ldx, const uint16_t *Hn, int ldh,
                               int R, const uint16_t *Wp, uint16_t *Y, int ldy, const float *c,
                               float *v) {
  const int K2 = (R + 1) / 2, Dp = ngt_bf16_pack_cols(D), nchunks = Dp / 32;
  double *part = ngt_xcalloc((size_t)(nchunks > 0 ? nchunks : 1), sizeof(double));
  const int fast = ngt_cpu_avx512bf16();
  int nthr = 1;
#ifdef _OPENMP
  if ((size_t)N * (size_t)D * (size_t)(K2 + 1) >= 65536 && !omp_in_parallel())
    nthr = omp_get_max_threads();
  if (nthr > nchunks) nthr = nchunks > 0 ? nchunks : 1;
#endif
    /* Each thread owns a contiguous range of 32-column chunks (and so its v[j]); within it,
   * blocks of 8 rows, each across the range, so X and Y are read and written row by row and
   * the range's packed W stays in cache. The squares are summed per chunk in row order, then
   * in chunk order: the result does not depend on the thread count. */
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(nthr) if (nthr > 1)
#endif
  for (int t = 0; t < nthr; t++) {
    const int q0 = (int)((long)nchunks * t / nthr), q1 = (int)((long)nchunks * (t + 1) / nthr);
    if (fast) {
      int n = 0;
      for (; n < N; n += 8) {
        for (int q = q0; q < q1; q++) {
          const int j0 = 32 * q, nc = D - j0 < 32 ? D - j0 : 32;
          __mmask16 m0 = (__mmask16)(nc >= 16 ? 0xffffu : (1u << nc) - 1u);
          __mmask16 m1 = (__mmask16)(nc >= 32 ? 0xffffu : nc > 16 ? (1u << (nc - 16)) - 1u : 0u);
          if (n + 8 <= N) {
            part[q] += (double)lowrank_rows8(X + (size_t)n * (size_t)ldx, ldx,
                                             Hn + (size_t)n * (size_t)ldh, ldh, K2, Wp, Dp, j0, m0,
                                             m1, Y + (size_t)n * (size_t)ldy, ldy,
                                             c ? c + n : NULL, v);
          } else {
            for (int i = n; i < N; i++)
              part[q] += (double)lowrank_row1(X + (size_t)i * (size_t)ldx,
                                              Hn + (size_t)i * (size_t)ldh, K2, Wp, Dp, j0, m0, m1,
                                              Y + (size_t)i * (size_t)ldy, c ? c[i] : 0.0f,
                                              c ? v : NULL);
          }
        }
      }
    } else { /* the same arithmetic in scalar code: bf16 products, fp32 sums */
      for (int i = 0; i < N; i++) {
        const float *x = X + (size_t)i * (size_t)ldx;
        const uint16_t *hn = Hn + (size_t)i * (size_t)ldh;
        for (int q = q0; q < q1; q++) {
          const int j0 = 32 * q, j1 = D - j0 < 32 ? D : j0 + 32;
          float ss = 0.0f;
          for (int j = j0; j < j1; j++) {
            float a = x[j];
            for (int k = 0; k < K2; k++) {
              const uint16_t *w = Wp + ((size_t)k * (size_t)Dp + (size_t)j) * 2;
              a += ngt_bf16_value(hn[2 * k]) * ngt_bf16_value(w[0]) +
                   ngt_bf16_value(hn[2 * k + 1]) * ngt_bf16_value(w[1]);
            }
            Y[(size_t)i * (size_t)ldy + (size_t)j] = f2bf(a);
            if (c) v[j] += c[i] * a;
            ss += a * a;
          }
          part[q] += (double)ss;
        }
      }
    }
  }
  double s = 0.0;
  for (int q = 0; q < nchunks; q++) s += part[q];
  free(part);
  return s;
}

/* C[n][r] = sum_j A[n][j] B[r][j] (+ bias[r]) for 4 rows of A and 5 rows of B: both
 * operands run along K in memory, the form VDPBF16PS takes (pairs of adjacent K values);
 * 20 accumulators of 16 lanes (named, so they stay in registers), reduced at the end. */
#define DOT_ROW(i)                                                                         \
  {                                                                                        \
    __m512bh a = (__m512bh)_mm512_maskz_loadu_epi16(m, A + (size_t)(i) * (size_t)lda + j); \
    c##i##0 = _mm512_dpbf16_ps(c##i##0, a, b0);                                            \
    c##i##1 = _mm512_dpbf16_ps(c##i##1, a, b1);                                            \
    c##i##2 = _mm512_dpbf16_ps(c##i##2, a, b2);                                            \
    c##i##3 = _mm512_dpbf16_ps(c##i##3, a, b3);                                            \
    c##i##4 = _mm512_dpbf16_ps(c##i##4, a, b4);                                            \
  }
#define DOT_OUT(i)                                                   \
  {                                                                  \
    float *ci = C + (size_t)(i) * (size_t)ldc;                       \
    ci[0] = _mm512_reduce_add_ps(c##i##0) + (bias ? bias[0] : 0.0f); \
    ci[1] = _mm512_reduce_add_ps(c##i##1) + (bias ? bias[1] : 0.0f); \
    ci[2] = _mm512_reduce_add_ps(c##i##2) + (bias ? bias[2] : 0.0f); \
    ci[3] = _mm512_reduce_add_ps(c##i##3) + (bias ? bias[3] : 0.0f); \
    ci[4] = _mm512_reduce_add_ps(c##i##4) + (bias ? bias[4] : 0.0f); \
  }
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) static void dot_tile_4x5(
    int K, const uint16_t *A, int lda, const uint16_t *B, int ldb, const float *bias, float *C,
    int ldc) {
  __m512 c00 = _mm512_setzero_ps(), c01 = c00, c02 = c00, c03 = c00, c04 = c00;
  __m512 c10 = c00, c11 = c00, c12 = c00, c13 = c00, c14 = c00;
  __m512 c20 = c00, c21 = c00, c22 = c00, c23 = c00, c24 = c00;
  __m512 c30 = c00, c31 = c00, c32 = c00, c33 = c00, c34 = c00;
  for (int j = 0; j < K; j += 32) {
    __mmask32 m = K - j >= 32 ? 0xffffffffu : (1u << (K - j)) - 1u;
    __m512bh b0 = (__m512bh)_mm512_maskz_loadu_epi16(m, B + j);
    __m512bh b1 = (__m512bh)_mm512_maskz_loadu_epi16(m, B + (size_t)ldb + j);
    __m512bh b2 = (__m512bh)_mm512_maskz_loadu_epi16(m, B + 2 * (size_t)ldb + j);
    __m512bh b3 = (__m512bh)_mm512_maskz_loadu_epi16(m, B + 3 * (size_t)ldb + j);
    __m512bh b4 = (__m512bh)_mm512_maskz_loadu_epi16(m, B + 4 * (size_t)ldb + j);
    DOT_ROW(0) DOT_ROW(1) DOT_ROW(2) DOT_ROW(3)
  }
  DOT_OUT(0) DOT_OUT(1) DOT_OUT(2) DOT_OUT(3)
}
#undef DOT_ROW
#undef DOT_OUT

__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) static void dot_tile_1x1(
    int K, const uint16_t *A, int lda, const uint16_t *B, int ldb, const float *bias, float *C,
    int ldc) {
  (void)lda;
  (void)ldb;
  (void)ldc;
  __m512 c = _mm512_setzero_ps();
  for (int j = 0; j < K; j += 32) {
    __mmask32 m = K - j >= 32 ? 0xffffffffu : (1u << (K - j)) - 1u;
    c = _mm512_dpbf16_ps(c, (__m512bh)_mm512_maskz_loadu_epi16(m, A + j),
                         (__m512bh)_mm512_maskz_loadu_epi16(m, B + j));
  }
  C[0] = _mm512_reduce_add_ps(c) + (bias ? bias[0] : 0.0f);
}

void ngt_bf16_gemm_thin(int N, int R, int K, const uint16_t *A, int lda, const uint16_t *B,
                        int ldb, const float *bias, float *C, int ldc) {
  if (!ngt_cpu_avx512bf16()) { /* the same products in scalar code */
    for (int n = 0; n < N; n++)
      for (int r = 0; r < R; r++) {
        float s = 0.0f;
        for (int j = 0; j < K; j++)
          s += ngt_bf16_value(A[(size_t)n * (size_t)lda + j]) *
               ngt_bf16_value(B[(size_t)r * (size_t)ldb + j]);
        C[(size_t)n * (size_t)ldc + r] = s + (bias ? bias[r] : 0.0f);
      }
    return;
  }
  const int N4 = N / 4 * 4, R5 = R / 5 * 5;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if ((size_t)N * (size_t)R * (size_t)K >= 262144 && \
                                              !omp_in_parallel())
#endif
  for (int n = 0; n < N4; n += 4) {
    const uint16_t *a = A + (size_t)n * (size_t)lda;
    float *c = C + (size_t)n * (size_t)ldc;
    for (int r = 0; r < R5; r += 5)
      dot_tile_4x5(K, a, lda, B + (size_t)r * (size_t)ldb, ldb, bias ? bias + r : NULL, c + r,
                   ldc);
    for (int i = 0; i < 4; i++)
      for (int r = R5; r < R; r++)
        dot_tile_1x1(K, a + (size_t)i * (size_t)lda, lda, B + (size_t)r * (size_t)ldb, ldb,
                     bias ? bias + r : NULL, c + (size_t)i * (size_t)ldc + r, ldc);
  }
  for (int n = N4; n < N; n++)
    for (int r = 0; r < R; r++)
      dot_tile_1x1(K, A + (size_t)n * (size_t)lda, lda, B + (size_t)r * (size_t)ldb, ldb,
                   bias ? bias + r : NULL, C + (size_t)n * (size_t)ldc + r, ldc);
}

/* ------------------------------------------------------------------ oneDNN matmul */

#ifdef NGT_HAVE_DNNL
typedef struct prim_entry {
  int m, n, k, ta, tb, lda, ldb, ldc, bias, acc, nthr, tid;
  dnnl_primitive_t prim;
  dnnl_memory_t src, wei, bia, dst;
  dnnl_stream_t stream; /* tid >= 0 only: the entry's own */
} prim_entry;

/* The primitive cache. Called inside an OpenMP parallel region (the optimiser runs its
 * layers' NG calls in parallel with --num-threads > 1) each thread gets its own entries
 * (the memory objects carry the data pointers of one call) and stream, with primitives
 * planned for one thread; the cache itself is guarded by a critical section, and entries
 * never move (an array of pointers). */
static dnnl_engine_t g_eng;
static dnnl_stream_t g_stream;
static prim_entry **g_cache;
static int g_ncache, g_capcache;

static void dnnl_check(dnnl_status_t s, const char *what) {
  if (s != dnnl_success) ngt_die("oneDNN: %s failed (status %d)", what, (int)s);
}

static prim_entry *create_prim(int ta, int tb, int m, int n, int k, int lda, int ldb, int ldc,
                               int bias, int acc, int nthr, int tid);

static prim_entry *get_prim(int ta, int tb, int m, int n, int k, int lda, int ldb, int ldc,
                            int bias, int acc) {
  int tid = -1, nthr = ngt_omp_threads();
#ifdef _OPENMP
  if (omp_in_parallel()) {
    tid = omp_get_thread_num();
    nthr = 1;
  }
#endif
  prim_entry *found = NULL;
#ifdef _OPENMP
#pragma omp critical(ngt_engine_cache)
#endif
  {
    for (int i = 0; i < g_ncache && !found; i++) {
      prim_entry *e = g_cache[i];
      if (e->m == m && e->n == n && e->k == k && e->ta == ta && e->tb == tb && e->lda == lda &&
          e->ldb == ldb && e->ldc == ldc && e->bias == bias && e->acc == acc && e->nthr == nthr &&
          e->tid == tid)
        found = e;
    }
    if (!found) found = create_prim(ta, tb, m, n, k, lda, ldb, ldc, bias, acc, nthr, tid);
  }
  return found;
}

static prim_entry *create_prim(int ta, int tb, int m, int n, int k, int lda, int ldb, int ldc,
                               int bias, int acc, int nthr, int tid) {
  if (!g_eng) {
    dnnl_check(dnnl_engine_create(&g_eng, dnnl_cpu, 0), "engine create");
    dnnl_check(dnnl_stream_create(&g_stream, g_eng, dnnl_stream_default_flags), "stream create");
  }
  if (g_ncache == g_capcache) {
    g_capcache = g_capcache ? 2 * g_capcache : 16;
    g_cache = realloc(g_cache, sizeof *g_cache * (size_t)g_capcache);
    if (!g_cache) ngt_die("out of memory");
  }
  prim_entry *e = ngt_xcalloc(1, sizeof *e);
  g_cache[g_ncache] = e;
  e->m = m;
  e->n = n;
  e->k = k;
  e->ta = ta;
  e->tb = tb;
  e->lda = lda;
  e->ldb = ldb;
  e->ldc = ldc;
  e->bias = bias;
  e->acc = acc;
  e->nthr = nthr; /* oneDNN plans a primitive for the threads it will have */
  e->tid = tid;
  if (tid >= 0)
    dnnl_check(dnnl_stream_create(&e->stream, g_eng, dnnl_stream_default_flags), "stream create");
  dnnl_memory_desc_t a_md, b_md, c_md, bias_md;
  dnnl_dims_t ad = {m, k}, as = {ta ? 1 : lda, ta ? lda : 1};
  dnnl_dims_t bd = {k, n}, bs = {tb ? 1 : ldb, tb ? ldb : 1};
  dnnl_dims_t cd = {m, n}, cs = {ldc, 1};
  dnnl_dims_t zd = {1, n}, zs = {n, 1};
  dnnl_check(dnnl_memory_desc_init_by_strides(&a_md, 2, ad, dnnl_bf16, as), "src desc");
  dnnl_check(dnnl_memory_desc_init_by_strides(&b_md, 2, bd, dnnl_bf16, bs), "weights desc");
  dnnl_check(dnnl_memory_desc_init_by_strides(&c_md, 2, cd, dnnl_f32, cs), "dst desc");
  dnnl_check(dnnl_memory_desc_init_by_strides(&bias_md, 2, zd, dnnl_f32, zs), "bias desc");
  dnnl_matmul_desc_t md;
  dnnl_check(dnnl_matmul_desc_init(&md, &a_md, &b_md, bias ? &bias_md : NULL, &c_md),
             "matmul desc");
  dnnl_primitive_attr_t attr = NULL;
  if (acc) { /* C += A B: sum post-op */
    dnnl_post_ops_t po;
    dnnl_check(dnnl_primitive_attr_create(&attr), "attr");
    dnnl_check(dnnl_post_ops_create(&po), "post ops");
    dnnl_check(dnnl_post_ops_append_sum(po, 1.0f), "sum post-op");
    dnnl_check(dnnl_primitive_attr_set_post_ops(attr, po), "set post ops");
    dnnl_post_ops_destroy(po);
  }
  dnnl_primitive_desc_t pd;
  dnnl_check(dnnl_primitive_desc_create(&pd, &md, attr, g_eng, NULL), "matmul primitive desc");
  if (attr) dnnl_primitive_attr_destroy(attr);
  dnnl_check(dnnl_primitive_create(&e->prim, pd), "matmul primitive");
  if (getenv("NGT_ENGINE_VERBOSE")) {
    const char *impl = NULL;
    dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
    fprintf(stderr, "engine: matmul m=%d n=%d k=%d ta=%d tb=%d bias=%d acc=%d ldc=%d: %s\n", m, n,
            k, ta, tb, bias, acc, ldc, impl ? impl : "?");
  }
  dnnl_primitive_desc_destroy(pd);
  dnnl_check(dnnl_memory_create(&e->src, &a_md, g_eng, DNNL_MEMORY_NONE), "memory");
  dnnl_check(dnnl_memory_create(&e->wei, &b_md, g_eng, DNNL_MEMORY_NONE), "memory");
  dnnl_check(dnnl_memory_create(&e->dst, &c_md, g_eng, DNNL_MEMORY_NONE), "memory");
  if (bias) dnnl_check(dnnl_memory_create(&e->bia, &bias_md, g_eng, DNNL_MEMORY_NONE), "memory");
  g_ncache++;
  return e;
}
#endif

int ngt_engine_num_primitives(void) {
#ifdef NGT_HAVE_DNNL
  return g_ncache;
#else
  return 0;
#endif
}

void ngt_gemm_bf16(int ta, int tb, int m, int n, int k, const uint16_t *A, int lda,
                   const uint16_t *B, int ldb, const float *bias, float *C, int ldc) {
  ngt_gemm_bf16_beta(ta, tb, m, n, k, A, lda, B, ldb, bias, 0.0f, C, ldc);
}

void ngt_gemm_bf16_beta(int ta, int tb, int m, int n, int k, const uint16_t *A, int lda,
                        const uint16_t *B, int ldb, const float *bias, float beta, float *C,
                        int ldc) {
  NGT_ASSERT(beta == 0.0f || beta == 1.0f);
#ifdef NGT_HAVE_DNNL
  if (m == 0 || n == 0) return;
  if (k == 0) {
    for (int i = 0; i < m; i++)
      for (int j = 0; j < n; j++)
        C[(size_t)i * (size_t)ldc + (size_t)j] = (beta != 0.0f
                                                      ? C[(size_t)i * (size_t)ldc + (size_t)j]
                                                      : 0.0f) +
                                                 (bias ? bias[j] : 0.0f);
    return;
  }
  prim_entry *e = get_prim(ta ? 1 : 0, tb ? 1 : 0, m, n, k, lda, ldb, ldc, bias != NULL,
                           beta != 0.0f);
  dnnl_memory_set_data_handle(e->src, (void *)A);
  dnnl_memory_set_data_handle(e->wei, (void *)B);
  dnnl_memory_set_data_handle(e->dst, C);
  dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, e->src},
                             {DNNL_ARG_WEIGHTS, e->wei},
                             {DNNL_ARG_DST, e->dst},
                             {DNNL_ARG_BIAS, e->bia}};
  if (bias) dnnl_memory_set_data_handle(e->bia, (void *)bias);
  dnnl_stream_t st = e->tid >= 0 ? e->stream : g_stream;
  dnnl_check(dnnl_primitive_execute(e->prim, st, bias ? 4 : 3, args), "matmul execute");
  dnnl_check(dnnl_stream_wait(st), "stream wait");
#else
  (void)ta;
  (void)tb;
  (void)m;
  (void)n;
  (void)k;
  (void)A;
  (void)lda;
  (void)B;
  (void)ldb;
  (void)bias;
  (void)C;
  (void)ldc;
  (void)beta;
  ngt_die("bf16 GEMM requested but this build has no oneDNN");
#endif
}
