/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "readout/rig.h"

static int parse(const char *js, struct mead_rig_info *ri, char *err, size_t err_len)
{
	return mead_rig_info_parse(js, strlen(js), ri, err, err_len);
}

static void test_status_message(void **state)
{
	(void)state;
	struct mead_rig_info ri;
	char err[256];
	/* as the daemon sends it: the layout at the top, the twin's neurons in
	 * its driver description */
	assert_int_equal(parse("{\"state\":\"running\",\"layout\":{\"rows\":6,\"cols\":10,\"count\":60,"
			       "\"labels\":[\"a\",\"b\"],\"excluded\":[]},"
			       "\"driver\":{\"preset\":\"bio-240\",\"neurons_per_electrode\":[2,0,7]}}",
			       &ri, err, sizeof(err)), 0);
	assert_true(ri.has_grid);
	assert_int_equal(ri.rows, 6);
	assert_int_equal(ri.cols, 10);
	assert_int_equal(ri.n_neurons, 3);
	assert_int_equal(ri.neurons[0], 2);
	assert_int_equal(ri.neurons[1], 0);
	assert_int_equal(ri.neurons[2], 7);

	/* the first of each in document order */
	assert_int_equal(parse("{\"driver\":{\"x\":[{\"layout\":{\"rows\":4,\"cols\":4}}]},"
			       "\"layout\":{\"rows\":6,\"cols\":10},\"neurons_per_electrode\":[1]}",
			       &ri, err, sizeof(err)), 0);
	assert_int_equal(ri.rows, 4);
	assert_int_equal(ri.cols, 4);
	assert_int_equal(ri.n_neurons, 1);

	/* the text need not be terminated */
	const char *js = "{\"layout\":{\"rows\":2,\"cols\":3}}garbage";
	assert_int_equal(mead_rig_info_parse(js, strlen(js) - 7, &ri, err, sizeof(err)), 0);
	assert_true(ri.has_grid);
	assert_int_equal(ri.rows * ri.cols, 6);
}

static void test_members_of_the_wrong_shape(void **state)
{
	(void)state;
	struct mead_rig_info ri;
	char err[256];
	static const char *const left_out[] = {
		"{\"layout\":null}",
		"{\"layout\":{\"rows\":0,\"cols\":10}}",
		"{\"layout\":{\"rows\":6}}",
		"{\"layout\":{\"rows\":6.5,\"cols\":10}}",
		"{\"layout\":{\"rows\":-6,\"cols\":10}}",
		"{\"layout\":{\"rows\":\"6\",\"cols\":10}}",
		"{\"layout\":{\"rows\":17,\"cols\":16}}",
		"{\"layout\":{\"rows\":65536,\"cols\":65536}}",
		/* rows and cols belong inside the layout */
		"{\"layout\":{},\"rows\":6,\"cols\":10}",
		"{\"neurons_per_electrode\":[]}",
		"{\"neurons_per_electrode\":[1,-1]}",
		"{\"neurons_per_electrode\":[1,2.5]}",
		"{\"neurons_per_electrode\":[1,4294967296]}",
		"{\"neurons_per_electrode\":3}",
	};
	for (size_t i = 0; i < sizeof(left_out) / sizeof(left_out[0]); i++) {
		assert_int_equal(parse(left_out[i], &ri, err, sizeof(err)), 0);
		assert_false(ri.has_grid);
		assert_int_equal(ri.n_neurons, 0);
	}
	char many[2048] = "{\"neurons_per_electrode\":[0";
	for (uint32_t i = 1; i <= MEAD_TRIALS_MAX_ELECTRODES; i++)
		strcat(many, ",1");
	strcat(many, "]}");
	assert_int_equal(parse(many, &ri, err, sizeof(err)), 0);
	assert_int_equal(ri.n_neurons, 0);
}

static void test_not_json(void **state)
{
	(void)state;
	struct mead_rig_info ri;
	char err[256];
	static const char *const bad[] = {
		"{\"layout\":{\"rows\":6,\"cols\":10}",
		"{\"layout\":{\"rows\":6,\"cols\":10}} {}",
		"{\"layout\":{\"rows\":06,\"cols\":10}}",
		"{\"a\":1,\"a\":2}",
		"",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = 0;
		assert_int_equal(parse(bad[i], &ri, err, sizeof(err)), -EINVAL);
		assert_non_null(strstr(err, "invalid JSON at byte"));
		assert_false(ri.has_grid);
	}
	err[0] = 0;
	assert_int_equal(parse("[{\"layout\":{\"rows\":6,\"cols\":10}}]", &ri, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "not a JSON object"));
	assert_false(ri.has_grid);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_status_message),
		cmocka_unit_test(test_members_of_the_wrong_shape),
		cmocka_unit_test(test_not_json),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
