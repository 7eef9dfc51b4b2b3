/* SPDX-License-Identifier: MIT */
/*
 * The SIMD kernels, written once: kernel_avx2.c and kernel_avx512.c each
 * define the vector type and operations below for their instruction set
 * and include this file, so the two sets cannot drift apart, and the one
 * that a machine lacks (AVX-512 is often missing) shares its arithmetic
 * with the one that was tested.  Each kernel performs kernel_generic.c's
 * operations in the same order, SIMD_LANES at a time.
 *
 * Before including, define:
 *   SIMD_LANES, SIMD_NAME(f) (f with the set's suffix), the type vf, and
 *   vload, vstore, vset1, vzero, vadd, vsub, vmul, vmax: the plain
 *       element-wise operations (vmax(t, zero) gives +0 for t = -0 or NaN,
 *       as the scalar t > 0 ? t : 0 does);
 *   vkeep_pruned(t, w): w where w's sign bit is set (a pruned -0.0), else t;
 *   vge_bits(a, b): an unsigned with bit i set where a[i] >= b[i];
 *   vwhere_zero(c, a): a where c == 0, else +0;
 *   vfloor(a, lb): a < lb ? lb : a.
 * The last four may evaluate their arguments more than once.
 */
#ifndef SIMD_NAME
#error "kernel_simd.h is included by kernel_<isa>.c after its definitions"
#endif

static void SIMD_NAME(pre_full)(float *restrict w, float *restrict in, const float *restrict x,
				const float *restrict spk, const float *restrict dk, const float *restrict ds,
				float g, float ap, float am, uint32_t n)
{
	const vf gv = vset1(g);
	const vf apv = vset1(ap), amv = vset1(am), z = vzero();
	for (uint32_t j = 0; j < n; j += SIMD_LANES) {
		vf wv = vload(w + j);
		vf p = vmul(gv, vsub(vload(dk + j), vload(ds + j)));
		vf t = vadd(wv, p);
		t = vadd(t, vmul(apv, vload(spk + j)));
		t = vsub(t, vmul(amv, vload(x + j)));
		t = vmax(t, z);
		vf nw = vkeep_pruned(t, wv);
		vstore(w + j, nw);
		vstore(in + j, vadd(vload(in + j), nw));
	}
}

/* Four presynaptic rows at once: the shared vectors (input, traces, this
 * step's spikes, current history) are loaded once per four rows.  Each
 * input element still receives row 0, 1, 2, 3 in that order, as the
 * one-row kernel would. */
static void SIMD_NAME(pre_full4)(float *const *w, float *restrict in, const float *restrict x,
				 const float *restrict spk, const float *restrict dk, const float *const *ds,
				 const float *g, float ap, float am, uint32_t n)
{
	const vf apv = vset1(ap), amv = vset1(am), z = vzero();
	const vf g0 = vset1(g[0]), g1 = vset1(g[1]), g2 = vset1(g[2]), g3 = vset1(g[3]);
	float *w0 = w[0], *w1 = w[1], *w2 = w[2], *w3 = w[3];
	const float *s0 = ds[0], *s1 = ds[1], *s2 = ds[2], *s3 = ds[3];
	for (uint32_t j = 0; j < n; j += SIMD_LANES) {
		const vf d = vload(dk + j);
		const vf sp = vmul(apv, vload(spk + j));
		const vf dep = vmul(amv, vload(x + j));
		vf acc = vload(in + j);
#define ROW(W, S, G)                                                        \
		do {                                                        \
			vf wv = vload(W + j);                               \
			vf t = vadd(wv, vmul(G, vsub(d, vload(S + j))));    \
			t = vadd(t, sp);                                    \
			t = vsub(t, dep);                                   \
			t = vmax(t, z);                                     \
			vf nw = vkeep_pruned(t, wv);                        \
			vstore(W + j, nw);                                  \
			acc = vadd(acc, nw);                                \
		} while (0)
		ROW(w0, s0, g0);
		ROW(w1, s1, g1);
		ROW(w2, s2, g2);
		ROW(w3, s3, g3);
#undef ROW
		vstore(in + j, acc);
	}
}

/* v has room for n rounded up to SIMD_LANES; lanes past n are not reported. */
static uint32_t SIMD_NAME(threshold)(const float *restrict v, float th, uint32_t n, uint32_t *restrict out)
{
	const vf t = vset1(th);
	uint32_t ns = 0;
	for (uint32_t j = 0; j < n; j += SIMD_LANES) {
		unsigned m = vge_bits(vload(v + j), t);
		while (m) {
			uint32_t b = (uint32_t)__builtin_ctz(m);
			if (j + b < n)
				out[ns++] = j + b;
			m &= m - 1;
		}
	}
	return ns;
}

static void SIMD_NAME(groups)(float *restrict v, float *restrict in, float *restrict x, float *restrict rc,
			      float rest, float dm, float r, float lbv, uint32_t n)
{
	const vf restv = vset1(rest), dmv = vset1(dm), rv = vset1(r), lb = vset1(lbv), z = vzero(),
		 one = vset1(1.0f);
	for (uint32_t j = 0; j < n; j += SIMD_LANES) {
		vstore(x + j, vmul(vload(x + j), rv));
		vf vv = vadd(restv, vmul(vsub(vload(v + j), restv), dmv));
		vf c = vload(rc + j);
		/* input only reaches neurons that are not refractory */
		vv = vadd(vv, vwhere_zero(c, vload(in + j)));
		vstore(in + j, z);
		vstore(rc + j, vmax(vsub(c, one), z));
		vstore(v + j, vfloor(vv, lb));
	}
}

static void SIMD_NAME(pre_nod)(float *restrict w, float *restrict in, const float *restrict x,
			       const float *restrict spk, float ap, float am, uint32_t n)
{
	const vf apv = vset1(ap), amv = vset1(am), z = vzero();
	for (uint32_t j = 0; j < n; j += SIMD_LANES) {
		vf wv = vload(w + j);
		vf t = vadd(wv, vmul(apv, vload(spk + j)));
		t = vsub(t, vmul(amv, vload(x + j)));
		t = vmax(t, z);
		vf nw = vkeep_pruned(t, wv);
		vstore(w + j, nw);
		vstore(in + j, vadd(vload(in + j), nw));
	}
}

static void SIMD_NAME(sync)(float *restrict w, float *restrict colsum, const float *restrict dk,
			    const float *restrict ds, float g, uint32_t n)
{
	const vf gv = vset1(g);
	for (uint32_t j = 0; j < n; j += SIMD_LANES) {
		vf wv = vload(w + j);
		vf t = vadd(wv, vmul(gv, vsub(vload(dk + j), vload(ds + j))));
		vf nw = vkeep_pruned(t, wv);
		vstore(w + j, nw);
		if (colsum)
			vstore(colsum + j, vadd(vload(colsum + j), nw));
	}
}

static void SIMD_NAME(acc)(float *restrict acc, const float *restrict w, uint32_t n)
{
	for (uint32_t j = 0; j < n; j += SIMD_LANES)
		vstore(acc + j, vadd(vload(acc + j), vload(w + j)));
}

static void SIMD_NAME(scale)(float *restrict w, const float *restrict s, uint32_t n)
{
	for (uint32_t j = 0; j < n; j += SIMD_LANES)
		vstore(w + j, vmul(vload(w + j), vload(s + j)));
}

const struct sim_kernels SIMD_NAME(sim_kernels) = {
	.pre_full = SIMD_NAME(pre_full),
	.pre_nod = SIMD_NAME(pre_nod),
	.pre_full4 = SIMD_NAME(pre_full4),
	.groups = SIMD_NAME(groups),
	.threshold = SIMD_NAME(threshold),
	.sync = SIMD_NAME(sync),
	.acc = SIMD_NAME(acc),
	.scale_rows = SIMD_NAME(scale),
};
