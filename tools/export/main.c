/* SPDX-License-Identifier: MIT */
/*
 * mead-export REC --to npy|nwb|openephys [-o OUT] [--progress|--no-progress] [--force]
 *
 * Writes a recording in a format analysis tools read: NumPy arrays with a
 * JSON sidecar, an NWB 2.x file, or an Open Ephys binary recording folder
 * (docs/analysis.md).  Each export holds every record the file could give,
 * says what it could not (a torn tail, corrupt records, messages missing by
 * sequence number), and records the same account in JSON.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tools/export/export.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: mead-export REC --to npy|nwb|openephys [-o OUT] [--progress|--no-progress] [--force]\n"
		"  npy:       OUT/spikes.npy, stim.npy, events.npy (raw.npy + raw_sample.npy when the\n"
		"             recording has raw frames) and OUT/recording.json; OUT defaults to REC.export\n"
		"  nwb:       an NWB 2.6 file; OUT defaults to REC.nwb, an existing one is kept unless --force\n"
		"  openephys: an Open Ephys 0.6 binary recording folder (OUT/Record Node 101/experiment1/\n"
		"             recording1/structure.oebin ...); OUT defaults to REC.openephys and must not exist\n"
		"  progress lines go to stderr when it is a terminal, or always with --progress\n");
}

int main(int argc, char **argv)
{
	enum { OPT_PROGRESS = 256, OPT_NO_PROGRESS, OPT_FORCE };
	static const struct option opts[] = {
		{ "to", required_argument, NULL, 't' },
		{ "output", required_argument, NULL, 'o' },
		{ "progress", no_argument, NULL, OPT_PROGRESS },
		{ "no-progress", no_argument, NULL, OPT_NO_PROGRESS },
		{ "force", no_argument, NULL, OPT_FORCE },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *to = NULL, *out = NULL;
	char *out_alloc = NULL;
	int progress = -1, c, status;
	bool force = false;

	while ((c = getopt_long(argc, argv, "t:o:h", opts, NULL)) != -1) {
		switch (c) {
		case 't': to = optarg; break;
		case 'o': out = optarg; break;
		case OPT_PROGRESS: progress = 1; break;
		case OPT_NO_PROGRESS: progress = 0; break;
		case OPT_FORCE: force = true; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc - 1 || !to) {
		usage(stderr);
		return 2;
	}
	const char *suffix = NULL;
	if (strcmp(to, "npy") == 0)
		suffix = "export";
	else if (strcmp(to, "nwb") == 0)
		suffix = "nwb";
	else if (strcmp(to, "openephys") == 0)
		suffix = "openephys";
	if (!suffix) {
		fprintf(stderr, "mead-export: format \"%s\" is not supported (npy, nwb and openephys are)\n", to);
		return 2;
	}
	if (suffix[0] == 'n' && !exp_nwb_built) {
		fprintf(stderr, "mead-export: this build has no NWB export: it was built without HDF5 (libhdf5-dev)\n");
		return 2;
	}
	const char *path = argv[optind];
	if (!out) {
		if (asprintf(&out_alloc, "%s.%s", path, suffix) < 0)
			return 1;
		out = out_alloc;
	}
	if (progress < 0)
		progress = isatty(STDERR_FILENO);

	struct exp_rec x;
	if (exp_open(&x, path, progress) < 0) {
		exp_close(&x);
		free(out_alloc);
		return 1;
	}
	if (suffix[0] == 'e')
		status = exp_npy(&x, out);
	else if (suffix[0] == 'n')
		status = exp_nwb(&x, out, force);
	else
		status = exp_openephys(&x, out);
	exp_close(&x);
	free(out_alloc);
	return status;
}
