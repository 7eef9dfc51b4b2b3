/* SPDX-License-Identifier: MIT */
#include "lib/core/parse.h"

#include <errno.h>
#include <stddef.h>
#include <strings.h>

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
