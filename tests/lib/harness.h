/* SPDX-License-Identifier: MIT */
/* Loading a driver module and driving it the way the loop does. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "mead/driver.h"

#define MAX_PARAMS 64

struct harness {
	void *so;
	const struct mead_driver_ops *ops;
	struct mead_electrode el[64];
	struct mead_layout_view layout;
	struct mead_driver_param params[MAX_PARAMS];
	char keys[MAX_PARAMS][32], values[MAX_PARAMS][1024];
	size_t n_params;
	struct mead_driver_config cfg;
	void *state;
	char err[512];
};

/* The 8x8 MCS grid without its corners: labels "12".."87" (column, row). */
void harness_layout60(struct harness *h);

const struct mead_driver_ops *harness_load(struct harness *h, const char *name);

/* Set an option (defaults of the param table are applied first by
 * harness_defaults, as the daemon does). */
void harness_set(struct harness *h, const char *key, const char *value);

void harness_defaults(struct harness *h, uint32_t period_us);

int harness_open(struct harness *h);

void harness_close(struct harness *h);

void harness_unload(struct harness *h);
