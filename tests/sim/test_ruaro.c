/* SPDX-License-Identifier: MIT */
/* The Ruaro tetanisation experiment on a smaller culture (240 neurons,
 * 3 seeds): the tetanised pattern's response grows, clearly more than the
 * control pattern's. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "tools/bench.h"

static double field(const char *json, const char *pattern, const char *key)
{
	const char *p = strstr(json, pattern);
	assert_non_null(p);
	char k[64];
	snprintf(k, sizeof(k), "\"%s\":", key);
	p = strstr(p, k);
	assert_non_null(p);
	return strtod(p + strlen(k), NULL);
}

static void test_ruaro_small(void **state)
{
	(void)state;
	char *argv[] = { "ruaro", "--neurons", "240", "--seeds", "3", "--json", NULL };
	fflush(stdout);
	FILE *tmp = tmpfile();
	assert_non_null(tmp);
	int saved = dup(STDOUT_FILENO);
	dup2(fileno(tmp), STDOUT_FILENO);
	int r = mead_experiment_ruaro(6, argv);
	fflush(stdout);
	dup2(saved, STDOUT_FILENO);
	close(saved);
	assert_int_equal(r, 0);
	char json[1024] = "";
	rewind(tmp);
	size_t n = fread(json, 1, sizeof(json) - 1, tmp);
	json[n] = 0;
	fclose(tmp);
	print_message("%s", json);
	assert_non_null(strstr(json, "\"seeds\":3"));
	double rb = field(json, "\"regL\"", "before"), ra = field(json, "\"regL\"", "after");
	double ub = field(json, "\"upsL\"", "before"), ua = field(json, "\"upsL\"", "after");
	double rsd = field(json, "\"regL\"", "sd_after");
	assert_true(rb > 0 && ub > 0);
	/* the trained pattern grows beyond its spread over seeds */
	assert_true(ra > 1.2 * rb);
	assert_true(ra - rb > 3 * rsd);
	/* and the growth is specific: at least twice the control's */
	assert_true((ra / rb - 1) > 2 * (ua / ub - 1));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ruaro_small),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
