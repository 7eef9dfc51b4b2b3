/* SPDX-License-Identifier: MIT */
#include "tests/lib/harness.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void harness_layout60(struct harness *h)
{
	uint32_t n = 0;
	for (uint16_t c = 0; c < 8; c++)
		for (uint16_t r = 0; r < 8; r++) {
			if ((r == 0 || r == 7) && (c == 0 || c == 7))
				continue;
			struct mead_electrode *e = &h->el[n++];
			e->row = r;
			e->col = c;
			e->x_um = 200.0f * c;
			e->y_um = 200.0f * r;
			snprintf(e->label, sizeof(e->label), "%u%u", c + 1, r + 1);
			e->excluded = false;
		}
	h->layout = (struct mead_layout_view){ .rows = 8, .cols = 8, .count = n, .pitch_um = 200, .electrodes = h->el };
}

const struct mead_driver_ops *harness_load(struct harness *h, const char *name)
{
	const char *dir = getenv("MEAD_DRIVER_PATH");
	char path[1024];
	const char *fmt[] = { "%s/%s/mead-driver-%s.so", "%s/mead-driver-%s.so%s" };
	for (int i = 0; i < 2 && dir && !h->so; i++) {
		if (i == 0)
			snprintf(path, sizeof(path), fmt[0], dir, name, name);
		else
			snprintf(path, sizeof(path), fmt[1], dir, name, "");
		h->so = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	}
	if (!h->so)
		return NULL;
	mead_driver_entry_fn entry = (mead_driver_entry_fn)dlsym(h->so, MEAD_DRIVER_ENTRY_SYMBOL);
	h->ops = entry ? entry() : NULL;
	return h->ops;
}

void harness_set(struct harness *h, const char *key, const char *value)
{
	for (size_t i = 0; i < h->n_params; i++)
		if (strcmp(h->keys[i], key) == 0) {
			snprintf(h->values[i], sizeof(h->values[i]), "%s", value);
			return;
		}
	if (h->n_params >= MAX_PARAMS)
		abort();
	snprintf(h->keys[h->n_params], sizeof(h->keys[0]), "%s", key);
	snprintf(h->values[h->n_params], sizeof(h->values[0]), "%s", value);
	h->params[h->n_params].key = h->keys[h->n_params];
	h->params[h->n_params].value = h->values[h->n_params];
	h->n_params++;
}

void harness_defaults(struct harness *h, uint32_t period_us)
{
	for (const struct mead_param_spec *p = h->ops->params; p && p->key; p++)
		if (p->default_value)
			harness_set(h, p->key, p->default_value);
	h->cfg = (struct mead_driver_config){
		.abi_version = MEAD_DRIVER_ABI_VERSION,
		.period_us = period_us,
		.period_ns = period_us * 1000u,
		.seed = 1,
		.virtual_clock = true,
		.want_raw = false,
		.layout = &h->layout,
	};
}

int harness_open(struct harness *h)
{
	h->cfg.params = h->params;
	h->cfg.n_params = h->n_params;
	h->err[0] = '\0';
	return h->ops->open(&h->cfg, &h->state, h->err, sizeof(h->err));
}

void harness_close(struct harness *h)
{
	if (h->state && h->ops->close)
		h->ops->close(h->state);
	h->state = NULL;
}

void harness_unload(struct harness *h)
{
	harness_close(h);
	if (h->so)
		dlclose(h->so);
	h->so = NULL;
	h->ops = NULL;
}
