/* SPDX-License-Identifier: MIT */
#include "lib/core/parse.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mead/driver.h"

int mead_parse_bool(const char *text, bool *ret)
{
	static const char *const yes[] = { "true", "yes", "on" };
	static const char *const no[] = { "false", "no", "off" };

	if (!text)
		return -EINVAL;
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (!strcasecmp(text, yes[i])) {
			*ret = true;
			return 0;
		}
		if (!strcasecmp(text, no[i])) {
			*ret = false;
			return 0;
		}
	}
	return -EINVAL;
}

int mead_parse_threshold(const char *text, int *ret_mode, double *ret_value)
{
	char *end;

	if (!text)
		return -EINVAL;
	double v = strtod(text, &end);
	if (end == text || !isfinite(v))
		return -EINVAL;
	while (*end == ' ')
		end++;
	if (!strcasecmp(end, "x")) {
		if (v < MEAD_THRESHOLD_K_MIN || v > MEAD_THRESHOLD_K_MAX)
			return -EINVAL;
		*ret_mode = MEAD_THRESHOLD_NOISE;
	} else if (!strcasecmp(end, "uv") || !strcmp(end, "\u00b5V") || !strcmp(end, "\u03bcV")) {
		v = fabs(v);
		if (!(v > 0) || v > MEAD_THRESHOLD_UV_MAX)
			return -EINVAL;
		*ret_mode = MEAD_THRESHOLD_UV;
	} else {
		return -EINVAL;
	}
	*ret_value = v;
	return 0;
}
