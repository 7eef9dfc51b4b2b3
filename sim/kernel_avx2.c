/* SPDX-License-Identifier: MIT */
/*
 * The AVX2 kernels: kernel_simd.h, 8 lanes at a time.  This file alone is
 * built with -mavx2 (sim/meson.build) and is only called when the CPU has
 * AVX2 (dispatch.c).  No FMA: a fused multiply-add rounds once where the
 * portable kernels round twice.
 */
#include "sim/kernel.h"

#include <immintrin.h>

#ifndef __AVX2__
#error "kernel_avx2.c must be built with -mavx2 (sim/meson.build)"
#endif

#define SIMD_LANES 8
#define SIMD_NAME(f) f##_avx2
typedef __m256 vf;
#define vload _mm256_loadu_ps
#define vstore _mm256_storeu_ps
#define vset1 _mm256_set1_ps
#define vzero _mm256_setzero_ps
#define vadd _mm256_add_ps
#define vsub _mm256_sub_ps
#define vmul _mm256_mul_ps
#define vmax _mm256_max_ps
/* blendv picks by the sign bit of its mask: w itself */
#define vkeep_pruned(t, w) _mm256_blendv_ps(t, w, w)
#define vge_bits(a, b) ((unsigned)_mm256_movemask_ps(_mm256_cmp_ps(a, b, _CMP_GE_OQ)))
#define vwhere_zero(c, a) _mm256_and_ps(_mm256_cmp_ps(c, _mm256_setzero_ps(), _CMP_EQ_OQ), a)
#define vfloor(a, lb) _mm256_blendv_ps(a, lb, _mm256_cmp_ps(a, lb, _CMP_LT_OQ))

#include "sim/kernel_simd.h"
