/* SPDX-License-Identifier: MIT */
/*
 * mead-bench twin: the culture model timed the way bench/brian2_twin.py times
 * its Brian2 peer, with the same stimulation: the left 6x6 electrodes at a
 * fixed seeded random rate (uniform 0..200 Hz), label cells rows 0..2 of
 * column 9 at 200 Hz, spike trains from the reference's encoder (integer
 * Poisson inter-spike intervals, 0 bumped to 1) redrawn for every 100 ms
 * sample, weights re-normalised and state reset at every sample boundary.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "sim/mead_sim.h"
#include "bench/bench.h"
#include "lib/core/rng.h"
#include "lib/core/time.h"

/* A splitmix64 stream for the stimulus (the model has its own generator). */
struct stim_rng { uint64_t x; };

static double srng_uniform(struct stim_rng *g) { return mead_splitmix64_uniform(&g->x); }

/* Poisson variate: multiplication method for small means, PTRS
 * (Hörmann 1993) for large ones. */
static long poisson(struct stim_rng *g, double lam)
{
	if (lam < 10.0)
		return mead_splitmix64_poisson(&g->x, lam);
	double slam = sqrt(lam), loglam = log(lam);
	double b = 0.931 + 2.53 * slam, a = -0.059 + 0.02483 * b;
	double invalpha = 1.1239 + 1.1328 / (b - 3.4), vr = 0.9277 - 3.6224 / (b - 2.0);
	for (;;) {
		double u = srng_uniform(g) - 0.5, v = srng_uniform(g), us = 0.5 - fabs(u);
		long k = (long)floor((2.0 * a / us + b) * u + lam + 0.43);
		if (us >= 0.07 && v <= vr)
			return k;
		if (k < 0 || (us < 0.013 && v > us))
			continue;
		if (log(v) + log(invalpha) - log(a / (us * us) + b) <= -lam + (double)k * loglam - lgamma((double)k + 1.0))
			return k;
	}
}

static void usage(void)
{
	fprintf(stderr, "usage: mead-bench twin --preset bio-240|bio-10140|tsk-240|tsk-10140 --seconds S "
			"[--stdp on|off] [--seed N]\n");
}

int mead_bench_twin(int argc, char **argv)
{
	const char *preset = "bio-240";
	double seconds = 1.0;
	bool stdp = true;
	uint64_t seed = 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "twin"))
			continue;
		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			usage();
			return 0;
		}
		if (!val) {
			usage();
			return 2;
		}
		if (!strcmp(a, "--preset"))
			preset = val;
		else if (!strcmp(a, "--seconds"))
			seconds = strtod(val, NULL);
		else if (!strcmp(a, "--stdp") && (!strcmp(val, "on") || !strcmp(val, "off")))
			stdp = !strcmp(val, "on");
		else if (!strcmp(a, "--seed"))
			seed = strtoull(val, NULL, 0);
		else {
			usage();
			return 2;
		}
		i++;
	}
	if (!(seconds > 0) || seconds > 1e6) {
		usage();
		return 2;
	}
	struct mead_sim_params p = { .seed = seed };
	if (mead_sim_params_preset(preset, &p) < 0) {
		fprintf(stderr, "mead-bench twin: unknown preset '%s'\n", preset);
		return 2;
	}
	p.stdp = stdp;
	double t0 = mead_now_s();
	struct mead_sim *sim;
	int r = mead_sim_new(&p, &sim);
	if (r < 0) {
		fprintf(stderr, "mead-bench twin: %s\n", strerror(-r));
		return 1;
	}
	double t_setup = mead_now_s() - t0;
	uint32_t ne = mead_sim_electrodes(sim);
	const uint32_t cols = p.electrode_cols, sample_ms = 100;
	struct stim_rng g = { seed ^ 0x5eed5eed5eedull };
	double *rates = calloc(ne, sizeof(double));
	uint8_t *train = calloc((size_t)ne * sample_ms, 1);
	if (!rates || !train) {
		mead_sim_free(sim);
		free(rates);
		free(train);
		return 1;
	}
	for (uint32_t row = 0; row < 6 && row < p.electrode_rows; row++)
		for (uint32_t c = 0; c < 6 && c < cols; c++)
			rates[row * cols + c] = 200.0 * srng_uniform(&g);
	for (uint32_t row = 0; row < 3 && row < p.electrode_rows && cols >= 10; row++)
		rates[row * cols + 9] = 200.0;

	uint64_t steps = (uint64_t)llround(seconds * 1000.0 / p.dt_ms), spikes = 0, in_spikes = 0;
	double wall = 0.0;
	for (uint64_t t = 0; t < steps; t++) {
		uint32_t ts = (uint32_t)(t % sample_ms);
		if (ts == 0) {
			/* stimulus drawn outside the timed region, as Brian2 precomputes it */
			memset(train, 0, (size_t)ne * sample_ms);
			for (uint32_t e = 0; e < ne; e++) {
				if (rates[e] <= 0)
					continue;
				long tt = 0;
				for (;;) {
					long isi = poisson(&g, 1000.0 / rates[e]);
					tt += isi ? isi : 1;
					if (tt > (long)sample_ms)
						break;
					train[(size_t)(tt - 1) * ne + e] = 1;
				}
			}
		}
		double a = mead_now_s();
		if (ts == 0) {
			mead_sim_normalise(sim);
			mead_sim_reset_state(sim);
		}
		for (uint32_t e = 0; e < ne; e++)
			if (train[(size_t)ts * ne + e]) {
				mead_sim_input(sim, e);
				in_spikes++;
			}
		const uint32_t *sp;
		uint32_t ns;
		mead_sim_step(sim, &sp, &ns);
		spikes += ns;
		wall += mead_now_s() - a;
	}
	double bio = (double)steps * p.dt_ms / 1000.0;
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	uint64_t n = mead_sim_neurons(sim);
	fprintf(stderr, "# synapses: input %llu (%.3f of 60 x N), exc %llu (%.3f of N(N-1)), inh %llu (%.4f)\n",
		(unsigned long long)mead_sim_pathway_synapses(sim, MEAD_SIM_INPUT),
		(double)mead_sim_pathway_synapses(sim, MEAD_SIM_INPUT) / (double)(ne * n),
		(unsigned long long)mead_sim_pathway_synapses(sim, MEAD_SIM_EXC),
		(double)mead_sim_pathway_synapses(sim, MEAD_SIM_EXC) / (double)(n * (n - 1)),
		(unsigned long long)mead_sim_pathway_synapses(sim, MEAD_SIM_INH),
		(double)mead_sim_pathway_synapses(sim, MEAD_SIM_INH) / (double)(n * (n - 1)));
	fprintf(stderr, "# setup %.2fs; mean rate %.1f Hz per neuron; electrode spikes %llu; peak RSS %.1f MiB\n",
		t_setup, (double)spikes / (double)n / bio, (unsigned long long)in_spikes, ru.ru_maxrss / 1024.0);
	printf("neurons=%u synapses=%llu bio_seconds=%g wall_seconds=%.3f realtime_factor=%.4f spikes=%llu\n",
	       mead_sim_neurons(sim), (unsigned long long)mead_sim_synapses(sim), bio, wall, bio / wall,
	       (unsigned long long)spikes);
	fflush(stdout);
	mead_sim_free(sim);
	free(rates);
	free(train);
	return 0;
}
