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
  /* One thread pool per precision. Debian's OpenBLAS is the pthreads build: its workers
   * spin after each threaded call, and libgomp's spin too, so with both pools at T > 1 a
   * T-core worker runs up to 2T busy threads and the GEMMs wait on descheduled ones.
   * fp32: the GEMMs are OpenBLAS's, so OpenBLAS gets the T threads and the elementwise row
   * loops (a few % of an fp32 step) run on this thread. bf16: the GEMMs and the row loops
   * are oneDNN's/OpenMP's, so OpenMP gets the T threads and OpenBLAS (bias sums, traces,
   * the NG Fisher updates) runs on this thread. */
  ngt_blas_set_threads(p == NGT_PREC_FP32 ? threads : 1);
#ifdef _OPENMP
  omp_set_num_threads(p == NGT_PREC_FP32 ? 1 : threads);
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
    for (int j = 0; j < cols; j++) {
      union {
        uint32_t u;
        float f;
      } v = {(uint32_t)src[(size_t)i * (size_t)lds + (size_t)j] << 16};
      dst[(size_t)i * (size_t)ldd + (size_t)j] = v.f;
    }
}

/* ------------------------------------------------------------------ oneDNN matmul */

#ifdef NGT_HAVE_DNNL
typedef struct prim_entry {
  int m, n, k, ta, tb, lda, ldb, ldc, bias, acc;
  dnnl_primitive_t prim;
  dnnl_memory_t src, wei, bia, dst;
} prim_entry;

static dnnl_engine_t g_eng;
static dnnl_stream_t g_stream;
static prim_entry *g_cache;
static int g_ncache, g_capcache;

static void dnnl_check(dnnl_status_t s, const char *what) {
  if (s != dnnl_success) ngt_die("oneDNN: %s failed (status %d)", what, (int)s);
}

static prim_entry *get_prim(int ta, int tb, int m, int n, int k, int lda, int ldb, int ldc,
                            int bias, int acc) {
  for (int i = 0; i < g_ncache; i++) {
    prim_entry *e = &g_cache[i];
    if (e->m == m && e->n == n && e->k == k && e->ta == ta && e->tb == tb && e->lda == lda &&
        e->ldb == ldb && e->ldc == ldc && e->bias == bias && e->acc == acc)
      return e;
  }
  if (!g_eng) {
    dnnl_check(dnnl_engine_create(&g_eng, dnnl_cpu, 0), "engine create");
    dnnl_check(dnnl_stream_create(&g_stream, g_eng, dnnl_stream_default_flags), "stream create");
  }
  if (g_ncache == g_capcache) {
    g_capcache = g_capcache ? 2 * g_capcache : 16;
    g_cache = realloc(g_cache, sizeof *g_cache * (size_t)g_capcache);
    if (!g_cache) ngt_die("out of memory");
  }
  prim_entry *e = &g_cache[g_ncache];
  memset(e, 0, sizeof *e);
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
  dnnl_check(dnnl_primitive_execute(e->prim, g_stream, bias ? 4 : 3, args), "matmul execute");
  dnnl_check(dnnl_stream_wait(g_stream), "stream wait");
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
