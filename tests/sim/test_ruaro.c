/* SPDX-License-Identifier: MIT */
/* The Ruaro tetanisation experiment on a smaller culture (240 neurons,
 * 3 seeds), with the reference's response windows (20 ms before, 50 ms
 * after: the tetanised pattern grows, the control does not), with one window
 * for both (both grow, the tetanised one several times more), and without
 * synaptic scaling (no specificity at all). */
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "tools/experiment.h"

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

struct outcome {
	double rb, ra, ub, ua, rsd;
};

static struct outcome run(const char *window, bool scaling)
{
	char *argv[] = { "ruaro", "--neurons", "240", "--seeds", "3", "--window", (char *)window, "--json",
			 scaling ? NULL : "--no-scaling", NULL };
	int argc = scaling ? 8 : 9;
	fflush(stdout);
	FILE *tmp = tmpfile();
	assert_non_null(tmp);
	int saved = dup(STDOUT_FILENO);
	dup2(fileno(tmp), STDOUT_FILENO);
	int r = mead_experiment_ruaro(argc, argv);
	fflush(stdout);
	dup2(saved, STDOUT_FILENO);
	close(saved);
	assert_int_equal(r, 0);
	char json[1024] = "";
	rewind(tmp);
	size_t n = fread(json, 1, sizeof(json) - 1, tmp);
	json[n] = 0;
	fclose(tmp);
	print_message("window %s%s: %s", window, scaling ? "" : ", no scaling", json);
	assert_non_null(strstr(json, "\"seeds\":3"));
	struct outcome o = {
		.rb = field(json, "\"regL\"", "before"), .ra = field(json, "\"regL\"", "after"),
		.ub = field(json, "\"upsL\"", "before"), .ua = field(json, "\"upsL\"", "after"),
		.rsd = field(json, "\"regL\"", "sd_after"),
	};
	assert_true(o.rb > 0 && o.ub > 0);
	return o;
}

/* The reference's measure (default): regL grows beyond its spread over
 * seeds, upsL does not grow (5% tolerance). */
static void test_ruaro_reference_window(void **state)
{
	(void)state;
	struct outcome o = run("ref", true);
	assert_true(o.ra > 1.2 * o.rb);
	assert_true(o.ra - o.rb > 3 * o.rsd);
	assert_true(o.ua < 1.05 * o.ub);
}

/* One 20 ms window before and after: the control grows too, but the
 * tetanised pattern's growth is at least three times the control's. */
static void test_ruaro_same_window(void **state)
{
	(void)state;
	struct outcome o = run("20", true);
	assert_true(o.ra > 1.5 * o.rb);
	assert_true(o.ra - o.rb > 3 * o.rsd);
	assert_true(o.ra / o.rb - 1 > 3 * (o.ua / o.ub - 1));
}

/* Without synaptic scaling both patterns end at the same response: the
 * specificity comes from the scaling. */
static void test_ruaro_no_scaling(void **state)
{
	(void)state;
	struct outcome o = run("ref", false);
	assert_true(o.ra > 1.2 * o.rb);
	assert_true(o.ua > 1.2 * o.ub);
	assert_true(o.ua > 0.95 * o.ra);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ruaro_reference_window),
		cmocka_unit_test(test_ruaro_same_window),
		cmocka_unit_test(test_ruaro_no_scaling),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
