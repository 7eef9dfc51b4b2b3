/* SPDX-License-Identifier: MIT */
#include "readout/rig.h"

#include <errno.h>
#include <string.h>

#include "lib/core/err.h"
#include "lib/core/json.h"

/* A recording's metadata may be as large as the format allows; a status
 * message is a few kilobytes. */
static const struct mead_json_limits rig_limits = { 16u << 20, 64, 1u << 20, 1u << 20 };

/* Depth-first in document order: the first member named key (the parser
 * bounds the depth). */
static const struct mead_json_value *find(const struct mead_json *doc, const struct mead_json_value *v,
					  const char *key)
{
	if (v->type != MEAD_JSON_OBJECT && v->type != MEAD_JSON_ARRAY)
		return NULL;
	for (const struct mead_json_value *m = mead_json_first(doc, v); m; m = mead_json_next(doc, m)) {
		if (v->type == MEAD_JSON_OBJECT && strcmp(m->key, key) == 0)
			return m;
		const struct mead_json_value *in = find(doc, m, key);
		if (in)
			return in;
	}
	return NULL;
}

static bool get_u32(const struct mead_json_value *v, uint32_t *ret)
{
	if (!v || v->type != MEAD_JSON_NUMBER || !v->is_int || v->i < 0 || v->i > UINT32_MAX)
		return false;
	*ret = (uint32_t)v->i;
	return true;
}

static void read_grid(const struct mead_json *doc, const struct mead_json_value *lay, struct mead_rig_info *ri)
{
	uint32_t rows, cols;
	if (!lay || lay->type != MEAD_JSON_OBJECT || !get_u32(mead_json_get(doc, lay, "rows"), &rows) ||
	    !get_u32(mead_json_get(doc, lay, "cols"), &cols) || rows == 0 || cols == 0 ||
	    (uint64_t)rows * cols > MEAD_TRIALS_MAX_ELECTRODES)
		return;
	ri->has_grid = true;
	ri->rows = rows;
	ri->cols = cols;
}

static void read_neurons(const struct mead_json *doc, const struct mead_json_value *a, struct mead_rig_info *ri)
{
	if (!a || a->type != MEAD_JSON_ARRAY || a->n == 0 || a->n > MEAD_TRIALS_MAX_ELECTRODES)
		return;
	uint32_t n = 0;
	for (const struct mead_json_value *e = mead_json_first(doc, a); e; e = mead_json_next(doc, e))
		if (!get_u32(e, &ri->neurons[n++])) {
			n = 0;
			break;
		}
	ri->n_neurons = n;
}

int mead_rig_info_parse(const char *json, size_t len, struct mead_rig_info *ret, char *err, size_t err_len)
{
	struct mead_json *doc;
	int r = mead_json_parse(json, len, &rig_limits, &doc, err, err_len);
	memset(ret, 0, sizeof(*ret));
	if (r < 0)
		return r;
	const struct mead_json_value *root = mead_json_root(doc);
	if (root->type != MEAD_JSON_OBJECT) {
		mead_set_err(err, err_len, "not a JSON object");
		mead_json_free(doc);
		return -EINVAL;
	}
	read_grid(doc, find(doc, root, "layout"), ret);
	read_neurons(doc, find(doc, root, "neurons_per_electrode"), ret);
	mead_json_free(doc);
	return 0;
}
