/* SPDX-License-Identifier: MIT */
/* --to nwb in a build without HDF5 (libhdf5-dev was not found). */
#include "tools/export/export.h"

const bool exp_nwb_built = false;

int exp_nwb(struct exp_rec *x, const char *out, bool force)
{
	(void)x;
	(void)out;
	(void)force;
	fprintf(stderr, "mead-export: this build has no NWB export: it was built without HDF5 (libhdf5-dev)\n");
	return 2;
}
