/* SPDX-License-Identifier: MIT */
/* The twin against recorded runs of the reference implementation
 * (SpikingGrid on BindsNET 0.2.6) on the twin's own network: the same input
 * trains must give the same raster, spike for spike, with STDP on and off,
 * and the same learned weights.
 *
 * The fixtures in tests/sim/data come from tools/bindsnet_check.py
 * --write-fixture (the commands are in its docstring); they hold the
 * reference's results, not the twin's.  Format, gzip-compressed, all
 * little-endian:
 *
 *   header   8 bytes  "MEADREF1"
 *           16 bytes  preset name, NUL-padded
 *            u64      twin seed
 *            u32 x 4  samples S, steps T, electrodes E, neurons N
 *   S times  u8       learn flag (1 = STDP on for the sample)
 *            ceil(T*E/8) bytes  input spikes, T x E bits, step-major,
 *                     bit i = step i / E, electrode i % E, LSB first
 *            ceil(T*N/8) bytes  the reference's raster, T x N bits, alike
 *   then     3 x N f32  input, excitatory, inhibitory pathway: per
 *                     postsynaptic neuron the sum over presynaptic of w^2 of
 *                     the reference's final weights
 */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <zlib.h>

#include "sim/mead_sim.h"

#ifndef REF_DATA_DIR
#error "REF_DATA_DIR: the fixture directory, set by tests/sim/meson.build"
#endif

#define MAGIC "MEADREF1"
#define PATHWAYS 3
/* The reference keeps weights in float32 and sums in another order; per
 * weight the two agree to ~1e-7 of the largest. */
#define SUMSQ_RTOL 1e-5

struct fixture {
	char preset[17];
	uint64_t seed;
	uint32_t samples, steps, electrodes, neurons;
	size_t in_bytes, out_bytes;   /* per sample */
	uint8_t *learn;               /* [samples] */
	uint8_t *input;               /* [samples][in_bytes] */
	uint8_t *raster;              /* [samples][out_bytes] */
	float *sumsq;                 /* [PATHWAYS][neurons] */
};

struct mismatch {
	uint32_t sample, step, neuron;
	int ref, twin;                /* the neuron's spike (0/1) in each */
	uint32_t ref_count, twin_count;  /* spikes in that step */
};

static void fixture_free(struct fixture *fx)
{
	free(fx->learn);
	free(fx->input);
	free(fx->raster);
	free(fx->sumsq);
	memset(fx, 0, sizeof(*fx));
}

static bool read_exact(gzFile f, void *buf, size_t len)
{
	/* gzread takes an unsigned int; the fixtures are far smaller */
	if (len > INT32_MAX)
		return false;
	return gzread(f, buf, (unsigned)len) == (int)len;
}

static uint32_t le32(const uint8_t *b)
{
	return b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static bool load(const char *name, struct fixture *fx)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", REF_DATA_DIR, name);
	memset(fx, 0, sizeof(*fx));
	gzFile f = gzopen(path, "rb");
	if (!f) {
		print_error("%s: cannot open: %s\n", path, strerror(errno));
		return false;
	}
	const char *why = NULL;
	uint8_t h[8 + 16 + 8 + 16];
	if (!read_exact(f, h, sizeof(h))) {
		why = "truncated header";
		goto out;
	}
	if (memcmp(h, MAGIC, 8)) {
		why = "not a MEADREF1 fixture";
		goto out;
	}
	memcpy(fx->preset, h + 8, 16);
	fx->preset[16] = 0;
	fx->seed = le32(h + 24) | (uint64_t)le32(h + 28) << 32;
	fx->samples = le32(h + 32);
	fx->steps = le32(h + 36);
	fx->electrodes = le32(h + 40);
	fx->neurons = le32(h + 44);
	/* bounds keep a corrupt header from asking for gigabytes */
	if (!fx->samples || fx->samples > 100000 || !fx->steps || fx->steps > 100000 || !fx->electrodes ||
	    fx->electrodes > 4096 || !fx->neurons || fx->neurons > 100000) {
		why = "implausible shape in the header";
		goto out;
	}
	fx->in_bytes = ((size_t)fx->steps * fx->electrodes + 7) / 8;
	fx->out_bytes = ((size_t)fx->steps * fx->neurons + 7) / 8;
	fx->learn = malloc(fx->samples);
	fx->input = malloc(fx->samples * fx->in_bytes);
	fx->raster = malloc(fx->samples * fx->out_bytes);
	fx->sumsq = malloc(PATHWAYS * fx->neurons * sizeof(float));
	if (!fx->learn || !fx->input || !fx->raster || !fx->sumsq) {
		why = "out of memory";
		goto out;
	}
	for (uint32_t k = 0; k < fx->samples && !why; k++)
		if (!read_exact(f, fx->learn + k, 1) || !read_exact(f, fx->input + k * fx->in_bytes, fx->in_bytes) ||
		    !read_exact(f, fx->raster + k * fx->out_bytes, fx->out_bytes))
			why = "truncated sample";
		else if (fx->learn[k] > 1)
			why = "learn flag not 0 or 1";
	if (why)
		goto out;
	for (size_t i = 0; i < (size_t)PATHWAYS * fx->neurons; i++) {
		uint8_t b[4];
		if (!read_exact(f, b, 4)) {
			why = "truncated weight sums";
			goto out;
		}
		uint32_t v = le32(b);
		memcpy(&fx->sumsq[i], &v, 4);
	}
	/* reading past the end also checks the gzip trailer's CRC */
	uint8_t extra;
	if (gzread(f, &extra, 1) != 0)
		why = "data after the weight sums, or a corrupt stream";
out:
	gzclose(f);
	if (why) {
		print_error("%s: %s\n", path, why);
		fixture_free(fx);
		return false;
	}
	return true;
}

static int bit(const uint8_t *bits, size_t i)
{
	return bits[i >> 3] >> (i & 7) & 1;
}

/* One step of the twin (ascending spike indices) against the reference's
 * row; fills *m with the first differing neuron. */
static bool step_matches(const uint8_t *ref_bits, size_t row_start, uint32_t n, const uint32_t *spikes,
			 uint32_t nspikes, struct mismatch *m)
{
	uint32_t q = 0, ref_count = 0;
	bool found = false;
	for (uint32_t j = 0; j < n; j++) {
		int r = bit(ref_bits, row_start + j);
		int t = q < nspikes && spikes[q] == j;
		q += t;
		ref_count += r;
		if (r != t && !found) {
			found = true;
			m->neuron = j;
			m->ref = r;
			m->twin = t;
		}
	}
	if (found) {
		m->ref_count = ref_count;
		m->twin_count = nspikes;
	}
	return !found;
}

/* Runs the fixture's inputs through the twin as mead-twin-dump does and
 * compares every step.  Returns the number of mismatching steps, *first the
 * first of them; sumsq gets the twin's final per-post sums of w^2. */
static uint64_t replay(const struct fixture *fx, struct mismatch *first, double *sumsq)
{
	struct mead_sim_params p;
	assert_int_equal(mead_sim_params_preset(fx->preset, &p), 0);
	p.seed = fx->seed;
	struct mead_sim *s = NULL;
	assert_int_equal(mead_sim_new(&p, &s), 0);
	assert_int_equal(mead_sim_neurons(s), fx->neurons);
	assert_int_equal(mead_sim_electrodes(s), fx->electrodes);

	uint64_t bad = 0;
	for (uint32_t k = 0; k < fx->samples; k++) {
		const uint8_t *in = fx->input + k * fx->in_bytes;
		const uint8_t *ref = fx->raster + k * fx->out_bytes;
		mead_sim_set_learning(s, fx->learn[k]);
		for (uint32_t t = 0; t < fx->steps; t++) {
			for (uint32_t e = 0; e < fx->electrodes; e++)
				if (bit(in, (size_t)t * fx->electrodes + e))
					assert_int_equal(mead_sim_input(s, e), 0);
			const uint32_t *sp;
			uint32_t cnt;
			mead_sim_step(s, &sp, &cnt);
			struct mismatch m;
			if (!step_matches(ref, (size_t)t * fx->neurons, fx->neurons, sp, cnt, &m)) {
				if (!bad++) {
					*first = m;
					first->sample = k;
					first->step = t;
				}
			}
		}
		mead_sim_reset_state(s);
		mead_sim_normalise(s);
	}

	static const enum mead_sim_pathway pws[PATHWAYS] = { MEAD_SIM_INPUT, MEAD_SIM_EXC, MEAD_SIM_INH };
	for (int pw = 0; pw < PATHWAYS; pw++) {
		uint32_t npre = pws[pw] == MEAD_SIM_INPUT ? fx->electrodes : fx->neurons;
		for (uint32_t b = 0; b < fx->neurons; b++) {
			double acc = 0;
			for (uint32_t a = 0; a < npre; a++) {
				float w;
				int r = mead_sim_weight(s, pws[pw], a, b, &w);
				if (r == -ENOENT)
					continue;
				assert_int_equal(r, 0);
				acc += (double)w * w;
			}
			sumsq[(size_t)pw * fx->neurons + b] = acc;
		}
	}
	mead_sim_free(s);
	return bad;
}

/* Number of (pathway, post) sums beyond the tolerance; the first in *pw, *post. */
static uint32_t sumsq_mismatches(const struct fixture *fx, const double *twin, int *pw, uint32_t *post)
{
	uint32_t bad = 0;
	for (int p = 0; p < PATHWAYS; p++)
		for (uint32_t b = 0; b < fx->neurons; b++) {
			double r = fx->sumsq[(size_t)p * fx->neurons + b], t = twin[(size_t)p * fx->neurons + b];
			if (!(fabs(t - r) <= SUMSQ_RTOL * fabs(r)) && !bad++) {
				*pw = p;
				*post = b;
			}
		}
	return bad;
}

static void check_fixture(const char *name, const char *preset)
{
	struct fixture fx;
	assert_true(load(name, &fx));
	assert_string_equal(fx.preset, preset);
	double *sumsq = malloc(PATHWAYS * fx.neurons * sizeof(double));
	assert_non_null(sumsq);

	struct mismatch m = { 0 };
	uint64_t bad = replay(&fx, &m, sumsq);
	if (bad) {
		print_error("%s: %llu of %llu steps differ from the reference; first: sample %u (%s) step %u "
			    "neuron %u: reference %d, twin %d (spikes in the step: reference %u, twin %u)\n",
			    name, (unsigned long long)bad, (unsigned long long)fx.samples * fx.steps, m.sample,
			    fx.learn[m.sample] ? "learning" : "no learning", m.step, m.neuron, m.ref, m.twin,
			    m.ref_count, m.twin_count);
		fail();
	}

	int pw = 0;
	uint32_t post = 0;
	uint32_t wbad = sumsq_mismatches(&fx, sumsq, &pw, &post);
	if (wbad) {
		static const char *const names[PATHWAYS] = { "input", "excitatory", "inhibitory" };
		size_t i = (size_t)pw * fx.neurons + post;
		print_error("%s: %u per-post sums of w^2 beyond %g relative; first: %s pathway, neuron %u: "
			    "reference %.9g, twin %.9g\n",
			    name, wbad, SUMSQ_RTOL, names[pw], post, (double)fx.sumsq[i], sumsq[i]);
		fail();
	}
	free(sumsq);
	fixture_free(&fx);
}

static void test_bio_240(void **state)
{
	(void)state;
	check_fixture("bindsnet-bio-240-seed7.gz", "bio-240");
}

static void test_tsk_240(void **state)
{
	(void)state;
	check_fixture("bindsnet-tsk-240-seed7.gz", "tsk-240");
}

/* The comparison itself must be able to fail: one raster bit flipped in a
 * copy of the expectation (late, in a test sample, so the whole run before
 * it has to match), and one weight sum nudged just past the tolerance. */
static void test_comparison_catches_corruption(void **state)
{
	(void)state;
	struct fixture fx;
	assert_true(load("bindsnet-tsk-240-seed7.gz", &fx));
	double *sumsq = malloc(PATHWAYS * fx.neurons * sizeof(double));
	assert_non_null(sumsq);

	const uint32_t k = fx.samples - 1, t = fx.steps / 2, j = 17;
	const size_t i = (size_t)t * fx.neurons + j;
	uint8_t *copy = malloc(fx.samples * fx.out_bytes);
	assert_non_null(copy);
	memcpy(copy, fx.raster, fx.samples * fx.out_bytes);
	copy[k * fx.out_bytes + (i >> 3)] ^= (uint8_t)(1u << (i & 7));
	int was = bit(fx.raster + k * fx.out_bytes, i);
	uint8_t *orig = fx.raster;
	fx.raster = copy;

	struct mismatch m = { 0 };
	assert_int_equal(replay(&fx, &m, sumsq), 1);
	assert_int_equal(m.sample, k);
	assert_int_equal(m.step, t);
	assert_int_equal(m.neuron, j);
	assert_int_equal(m.ref, !was);
	assert_int_equal(m.twin, was);
	fx.raster = orig;
	free(copy);

	int pw = -1;
	uint32_t post = 0;
	assert_int_equal(sumsq_mismatches(&fx, sumsq, &pw, &post), 0);
	/* a post with inhibitory synapses: a zero sum would stay zero */
	uint32_t b = 0;
	while (b < fx.neurons && fx.sumsq[2 * (size_t)fx.neurons + b] == 0.0f)
		b++;
	assert_true(b < fx.neurons);
	fx.sumsq[2 * (size_t)fx.neurons + b] *= (float)(1 + 2 * SUMSQ_RTOL);
	assert_int_equal(sumsq_mismatches(&fx, sumsq, &pw, &post), 1);
	assert_int_equal(pw, 2);
	assert_int_equal(post, b);

	free(sumsq);
	fixture_free(&fx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bio_240),
		cmocka_unit_test(test_tsk_240),
		cmocka_unit_test(test_comparison_catches_corruption),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
