/* SPDX-License-Identifier: MIT */
/* The protocol: key table through the configuration loader: defaults are
 * the documented ones, the docs' snippets load, bad values are refused. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lib/cfg/cfg.h"
#include "protocol/protocol_config.h"

static void test_defaults(void **state)
{
	(void)state;
	struct mead_protocol_config c;
	char err[MEAD_CFG_ERR_MAX];
	memset(&c, 0, sizeof(c));
	int r = mead_cfg_defaults(mead_protocol_config_keys, &c, err, sizeof(err));
	if (r < 0)
		fprintf(stderr, "%s\n", err);
	assert_int_equal(r, 0);
	assert_string_equal(c.autostart, "");
	assert_true(c.seed == 1);
	const struct mead_protocol_mnist_config *m = &c.mnist;
	assert_string_equal(m->train_images, "mnist/mnist8k-images-idx3-ubyte.gz");
	assert_string_equal(m->test_labels, "mnist/mnist8k-labels-idx1-ubyte.gz");
	assert_int_equal(m->classes.n, 2);
	assert_int_equal(m->classes.v[0], 0);
	assert_int_equal(m->classes.v[1], 1);
	assert_int_equal(m->train_size, 0);
	assert_int_equal(m->presentation_ms, 100);
	assert_int_equal(m->rest_ms, 0);
	assert_true(m->label_train && !m->label_test);
	assert_true(m->learning_train && !m->learning_test);
	assert_true(m->reset_between_trials && m->sample_end);
	assert_int_equal(m->eval_every, 10);
	assert_int_equal(m->eval_screen, 100);
	assert_int_equal(m->train_epochs, 1);
	assert_int_equal(m->train_order, MEAD_PROTOCOL_ORDER_SHUFFLED);
	assert_int_equal(m->grid_rows, 6);
	assert_int_equal(m->grid_cols, 6);
	assert_int_equal(m->label_column, 9);
	assert_true(m->max_rate_hz == 200.0 && m->label_rate_hz == 200.0);
	assert_int_equal(m->encoder, MEAD_PROTOCOL_ENCODER_REFERENCE);
	assert_true(m->stim.amplitude_ua == -10.0);
	assert_int_equal(m->stim.phase_us, 200);
	assert_int_equal(m->stim.interphase_us, 50);
	assert_int_equal(c.random.electrodes, 8);
	assert_int_equal(c.random.encoder, MEAD_PROTOCOL_ENCODER_POISSON);
	assert_int_equal(c.ruaro.tetanus_trials, 40);
	assert_true(c.ruaro.tetanus_rate_hz == 250.0);
	mead_cfg_release(mead_protocol_config_keys, &c);
}

static const char snippet[] =
	"autostart: mnist\n"
	"seed: 7\n"
	"mnist:\n"
	"  classes: [3, 5, 8]\n"
	"  train_size: 500\n"
	"  test_size: 200\n"
	"  rest_ms: 20\n"
	"  encoder: poisson\n"
	"  label_test: false\n"
	"  stim:\n"
	"    amplitude_ua: -15\n"
	"    phase_us: 100\n"
	"random:\n"
	"  electrodes: 4\n"
	"  pool: [0, 1, 2, 10, 11]\n";

static void test_load(void **state)
{
	(void)state;
	struct mead_protocol_config c;
	char err[MEAD_CFG_ERR_MAX];
	memset(&c, 0, sizeof(c));
	int r = mead_cfg_load_string(mead_protocol_config_keys, &c, "snippet", snippet, strlen(snippet), err,
				     sizeof(err));
	if (r < 0)
		fprintf(stderr, "%s\n", err);
	assert_int_equal(r, 0);
	assert_string_equal(c.autostart, "mnist");
	assert_true(c.seed == 7);
	assert_int_equal(c.mnist.classes.n, 3);
	assert_int_equal(c.mnist.classes.v[2], 8);
	assert_int_equal(c.mnist.train_size, 500);
	assert_int_equal(c.mnist.rest_ms, 20);
	assert_int_equal(c.mnist.encoder, MEAD_PROTOCOL_ENCODER_POISSON);
	assert_true(c.mnist.stim.amplitude_ua == -15.0);
	assert_int_equal(c.mnist.stim.phase_us, 100);
	assert_int_equal(c.mnist.stim.interphase_us, 50);   /* default kept */
	assert_int_equal(c.random.pool.n, 5);
	assert_int_equal(c.random.pool.v[4], 11);
	assert_int_equal(mead_cfg_override(mead_protocol_config_keys, &c, "mnist.presentation_ms=250", err,
					   sizeof(err)), 0);
	assert_int_equal(c.mnist.presentation_ms, 250);
	mead_cfg_release(mead_protocol_config_keys, &c);
}

static void test_refused(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"mnist:\n  encoder: gaussian\n",
		"mnist:\n  presentation_ms: 0\n",
		"mnist:\n  max_rate_hz: 5000\n",
		"mnist:\n  stim:\n    phase_us: 0\n",
		"mnist:\n  nonsense: 1\n",
		"random:\n  pool: [300]\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct mead_protocol_config c;
		char err[MEAD_CFG_ERR_MAX] = "";
		memset(&c, 0, sizeof(c));
		int r = mead_cfg_load_string(mead_protocol_config_keys, &c, "bad", bad[i], strlen(bad[i]), err,
					     sizeof(err));
		assert_true(r < 0);
		assert_true(err[0] != '\0');
		mead_cfg_release(mead_protocol_config_keys, &c);
	}
}

/* Every ```yaml example of docs/protocols.md loads: its "protocol:" body,
 * dedented, is a document of the protocol table. */
static void test_docs_examples(void **state)
{
	(void)state;
	const char *root = getenv("MEAD_SOURCE_ROOT");
	char path[512];
	snprintf(path, sizeof(path), "%s/docs/protocols.md", root ? root : ".");
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	static char body[8192];
	char line[512];
	size_t len = 0;
	int in_block = 0, blocks = 0;
	while (fgets(line, sizeof(line), f)) {
		if (!in_block) {
			if (strncmp(line, "```yaml", 7) == 0) {
				in_block = 1;
				len = 0;
			}
			continue;
		}
		if (strncmp(line, "```", 3) == 0) {
			in_block = 0;
			struct mead_protocol_config c;
			char err[MEAD_CFG_ERR_MAX] = "";
			memset(&c, 0, sizeof(c));
			int r = mead_cfg_load_string(mead_protocol_config_keys, &c, "docs/protocols.md", body, len, err,
						     sizeof(err));
			if (r < 0)
				fprintf(stderr, "example %d: %s\n%s\n", blocks + 1, err, body);
			assert_int_equal(r, 0);
			assert_true(c.autostart && *c.autostart);
			mead_cfg_release(mead_protocol_config_keys, &c);
			blocks++;
			continue;
		}
		if (strcmp(line, "protocol:\n") == 0)
			continue;
		const char *l = strncmp(line, "  ", 2) == 0 ? line + 2 : line;
		size_t n = strlen(l);
		assert_true(len + n < sizeof(body));
		memcpy(body + len, l, n);
		len += n;
		body[len] = '\0';
	}
	fclose(f);
	assert_true(blocks >= 7);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_docs_examples),
		cmocka_unit_test(test_load),
		cmocka_unit_test(test_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
