/* SPDX-License-Identifier: MIT */
/*
 * The AVX-512 kernels: kernel_simd.h, 16 lanes at a time (rows are padded
 * to 16 floats).  This file alone is built with -mavx512f (sim/meson.build)
 * and is only called when the CPU has AVX-512F (dispatch.c).  vmaxps keeps
 * its second operand when both are zero, as the 256-bit and scalar forms
 * do.  AVX-512F has no blendv: masks come from compares, the sign-bit one
 * from an integer compare of the weights' bits.
 */
#include "sim/kernel.h"

#include <immintrin.h>

#ifndef __AVX512F__
#error "kernel_avx512.c must be built with -mavx512f (sim/meson.build)"
#endif

#define SIMD_LANES 16
#define SIMD_NAME(f) f##_avx512
typedef __m512 vf;
#define vload _mm512_loadu_ps
#define vstore _mm512_storeu_ps
#define vset1 _mm512_set1_ps
#define vzero _mm512_setzero_ps
#define vadd _mm512_add_ps
#define vsub _mm512_sub_ps
#define vmul _mm512_mul_ps
#define vmax _mm512_max_ps
#define vkeep_pruned(t, w) \
	_mm512_mask_blend_ps(_mm512_cmplt_epi32_mask(_mm512_castps_si512(w), _mm512_setzero_si512()), t, w)
#define vge_bits(a, b) ((unsigned)_mm512_cmp_ps_mask(a, b, _CMP_GE_OQ))
#define vwhere_zero(c, a) _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(c, _mm512_setzero_ps(), _CMP_EQ_OQ), a)
#define vfloor(a, lb) _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, lb, _CMP_LT_OQ), a, lb)

#include "sim/kernel_simd.h"
