/* SPDX-License-Identifier: MIT */
/* mead-bench: benchmarks that print their figures (docs/BENCHMARKS.md). */
#include <stdio.h>
#include <string.h>

#include "bench/bench.h"

struct bench {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *what;
};

static const struct bench benches[] = {
	{ "loop", mead_bench_loop, "real-time loop wake-up latency and overruns, beside cyclictest" },
	{ "twin", mead_bench_twin, "digital twin speed: realtime factor of a preset" },
	{ "stream", mead_bench_stream, "spikes/s and raw samples/s through ring and publisher" },
	{ "closed-loop", mead_bench_closed_loop, "spike to stimulation through the daemon and a rig driver" },
	{ "soak", mead_bench_soak, "long run with subscribers and control traffic" },
};

int main(int argc, char **argv)
{
	if (argc >= 2) {
		for (size_t i = 0; i < sizeof(benches) / sizeof(benches[0]); i++)
			if (strcmp(argv[1], benches[i].name) == 0)
				return benches[i].run(argc - 1, argv + 1);
	}
	fprintf(argc >= 2 && strcmp(argv[1], "--help") && strcmp(argv[1], "-h") ? stderr : stdout,
		"usage: mead-bench BENCH [options]   (BENCH --help for its options)\n");
	for (size_t i = 0; i < sizeof(benches) / sizeof(benches[0]); i++)
		printf("  %-12s %s\n", benches[i].name, benches[i].what);
	return argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) ? 0 : 1;
}
