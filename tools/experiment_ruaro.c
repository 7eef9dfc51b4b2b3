/* SPDX-License-Identifier: MIT */
/*
 * mead-experiment ruaro: the tetanisation experiment of Ruaro, Bonifazi &
 * Torre 2005 on the digital twin (digital-twin.md, "The Ruaro tetanisation
 * experiment"), with the protocol and the response measure of the reference
 * implementation's bioexp.py (SpikingGrid).
 *
 * Patterns: regL = left column + bottom row, upsL = top row + right column
 * (15 electrodes each).  Probe (400 ms, state reset first, plasticity off):
 * 50 ms silence, 10 ms of every pattern electrode firing every ms, 340 ms
 * silence; regL then upsL.  Tetanus: 40 trials of 400 ms of 250 Hz Poisson
 * input on regL with STDP on; each trial starts from a reset state and is
 * followed by synaptic scaling, as a presented sample is.
 *
 * Response: each neuron's spikes filtered with a causal exponential kernel
 * (tau 20 ms, weight 1 at lag 0), averaged over each 10 ms bin, averaged over
 * the neurons of each electrode cell (an empty cell counts as 0), averaged
 * over the cells of the chosen set; the figure is the mean of the bins of a
 * window starting at the burst, times the bin length.  The window is the
 * reference's (20 ms before the tetanus, 50 ms after: the wet-lab response
 * decay times) or one length for both.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/core/rng.h"
#include "sim/mead_sim.h"
#include "tools/experiment.h"

#define PROBE_MS  400u
#define DELAY_MS  50u
#define BURST_MS  10u
#define BIN_MS    10u
#define NBINS     (PROBE_MS / BIN_MS)
#define MAX_EL    4096u
#define MAX_SEEDS 1000u

enum cell_set { CELLS_ALL, CELLS_OWN, CELLS_REST };

struct ruaro_opts {
	const char *config;
	uint32_t neurons;
	uint32_t seeds;
	uint64_t seed0;
	uint32_t blocks;
	double rate_hz;
	bool scaling;
	uint32_t scaling_ms;   /* 0: at the end of each tetanus trial only */
	uint32_t win_before_ms, win_after_ms;
	bool win_ref;
	enum cell_set cells;
	bool json;
};

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

/* One probe; series[k] = bin k of the response, averaged over the cells of
 * the chosen set (pattern `on`). */
static void probe(struct mead_sim *sim, const bool *on, enum cell_set cells, double *series)
{
	const uint32_t ne = mead_sim_electrodes(sim);
	const double decay = exp(-1.0 / 20.0);
	double trace[MAX_EL] = { 0 }, acc[MAX_EL] = { 0 };
	bool use[MAX_EL];
	uint32_t nuse = 0;
	for (uint32_t e = 0; e < ne; e++) {
		use[e] = cells == CELLS_ALL || (cells == CELLS_OWN) == on[e];
		nuse += use[e];
	}
	bool was = mead_sim_learning(sim);
	mead_sim_set_learning(sim, false);
	mead_sim_reset_state(sim);
	for (uint32_t t = 0; t < PROBE_MS; t++) {
		if (t >= DELAY_MS && t < DELAY_MS + BURST_MS)
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
		for (uint32_t e = 0; e < ne; e++)
			acc[e] += trace[e];
		if ((t + 1) % BIN_MS == 0) {
			double sum = 0;
			for (uint32_t e = 0; e < ne; e++) {
				if (use[e])
					sum += acc[e] / BIN_MS;
				acc[e] = 0;
			}
			series[t / BIN_MS] = nuse ? sum / nuse : 0.0;
		}
	}
	mead_sim_reset_state(sim);
	mead_sim_set_learning(sim, was);
}

/* Mean of the bins of a window of `ms` from the burst onset, times the bin. */
static double windowed(const double *series, uint32_t ms)
{
	uint32_t b0 = DELAY_MS / BIN_MS, nb = ms / BIN_MS;
	if (nb < 1)
		nb = 1;
	if (b0 + nb > NBINS)
		nb = NBINS - b0;
	double s = 0;
	for (uint32_t k = b0; k < b0 + nb; k++)
		s += series[k];
	return s / nb * BIN_MS;
}

static void tetanus(struct mead_sim *sim, const bool *on, const struct ruaro_opts *o, uint64_t seed)
{
	const uint32_t ne = mead_sim_electrodes(sim), block = 400;
	uint64_t rs = seed ^ 0x7e7a7e7a7e7aull;
	long next[MAX_EL];
	mead_sim_set_learning(sim, true);
	for (uint32_t b = 0; b < o->blocks; b++) {
		mead_sim_reset_state(sim);
		for (uint32_t e = 0; e < ne; e++) {
			long isi = mead_splitmix64_poisson(&rs, 1000.0 / o->rate_hz);
			next[e] = (isi ? isi : 1) - 1;
		}
		for (uint32_t t = 0; t < block; t++) {
			for (uint32_t e = 0; e < ne; e++) {
				if (!on[e] || next[e] != (long)t)
					continue;
				mead_sim_input(sim, e);
				long isi = mead_splitmix64_poisson(&rs, 1000.0 / o->rate_hz);
				next[e] += isi ? isi : 1;
			}
			const uint32_t *sp;
			uint32_t ns;
			mead_sim_step(sim, &sp, &ns);
			if (o->scaling && o->scaling_ms && (t + 1) % o->scaling_ms == 0 && t + 1 < block)
				mead_sim_normalise(sim);
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
		   "                             [--blocks 40] [--rate 250] [--no-scaling] [--scaling-ms MS]\n"
		   "                             [--window ref|MS] [--cells all|own|rest] [--json]\n");
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

static void print_pair(const char *what, const double *b, const double *a, uint32_t n)
{
	double mb = mean(b, n), ma = mean(a, n);
	printf("  %-17s before %.3f +- %.3f   after %.3f +- %.3f   (%+.0f%%)\n", what, mb, sd(b, n), ma, sd(a, n),
	       mb > 0 ? 100.0 * (ma / mb - 1.0) : 0.0);
}

static int parse_window(const char *v, struct ruaro_opts *o)
{
	if (!strcmp(v, "ref")) {
		o->win_ref = true;
		o->win_before_ms = 20;
		o->win_after_ms = 50;
		return 0;
	}
	char *end;
	unsigned long ms = strtoul(v, &end, 10);
	if (*end || ms < BIN_MS || ms > PROBE_MS - DELAY_MS)
		return -1;
	o->win_ref = false;
	o->win_before_ms = o->win_after_ms = (uint32_t)ms;
	return 0;
}

int mead_experiment_ruaro(int argc, char **argv)
{
	struct ruaro_opts o = { .config = "bio", .neurons = 10140, .seeds = 4, .blocks = 40, .rate_hz = 250,
				.scaling = true, .win_ref = true, .win_before_ms = 20, .win_after_ms = 50,
				.cells = CELLS_ALL };
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
		else if (!strcmp(a, "--scaling-ms"))
			o.scaling_ms = (uint32_t)strtoul(v, NULL, 10);
		else if (!strcmp(a, "--window")) {
			if (parse_window(v, &o) < 0) {
				usage(stderr);
				return 2;
			}
		} else if (!strcmp(a, "--cells")) {
			if (!strcmp(v, "all"))
				o.cells = CELLS_ALL;
			else if (!strcmp(v, "own"))
				o.cells = CELLS_OWN;
			else if (!strcmp(v, "rest"))
				o.cells = CELLS_REST;
			else {
				usage(stderr);
				return 2;
			}
		} else {
			usage(stderr);
			return 2;
		}
		i++;
	}
	if (o.seeds < 1 || o.seeds > MAX_SEEDS || o.neurons < 2 || !(o.rate_hz > 0 && o.rate_hz <= 1000)) {
		usage(stderr);
		return 2;
	}
	/* series[s][k][bin], k: regL before, regL after, upsL before, upsL after */
	double (*series)[4][NBINS] = calloc(o.seeds, sizeof(*series));
	if (!series)
		return 1;
	for (uint32_t s = 0; s < o.seeds; s++) {
		struct mead_sim_params p = { .neurons = o.neurons };
		if (mead_sim_params_preset(o.config, &p) < 0) {
			fprintf(stderr, "mead-experiment ruaro: unknown config '%s'\n", o.config);
			free(series);
			return 2;
		}
		p.seed = o.seed0 + s;
		struct mead_sim *sim;
		int r = mead_sim_new(&p, &sim);
		if (r < 0) {
			fprintf(stderr, "mead-experiment ruaro: %s\n", strerror(-r));
			free(series);
			return 1;
		}
		uint32_t rows = p.electrode_rows, cols = p.electrode_cols;
		if ((uint64_t)rows * cols > MAX_EL) {
			mead_sim_free(sim);
			free(series);
			return 2;
		}
		bool reg[MAX_EL], ups[MAX_EL];
		pattern(0, reg, rows, cols);
		pattern(1, ups, rows, cols);
		probe(sim, reg, o.cells, series[s][0]);
		probe(sim, ups, o.cells, series[s][2]);
		tetanus(sim, reg, &o, p.seed);
		probe(sim, reg, o.cells, series[s][1]);
		probe(sim, ups, o.cells, series[s][3]);
		mead_sim_free(sim);
		if (!o.json)
			fprintf(stderr, "# seed %llu: regL %.3f -> %.3f, upsL %.3f -> %.3f\n",
				(unsigned long long)p.seed, windowed(series[s][0], o.win_before_ms),
				windowed(series[s][1], o.win_after_ms), windowed(series[s][2], o.win_before_ms),
				windowed(series[s][3], o.win_after_ms));
	}
	static double v[4][MAX_SEEDS];
	for (uint32_t s = 0; s < o.seeds; s++)
		for (int k = 0; k < 4; k++)
			v[k][s] = windowed(series[s][k], k % 2 ? o.win_after_ms : o.win_before_ms);
	if (o.json) {
		printf("{\"regL\":{\"before\":%.6g,\"after\":%.6g,\"sd_before\":%.6g,\"sd_after\":%.6g},"
		       "\"upsL\":{\"before\":%.6g,\"after\":%.6g,\"sd_before\":%.6g,\"sd_after\":%.6g},\"seeds\":%u}\n",
		       mean(v[0], o.seeds), mean(v[1], o.seeds), sd(v[0], o.seeds), sd(v[1], o.seeds),
		       mean(v[2], o.seeds), mean(v[3], o.seeds), sd(v[2], o.seeds), sd(v[3], o.seeds), o.seeds);
	} else {
		static const char *const cell_name[] = { "all cells", "the pattern's own cells",
							 "the cells outside the pattern" };
		printf("ruaro %s-%u, %u seeds (mean +- sd over seeds), response over %s\n", o.config, o.neurons,
		       o.seeds, cell_name[o.cells]);
		printf(" window %u ms before, %u ms after the burst onset%s:\n", o.win_before_ms, o.win_after_ms,
		       o.win_ref ? " (reference: the wet-lab decay times)" : "");
		print_pair("regL (tetanised):", v[0], v[1], o.seeds);
		print_pair("upsL (control):", v[2], v[3], o.seeds);
		static const uint32_t same[] = { 20, 50, 350 };
		for (size_t w = 0; w < sizeof(same) / sizeof(same[0]); w++) {
			double b[2][MAX_SEEDS], a[2][MAX_SEEDS];
			for (uint32_t s = 0; s < o.seeds; s++)
				for (int k = 0; k < 2; k++) {
					b[k][s] = windowed(series[s][2 * k], same[w]);
					a[k][s] = windowed(series[s][2 * k + 1], same[w]);
				}
			printf(" same window, %u ms before and after:\n", same[w]);
			print_pair("regL (tetanised):", b[0], a[0], o.seeds);
			print_pair("upsL (control):", b[1], a[1], o.seeds);
		}
		printf(" time course (bins of %u ms from the burst onset, mean over seeds):\n", BIN_MS);
		static const char *const name[] = { "regL before", "regL after", "upsL before", "upsL after" };
		for (int k = 0; k < 4; k++) {
			printf("  %-12s", name[k]);
			for (uint32_t bin = DELAY_MS / BIN_MS; bin < DELAY_MS / BIN_MS + 10; bin++) {
				double m = 0;
				for (uint32_t s = 0; s < o.seeds; s++)
					m += series[s][k][bin];
				printf(" %.3f", m / o.seeds);
			}
			printf("\n");
		}
	}
	fflush(stdout);
	free(series);
	return 0;
}
