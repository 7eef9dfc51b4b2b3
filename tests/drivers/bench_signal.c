/* SPDX-License-Identifier: MIT */
/*
 * Cost of the signal path per channel-sample: blanking against SALPA, with
 * no pulses, a pulse every 40 ms (subtraction about a third of the time)
 * and every 12 ms (nearly always subtracting); and blanking with spike
 * waveforms cut (1 ms before, 2 ms after each spike).  60 channels at 25 kHz in
 * 1 ms blocks, as a rig driver hands them over; the signal (noise, spikes,
 * the artifact of tests/drivers/sig_artifact.h) is made once and replayed.
 * Each case runs in five passes timed on the process's CPU clock and
 * reports the fastest, so that other load on the machine shows less.
 *
 *   bench-signal [--seconds S]     prints one line per case, ns per channel-sample
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/signal/signal.h"
#include "tests/drivers/sig_artifact.h"
#include "tests/lib/siggen.h"

#define C 60u
#define RATE 25000u
#define BLOCK 25u
#define LOOP (RATE * 6 / 5)   /* 1.2 s of signal, replayed: a multiple of both periods */

#define PASSES 5

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

struct bench_case {
	const char *name;
	enum mead_sig_artifact mode;
	uint32_t period;          /* samples between pulses; 0: none */
	bool waveforms;
};

static int run(const struct bench_case *bc, double seconds, double *ret_ns, double *ret_sub)
{
	uint64_t pulses[256];
	uint32_t np = 0;
	for (uint64_t t = bc->period; bc->period && t < LOOP; t += bc->period)
		pulses[np++] = t;
	struct siggen *g = siggen_new(C, RATE, 6.0f, 1);
	float *sig = malloc((size_t)LOOP * C * sizeof(float));
	if (!g || !sig)
		return -ENOMEM;
	siggen_plant_poisson(g, 10.0, 0, LOOP, 50, 80.0f);
	siggen_fill(g, sig, LOOP);
	struct sig_artifact art = {
		.channels = C, .rail_uv = 3000.0f, .pegged = 8, .pegged_extra = 3, .amp_uv = 1000.0f,
		.tau_fast = 50.0f, .tau_slow = 75.0f, .slow_frac = 0.15f, .pulses = pulses, .n_pulses = np,
	};
	sig_artifact_add(&art, sig, 0, LOOP);

	struct mead_sig_config cfg;
	mead_sig_config_defaults(&cfg, C, RATE);
	cfg.artifact = bc->mode;
	cfg.blank_us = bc->mode == MEAD_SIG_ARTIFACT_SALPA ? 400 : 2000;
	cfg.waveforms = bc->waveforms;
	const uint32_t wf_size = mead_waveform_size(RATE / 1000, RATE / 500);
	static uint8_t wf[1024 * (24 + 4 * (RATE / 1000 + 1 + RATE / 500))];
	struct mead_sig *s = mead_sig_new(&cfg);
	if (!s)
		return -errno;
	mead_sig_set_rail(s, UINT32_MAX, -3000.0f, 3000.0f);
	struct mead_spike spikes[1024];
	struct mead_event events[64];
	const uint64_t total = (uint64_t)(seconds * RATE / PASSES) / BLOCK * BLOCK;
	/* a second of warm-up (the noise estimate, the caches), then the passes */
	double best = 1e300, t0 = now_s();
	uint32_t next = 0;
	for (uint64_t first = 0; first < RATE + PASSES * total; first += BLOCK) {
		if (first >= RATE && (first - RATE) % total == 0) {
			double t = now_s();
			if (first > RATE && t - t0 < best)
				best = t - t0;
			t0 = t;
		}
		const uint64_t in_loop = first % LOOP;
		if (in_loop == 0)
			next = 0;
		while (next < np && pulses[next] < in_loop + 2 * BLOCK)
			mead_sig_blank_pulse(s, UINT32_MAX, first - in_loop + pulses[next++]);
		struct mead_frame f = { .spikes = spikes, .spike_capacity = 1024, .events = events, .event_capacity = 64,
					.waveforms = bc->waveforms ? wf : NULL, .waveform_size = wf_size,
					.waveform_capacity = 1024 };
		mead_sig_process(s, first, sig + (size_t)in_loop * C, BLOCK, &f);
	}
	if (now_s() - t0 < best)
		best = now_s() - t0;
	struct mead_sig_counts n;
	mead_sig_get_counts(s, &n);
	*ret_ns = best * 1e9 / ((double)total * C);
	*ret_sub = (double)(n.subtracted + n.blanked) / ((double)(RATE + PASSES * total) * C);
	mead_sig_free(s);
	siggen_free(g);
	free(sig);
	return 0;
}

int main(int argc, char **argv)
{
	double seconds = 10;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
			seconds = strtod(argv[++i], NULL);
		} else {
			fprintf(stderr, "usage: bench-signal [--seconds S]\n");
			return 2;
		}
	}
	if (!(seconds > 0)) {
		fprintf(stderr, "bench-signal: --seconds must be above 0\n");
		return 2;
	}
	const struct bench_case cases[] = {
		{ "blank, no pulses", MEAD_SIG_ARTIFACT_BLANK, 0 },
		{ "blank, pulse every 40 ms", MEAD_SIG_ARTIFACT_BLANK, 1000 },
		{ "salpa, no pulses", MEAD_SIG_ARTIFACT_SALPA, 0 },
		{ "salpa, pulse every 40 ms", MEAD_SIG_ARTIFACT_SALPA, 1000 },
		{ "salpa, pulse every 12 ms", MEAD_SIG_ARTIFACT_SALPA, 300 },
		{ "blank, waveforms", MEAD_SIG_ARTIFACT_BLANK, 0, true },
		{ "blank, 40 ms, waveforms", MEAD_SIG_ARTIFACT_BLANK, 1000, true },
		{ "salpa, 40 ms, waveforms", MEAD_SIG_ARTIFACT_SALPA, 1000, true },
	};
	printf("signal path, %u channels at %u Hz in %u-sample blocks, %.0f s per case, fastest of %d passes\n", C, RATE,
	       BLOCK, seconds, PASSES);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		double ns, frac;
		int r = run(&cases[i], seconds, &ns, &frac);
		if (r < 0) {
			fprintf(stderr, "bench-signal: %s: %s\n", cases[i].name, strerror(-r));
			return 1;
		}
		printf("  %-26s %6.2f ns per channel-sample (%4.1f%% of samples blanked or subtracted; "
		       "%.1f%% of one core at this rate)\n",
		       cases[i].name, ns, 100.0 * frac, ns * C * RATE * 1e-9 * 100.0);
	}
	return 0;
}
