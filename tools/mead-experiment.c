/* SPDX-License-Identifier: MIT */
/* mead-experiment: the project's reference experiments, each ending with a
 * summary line (and --json). */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "tools/experiment.h"

struct experiment {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *what;
};

static const struct experiment experiments[] = {
	{ "mnist", mead_experiment_mnist, "MNIST digits on the culture: daemon + readout, train then test" },
	{ "sweep", mead_experiment_sweep, "the culture-design search: mnist over parameter ranges x seeds, here or on Slurm" },
	{ "ruaro", mead_experiment_ruaro, "Ruaro 2005 tetanisation on the digital twin" },
	{ NULL, NULL, NULL },
};

int main(int argc, char **argv)
{
	bool help = argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"));

	if (argc >= 2)
		for (size_t i = 0; experiments[i].name; i++)
			if (strcmp(argv[1], experiments[i].name) == 0)
				return experiments[i].run(argc - 1, argv + 1);
	fprintf(help ? stdout : stderr, "usage: mead-experiment EXPERIMENT [options]\n");
	for (size_t i = 0; experiments[i].name; i++)
		fprintf(help ? stdout : stderr, "  %-8s %s\n", experiments[i].name, experiments[i].what);
	return help ? 0 : 1;
}
