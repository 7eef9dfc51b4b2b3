/* SPDX-License-Identifier: MIT */
/*
 * lib/cfg/cfg.c against a schema that uses every key type: defaults, a full
 * file, every error path with its exact location and key, overrides,
 * formatting, lookup and release after partial loads.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "lib/cfg/cfg.h"

enum { MODE_REALTIME, MODE_VIRTUAL };

static const char *const modes[] = { "realtime", "virtual", NULL };

struct t_deep {
	int64_t level;
	char *label;
};

struct t_driver {
	char *name;
	struct mead_cfg_map options;
	double max_ua;
	struct t_deep deep;
};

struct t_cfg {
	bool enabled;
	int64_t offset;
	uint32_t count;
	uint64_t big;
	double gain;
	char *name;
	char *note;
	int mode;
	struct {
		uint32_t period_us;
		int clock;
		int64_t priority;
	} loop;
	struct mead_cfg_uint_list channels;
	struct mead_cfg_double_list weights;
	struct mead_cfg_string_list tags;
	struct t_driver driver;
};

#define KEY(p, t, st, field, lo, hi, def) \
	{ .path = p, .type = t, .offset = offsetof(st, field), .min = lo, .max = hi, \
	  .default_value = def, .help = "test key " p }

static const struct mead_cfg_key deep_keys[] = {
	KEY("level", MEAD_CFG_INT, struct t_deep, level, 0, 9, "3"),
	KEY("label", MEAD_CFG_STRING, struct t_deep, label, 1, 0, NULL),
	{ NULL },
};

static const struct mead_cfg_key driver_keys[] = {
	KEY("name", MEAD_CFG_STRING, struct t_driver, name, 1, 0, "sim"),
	KEY("options", MEAD_CFG_MAP, struct t_driver, options, 1, 0, "{preset: default}"),
	KEY("limits.max_ua", MEAD_CFG_DOUBLE, struct t_driver, max_ua, 0, 500, "100"),
	{ .path = "deep", .type = MEAD_CFG_TABLE, .offset = offsetof(struct t_driver, deep),
	  .min = 1, .max = 0, .help = "nested table", .sub = deep_keys },
	{ NULL },
};

static const struct mead_cfg_key keys[] = {
	KEY("enabled", MEAD_CFG_BOOL, struct t_cfg, enabled, 1, 0, "true"),
	KEY("offset", MEAD_CFG_INT, struct t_cfg, offset, -100, 100, "-5"),
	KEY("count", MEAD_CFG_UINT, struct t_cfg, count, 1, 0, "7"),
	KEY("big", MEAD_CFG_U64, struct t_cfg, big, 1, 0, "0x10"),
	KEY("gain", MEAD_CFG_DOUBLE, struct t_cfg, gain, 0.5, 2, "1.5"),
	KEY("name", MEAD_CFG_STRING, struct t_cfg, name, 1, 0, "unnamed"),
	KEY("note", MEAD_CFG_STRING, struct t_cfg, note, 1, 0, NULL),
	{ .path = "mode", .type = MEAD_CFG_ENUM, .offset = offsetof(struct t_cfg, mode),
	  .min = 1, .max = 0, .choices = modes, .default_value = "virtual", .help = "mode" },
	KEY("loop.period_us", MEAD_CFG_UINT, struct t_cfg, loop.period_us, 10, 1000000, "1000"),
	{ .path = "loop.clock", .type = MEAD_CFG_ENUM, .offset = offsetof(struct t_cfg, loop.clock),
	  .min = 1, .max = 0, .choices = modes, .default_value = "realtime", .help = "clock" },
	KEY("loop.priority", MEAD_CFG_INT, struct t_cfg, loop.priority, 1, 0, NULL),
	KEY("channels", MEAD_CFG_UINT_LIST, struct t_cfg, channels, 0, 59, "[1, 2, 3]"),
	KEY("weights", MEAD_CFG_DOUBLE_LIST, struct t_cfg, weights, 0, 1, NULL),
	KEY("tags", MEAD_CFG_STRING_LIST, struct t_cfg, tags, 1, 0, "[a, b]"),
	{ .path = "driver", .type = MEAD_CFG_TABLE, .offset = offsetof(struct t_cfg, driver),
	  .min = 1, .max = 0, .help = "driver", .sub = driver_keys },
	{ NULL },
};

#define TOP_KEYS "enabled, offset, count, big, gain, name, note, mode, loop, channels, weights, tags, driver"

static int load(struct t_cfg *c, const char *yaml, char *err)
{
	memset(c, 0, sizeof(*c));
	return mead_cfg_load_string(keys, c, "t.yaml", yaml, strlen(yaml), err, MEAD_CFG_ERR_MAX);
}

static void expect_ok(struct t_cfg *c, const char *yaml)
{
	char err[MEAD_CFG_ERR_MAX] = "unset";
	int rc = load(c, yaml, err);

	if (rc)
		print_error("load of <<%s>> failed: %s\n", yaml, err);
	assert_int_equal(rc, 0);
	assert_string_equal(err, "");
}

static void expect_error(const char *yaml, const char *msg)
{
	char err[MEAD_CFG_ERR_MAX];
	struct t_cfg c;

	assert_int_equal(load(&c, yaml, err), -EINVAL);
	assert_string_equal(err, msg);
	mead_cfg_release(keys, &c);
}

static void expect_override_error(const char *assignment, const char *msg)
{
	char err[MEAD_CFG_ERR_MAX];
	struct t_cfg c;

	expect_ok(&c, "");
	assert_int_equal(mead_cfg_override(keys, &c, assignment, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, msg);
	mead_cfg_release(keys, &c);
}

static void check_defaults(const struct t_cfg *c)
{
	assert_true(c->enabled);
	assert_int_equal(c->offset, -5);
	assert_int_equal(c->count, 7);
	assert_int_equal(c->big, 16);
	assert_true(c->gain == 1.5);
	assert_string_equal(c->name, "unnamed");
	assert_non_null(c->note);
	assert_string_equal(c->note, "");
	assert_int_equal(c->mode, MODE_VIRTUAL);
	assert_int_equal(c->loop.period_us, 1000);
	assert_int_equal(c->loop.clock, MODE_REALTIME);
	assert_int_equal(c->loop.priority, 0);
	assert_int_equal(c->channels.n, 3);
	assert_int_equal(c->channels.v[0], 1);
	assert_int_equal(c->channels.v[2], 3);
	assert_int_equal(c->weights.n, 0);
	assert_int_equal(c->tags.n, 2);
	assert_string_equal(c->tags.v[0], "a");
	assert_string_equal(c->tags.v[1], "b");
	assert_string_equal(c->driver.name, "sim");
	assert_int_equal(c->driver.options.n, 1);
	assert_string_equal(c->driver.options.key[0], "preset");
	assert_string_equal(c->driver.options.value[0], "default");
	assert_string_equal(c->driver.options.mark[0].file, "<default>");
	assert_int_equal(c->driver.options.mark[0].line, 0);
	assert_int_equal(c->driver.options.mark[0].col, 0);
	assert_true(c->driver.max_ua == 100.0);
	assert_int_equal(c->driver.deep.level, 3);
	assert_string_equal(c->driver.deep.label, "");
}

/* ---- defaults ---- */

static void test_defaults(void **state)
{
	char err[MEAD_CFG_ERR_MAX] = "unset";
	struct t_cfg c;

	(void)state;
	memset(&c, 0, sizeof(c));
	assert_int_equal(mead_cfg_defaults(keys, &c, err, sizeof(err)), 0);
	assert_string_equal(err, "");
	check_defaults(&c);
	mead_cfg_release(keys, &c);
	assert_null(c.name);
	assert_null(c.driver.deep.label);
	assert_int_equal(c.tags.n, 0);
	assert_int_equal(c.driver.options.n, 0);
	/* A second release of the same object is harmless. */
	mead_cfg_release(keys, &c);
	mead_cfg_release(keys, NULL);
}

struct bad_inner {
	int64_t x;
};
struct bad_outer {
	char *s;
	struct bad_inner in;
};
static const struct mead_cfg_key bad_inner_keys[] = {
	KEY("x", MEAD_CFG_INT, struct bad_inner, x, 0, 10, "11"),
	{ NULL },
};
static const struct mead_cfg_key bad_outer_keys[] = {
	KEY("s", MEAD_CFG_STRING, struct bad_outer, s, 1, 0, "fine"),
	{ .path = "in", .type = MEAD_CFG_TABLE, .offset = offsetof(struct bad_outer, in),
	  .min = 1, .max = 0, .sub = bad_inner_keys },
	{ NULL },
};

static void test_bad_default(void **state)
{
	char err[MEAD_CFG_ERR_MAX];
	struct bad_outer o;

	(void)state;
	memset(&o, 0, sizeof(o));
	assert_int_equal(mead_cfg_defaults(bad_outer_keys, &o, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "<default>:1:1: in.x: value 11 is out of range 0..10");
	mead_cfg_release(bad_outer_keys, &o);

	memset(&o, 0, sizeof(o));
	assert_int_equal(mead_cfg_load_string(bad_outer_keys, &o, "o.yaml", "s: x\n", 5, err,
					      sizeof(err)), -EINVAL);
	assert_string_equal(err, "<default>:1:1: in.x: value 11 is out of range 0..10");
	mead_cfg_release(bad_outer_keys, &o);
}

static void test_empty_documents(void **state)
{
	static const char *const empty[] = { "", "\n", "# only a comment\n", "~\n", "---\n",
					     "---\n...\n", "loop:\ndriver: ~\n" };
	struct t_cfg c;

	(void)state;
	for (size_t i = 0; i < sizeof(empty) / sizeof(empty[0]); i++) {
		expect_ok(&c, empty[i]);
		check_defaults(&c);
		mead_cfg_release(keys, &c);
	}
	/* A NULL text of length 0 is an empty document too. */
	memset(&c, 0, sizeof(c));
	assert_int_equal(mead_cfg_load_string(keys, &c, "t.yaml", NULL, 0, NULL, 0), 0);
	check_defaults(&c);
	mead_cfg_release(keys, &c);
}

/* ---- a good file ---- */

static const char good_yaml[] =
	"# every type\n"
	"enabled: off\n"
	"offset: -0x10\n"
	"count: 4294967295\n"
	"big: 18446744073709551615\n"
	"gain: 1e0\n"
	"name: \"quoted: text\"\n"
	"note: ~\n"
	"mode: realtime\n"
	"loop:\n"
	"  period_us: 500\n"
	"  clock: virtual\n"
	"  priority: -9223372036854775808\n"
	"channels:\n"
	"  - 0\n"
	"  - 59\n"
	"weights: [0, 0.25, 1]\n"
	"tags: [x, 'y z', ~]\n"
	"driver:\n"
	"  name: cpp\n"
	"  options:\n"
	"    preset: bio-240\n"
	"    gain: 5\n"
	"    empty:\n"
	"  limits: {max_ua: 12.5}\n"
	"  deep:\n"
	"    level: 9\n"
	"    label: deepest\n";

static void check_good(const struct t_cfg *c, const char *file)
{
	assert_false(c->enabled);
	assert_int_equal(c->offset, -16);
	assert_int_equal(c->count, UINT32_MAX);
	assert_true(c->big == UINT64_MAX);
	assert_true(c->gain == 1.0);
	assert_string_equal(c->name, "quoted: text");
	assert_string_equal(c->note, "");
	assert_int_equal(c->mode, MODE_REALTIME);
	assert_int_equal(c->loop.period_us, 500);
	assert_int_equal(c->loop.clock, MODE_VIRTUAL);
	assert_true(c->loop.priority == INT64_MIN);
	assert_int_equal(c->channels.n, 2);
	assert_int_equal(c->channels.v[0], 0);
	assert_int_equal(c->channels.v[1], 59);
	assert_int_equal(c->weights.n, 3);
	assert_true(c->weights.v[1] == 0.25);
	assert_true(c->weights.v[2] == 1.0);
	assert_int_equal(c->tags.n, 3);
	assert_string_equal(c->tags.v[0], "x");
	assert_string_equal(c->tags.v[1], "y z");
	assert_string_equal(c->tags.v[2], "");
	assert_string_equal(c->driver.name, "cpp");
	/* The file's map replaces the default one. */
	assert_int_equal(c->driver.options.n, 3);
	assert_string_equal(c->driver.options.key[0], "preset");
	assert_string_equal(c->driver.options.value[0], "bio-240");
	assert_string_equal(c->driver.options.mark[0].file, file);
	assert_int_equal(c->driver.options.mark[0].line, 22);
	assert_int_equal(c->driver.options.mark[0].col, 13);
	assert_string_equal(c->driver.options.key[1], "gain");
	assert_string_equal(c->driver.options.value[1], "5");
	assert_int_equal(c->driver.options.mark[1].line, 23);
	assert_int_equal(c->driver.options.mark[1].col, 11);
	assert_string_equal(c->driver.options.key[2], "empty");
	assert_string_equal(c->driver.options.value[2], "");
	assert_true(c->driver.max_ua == 12.5);
	assert_int_equal(c->driver.deep.level, 9);
	assert_string_equal(c->driver.deep.label, "deepest");
}

static void test_good_string(void **state)
{
	struct t_cfg c;

	(void)state;
	expect_ok(&c, good_yaml);
	check_good(&c, "t.yaml");
	mead_cfg_release(keys, &c);
}

static void test_good_file(void **state)
{
	char path[] = "/tmp/test_cfg_XXXXXX";
	char err[MEAD_CFG_ERR_MAX] = "unset";
	struct t_cfg c;
	int fd;

	(void)state;
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, good_yaml, strlen(good_yaml)), (ssize_t)strlen(good_yaml));
	close(fd);
	memset(&c, 0, sizeof(c));
	assert_int_equal(mead_cfg_load_file(keys, &c, path, err, sizeof(err)), 0);
	assert_string_equal(err, "");
	check_good(&c, path);
	mead_cfg_release(keys, &c);

	/* A file larger than one read buffer. */
	fd = open(path, O_WRONLY | O_TRUNC);
	assert_true(fd >= 0);
	for (int i = 0; i < 2000; i++)
		assert_int_equal(write(fd, "# padding padding padding\n", 26), 26);
	assert_int_equal(write(fd, "count: 3\n", 9), 9);
	close(fd);
	memset(&c, 0, sizeof(c));
	assert_int_equal(mead_cfg_load_file(keys, &c, path, err, sizeof(err)), 0);
	assert_int_equal(c.count, 3);
	mead_cfg_release(keys, &c);

	fd = open(path, O_WRONLY | O_TRUNC);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "count: 1\ncount: x\n", 18), 18);
	close(fd);
	memset(&c, 0, sizeof(c));
	assert_int_equal(mead_cfg_load_file(keys, &c, path, err, sizeof(err)), -EINVAL);
	{
		char want[MEAD_CFG_ERR_MAX];

		snprintf(want, sizeof(want), "%s:2:1: count: given twice (first at 1:1)", path);
		assert_string_equal(err, want);
	}
	mead_cfg_release(keys, &c);
	unlink(path);
}

static void test_file_errors(void **state)
{
	char err[MEAD_CFG_ERR_MAX];
	struct t_cfg c;

	(void)state;
	memset(&c, 0, sizeof(c));
	assert_int_equal(mead_cfg_load_file(keys, &c, "/nonexistent/mead.yaml", err, sizeof(err)),
			 -ENOENT);
	assert_string_equal(err, "/nonexistent/mead.yaml: cannot open: No such file or directory");
	mead_cfg_release(keys, &c);

	memset(&c, 0, sizeof(c));
	assert_int_equal(mead_cfg_load_file(keys, &c, "/", err, sizeof(err)), -EISDIR);
	assert_string_equal(err, "/: cannot read: Is a directory");
	mead_cfg_release(keys, &c);

	assert_int_equal(mead_cfg_load_file(keys, NULL, "/", err, sizeof(err)), -EINVAL);
	assert_int_equal(mead_cfg_load_string(NULL, &c, "x", "", 0, err, sizeof(err)), -EINVAL);
}

static void test_aliases_resolved(void **state)
{
	struct t_cfg c;

	(void)state;
	expect_ok(&c, "offset: &o 7\n"
		      "loop: {priority: *o}\n"
		      "channels: &ch [4, 5]\n"
		      "driver: {options: {copy: *o}}\n");
	assert_int_equal(c.offset, 7);
	assert_int_equal(c.loop.priority, 7);
	assert_int_equal(c.channels.n, 2);
	assert_string_equal(c.driver.options.value[0], "7");
	mead_cfg_release(keys, &c);

	/* The error in an alias points at the anchored text. */
	expect_error("name: &v hello\ncount: *v\n",
		     "t.yaml:1:7: count: expected an integer from 0 to 4294967295, found \"hello\"");
	/* A self-referencing node ends at the schema's depth. */
	expect_error("driver: &d {deep: *d}\n",
		     "t.yaml:1:13: driver.deep.deep: unknown key (known keys here: level, label)");
}

/* ---- scalar errors ---- */

static void test_bool(void **state)
{
	static const char *const yes[] = { "true", "True", "YES", "on", "On" };
	static const char *const no[] = { "false", "FALSE", "no", "No", "off", "OFF" };
	char text[64];
	struct t_cfg c;

	(void)state;
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		snprintf(text, sizeof(text), "enabled: %s\n", yes[i]);
		expect_ok(&c, "enabled: false\n");
		assert_false(c.enabled);
		mead_cfg_release(keys, &c);
		expect_ok(&c, text);
		assert_true(c.enabled);
		mead_cfg_release(keys, &c);
	}
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
		snprintf(text, sizeof(text), "enabled: %s\n", no[i]);
		expect_ok(&c, text);
		assert_false(c.enabled);
		mead_cfg_release(keys, &c);
	}
	expect_error("enabled: yes please\n",
		     "t.yaml:1:10: enabled: expected true or false, found \"yes please\"");
	expect_error("enabled: 1\n", "t.yaml:1:10: enabled: expected true or false, found \"1\"");
	expect_error("enabled: ~\n", "t.yaml:1:10: enabled: expected true or false, found no value");
}

static void test_int(void **state)
{
	struct t_cfg c;

	(void)state;
	expect_ok(&c, "offset: 0x64\nloop: {priority: 9223372036854775807}\n");
	assert_int_equal(c.offset, 100);
	assert_true(c.loop.priority == INT64_MAX);
	mead_cfg_release(keys, &c);
	expect_ok(&c, "offset: '+12'\n");
	assert_int_equal(c.offset, 12);
	mead_cfg_release(keys, &c);

	expect_error("offset: abc\n",
		     "t.yaml:1:9: offset: expected an integer from -100 to 100, found \"abc\"");
	expect_error("offset: 1.5\n",
		     "t.yaml:1:9: offset: expected an integer from -100 to 100, found \"1.5\"");
	expect_error("offset: 0x\n",
		     "t.yaml:1:9: offset: expected an integer from -100 to 100, found \"0x\"");
	expect_error("offset: 0x0x5\n",
		     "t.yaml:1:9: offset: expected an integer from -100 to 100, found \"0x0x5\"");
	expect_error("offset: ' 5'\n",
		     "t.yaml:1:9: offset: expected an integer from -100 to 100, found \" 5\"");
	expect_error("offset: --5\n",
		     "t.yaml:1:9: offset: expected an integer from -100 to 100, found \"--5\"");
	expect_error("offset: 101\n", "t.yaml:1:9: offset: value 101 is out of range -100..100");
	expect_error("offset: -0x65\n", "t.yaml:1:9: offset: value -0x65 is out of range -100..100");
	expect_error("loop: {priority: -9223372036854775809}\n",
		     "t.yaml:1:18: loop.priority: value -9223372036854775809 is out of range "
		     "-9223372036854775808..9223372036854775807");
	expect_error("loop: {priority: 99999999999999999999999}\n",
		     "t.yaml:1:18: loop.priority: value 99999999999999999999999 is out of range "
		     "-9223372036854775808..9223372036854775807");
	{
		char nines[71], yaml[128], want[256];

		memset(nines, '9', 70);
		nines[70] = '\0';
		snprintf(yaml, sizeof(yaml), "loop: {priority: %s}\n", nines);
		snprintf(want, sizeof(want), "t.yaml:1:18: loop.priority: value \"%.64s...\" is out "
			 "of range -9223372036854775808..9223372036854775807", nines);
		expect_error(yaml, want);
	}
	expect_error("loop: {priority: x}\n",
		     "t.yaml:1:18: loop.priority: expected an integer, found \"x\"");
}

static void test_uint(void **state)
{
	struct t_cfg c;

	(void)state;
	expect_ok(&c, "count: -0\nbig: 0xffffffffffffffff\n");
	assert_int_equal(c.count, 0);
	assert_true(c.big == UINT64_MAX);
	mead_cfg_release(keys, &c);

	expect_error("count: -1\n", "t.yaml:1:8: count: value -1 is out of range 0..4294967295");
	expect_error("count: 4294967296\n",
		     "t.yaml:1:8: count: value 4294967296 is out of range 0..4294967295");
	expect_error("count: x1\n",
		     "t.yaml:1:8: count: expected an integer from 0 to 4294967295, found \"x1\"");
	expect_error("loop:\n  period_us: abc\n",
		     "t.yaml:2:14: loop.period_us: expected an integer from 10 to 1000000, found \"abc\"");
	expect_error("loop: {period_us: 2000000}\n",
		     "t.yaml:1:19: loop.period_us: value 2000000 is out of range 10..1000000");
	expect_error("loop: {period_us: -20}\n",
		     "t.yaml:1:19: loop.period_us: value -20 is out of range 10..1000000");
	expect_error("big: 18446744073709551616\n",
		     "t.yaml:1:6: big: value 18446744073709551616 is out of range 0..18446744073709551615");
	expect_error("big: -5\n", "t.yaml:1:6: big: value -5 is out of range 0..18446744073709551615");
	expect_error("big: 1e3\n",
		     "t.yaml:1:6: big: expected an integer from 0 to 18446744073709551615, found \"1e3\"");
}

static void test_double(void **state)
{
	struct t_cfg c;

	(void)state;
	expect_ok(&c, "gain: 0.75\ndriver: {limits: {max_ua: 0}}\n");
	assert_true(c.gain == 0.75);
	assert_true(c.driver.max_ua == 0.0);
	mead_cfg_release(keys, &c);

	expect_error("gain: abc\n",
		     "t.yaml:1:7: gain: expected a finite number from 0.5 to 2, found \"abc\"");
	expect_error("gain: .inf\n",
		     "t.yaml:1:7: gain: expected a finite number from 0.5 to 2, found \".inf\"");
	expect_error("gain: inf\n",
		     "t.yaml:1:7: gain: expected a finite number from 0.5 to 2, found \"inf\"");
	expect_error("gain: nan\n",
		     "t.yaml:1:7: gain: expected a finite number from 0.5 to 2, found \"nan\"");
	expect_error("gain: 1e999\n",
		     "t.yaml:1:7: gain: expected a finite number from 0.5 to 2, found \"1e999\"");
	expect_error("gain: 1.5x\n",
		     "t.yaml:1:7: gain: expected a finite number from 0.5 to 2, found \"1.5x\"");
	expect_error("gain: 3\n", "t.yaml:1:7: gain: value 3 is out of range 0.5..2");
	expect_error("gain: 0.25\n", "t.yaml:1:7: gain: value 0.25 is out of range 0.5..2");
	expect_error("driver:\n  limits:\n    max_ua: 501\n",
		     "t.yaml:3:13: driver.limits.max_ua: value 501 is out of range 0..500");
}

static void test_string_and_enum(void **state)
{
	struct t_cfg c;

	(void)state;
	expect_ok(&c, "name: ~\nnote: '~'\n");
	assert_string_equal(c.name, "");
	assert_string_equal(c.note, "~");
	mead_cfg_release(keys, &c);
	expect_ok(&c, "name:\nnote: ''\nmode: virtual\n");
	assert_string_equal(c.name, "");
	assert_string_equal(c.note, "");
	mead_cfg_release(keys, &c);
	expect_ok(&c, "name: 42\n");
	assert_string_equal(c.name, "42");
	mead_cfg_release(keys, &c);

	expect_error("loop:\n  clock: fast\n",
		     "t.yaml:2:10: loop.clock: expected one of realtime, virtual, found \"fast\"");
	expect_error("mode: Realtime\n",
		     "t.yaml:1:7: mode: expected one of realtime, virtual, found \"Realtime\"");
	expect_error("mode:\n", "t.yaml:1:6: mode: expected one of realtime, virtual, found no value");
	expect_error("name: \"a\\0b\"\n",
		     "t.yaml:1:7: name: expected a string, found text with a NUL character");
	/* Long values are cut and control characters escaped in messages. */
	expect_error("mode: \"0123456789012345678901234567890123456789012345678901234567890123456789\"\n",
		     "t.yaml:1:7: mode: expected one of realtime, virtual, found "
		     "\"0123456789012345678901234567890123456789012345678901234567890123...\"");
	expect_error("mode: \"a\\tb\\\"c\\x01\"\n",
		     "t.yaml:1:7: mode: expected one of realtime, virtual, found \"a\\tb\\\"c\\x01\"");
}

static void test_not_scalar(void **state)
{
	(void)state;
	expect_error("count: {a: 1}\n",
		     "t.yaml:1:8: count: expected an integer from 0 to 4294967295, found a mapping");
	expect_error("name: [a]\n", "t.yaml:1:7: name: expected a string, found a sequence");
	expect_error("name:\n  - a\n", "t.yaml:2:3: name: expected a string, found a sequence");
	expect_error("mode: {x: y}\n",
		     "t.yaml:1:7: mode: expected one of realtime, virtual, found a mapping");
	expect_error("count: ~\n",
		     "t.yaml:1:8: count: expected an integer from 0 to 4294967295, found no value");
}

/* ---- lists ---- */

static char *long_list(const char *key, int items)
{
	size_t len = strlen(key) + 8 + (size_t)items * 3;
	char *s = malloc(len);
	size_t at;

	assert_non_null(s);
	at = (size_t)snprintf(s, len, "%s: [", key);
	for (int i = 0; i < items; i++)
		at += (size_t)snprintf(s + at, len - at, "%s1", i ? ", " : "");
	snprintf(s + at, len - at, "]\n");
	return s;
}

static void test_lists(void **state)
{
	struct t_cfg c;
	char *s;

	(void)state;
	expect_ok(&c, "channels: []\ntags: []\nweights: [1]\n");
	assert_int_equal(c.channels.n, 0);
	assert_int_equal(c.tags.n, 0);
	assert_int_equal(c.weights.n, 1);
	mead_cfg_release(keys, &c);

	s = long_list("channels", MEAD_CFG_LIST_MAX);
	expect_ok(&c, s);
	assert_int_equal(c.channels.n, MEAD_CFG_LIST_MAX);
	mead_cfg_release(keys, &c);
	free(s);

	s = long_list("channels", MEAD_CFG_LIST_MAX + 1);
	expect_error(s, "t.yaml:1:11: channels: expected a list of at most 256 integers from 0 to 59, "
			"found 257 items");
	free(s);
	s = long_list("tags", MEAD_CFG_LIST_MAX + 1);
	expect_error(s, "t.yaml:1:7: tags: expected a list of at most 256 strings, found 257 items");
	free(s);

	expect_error("channels: 5\n", "t.yaml:1:11: channels: expected a list of at most 256 integers "
				     "from 0 to 59, found \"5\"");
	expect_error("channels: {a: 1}\n", "t.yaml:1:11: channels: expected a list of at most 256 "
					  "integers from 0 to 59, found a mapping");
	expect_error("weights: ~\n", "t.yaml:1:10: weights: expected a list of at most 256 finite "
				    "numbers from 0 to 1, found no value");
	expect_error("tags: x\n",
		     "t.yaml:1:7: tags: expected a list of at most 256 strings, found \"x\"");
	expect_error("channels:\n  - 1\n  - x\n",
		     "t.yaml:3:5: channels[1]: expected an integer from 0 to 59, found \"x\"");
	expect_error("channels: [1, 60]\n", "t.yaml:1:15: channels[1]: value 60 is out of range 0..59");
	expect_error("channels: [1, ~]\n",
		     "t.yaml:1:15: channels[1]: expected an integer from 0 to 59, found no value");
	expect_error("weights: [0.5, 2]\n", "t.yaml:1:16: weights[1]: value 2 is out of range 0..1");
	expect_error("weights: [a]\n",
		     "t.yaml:1:11: weights[0]: expected a finite number from 0 to 1, found \"a\"");
	expect_error("tags: [a, [b]]\n", "t.yaml:1:11: tags[1]: expected a string, found a sequence");
}

/* ---- maps ---- */

static void test_maps(void **state)
{
	struct t_cfg c;
	char *s;
	size_t len = 64 + (MEAD_CFG_MAP_MAX + 1) * 12, at;

	(void)state;
	expect_ok(&c, "driver: {options: ~}\n");
	assert_int_equal(c.driver.options.n, 0);
	mead_cfg_release(keys, &c);
	expect_ok(&c, "driver: {options: {}}\n");
	assert_int_equal(c.driver.options.n, 0);
	mead_cfg_release(keys, &c);
	expect_ok(&c, "driver:\n  options:\n    a.b: '1'\n    c: \"x y\"\n");
	assert_int_equal(c.driver.options.n, 2);
	assert_string_equal(c.driver.options.key[0], "a.b");
	assert_string_equal(c.driver.options.value[1], "x y");
	assert_int_equal(c.driver.options.mark[1].line, 4);
	assert_int_equal(c.driver.options.mark[1].col, 8);
	mead_cfg_release(keys, &c);

	s = malloc(len);
	assert_non_null(s);
	for (int n = MEAD_CFG_MAP_MAX; n <= MEAD_CFG_MAP_MAX + 1; n++) {
		at = (size_t)snprintf(s, len, "driver: {options: {");
		for (int i = 0; i < n; i++)
			at += (size_t)snprintf(s + at, len - at, "%sk%d: v", i ? ", " : "", i);
		snprintf(s + at, len - at, "}}\n");
		if (n == MEAD_CFG_MAP_MAX) {
			expect_ok(&c, s);
			assert_int_equal(c.driver.options.n, MEAD_CFG_MAP_MAX);
			mead_cfg_release(keys, &c);
		} else {
			expect_error(s, "t.yaml:1:19: driver.options: expected a mapping of at most 64 "
					"names to values, found 65 entries");
		}
	}
	free(s);

	expect_error("driver:\n  options: 5\n", "t.yaml:2:12: driver.options: expected a mapping of "
						"at most 64 names to values, found \"5\"");
	expect_error("driver:\n  options: [a]\n", "t.yaml:2:12: driver.options: expected a mapping "
						  "of at most 64 names to values, found a sequence");
	expect_error("driver:\n  options:\n    preset: [a]\n",
		     "t.yaml:3:13: driver.options.preset: expected a single value, found a sequence");
	expect_error("driver:\n  options:\n    a: 1\n    a: 2\n",
		     "t.yaml:4:5: driver.options.a: given twice (first at 3:5)");
	expect_error("driver: {options: {[a]: 1}}\n",
		     "t.yaml:1:20: driver.options: expected a name, found a sequence");
	expect_error("driver: {options: {~: 1}}\n",
		     "t.yaml:1:20: driver.options: expected a name, found no value");
}

/* ---- structure errors ---- */

static void test_unknown_keys(void **state)
{
	(void)state;
	expect_error("enabled: true\nbogus: 1\n",
		     "t.yaml:2:1: bogus: unknown key (known keys here: " TOP_KEYS ")");
	expect_error("loop:\n  period_us: 100\n  perid: 5\n",
		     "t.yaml:3:3: loop.perid: unknown key (known keys here: period_us, clock, priority)");
	expect_error("driver:\n  nam: x\n",
		     "t.yaml:2:3: driver.nam: unknown key (known keys here: name, options, limits, deep)");
	expect_error("driver:\n  limits: {max_ua: 5, min_ua: 1}\n",
		     "t.yaml:2:23: driver.limits.min_ua: unknown key (known keys here: max_ua)");
	expect_error("driver:\n  deep:\n    level: 2\n    extra: 1\n",
		     "t.yaml:4:5: driver.deep.extra: unknown key (known keys here: level, label)");
	expect_error("loop.period_us: 100\n",
		     "t.yaml:1:1: loop.period_us: unknown key (known keys here: " TOP_KEYS
		     "); write nested mappings, not dotted keys");
	expect_error("driver:\n  limits.max_ua: 1\n",
		     "t.yaml:2:3: driver.limits.max_ua: unknown key (known keys here: name, options, "
		     "limits, deep); write nested mappings, not dotted keys");
	expect_error("[a]: 1\n", "t.yaml:1:1: expected a key name, found a sequence");
	expect_error("loop: {[a]: 1}\n", "t.yaml:1:8: loop: expected a key name, found a sequence");
}

static void test_shapes(void **state)
{
	(void)state;
	expect_error("- a\n- b\n",
		     "t.yaml:1:1: expected a mapping (keys: " TOP_KEYS "), found a sequence");
	expect_error("hello\n", "t.yaml:1:1: expected a mapping (keys: " TOP_KEYS "), found \"hello\"");
	expect_error("driver: 5\n",
		     "t.yaml:1:9: driver: expected a mapping (keys: name, options, limits, deep), found \"5\"");
	expect_error("loop: fast\n",
		     "t.yaml:1:7: loop: expected a mapping (keys: period_us, clock, priority), found \"fast\"");
	expect_error("driver: {limits: [1]}\n",
		     "t.yaml:1:18: driver.limits: expected a mapping (keys: max_ua), found a sequence");
	expect_error("driver: {deep: x}\n",
		     "t.yaml:1:16: driver.deep: expected a mapping (keys: level, label), found \"x\"");
}

static void test_duplicates(void **state)
{
	(void)state;
	expect_error("count: 1\nname: x\ncount: 2\n", "t.yaml:3:1: count: given twice (first at 1:1)");
	expect_error("loop:\n  clock: virtual\n  clock: realtime\n",
		     "t.yaml:3:3: loop.clock: given twice (first at 2:3)");
	expect_error("loop: {clock: virtual}\nloop: {priority: 1}\n",
		     "t.yaml:2:1: loop: given twice (first at 1:1)");
	expect_error("driver:\n  deep: {level: 1, level: 2}\n",
		     "t.yaml:2:20: driver.deep.level: given twice (first at 2:10)");
}

static void test_syntax(void **state)
{
	(void)state;
	expect_error("channels: [1, 2\n",
		     "t.yaml:2:1: YAML syntax error: did not find expected ',' or ']' "
		     "(while parsing a flow sequence at 1:11)");
	expect_error("loop:\n\tperiod_us: 5\n",
		     "t.yaml:2:1: YAML syntax error: found character that cannot start any token "
		     "(while scanning for the next token at 2:1)");
	expect_error("a: b: c\n",
		     "t.yaml:1:5: YAML syntax error: mapping values are not allowed in this context");
	expect_error("name: *nope\n",
		     "t.yaml:1:7: YAML syntax error: found undefined alias");
	expect_error("name: \xff\n",
		     "t.yaml:1:7: YAML syntax error: invalid leading UTF-8 octet (byte 0xff)");
	expect_error("count: 1\n---\ncount: 2\n",
		     "t.yaml:3:1: only one YAML document is allowed, found a second one");
	expect_error("count: 1\n---\n[\n",
		     "t.yaml:4:1: YAML syntax error: did not find expected node content "
		     "(while parsing a flow node at 4:1)");
}

/* ---- errors: buffer, partial data ---- */

static void test_err_buffer(void **state)
{
	const char *yaml = "count: x\n";
	const char *full = "t.yaml:1:8: count: expected an integer from 0 to 4294967295, found \"x\"";
	char err[MEAD_CFG_ERR_MAX];
	struct t_cfg c;

	(void)state;
	memset(err, 'Z', sizeof(err));
	memset(&c, 0, sizeof(c));
	assert_int_equal(mead_cfg_load_string(keys, &c, "t.yaml", yaml, strlen(yaml), err, 16),
			 -EINVAL);
	assert_int_equal(strlen(err), 15);
	assert_memory_equal(err, full, 15);
	assert_int_equal(err[16], 'Z');
	mead_cfg_release(keys, &c);

	memset(err, 'Z', sizeof(err));
	memset(&c, 0, sizeof(c));
	assert_int_equal(mead_cfg_load_string(keys, &c, "t.yaml", yaml, strlen(yaml), err, 1),
			 -EINVAL);
	assert_int_equal(err[0], '\0');
	assert_int_equal(err[1], 'Z');
	mead_cfg_release(keys, &c);

	memset(&c, 0, sizeof(c));
	assert_int_equal(mead_cfg_load_string(keys, &c, "t.yaml", yaml, strlen(yaml), NULL, 0),
			 -EINVAL);
	mead_cfg_release(keys, &c);
	memset(&c, 0, sizeof(c));
	assert_int_equal(mead_cfg_load_string(keys, &c, NULL, yaml, strlen(yaml), err, sizeof(err)),
			 -EINVAL);
	assert_string_equal(err, "<string>:1:8: count: expected an integer from 0 to 4294967295, "
				 "found \"x\"");
	mead_cfg_release(keys, &c);

	/* Only len bytes are read: the text need not end in NUL. */
	memset(&c, 0, sizeof(c));
	assert_int_equal(mead_cfg_load_string(keys, &c, "t.yaml", "count: 12345", 9, err, sizeof(err)),
			 0);
	assert_int_equal(c.count, 12);
	mead_cfg_release(keys, &c);
}

static void test_release_after_failure(void **state)
{
	char err[MEAD_CFG_ERR_MAX];
	struct t_cfg c;

	(void)state;
	assert_int_equal(load(&c, "name: first\ntags: [x, y, [z]]\n", err), -EINVAL);
	assert_string_equal(err, "t.yaml:2:14: tags[2]: expected a string, found a sequence");
	assert_string_equal(c.name, "first");
	assert_int_equal(c.tags.n, 2);
	assert_string_equal(c.tags.v[1], "y");
	mead_cfg_release(keys, &c);

	assert_int_equal(load(&c, "driver:\n  options: {a: 1, b: 2, c: {}}\n", err), -EINVAL);
	assert_string_equal(err, "t.yaml:2:28: driver.options.c: expected a single value, "
				 "found a mapping");
	assert_int_equal(c.driver.options.n, 2);
	mead_cfg_release(keys, &c);

	assert_int_equal(load(&c, "driver: {name: x, deep: {label: y, level: 10}}\n", err), -EINVAL);
	assert_string_equal(err, "t.yaml:1:43: driver.deep.level: value 10 is out of range 0..9");
	assert_string_equal(c.driver.deep.label, "y");
	mead_cfg_release(keys, &c);

	/* Loading again into a loaded object frees what it replaces. */
	expect_ok(&c, "name: a\ntags: [p, q]\n");
	assert_int_equal(mead_cfg_load_string(keys, &c, "u.yaml", "name: b\n", 8, err, sizeof(err)), 0);
	assert_string_equal(c.name, "b");
	assert_int_equal(c.tags.n, 2);
	assert_string_equal(c.tags.v[0], "a");
	mead_cfg_release(keys, &c);
}

/* ---- overrides ---- */

static void override_ok(struct t_cfg *c, const char *assignment)
{
	char err[MEAD_CFG_ERR_MAX] = "unset";
	int rc = mead_cfg_override(keys, c, assignment, err, sizeof(err));

	if (rc)
		print_error("override %s failed: %s\n", assignment, err);
	assert_int_equal(rc, 0);
	assert_string_equal(err, "");
}

static void test_overrides(void **state)
{
	struct t_cfg c;

	(void)state;
	expect_ok(&c, "");
	override_ok(&c, "loop.period_us=500");
	assert_int_equal(c.loop.period_us, 500);
	override_ok(&c, " name = hello world ");
	assert_string_equal(c.name, "hello world");
	override_ok(&c, "mode=realtime");
	assert_int_equal(c.mode, MODE_REALTIME);
	override_ok(&c, "enabled=off");
	assert_false(c.enabled);
	override_ok(&c, "gain=0x1p0");
	assert_true(c.gain == 1.0);
	override_ok(&c, "big=0x20");
	assert_int_equal(c.big, 32);
	override_ok(&c, "channels=[7,8]");
	assert_int_equal(c.channels.n, 2);
	assert_int_equal(c.channels.v[1], 8);
	override_ok(&c, "tags=[x, 'y z', \"a=b\"]");
	assert_int_equal(c.tags.n, 3);
	assert_string_equal(c.tags.v[1], "y z");
	assert_string_equal(c.tags.v[2], "a=b");
	override_ok(&c, "weights=[]");
	assert_int_equal(c.weights.n, 0);
	override_ok(&c, "name=");
	assert_string_equal(c.name, "");
	override_ok(&c, "note=a=b");
	assert_string_equal(c.note, "a=b");
	override_ok(&c, "driver.deep.level=4");
	assert_int_equal(c.driver.deep.level, 4);
	override_ok(&c, "driver.limits.max_ua=7.5");
	assert_true(c.driver.max_ua == 7.5);

	/* Map entries: replace, then add. */
	override_ok(&c, "driver.options.preset=bio-240");
	assert_int_equal(c.driver.options.n, 1);
	assert_string_equal(c.driver.options.value[0], "bio-240");
	assert_string_equal(c.driver.options.mark[0].file, "<command line>");
	assert_int_equal(c.driver.options.mark[0].line, 1);
	assert_int_equal(c.driver.options.mark[0].col, 23);
	override_ok(&c, "driver.options.new=1");
	assert_int_equal(c.driver.options.n, 2);
	assert_string_equal(c.driver.options.key[1], "new");
	assert_string_equal(c.driver.options.value[1], "1");
	assert_int_equal(c.driver.options.mark[1].col, 20);
	override_ok(&c, "driver.options.empty=");
	assert_string_equal(c.driver.options.value[2], "");
	assert_int_equal(c.driver.options.mark[2].col, 22);

	/* Whole mappings for a map, a table and an implicit group. */
	override_ok(&c, "driver.options={a: 1}");
	assert_int_equal(c.driver.options.n, 1);
	assert_string_equal(c.driver.options.key[0], "a");
	assert_int_equal(c.driver.options.mark[0].col, 20);
	override_ok(&c, "driver={name: x, limits: {max_ua: 5}}");
	assert_string_equal(c.driver.name, "x");
	assert_true(c.driver.max_ua == 5.0);
	override_ok(&c, "loop={priority: 3}");
	assert_int_equal(c.loop.priority, 3);
	assert_int_equal(c.loop.period_us, 500);
	override_ok(&c, "driver.limits={max_ua: 6}");
	assert_true(c.driver.max_ua == 6.0);
	mead_cfg_release(keys, &c);
}

static void test_override_errors(void **state)
{
	char err[MEAD_CFG_ERR_MAX];
	struct t_cfg c;

	(void)state;
	expect_override_error("loop.period_us=abc", "<command line>:1:16: loop.period_us: expected an "
							"integer from 10 to 1000000, found \"abc\"");
	expect_override_error("loop.period_us= 5", "<command line>:1:17: loop.period_us: value 5 is "
						       "out of range 10..1000000");
	expect_override_error("loop.perid_us=5", "<command line>:1:6: loop.perid_us: unknown key "
						     "(known keys here: period_us, clock, priority)");
	expect_override_error("bogus=1",
			      "<command line>:1:1: bogus: unknown key (known keys here: " TOP_KEYS ")");
	expect_override_error("  bogus.x=1", "<command line>:1:3: bogus.x: unknown key (known keys "
						 "here: " TOP_KEYS ")");
	expect_override_error("driver.nam=x", "<command line>:1:8: driver.nam: unknown key (known "
						  "keys here: name, options, limits, deep)");
	expect_override_error("driver.deep.x=1", "<command line>:1:13: driver.deep.x: unknown key "
						     "(known keys here: level, label)");
	expect_override_error("driver.limits.foo.bar=1", "<command line>:1:15: driver.limits.foo.bar: "
							     "unknown key (known keys here: max_ua)");
	expect_override_error("count.x=1", "<command line>:1:1: count.x: unknown key (known keys "
					       "here: " TOP_KEYS ")");
	expect_override_error("count", "<command line>:1:1: count: expected key=value, found no \"=\"");
	expect_override_error("=5", "<command line>:1:1: expected key=value, found no key before \"=\"");
	expect_override_error("driver.options.map=#0:0", "<command line>:1:20: driver.options.map: the value starts "
							     "with \"#\", which YAML reads as a comment: quote it "
							     "(driver.options.map='#0:0')");
	expect_override_error("name= #x", "<command line>:1:7: name: the value starts with \"#\", which YAML reads "
					  "as a comment: quote it (name='#x')");
	expect_override_error("count=", "<command line>:1:7: count: expected an integer from 0 to "
					"4294967295, found no value");
	expect_override_error("channels=[1, x]", "<command line>:1:14: channels[1]: expected an integer "
						     "from 0 to 59, found \"x\"");
	expect_override_error("channels=1", "<command line>:1:10: channels: expected a list of at most "
						"256 integers from 0 to 59, found \"1\"");
	expect_override_error("count=[1", "<command line>:1:9: count: YAML syntax error: did not find "
					  "expected ',' or ']' (while parsing a flow sequence at 1:7)");
	expect_override_error("name=a: b", "<command line>:1:6: name: expected a string, found a "
					   "mapping");
	expect_override_error("driver.options.p=[1]", "<command line>:1:18: driver.options.p: expected "
							  "a single value, found a sequence");
	expect_override_error("loop=5", "<command line>:1:6: loop: expected a mapping (keys: "
					"period_us, clock, priority), found \"5\"");
	expect_override_error("driver={deep: {level: 99}}", "<command line>:1:23: driver.deep.level: "
							       "value 99 is out of range 0..9");

	/* A full map takes no new entry but still takes replacements. */
	expect_ok(&c, "");
	for (int i = 0; i < MEAD_CFG_MAP_MAX - 1; i++) {
		char a[64];

		snprintf(a, sizeof(a), "driver.options.k%d=%d", i, i);
		override_ok(&c, a);
	}
	assert_int_equal(c.driver.options.n, MEAD_CFG_MAP_MAX);
	override_ok(&c, "driver.options.k5=five");
	assert_string_equal(c.driver.options.value[6], "five");
	assert_int_equal(mead_cfg_override(keys, &c, "driver.options.more=1", err, sizeof(err)),
			 -EINVAL);
	assert_string_equal(err, "<command line>:1:21: driver.options.more: too many entries: at most "
				 "64 are allowed");
	assert_int_equal(mead_cfg_override(keys, &c, NULL, err, sizeof(err)), -EINVAL);
	mead_cfg_release(keys, &c);
}

/* ---- format and find ---- */

static void expect_format(const struct t_cfg *c, const char *path, const char *want)
{
	char buf[2048];
	int rc = mead_cfg_format(keys, c, path, buf, sizeof(buf));

	assert_int_equal(rc, (int)strlen(want));
	assert_string_equal(buf, want);
}

static void test_format(void **state)
{
	struct t_cfg c;
	char buf[16];

	(void)state;
	expect_ok(&c, "");
	expect_format(&c, "enabled", "true");
	expect_format(&c, "offset", "-5");
	expect_format(&c, "count", "7");
	expect_format(&c, "big", "16");
	expect_format(&c, "gain", "1.5");
	expect_format(&c, "name", "unnamed");
	expect_format(&c, "note", "\"\"");
	expect_format(&c, "mode", "virtual");
	expect_format(&c, "loop.period_us", "1000");
	expect_format(&c, "channels", "[1, 2, 3]");
	expect_format(&c, "weights", "[]");
	expect_format(&c, "tags", "[a, b]");
	expect_format(&c, "driver.options", "{preset: default}");
	expect_format(&c, "driver.options.preset", "default");
	expect_format(&c, "loop", "{period_us: 1000, clock: realtime, priority: 0}");
	expect_format(&c, "driver.limits", "{max_ua: 100}");
	expect_format(&c, "driver.deep.level", "3");
	expect_format(&c, "driver", "{name: sim, options: {preset: default}, limits: {max_ua: 100}, "
				    "deep: {level: 3, label: \"\"}}");
	expect_format(&c, "", "{enabled: true, offset: -5, count: 7, big: 16, gain: 1.5, name: unnamed, "
			      "note: \"\", mode: virtual, loop: {period_us: 1000, clock: realtime, "
			      "priority: 0}, channels: [1, 2, 3], weights: [], tags: [a, b], driver: "
			      "{name: sim, options: {preset: default}, limits: {max_ua: 100}, deep: "
			      "{level: 3, label: \"\"}}}");
	override_ok(&c, "weights=[0.1, 1]");
	expect_format(&c, "weights", "[0.1, 1]");
	override_ok(&c, "tags=['a b', '~', 'x\"y', null]");
	expect_format(&c, "tags", "[\"a b\", \"~\", \"x\\\"y\", \"\"]");

	assert_int_equal(mead_cfg_format(keys, &c, "bogus", buf, sizeof(buf)), -ENOENT);
	assert_int_equal(mead_cfg_format(keys, &c, "loop.bogus", buf, sizeof(buf)), -ENOENT);
	assert_int_equal(mead_cfg_format(keys, &c, "driver.options.none", buf, sizeof(buf)), -ENOENT);
	assert_int_equal(mead_cfg_format(keys, &c, "driver.", buf, sizeof(buf)), -ENOENT);
	assert_int_equal(mead_cfg_format(keys, &c, "loop", buf, sizeof(buf)), -ENOSPC);
	assert_int_equal(strlen(buf), sizeof(buf) - 1);
	assert_memory_equal(buf, "{period_us: 1000", sizeof(buf) - 1);
	assert_int_equal(mead_cfg_format(keys, &c, "loop", buf, 0), -EINVAL);
	mead_cfg_release(keys, &c);
}

/* What format prints reads back to the same values, as a file and as overrides. */
static void test_format_round_trip(void **state)
{
	char a[4096], b[4096], assignment[4200], err[MEAD_CFG_ERR_MAX];
	struct t_cfg c, d;

	(void)state;
	expect_ok(&c, good_yaml);
	free(c.name);
	c.name = strdup("tab\there \"quoted\" back\\slash\nnew line: yes");
	assert_non_null(c.name);
	c.gain = 1.0 / 3.0 + 1.0;
	assert_true(mead_cfg_format(keys, &c, NULL, a, sizeof(a)) > 0);
	expect_ok(&d, a);
	assert_string_equal(d.name, c.name);
	assert_true(d.gain == c.gain);
	assert_true(mead_cfg_format(keys, &d, "", b, sizeof(b)) > 0);
	assert_string_equal(a, b);
	mead_cfg_release(keys, &d);

	expect_ok(&d, "");
	static const char *const paths[] = { "enabled", "offset", "count", "big", "gain",
					     "name", "note", "mode", "loop", "channels",
					     "weights", "tags", "driver" };
	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		assert_true(mead_cfg_format(keys, &c, paths[i], a, sizeof(a)) >= 0);
		snprintf(assignment, sizeof(assignment), "%s=%s", paths[i], a);
		assert_int_equal(mead_cfg_override(keys, &d, assignment, err, sizeof(err)), 0);
	}
	assert_true(mead_cfg_format(keys, &c, NULL, a, sizeof(a)) > 0);
	assert_true(mead_cfg_format(keys, &d, NULL, b, sizeof(b)) > 0);
	assert_string_equal(a, b);
	mead_cfg_release(keys, &d);
	mead_cfg_release(keys, &c);
}

static void test_find(void **state)
{
	size_t off = 12345;

	(void)state;
	assert_ptr_equal(mead_cfg_find(keys, "loop.period_us", &off), &keys[8]);
	assert_int_equal(off, offsetof(struct t_cfg, loop.period_us));
	assert_ptr_equal(mead_cfg_find(keys, "driver.deep.level", &off), &deep_keys[0]);
	assert_int_equal(off, offsetof(struct t_cfg, driver.deep.level));
	assert_ptr_equal(mead_cfg_find(keys, "driver.limits.max_ua", &off), &driver_keys[2]);
	assert_int_equal(off, offsetof(struct t_cfg, driver.max_ua));
	assert_ptr_equal(mead_cfg_find(keys, "driver", &off), &keys[14]);
	assert_int_equal(off, offsetof(struct t_cfg, driver));
	assert_ptr_equal(mead_cfg_find(keys, "driver.options", NULL), &driver_keys[1]);
	off = 12345;
	assert_null(mead_cfg_find(keys, "loop", &off));
	assert_null(mead_cfg_find(keys, "driver.options.preset", &off));
	assert_null(mead_cfg_find(keys, "nope", &off));
	assert_null(mead_cfg_find(keys, "", &off));
	assert_null(mead_cfg_find(keys, "driver.deep.level.x", &off));
	assert_null(mead_cfg_find(keys, NULL, &off));
	assert_int_equal(off, 12345);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_bad_default),
		cmocka_unit_test(test_empty_documents),
		cmocka_unit_test(test_good_string),
		cmocka_unit_test(test_good_file),
		cmocka_unit_test(test_file_errors),
		cmocka_unit_test(test_aliases_resolved),
		cmocka_unit_test(test_bool),
		cmocka_unit_test(test_int),
		cmocka_unit_test(test_uint),
		cmocka_unit_test(test_double),
		cmocka_unit_test(test_string_and_enum),
		cmocka_unit_test(test_not_scalar),
		cmocka_unit_test(test_lists),
		cmocka_unit_test(test_maps),
		cmocka_unit_test(test_unknown_keys),
		cmocka_unit_test(test_shapes),
		cmocka_unit_test(test_duplicates),
		cmocka_unit_test(test_syntax),
		cmocka_unit_test(test_err_buffer),
		cmocka_unit_test(test_release_after_failure),
		cmocka_unit_test(test_overrides),
		cmocka_unit_test(test_override_errors),
		cmocka_unit_test(test_format),
		cmocka_unit_test(test_format_round_trip),
		cmocka_unit_test(test_find),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
