/* SPDX-License-Identifier: MIT */
/*
 * mead-experiment ruaro: the tetanisation experiment of Ruaro, Bonifazi &
 * Torre 2005 on the digital twin (docs/digital-twin.md, "The Ruaro
 * tetanisation experiment").
 *
 * Patterns: regL = left column + bottom row, upsL = top row + right column
 * (15 electrodes each).  Probe (400 ms, state reset first, plasticity off):
 * 50 ms silence, 10 ms of every pattern electrode firing every ms, 340 ms
 * silence.  Tetanus: 40 blocks of 400 ms of 250 Hz Poisson input on regL with
 * STDP on; each block is a presented sample, so synaptic scaling and a state
 * reset follow it as in training.  Response: each electrode cell's spikes
 * per neuron filtered with an exponential kernel (tau 20 ms), sampled in
 * 10 ms bins, summed over the 40 bins and averaged over the cells that hold
 * neurons.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mead_sim.h"
#include "tools/bench.h"

struct ruaro_opts {
	const char *config;
	uint32_t neurons;
	uint32_t seeds;
	uint64_t seed0;
	uint32_t blocks;
	double rate_hz;
	bool scaling;
	bool json;
};

static uint64_t rx_next(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static double rx_uniform(uint64_t *x) { return (double)(rx_next(x) >> 11) * 0x1.0p-53; }

static long rx_poisson_small(uint64_t *x, double lam)
{
	double l = exp(-lam), p = 1.0;
	long k = 0;
	do {
		k++;
		p *= rx_uniform(x);
	} while (p > l);
	return k - 1;
}

static void pattern(int which, bool *on, uint32_t rows, uint32_t cols)
{
	memset(on, 0, rows * cols * sizeof(bool));
	for (uint32_t r = 0; r < rows; r++)
		for (uint32_t c = 0; c < cols; c++) {
			if (which == 0 && (c == 0 || r == rows - 1))
				on[r * cols + c] = true; /* regL */
			if (which == 1 && (r == 0 || c == cols - 1))
				on[r * cols + c] = true; /* upsL */
		}
}

static double probe(struct mead_sim *sim, const bool *on)
{
	const uint32_t ne = mead_sim_electrodes(sim), steps = 400, bin = 10;
	const double decay = exp(-1.0 / 20.0);
	double trace[4096] = { 0 }, total = 0.0;
	bool was = mead_sim_learning(sim);
	mead_sim_set_learning(sim, false);
	mead_sim_reset_state(sim);
	for (uint32_t t = 0; t < steps; t++) {
		if (t >= 50 && t < 60)
			for (uint32_t e = 0; e < ne; e++)
				if (on[e])
					mead_sim_input(sim, e);
		const uint32_t *sp;
		uint32_t ns;
		mead_sim_step(sim, &sp, &ns);
		for (uint32_t e = 0; e < ne; e++)
			trace[e] *= decay;
		for (uint32_t q = 0; q < ns; q++) {
			uint32_t e = mead_sim_neuron_electrode(sim, sp[q]);
			trace[e] += 1.0 / mead_sim_electrode_neurons(sim, e);
		}
		if ((t + 1) % bin == 0)
			for (uint32_t e = 0; e < ne; e++)
				total += trace[e];
	}
	uint32_t cells = 0;
	for (uint32_t e = 0; e < ne; e++)
		cells += mead_sim_electrode_neurons(sim, e) > 0;
	mead_sim_reset_state(sim);
	mead_sim_set_learning(sim, was);
	return cells ? total / cells : 0.0;
}

static void tetanus(struct mead_sim *sim, const bool *on, const struct ruaro_opts *o, uint64_t seed)
{
	const uint32_t ne = mead_sim_electrodes(sim), block = 400;
	uint64_t rs = seed ^ 0x7e7a7e7a7e7aull;
	long next[4096];
	mead_sim_set_learning(sim, true);
	for (uint32_t b = 0; b < o->blocks; b++) {
		mead_sim_reset_state(sim);
		for (uint32_t e = 0; e < ne; e++) {
			long isi = rx_poisson_small(&rs, 1000.0 / o->rate_hz);
			next[e] = (isi ? isi : 1) - 1;
		}
		for (uint32_t t = 0; t < block; t++) {
			for (uint32_t e = 0; e < ne; e++) {
				if (!on[e] || next[e] != (long)t)
					continue;
				mead_sim_input(sim, e);
				long isi = rx_poisson_small(&rs, 1000.0 / o->rate_hz);
				next[e] += isi ? isi : 1;
			}
			const uint32_t *sp;
			uint32_t ns;
			mead_sim_step(sim, &sp, &ns);
		}
		if (o->scaling)
			mead_sim_normalise(sim);
	}
	mead_sim_set_learning(sim, false);
	mead_sim_reset_state(sim);
}

static void usage(FILE *f)
{
	fprintf(f, "usage: mead-experiment ruaro [--seeds N] [--neurons 240|10140] [--config bio|tsk] [--seed S]\n"
		   "                             [--blocks 40] [--rate 250] [--no-scaling] [--json]\n");
}

static double mean(const double *v, uint32_t n)
{
	double s = 0;
	for (uint32_t i = 0; i < n; i++)
		s += v[i];
	return n ? s / n : 0;
}

static double sd(const double *v, uint32_t n)
{
	if (n < 2)
		return 0;
	double m = mean(v, n), s = 0;
	for (uint32_t i = 0; i < n; i++)
		s += (v[i] - m) * (v[i] - m);
	return sqrt(s / (n - 1));
}

int mead_experiment_ruaro(int argc, char **argv)
{
	struct ruaro_opts o = { .config = "bio", .neurons = 10140, .seeds = 4, .blocks = 40, .rate_hz = 250,
				.scaling = true };
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "ruaro"))
			continue;
		if (!strcmp(a, "--json")) {
			o.json = true;
			continue;
		}
		if (!strcmp(a, "--no-scaling")) {
			o.scaling = false;
			continue;
		}
		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			usage(stdout);
			return 0;
		}
		if (!v) {
			usage(stderr);
			return 2;
		}
		if (!strcmp(a, "--seeds"))
			o.seeds = (uint32_t)strtoul(v, NULL, 10);
		else if (!strcmp(a, "--neurons"))
			o.neurons = (uint32_t)strtoul(v, NULL, 10);
		else if (!strcmp(a, "--config"))
			o.config = v;
		else if (!strcmp(a, "--seed"))
			o.seed0 = strtoull(v, NULL, 0);
		else if (!strcmp(a, "--blocks"))
			o.blocks = (uint32_t)strtoul(v, NULL, 10);
		else if (!strcmp(a, "--rate"))
			o.rate_hz = strtod(v, NULL);
		else {
			usage(stderr);
			return 2;
		}
		i++;
	}
	if (o.seeds < 1 || o.seeds > 1000 || o.neurons < 2 || !(o.rate_hz > 0 && o.rate_hz <= 1000)) {
		usage(stderr);
		return 2;
	}
	double *res = calloc(4 * (size_t)o.seeds, sizeof(double)); /* regL before, after, upsL before, after */
	if (!res)
		return 1;
	for (uint32_t s = 0; s < o.seeds; s++) {
		struct mead_sim_params p = { .neurons = o.neurons };
		if (mead_sim_params_preset(o.config, &p) < 0) {
			fprintf(stderr, "mead-experiment ruaro: unknown config '%s'\n", o.config);
			free(res);
			return 2;
		}
		p.seed = o.seed0 + s;
		struct mead_sim *sim;
		int r = mead_sim_new(&p, &sim);
		if (r < 0) {
			fprintf(stderr, "mead-experiment ruaro: %s\n", strerror(-r));
			free(res);
			return 1;
		}
		uint32_t rows = p.electrode_rows, cols = p.electrode_cols;
		bool reg[4096], ups[4096];
		pattern(0, reg, rows, cols);
		pattern(1, ups, rows, cols);
		res[4 * s + 0] = probe(sim, reg);
		res[4 * s + 2] = probe(sim, ups);
		tetanus(sim, reg, &o, p.seed);
		res[4 * s + 1] = probe(sim, reg);
		res[4 * s + 3] = probe(sim, ups);
		mead_sim_free(sim);
		if (!o.json)
			fprintf(stderr, "# seed %llu: regL %.3f -> %.3f, upsL %.3f -> %.3f\n",
				(unsigned long long)p.seed, res[4 * s], res[4 * s + 1], res[4 * s + 2], res[4 * s + 3]);
	}
	double v[4][1000];
	for (uint32_t s = 0; s < o.seeds; s++)
		for (int k = 0; k < 4; k++)
			v[k][s] = res[4 * s + k];
	if (o.json) {
		printf("{\"regL\":{\"before\":%.6g,\"after\":%.6g,\"sd_before\":%.6g,\"sd_after\":%.6g},"
		       "\"upsL\":{\"before\":%.6g,\"after\":%.6g,\"sd_before\":%.6g,\"sd_after\":%.6g},\"seeds\":%u}\n",
		       mean(v[0], o.seeds), mean(v[1], o.seeds), sd(v[0], o.seeds), sd(v[1], o.seeds),
		       mean(v[2], o.seeds), mean(v[3], o.seeds), sd(v[2], o.seeds), sd(v[3], o.seeds), o.seeds);
	} else {
		printf("ruaro %s-%u, %u seeds (mean +- sd over seeds)\n", o.config, o.neurons, o.seeds);
		printf("  regL (tetanised): before %.3f +- %.3f   after %.3f +- %.3f\n",
		       mean(v[0], o.seeds), sd(v[0], o.seeds), mean(v[1], o.seeds), sd(v[1], o.seeds));
		printf("  upsL (control):   before %.3f +- %.3f   after %.3f +- %.3f\n",
		       mean(v[2], o.seeds), sd(v[2], o.seeds), mean(v[3], o.seeds), sd(v[3], o.seeds));
	}
	fflush(stdout);
	free(res);
	return 0;
}
