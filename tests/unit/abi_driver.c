/* SPDX-License-Identifier: MIT */
/*
 * A driver module as an older mead built it: it says ABI_OF (2, or 1 for
 * the refusal), refuses any other cfg.abi_version the way ABI-2 drivers
 * do, and writes only the caps fields and frame fields version 2 had.
 * One spike per tick on electrode 0.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "mead/driver.h"

static int old_open(const struct mead_driver_config *cfg, void **ret_state, char *err, size_t err_len)
{
	static int state;
	if (cfg->abi_version != ABI_OF) {
		snprintf(err, err_len, "abi%d: driver ABI %d, daemon %u", ABI_OF, ABI_OF, cfg->abi_version);
		return -EPROTO;
	}
	*ret_state = &state;
	return 0;
}

static int old_caps(void *state, struct mead_driver_caps *c)
{
	(void)state;
	c->electrode_count = 4;
	c->sample_rate_hz = 1000;
	c->flags = MEAD_CAP_SIMULATED;
	return 0;
}

static int old_read(void *state, uint64_t tick, struct mead_frame *f)
{
	(void)state;
	(void)tick;
	if (f->n_samples && f->n_spikes < f->spike_capacity)
		f->spikes[f->n_spikes++] = (struct mead_spike){ .sample = f->first_sample, .amplitude_uv = -50 };
	return 0;
}

static const struct mead_driver_ops old_ops = {
	.abi_version = ABI_OF,
	.ops_size = sizeof(struct mead_driver_ops),
	.name = ABI_NAME,
	.description = "a module of an older driver ABI (tests)",
	.open = old_open,
	.get_caps = old_caps,
	.read_frame = old_read,
};

MEAD_DRIVER_EXPORT(old_ops)
