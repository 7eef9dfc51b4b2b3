/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: the configuration loader with the daemon's real key table.
 *
 * Input: YAML text, optionally followed by a line "@@" and then one
 * command-line override ("a.b.c=value") per line.  '@' cannot start a YAML
 * token, so valid configurations never contain that separator line.
 *
 * The YAML part is handed over without a terminating NUL (exactly the bytes
 * given), as mead_cfg_load_file does.  When it loads, the overrides apply
 * on top; when it does not, they apply on top of the defaults (mead
 * --check -o ... without a file).  A configuration that loads is then built
 * into an electrode layout, printed key by key and as a whole, and the
 * printed whole must load again and print the same.
 *
 * Invariants checked besides memory safety: every failure names its cause
 * (err is non-empty and terminated), and printing is a fixed point.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/cfg/cfg.h"
#include "config/config.h"
#include "config/layout.h"
#include "tests/fuzz/fuzz_common.h"

#define SEPARATOR "\n@@\n"
#define MAX_OVERRIDES 32
#define FORMAT_MAX (256u << 10)

static void check_err(int rc, const char *err, size_t err_len, const char *what)
{
	FUZZ_CHECK(rc == 0 || rc == -EINVAL || rc == -ENOMEM, "%s returned %d", what, rc);
	if (rc == -EINVAL) {
		FUZZ_CHECK(memchr(err, '\0', err_len) != NULL, "%s: error text not terminated", what);
		FUZZ_CHECK(err[0] != '\0', "%s failed with -EINVAL and no message", what);
	}
}

/* Prints every key of tbl by its dotted path. */
static void format_keys(const struct mead_cfg_key *tbl, const char *prefix, const struct mead_config *cfg,
			char *buf, size_t len)
{
	for (const struct mead_cfg_key *k = tbl; k && k->path; k++) {
		char path[256];
		int n;

		snprintf(path, sizeof(path), "%s%s%s", prefix, prefix[0] ? "." : "", k->path);
		if (k->type == MEAD_CFG_TABLE) {
			format_keys(k->sub, path, cfg, buf, len);
			continue;
		}
		FUZZ_CHECK(mead_cfg_find(mead_config_keys, path, NULL) != NULL, "key %s not found", path);
		n = mead_cfg_format(mead_config_keys, cfg, path, buf, len);
		FUZZ_CHECK(n >= 0 || n == -ENOSPC, "format %s: %d", path, n);
		if (n >= 0)
			FUZZ_CHECK(strlen(buf) == (size_t)n, "format %s: length %d, text %zu", path, n, strlen(buf));
	}
}

/* Map entries of driver.options by name, as a status request would. */
static void format_map_entries(const struct mead_config *cfg, char *buf, size_t len)
{
	for (uint32_t i = 0; i < cfg->driver.options.n; i++) {
		char path[256];
		int n;

		FUZZ_CHECK(cfg->driver.options.key[i] && cfg->driver.options.value[i], "map entry %u empty", i);
		snprintf(path, sizeof(path), "driver.options.%s", cfg->driver.options.key[i]);
		if (strlen(cfg->driver.options.key[i]) > 200)
			continue;
		n = mead_cfg_format(mead_config_keys, cfg, path, buf, len);
		FUZZ_CHECK(n >= 0 || n == -ENOSPC || n == -ENOENT, "format %s: %d", path, n);
	}
}

static void use_config(const struct mead_config *cfg)
{
	/* Scratch space reused by every input (large heap blocks are slow
	 * under AddressSanitizer). */
	static struct mead_layout layout_buf;
	static char text[FORMAT_MAX], again[FORMAT_MAX];
	static struct mead_config back_buf;
	struct mead_layout *layout = &layout_buf;
	char err[MEAD_CFG_ERR_MAX];
	int rc, n, m;

	memset(err, 0, sizeof(err));
	rc = mead_layout_build(cfg, layout, err, sizeof(err));
	check_err(rc, err, sizeof(err), "mead_layout_build");
	if (rc == 0) {
		FUZZ_CHECK(layout->view.count <= MEAD_LAYOUT_MAX_ELECTRODES, "layout of %u electrodes", layout->view.count);
		for (uint32_t i = 0; i < layout->view.count; i++)
			FUZZ_CHECK(memchr(layout->view.electrodes[i].label, '\0', sizeof(layout->view.electrodes[i].label)),
				   "electrode %u label not terminated", i);
	}

	format_keys(mead_config_keys, "", cfg, text, 48);
	format_map_entries(cfg, text, FORMAT_MAX);

	/* The whole configuration, printed, loads back to the same print. */
	n = mead_cfg_format(mead_config_keys, cfg, "", text, FORMAT_MAX);
	FUZZ_CHECK(n >= 0 || n == -ENOSPC, "format of the whole configuration: %d", n);
	if (n > 0) {
		struct mead_config *back = &back_buf;

		memset(back, 0, sizeof(*back));
		rc = mead_cfg_load_string(mead_config_keys, back, "<printed>", text, (size_t)n, err, sizeof(err));
		FUZZ_CHECK(rc == 0, "the printed configuration does not load: %s\n--- printed:\n%s", err, text);
		m = mead_cfg_format(mead_config_keys, back, "", again, FORMAT_MAX);
		FUZZ_CHECK(m == n && memcmp(text, again, (size_t)n) == 0,
			   "printing is not a fixed point\n--- first:\n%s\n--- reloaded:\n%s", text, again);
		mead_cfg_release(mead_config_keys, back);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *text = (const char *)data;
	const char *sep = memmem(data, size, SEPARATOR, strlen(SEPARATOR));
	size_t yaml_len = sep ? (size_t)(sep - text) : size;
	struct mead_config *cfg = calloc(1, sizeof(*cfg));
	char err[MEAD_CFG_ERR_MAX];
	int rc;

	FUZZ_CHECK(cfg, "out of memory");
	memset(err, 0x55, sizeof(err));
	rc = mead_cfg_load_string(mead_config_keys, cfg, "fuzz.yaml", yaml_len ? text : NULL, yaml_len, err,
				  sizeof(err));
	check_err(rc, err, sizeof(err), "mead_cfg_load_string");
	if (rc < 0) {
		/* Overrides on top of the defaults, as without a file. */
		mead_cfg_release(mead_config_keys, cfg);
		memset(cfg, 0, sizeof(*cfg));
		rc = mead_cfg_defaults(mead_config_keys, cfg, err, sizeof(err));
		FUZZ_CHECK(rc == 0, "defaults do not apply: %s", err);
	}

	if (sep) {
		const char *p = sep + strlen(SEPARATOR), *end = text + size;
		unsigned count = 0;

		while (p < end && count++ < MAX_OVERRIDES && rc == 0) {
			const char *nl = memchr(p, '\n', (size_t)(end - p));
			size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
			char *line = malloc(len + 1);

			FUZZ_CHECK(line, "out of memory");
			memcpy(line, p, len);
			line[len] = '\0';
			memset(err, 0x55, sizeof(err));
			rc = mead_cfg_override(mead_config_keys, cfg, line, err, sizeof(err));
			check_err(rc, err, sizeof(err), "mead_cfg_override");
			free(line);
			p += len + 1;
		}
	}
	if (rc == 0)
		use_config(cfg);
	mead_cfg_release(mead_config_keys, cfg);
	free(cfg);
	return 0;
}
