/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "config/config.h"
#include "config/layout.h"

static struct mead_config cfg;
static struct mead_layout layout;
static char err[1024];

static int load(const char *yaml)
{
	mead_config_release(&cfg);
	memset(&cfg, 0, sizeof(cfg));
	int r = mead_cfg_load_string(mead_config_keys, &cfg, "test.yaml", yaml, strlen(yaml), err, sizeof(err));
	if (r < 0)
		return r;
	return mead_layout_build(&cfg, &layout, err, sizeof(err));
}

static void test_grid_6x10(void **state)
{
	assert_int_equal(load("layout: {preset: grid-6x10}\n"), 0);
	assert_int_equal(layout.view.count, 60);
	assert_int_equal(layout.view.rows, 6);
	assert_int_equal(layout.view.cols, 10);
	assert_true(layout.view.pitch_um == 500.0f);
	/* electrode e = row * 10 + col, as the twin numbers its cells */
	assert_int_equal(layout.electrodes[23].row, 2);
	assert_int_equal(layout.electrodes[23].col, 3);
	assert_true(layout.electrodes[23].x_um == 1500.0f);
	assert_true(layout.electrodes[23].y_um == 1000.0f);
	for (int i = 0; i < 60; i++)
		assert_false(layout.electrodes[i].excluded);
}

static void test_mcs_60mea200(void **state)
{
	assert_int_equal(load("layout:\n  preset: mcs-60mea200-30\n"), 0);
	assert_int_equal(layout.view.count, 60);
	assert_int_equal(layout.view.rows, 8);
	assert_int_equal(layout.view.cols, 8);
	assert_true(layout.view.pitch_um == 200.0f);
	/* labels run 12..87, column digit first, corners absent */
	assert_string_equal(layout.electrodes[0].label, "12");
	assert_string_equal(layout.electrodes[59].label, "87");
	assert_int_equal(mead_layout_find_label(&layout.view, "11"), -ENOENT);
	assert_int_equal(mead_layout_find_label(&layout.view, "18"), -ENOENT);
	assert_int_equal(mead_layout_find_label(&layout.view, "81"), -ENOENT);
	assert_int_equal(mead_layout_find_label(&layout.view, "88"), -ENOENT);
	int i21 = mead_layout_find_label(&layout.view, "21");
	assert_int_equal(i21, 6);   /* after 12..17 */
	assert_int_equal(layout.electrodes[i21].col, 1);
	assert_int_equal(layout.electrodes[i21].row, 0);
	/* internal reference */
	int ref = mead_layout_find_label(&layout.view, "15");
	assert_true(ref >= 0);
	assert_true(layout.electrodes[ref].excluded);
	int excluded = 0;
	for (uint32_t i = 0; i < layout.view.count; i++)
		excluded += layout.electrodes[i].excluded;
	assert_int_equal(excluded, 1);
}

static void test_custom_with_labels_and_exclusions(void **state)
{
	assert_int_equal(load("layout:\n  preset: custom\n  rows: 2\n  cols: 3\n  pitch_um: 100\n"
			      "  absent: [0]\n  labels: [b, c, d, e, f]\n  excluded: [4]\n"), 0);
	assert_int_equal(layout.view.count, 5);
	assert_string_equal(layout.electrodes[0].label, "b");
	assert_int_equal(layout.electrodes[0].col, 1);
	assert_true(layout.electrodes[4].excluded);
	assert_int_equal(mead_layout_find_label(&layout.view, "e"), 3);
}

static void test_bad_layouts(void **state)
{
	assert_int_equal(load("layout:\n  excluded: [60]\n"), -EINVAL);
	assert_non_null(strstr(err, "layout.excluded"));
	assert_int_equal(load("layout:\n  preset: custom\n  rows: 2\n  cols: 2\n  labels: [a, b]\n"), -EINVAL);
	assert_non_null(strstr(err, "layout.labels"));
	assert_int_equal(load("layout:\n  preset: custom\n  rows: 2\n  cols: 2\n  labels: [a, b, a, c]\n"), -EINVAL);
	assert_non_null(strstr(err, "used twice"));
	assert_int_equal(load("layout:\n  preset: custom\n  rows: 2\n  cols: 2\n  absent: [4]\n"), -EINVAL);
	assert_non_null(strstr(err, "layout.absent"));
	assert_int_equal(load("layout:\n  preset: custom\n  rows: 64\n  cols: 64\n"), -EINVAL);
	assert_int_equal(load("layout:\n  preset: hexagonal\n"), -EINVAL);
	assert_non_null(strstr(err, "test.yaml:2:"));
}

static int teardown(void **state)
{
	mead_config_release(&cfg);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_grid_6x10),
		cmocka_unit_test(test_mcs_60mea200),
		cmocka_unit_test(test_custom_with_labels_and_exclusions),
		cmocka_unit_test(test_bad_layouts),
	};
	return cmocka_run_group_tests(tests, NULL, teardown);
}
