/* SPDX-License-Identifier: MIT */
/*
 * The portable kernels: the definition of each kernel's arithmetic, which
 * the SIMD sets repeat lane by lane (see kernel.h).  Plain C, built with
 * the library's flags only, so they run on any CPU.
 */
#include "sim/kernel.h"

#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

/* t > 0 ? t : 0 as one maxss (the same result, NaN and -0 included) rather
 * than a data-dependent branch in the relay rows, which stay scalar. */
static inline float clamp0(float t)
{
#if defined(__x86_64__) && defined(__GNUC__)
	return _mm_cvtss_f32(_mm_max_ss(_mm_set_ss(t), _mm_setzero_ps()));
#else
	return t > 0.0f ? t : 0.0f;
#endif
}

/* Pruned entries are -0.0: the sign bit alone tells them from live ones. */
static inline float sel_live(float w, float t)
{
	uint32_t b;
	memcpy(&b, &w, sizeof(b));
	return (b >> 31) ? w : t;
}

static void pre_full_c(float *restrict w, float *restrict in, const float *restrict x,
		       const float *restrict spk, const float *restrict dk, const float *restrict ds,
		       float g, float ap, float am, uint32_t n)
{
	for (uint32_t j = 0; j < n; j++) {
		float p = g * (dk[j] - ds[j]);
		float t = w[j] + p;
		t = t + ap * spk[j];
		t = t - am * x[j];
		t = t > 0.0f ? t : 0.0f;
		float nw = sel_live(w[j], t);
		w[j] = nw;
		in[j] = in[j] + nw;
	}
}

static void pre_nod_c(float *restrict w, float *restrict in, const float *restrict x,
		      const float *restrict spk, float ap, float am, uint32_t n)
{
	for (uint32_t j = 0; j < n; j++) {
		float t = w[j] + ap * spk[j];
		t = t - am * x[j];
		t = t > 0.0f ? t : 0.0f;
		float nw = sel_live(w[j], t);
		w[j] = nw;
		in[j] = in[j] + nw;
	}
}

static void pre_full4_c(float *const *w, float *restrict in, const float *restrict x,
			const float *restrict spk, const float *restrict dk, const float *const *ds,
			const float *g, float ap, float am, uint32_t n)
{
	for (int q = 0; q < 4; q++)
		pre_full_c(w[q], in, x, spk, dk, ds[q], g[q], ap, am, n);
}

static void groups_c(float *restrict v, float *restrict in, float *restrict x, float *restrict rc,
		     float rest, float dm, float r, float lbv, uint32_t n)
{
	for (uint32_t j = 0; j < n; j++) {
		x[j] = x[j] * r;
		float vv = rest + (v[j] - rest) * dm;
		vv = vv + (rc[j] == 0.0f ? in[j] : 0.0f);
		in[j] = 0.0f;
		float c = rc[j] - 1.0f;
		rc[j] = c > 0.0f ? c : 0.0f;
		v[j] = vv < lbv ? lbv : vv;
	}
}

static uint32_t threshold_c(const float *restrict v, float th, uint32_t n, uint32_t *restrict out)
{
	uint32_t ns = 0;
	for (uint32_t j = 0; j < n; j++)
		if (v[j] >= th)
			out[ns++] = j;
	return ns;
}

static void sync_c(float *restrict w, float *restrict colsum, const float *restrict dk,
		   const float *restrict ds, float g, uint32_t n)
{
	for (uint32_t j = 0; j < n; j++) {
		float t = w[j] + g * (dk[j] - ds[j]);
		w[j] = sel_live(w[j], t);
	}
	if (colsum)
		for (uint32_t j = 0; j < n; j++)
			colsum[j] = colsum[j] + w[j];
}

static void acc_c(float *restrict acc, const float *restrict w, uint32_t n)
{
	for (uint32_t j = 0; j < n; j++)
		acc[j] = acc[j] + w[j];
}

static void scale_c(float *restrict w, const float *restrict s, uint32_t n)
{
	for (uint32_t j = 0; j < n; j++)
		w[j] = w[j] * s[j];
}

void sim_inh_pre(const uint32_t *restrict col, float *restrict m, uint32_t len, float *restrict in,
		 const float *restrict x, const float *restrict spk, const float *restrict dk,
		 const float *restrict ds, float g, float ap, float am)
{
	if (ds) {
		for (uint32_t q = 0; q < len; q++) {
			uint32_t j = col[q];
			float t = m[q] + g * (dk[j] - ds[j]);
			t = t + ap * spk[j];
			t = clamp0(t - am * x[j]);
			m[q] = t;
			in[j] = in[j] - t;
		}
	} else {
		for (uint32_t q = 0; q < len; q++) {
			uint32_t j = col[q];
			float t = m[q] + ap * spk[j];
			t = clamp0(t - am * x[j]);
			m[q] = t;
			in[j] = in[j] - t;
		}
	}
}


const struct sim_kernels sim_kernels_generic = {
	.pre_full = pre_full_c,
	.pre_nod = pre_nod_c,
	.pre_full4 = pre_full4_c,
	.groups = groups_c,
	.threshold = threshold_c,
	.sync = sync_c,
	.acc = acc_c,
	.scale_rows = scale_c,
};
