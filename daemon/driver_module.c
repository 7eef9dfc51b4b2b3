/* SPDX-License-Identifier: MIT */
#include "daemon/driver_module.h"

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/core/parse.h"
#include "mead-build-config.h"

#define MAX_PARAMS 64

struct mead_driver_module {
	void *handle;
	const struct mead_driver_ops *ops;
	char path[PATH_MAX];
	struct mead_driver_param params[MAX_PARAMS];
	char *values[MAX_PARAMS];
	size_t n_params;
};

static bool valid_name(const char *name)
{
	if (!name || !*name || strlen(name) > 64)
		return false;
	for (const char *p = name; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_' || *p == '-'))
			return false;
	return true;
}

static int try_dir(const char *dir, const char *name, char *out, size_t out_len)
{
	if (!dir || !*dir)
		return -ENOENT;
	snprintf(out, out_len, "%s/mead-driver-%s.so", dir, name);
	if (access(out, R_OK) == 0)
		return 0;
	snprintf(out, out_len, "%s/%s/mead-driver-%s.so", dir, name, name);
	if (access(out, R_OK) == 0)
		return 0;
	return -ENOENT;
}

static int find_module(const char *name, const char *extra_dir, char *out, size_t out_len, char *err, size_t err_len)
{
	const char *env = getenv("MEAD_DRIVER_PATH");
	char looked[1024] = "";

	if (try_dir(extra_dir, name, out, out_len) == 0)
		return 0;
	if (extra_dir && *extra_dir)
		snprintf(looked + strlen(looked), sizeof(looked) - strlen(looked), "%s ", extra_dir);
	if (env) {
		char *copy = strdup(env), *save = NULL;
		if (!copy)
			return -ENOMEM;
		for (char *d = strtok_r(copy, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
			if (try_dir(d, name, out, out_len) == 0) {
				free(copy);
				return 0;
			}
			snprintf(looked + strlen(looked), sizeof(looked) - strlen(looked), "%s ", d);
		}
		free(copy);
	}
	if (try_dir(MEAD_DRIVERDIR, name, out, out_len) == 0)
		return 0;
	snprintf(looked + strlen(looked), sizeof(looked) - strlen(looked), "%s ", MEAD_DRIVERDIR);
	if (try_dir(MEAD_BUILD_ROOT "/drivers", name, out, out_len) == 0)
		return 0;
	snprintf(looked + strlen(looked), sizeof(looked) - strlen(looked), "%s", MEAD_BUILD_ROOT "/drivers");
	snprintf(err, err_len, "driver.name: no driver module \"%s\" (looked for mead-driver-%s.so in: %s)",
		 name, name, looked);
	return -ENOENT;
}

int mead_driver_param_check(const struct mead_param_spec *spec, const char *value, char *why, size_t why_len)
{
	char *end = NULL;

	switch (spec->type) {
	case MEAD_PARAM_INT: {
		errno = 0;
		long long v = strtoll(value, &end, 0);
		if (errno || end == value || *end) {
			snprintf(why, why_len, "expected an integer, found \"%s\"", value);
			return -EINVAL;
		}
		if (spec->min <= spec->max && ((double)v < spec->min || (double)v > spec->max)) {
			snprintf(why, why_len, "value %lld is out of range %g..%g", v, spec->min, spec->max);
			return -EINVAL;
		}
		return 0;
	}
	case MEAD_PARAM_DOUBLE: {
		errno = 0;
		double v = strtod(value, &end);
		if (errno || end == value || *end || !isfinite(v)) {
			snprintf(why, why_len, "expected a number, found \"%s\"", value);
			return -EINVAL;
		}
		if (spec->min <= spec->max && (v < spec->min || v > spec->max)) {
			snprintf(why, why_len, "value %g is out of range %g..%g", v, spec->min, spec->max);
			return -EINVAL;
		}
		return 0;
	}
	case MEAD_PARAM_BOOL: {
		bool b;
		if (mead_parse_bool(value, &b) == 0)
			return 0;
		snprintf(why, why_len, "expected true or false (or yes/no, on/off), found \"%s\"", value);
		return -EINVAL;
	}
	case MEAD_PARAM_STRING:
		return 0;
	}
	snprintf(why, why_len, "the driver declares an unknown option type %d", (int)spec->type);
	return -EINVAL;
}

static int bind_params(struct mead_driver_module *m, const struct mead_cfg_map *options, char *err, size_t err_len)
{
	const struct mead_param_spec *specs = m->ops->params;
	char why[256];

	/* Every given option must be known to the driver. */
	for (uint32_t i = 0; options && i < options->n; i++) {
		bool known = false;
		for (size_t j = 0; specs && specs[j].key; j++)
			known |= strcmp(specs[j].key, options->key[i]) == 0;
		if (!known) {
			char list[512] = "";
			for (size_t j = 0; specs && specs[j].key; j++)
				snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", j ? ", " : "", specs[j].key);
			snprintf(err, err_len, "%s:%u:%u: driver.options.%s: unknown option of driver \"%s\" (known: %s)",
				 options->mark[i].file ? options->mark[i].file : "<config>", options->mark[i].line,
				 options->mark[i].col, options->key[i], m->ops->name, list[0] ? list : "none");
			return -EINVAL;
		}
	}
	for (size_t j = 0; specs && specs[j].key; j++) {
		const char *value = specs[j].default_value;
		const struct mead_cfg_mark *mark = NULL;

		if (j >= MAX_PARAMS) {
			snprintf(err, err_len, "driver \"%s\" declares more than %d options", m->ops->name, MAX_PARAMS);
			return -ENOEXEC;
		}
		for (uint32_t i = 0; options && i < options->n; i++)
			if (strcmp(specs[j].key, options->key[i]) == 0) {
				value = options->value[i];
				mark = &options->mark[i];
			}
		if (!value) {
			snprintf(err, err_len, "driver.options.%s: required by driver \"%s\" (%s)", specs[j].key,
				 m->ops->name, specs[j].help ? specs[j].help : "no help");
			return -EINVAL;
		}
		if (mead_driver_param_check(&specs[j], value, why, sizeof(why)) < 0) {
			snprintf(err, err_len, "%s:%u:%u: driver.options.%s: %s (%s)",
				 mark && mark->file ? mark->file : "<driver default>", mark ? mark->line : 0,
				 mark ? mark->col : 0, specs[j].key, why, specs[j].help ? specs[j].help : "");
			return -EINVAL;
		}
		/* Drivers read booleans with mead_driver_param_bool(): one
		 * spelling reaches them whatever the file said. */
		if (specs[j].type == MEAD_PARAM_BOOL) {
			bool b = false;
			mead_parse_bool(value, &b);
			value = b ? "true" : "false";
		}
		m->values[j] = strdup(value);
		if (!m->values[j])
			return -ENOMEM;
		m->params[j].key = specs[j].key;
		m->params[j].value = m->values[j];
		m->n_params = j + 1;
	}
	return 0;
}

int mead_driver_module_load(const char *name, const char *extra_dir, const struct mead_cfg_map *options,
			    struct mead_driver_module **ret, char *err, size_t err_len)
{
	struct mead_driver_module *m;
	mead_driver_entry_fn entry;
	int r;

	if (!valid_name(name)) {
		snprintf(err, err_len, "driver.name: \"%s\" is not a driver name (letters, digits, - and _)", name ? name : "");
		return -EINVAL;
	}
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	r = find_module(name, extra_dir, m->path, sizeof(m->path), err, err_len);
	if (r < 0)
		goto fail;
	m->handle = dlopen(m->path, RTLD_NOW | RTLD_LOCAL);
	if (!m->handle) {
		snprintf(err, err_len, "driver.name: cannot load %s: %s", m->path, dlerror());
		r = -ENOEXEC;
		goto fail;
	}
	*(void **)&entry = dlsym(m->handle, MEAD_DRIVER_ENTRY_SYMBOL);
	if (!entry) {
		snprintf(err, err_len, "driver.name: %s exports no %s()", m->path, MEAD_DRIVER_ENTRY_SYMBOL);
		r = -ENOEXEC;
		goto fail;
	}
	m->ops = entry();
	if (!m->ops || m->ops->abi_version < MEAD_DRIVER_ABI_MIN || m->ops->abi_version > MEAD_DRIVER_ABI_VERSION) {
		snprintf(err, err_len, "driver.name: %s speaks driver ABI %u, this mead speaks %u to %u", m->path,
			 m->ops ? m->ops->abi_version : 0, MEAD_DRIVER_ABI_MIN, MEAD_DRIVER_ABI_VERSION);
		r = -ENOEXEC;
		goto fail;
	}
	if (m->ops->ops_size < offsetof(struct mead_driver_ops, describe) || !m->ops->open || !m->ops->read_frame ||
	    !m->ops->get_caps) {
		snprintf(err, err_len, "driver.name: %s lacks required operations", m->path);
		r = -ENOEXEC;
		goto fail;
	}
	r = bind_params(m, options, err, err_len);
	if (r < 0)
		goto fail;
	*ret = m;
	return 0;
fail:
	mead_driver_module_free(m);
	return r;
}

void mead_driver_module_free(struct mead_driver_module *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < MAX_PARAMS; i++)
		free(m->values[i]);
	if (m->handle)
		dlclose(m->handle);
	free(m);
}

const struct mead_driver_ops *mead_driver_module_ops(const struct mead_driver_module *m)
{
	return m->ops;
}

uint32_t mead_driver_module_abi(const struct mead_driver_module *m)
{
	return m->ops->abi_version;
}

const char *mead_driver_module_path(const struct mead_driver_module *m)
{
	return m->path;
}

const struct mead_driver_param *mead_driver_module_params(const struct mead_driver_module *m, size_t *ret_n)
{
	*ret_n = m->n_params;
	return m->params;
}
