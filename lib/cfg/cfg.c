/* SPDX-License-Identifier: MIT */
/*
 * Schema-driven YAML binding (see cfg.h).
 *
 * Behaviour worth knowing when reading errors or writing tables:
 *  - The document is loaded whole with libyaml's composer, so anchors and
 *    aliases are resolved: an alias behaves as a copy of its anchored node and
 *    errors in it point at the anchored text.  Cycles cannot loop forever
 *    because every step of the walk consumes a level of the (finite) schema.
 *  - Tags are ignored; a scalar is judged by its text, so "5" and 5 are both
 *    an integer.  Null is a plain "", "~", "null", "Null" or "NULL".
 *  - Null is the empty string for STRING, "no keys" for TABLE and implicit
 *    groups, the empty map for MAP, and an error for every other type.
 *  - Keys are never dotted in YAML; only nested mappings reach nested paths.
 *  - Errors in list items name the key as "path[i]" (0-based), errors in map
 *    entries as "path.entry".
 *  - Marks stored in a MAP point at the source name given to the loader (not a
 *    copy): that name must outlive the object.  Defaults store "<default>"
 *    with line and column 0, overrides "<command line>".
 *  - mead_cfg_format writes YAML flow text that reads back to the same value.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "lib/cfg/cfg.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/core/parse.h"
#include "lib/core/utf8.h"

#include <yaml.h>

#define CMDLINE_NAME "<command line>"
#define DEFAULT_NAME "<default>"
/* A configuration is a few kilobytes; anything far larger is a wrong path. */
#define FILE_MAX_BYTES (16u << 20)
#define PATH_BUF 512
#define FOUND_MAX 64

struct ctx {
	char *err;
	size_t err_len;
	const char *name;      /* source name in messages and stored marks */
	uint32_t col_shift;    /* added to columns on line 1: the override's "key=" */
	bool is_default;       /* stored marks get line/col 0 */
	uint32_t line_end;     /* overrides: length of the one line; libyaml puts the
				* end of input on a line of its own */
	yaml_document_t *doc;
	char path[PATH_BUF];   /* full dotted key of the node being applied */
	size_t path_len;
};

struct out {
	char *buf;
	size_t len, at;
	bool overflow;
};

/* ---- text helpers ---- */

__attribute__((format(printf, 4, 0)))
static void vappend(char *buf, size_t len, size_t *at, const char *fmt, va_list ap)
{
	int n;

	if (!buf || !len || *at >= len - 1)
		return;
	n = vsnprintf(buf + *at, len - *at, fmt, ap);
	if (n < 0)
		return;
	*at += (size_t)n;
	if (*at > len - 1)
		*at = len - 1;
}

__attribute__((format(printf, 4, 5)))
static void append(char *buf, size_t len, size_t *at, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vappend(buf, len, at, fmt, ap);
	va_end(ap);
}

__attribute__((format(printf, 2, 3)))
static void out_printf(struct out *o, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (o->overflow)
		return;
	va_start(ap, fmt);
	n = vsnprintf(o->buf + o->at, o->len - o->at, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= o->len - o->at) {
		o->overflow = true;
		return;
	}
	o->at += (size_t)n;
}

/* "text" with control characters and quotes escaped, cut after FOUND_MAX
 * characters so one huge value cannot push the location out of err. */
static void quote(char *buf, size_t len, const char *s)
{
	size_t at = 0, i;

	append(buf, len, &at, "\"");
	for (i = 0; s[i] && i < FOUND_MAX; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch == '"' || ch == '\\')
			append(buf, len, &at, "\\%c", ch);
		else if (ch == '\n')
			append(buf, len, &at, "\\n");
		else if (ch == '\t')
			append(buf, len, &at, "\\t");
		else if (ch < 0x20 || ch == 0x7f)
			append(buf, len, &at, "\\x%02x", ch);
		else
			append(buf, len, &at, "%c", ch);
	}
	append(buf, len, &at, s[i] ? "...\"" : "\"");
}

static size_t comp_len(const char *s)
{
	return strcspn(s, ".");
}

/* s starts with the dotted path p followed by a '.' */
static bool starts_with_path(const char *s, const char *p)
{
	size_t n = strlen(p);

	return n && strncmp(s, p, n) == 0 && s[n] == '.';
}

/* ---- error reporting ---- */

static void path_set(struct ctx *c, const char *s)
{
	size_t i;

	c->path_len = 0;
	for (i = 0; s[i] && c->path_len + 1 < PATH_BUF; i++)
		c->path[c->path_len++] = (unsigned char)s[i] < 0x20 ? '?' : s[i];
	c->path[c->path_len] = '\0';
}

/* Returns the length to restore with path_pop.  Control characters become '?'
 * so a hostile key cannot forge lines in an error message. */
static size_t path_push(struct ctx *c, const char *comp)
{
	size_t old = c->path_len, i;

	if (c->path_len && c->path_len + 1 < PATH_BUF)
		c->path[c->path_len++] = '.';
	for (i = 0; comp[i] && c->path_len + 1 < PATH_BUF; i++)
		c->path[c->path_len++] = (unsigned char)comp[i] < 0x20 ? '?' : comp[i];
	c->path[c->path_len] = '\0';
	return old;
}

static size_t path_push_index(struct ctx *c, size_t index)
{
	size_t old = c->path_len;

	append(c->path, PATH_BUF, &c->path_len, "[%zu]", index);
	return old;
}

static void path_pop(struct ctx *c, size_t old)
{
	c->path_len = old;
	c->path[old] = '\0';
}

static uint32_t mark_line(const struct ctx *c, yaml_mark_t m)
{
	return c->line_end ? 1 : (uint32_t)m.line + 1;
}

static uint32_t mark_col(const struct ctx *c, yaml_mark_t m)
{
	if (c->line_end && m.line > 0)
		return c->line_end + 1;
	return (uint32_t)m.column + 1 + (m.line == 0 ? c->col_shift : 0);
}

__attribute__((format(printf, 4, 0)))
static int vfail(struct ctx *c, int rc, yaml_mark_t m, const char *fmt, va_list ap)
{
	size_t at = 0;

	if (!c->err || !c->err_len)
		return rc;
	c->err[0] = '\0';
	append(c->err, c->err_len, &at, "%s:%u:%u: ", c->name, mark_line(c, m), mark_col(c, m));
	if (c->path_len)
		append(c->err, c->err_len, &at, "%s: ", c->path);
	vappend(c->err, c->err_len, &at, fmt, ap);
	return rc;
}

__attribute__((format(printf, 3, 4)))
static int fail(struct ctx *c, yaml_mark_t m, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = vfail(c, -EINVAL, m, fmt, ap);
	va_end(ap);
	return rc;
}

static int oom(struct ctx *c, yaml_mark_t m)
{
	fail(c, m, "out of memory");
	return -ENOMEM;
}

/* ---- nodes ---- */

static yaml_mark_t node_mark(const yaml_node_t *n, yaml_mark_t fallback)
{
	return n ? n->start_mark : fallback;
}

static bool is_null(const yaml_node_t *n)
{
	const char *v;
	size_t l;

	if (!n)
		return true;
	if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return false;
	v = (const char *)n->data.scalar.value;
	l = n->data.scalar.length;
	return l == 0 || (l == 1 && v[0] == '~') ||
	       (l == 4 && (!memcmp(v, "null", 4) || !memcmp(v, "Null", 4) || !memcmp(v, "NULL", 4)));
}

static const char *scalar_text(const yaml_node_t *n)
{
	return (const char *)n->data.scalar.value;
}

static bool scalar_has_nul(const yaml_node_t *n)
{
	return memchr(n->data.scalar.value, '\0', n->data.scalar.length) != NULL;
}

static void describe(const yaml_node_t *n, char *buf, size_t len)
{
	if (is_null(n))
		snprintf(buf, len, "no value");
	else if (n->type == YAML_MAPPING_NODE)
		snprintf(buf, len, "a mapping");
	else if (n->type == YAML_SEQUENCE_NODE)
		snprintf(buf, len, "a sequence");
	else if (scalar_has_nul(n))
		snprintf(buf, len, "text with a NUL character");
	else
		quote(buf, len, scalar_text(n));
}

static bool has_range(const struct mead_cfg_key *k)
{
	return k->min <= k->max;
}

static void range_text(const struct mead_cfg_key *k, char *buf, size_t len, size_t *at)
{
	if (has_range(k))
		append(buf, len, at, " from %.15g to %.15g", k->min, k->max);
}

static void known_keys(const struct mead_cfg_key *tbl, const char *rel, char *buf, size_t len)
{
	size_t rl = strlen(rel), at = 0;
	const struct mead_cfg_key *k, *j;

	buf[0] = '\0';
	for (k = tbl; k && k->path; k++) {
		const char *comp;
		size_t cl;
		bool seen = false;

		if (strncmp(k->path, rel, rl) != 0)
			continue;
		comp = k->path + rl;
		cl = comp_len(comp);
		if (!cl)
			continue;
		for (j = tbl; j < k && !seen; j++)
			seen = strncmp(j->path, rel, rl) == 0 && comp_len(j->path + rl) == cl &&
			       strncmp(j->path + rl, comp, cl) == 0;
		if (!seen)
			append(buf, len, &at, "%s%.*s", at ? ", " : "", (int)cl, comp);
	}
}

static void expect_text(const struct mead_cfg_key *k, char *buf, size_t len)
{
	size_t at = 0;
	const char *const *ch;

	buf[0] = '\0';
	switch (k->type) {
	case MEAD_CFG_BOOL:
		append(buf, len, &at, "true or false");
		break;
	case MEAD_CFG_INT:
		append(buf, len, &at, "an integer");
		range_text(k, buf, len, &at);
		break;
	case MEAD_CFG_UINT:
		append(buf, len, &at, "an integer");
		if (has_range(k))
			range_text(k, buf, len, &at);
		else
			append(buf, len, &at, " from 0 to %u", UINT32_MAX);
		break;
	case MEAD_CFG_U64:
		append(buf, len, &at, "an integer");
		if (has_range(k))
			range_text(k, buf, len, &at);
		else
			append(buf, len, &at, " from 0 to %llu", (unsigned long long)UINT64_MAX);
		break;
	case MEAD_CFG_DOUBLE:
		append(buf, len, &at, "a finite number");
		range_text(k, buf, len, &at);
		break;
	case MEAD_CFG_STRING:
		append(buf, len, &at, "a string");
		break;
	case MEAD_CFG_ENUM:
		append(buf, len, &at, "one of ");
		for (ch = k->choices; ch && *ch; ch++)
			append(buf, len, &at, "%s%s", ch == k->choices ? "" : ", ", *ch);
		break;
	case MEAD_CFG_UINT_LIST:
		append(buf, len, &at, "a list of at most %d integers", MEAD_CFG_LIST_MAX);
		if (has_range(k))
			range_text(k, buf, len, &at);
		else
			append(buf, len, &at, " from 0 to %u", UINT32_MAX);
		break;
	case MEAD_CFG_DOUBLE_LIST:
		append(buf, len, &at, "a list of at most %d finite numbers", MEAD_CFG_LIST_MAX);
		range_text(k, buf, len, &at);
		break;
	case MEAD_CFG_STRING_LIST:
		append(buf, len, &at, "a list of at most %d strings", MEAD_CFG_LIST_MAX);
		break;
	case MEAD_CFG_MAP:
		append(buf, len, &at, "a mapping of at most %d names to values", MEAD_CFG_MAP_MAX);
		break;
	case MEAD_CFG_TABLE:
		append(buf, len, &at, "a mapping");
		break;
	}
}

static int fail_expected(struct ctx *c, const struct mead_cfg_key *k, const yaml_node_t *n,
			 yaml_mark_t m)
{
	char want[MEAD_CFG_ERR_MAX], found[FOUND_MAX * 4 + 8];

	expect_text(k, want, sizeof(want));
	describe(n, found, sizeof(found));
	return fail(c, m, "expected %s, found %s", want, found);
}

/* ---- scalars ---- */

/* Optional sign, then decimal digits or 0x and hex digits, nothing else.
 * strtoull alone would take spaces, a second sign or a second "0x". */
static int parse_integer(const char *s, bool *neg, uint64_t *mag)
{
	const char *p = s, *q;
	int base = 10;
	unsigned long long v;
	char *end;

	*neg = false;
	if (*p == '+' || *p == '-')
		*neg = *p++ == '-';
	if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
		base = 16;
		p += 2;
	}
	if (!*p)
		return -EINVAL;
	for (q = p; *q; q++)
		if (base == 16 ? !isxdigit((unsigned char)*q) : !isdigit((unsigned char)*q))
			return -EINVAL;
	errno = 0;
	v = strtoull(p, &end, base);
	if (errno == ERANGE)
		return -ERANGE;
	if (*end)
		return -EINVAL;
	*mag = v;
	return 0;
}

static int fail_range(struct ctx *c, const struct mead_cfg_key *k, yaml_mark_t m,
		      const char *text, const char *type_range)
{
	char q[FOUND_MAX * 4 + 8];
	/* The text is a validated number: print it bare unless it is too long. */
	const char *shown = strnlen(text, FOUND_MAX + 1) > FOUND_MAX ? q : text;

	quote(q, sizeof(q), text);
	if (type_range)
		return fail(c, m, "value %s is out of range %s", shown, type_range);
	return fail(c, m, "value %s is out of range %.15g..%.15g", shown, k->min, k->max);
}

static bool outside(const struct mead_cfg_key *k, double v)
{
	return has_range(k) && (v < k->min || v > k->max);
}

static int parse_scalar(struct ctx *c, const struct mead_cfg_key *k, const yaml_node_t *n,
			yaml_mark_t fallback, void *dst)
{
	yaml_mark_t m = node_mark(n, fallback);
	const char *s;
	bool neg;
	uint64_t mag;
	int rc;

	if (k->type == MEAD_CFG_STRING && is_null(n)) {
		char *v = strdup("");

		if (!v)
			return oom(c, m);
		free(*(char **)dst);
		*(char **)dst = v;
		return 0;
	}
	if (is_null(n) || n->type != YAML_SCALAR_NODE || scalar_has_nul(n))
		return fail_expected(c, k, n, m);
	s = scalar_text(n);

	switch (k->type) {
	case MEAD_CFG_BOOL:
		if (mead_parse_bool(s, (bool *)dst) == 0)
			return 0;
		return fail_expected(c, k, n, m);
	case MEAD_CFG_INT: {
		int64_t v;

		rc = parse_integer(s, &neg, &mag);
		if (rc == -EINVAL)
			return fail_expected(c, k, n, m);
		if (rc || mag > (uint64_t)INT64_MAX + neg)
			return fail_range(c, k, m, s, "-9223372036854775808..9223372036854775807");
		v = neg ? (int64_t)(0 - mag) : (int64_t)mag;
		if (outside(k, (double)v))
			return fail_range(c, k, m, s, NULL);
		*(int64_t *)dst = v;
		return 0;
	}
	case MEAD_CFG_UINT:
	case MEAD_CFG_U64: {
		uint64_t lim = k->type == MEAD_CFG_UINT ? UINT32_MAX : UINT64_MAX;

		rc = parse_integer(s, &neg, &mag);
		if (rc == -EINVAL)
			return fail_expected(c, k, n, m);
		if (rc || (neg && mag) || mag > lim) {
			if (has_range(k))
				return fail_range(c, k, m, s, NULL);
			return fail_range(c, k, m, s, k->type == MEAD_CFG_UINT ? "0..4294967295"
									   : "0..18446744073709551615");
		}
		if (outside(k, (double)mag))
			return fail_range(c, k, m, s, NULL);
		if (k->type == MEAD_CFG_UINT)
			*(uint32_t *)dst = (uint32_t)mag;
		else
			*(uint64_t *)dst = mag;
		return 0;
	}
	case MEAD_CFG_DOUBLE: {
		char *end;
		double v;

		/* strtod skips leading space, which YAML text never carries. */
		if (!*s || isspace((unsigned char)*s))
			return fail_expected(c, k, n, m);
		v = strtod(s, &end);
		if (*end || !isfinite(v))
			return fail_expected(c, k, n, m);
		if (outside(k, v))
			return fail_range(c, k, m, s, NULL);
		*(double *)dst = v;
		return 0;
	}
	case MEAD_CFG_STRING: {
		char *v = strdup(s);

		if (!v)
			return oom(c, m);
		free(*(char **)dst);
		*(char **)dst = v;
		return 0;
	}
	case MEAD_CFG_ENUM:
		for (int i = 0; k->choices && k->choices[i]; i++) {
			if (!strcmp(s, k->choices[i])) {
				*(int *)dst = i;
				return 0;
			}
		}
		return fail_expected(c, k, n, m);
	default:
		return fail(c, m, "internal: key type %d is not a scalar", (int)k->type);
	}
}

/* ---- lists, maps, tables ---- */

static void free_string_list(struct mead_cfg_string_list *l)
{
	for (uint32_t i = 0; i < l->n && i < MEAD_CFG_LIST_MAX; i++) {
		free(l->v[i]);
		l->v[i] = NULL;
	}
	l->n = 0;
}

static void free_map(struct mead_cfg_map *mp)
{
	for (uint32_t i = 0; i < mp->n && i < MEAD_CFG_MAP_MAX; i++) {
		free(mp->key[i]);
		free(mp->value[i]);
		mp->key[i] = NULL;
		mp->value[i] = NULL;
	}
	mp->n = 0;
}

static int apply_list(struct ctx *c, const struct mead_cfg_key *k, const yaml_node_t *n,
		      yaml_mark_t fallback, void *dst)
{
	yaml_mark_t m = node_mark(n, fallback);
	struct mead_cfg_key elem = *k;
	yaml_node_item_t *it;
	size_t count, i;

	if (is_null(n) || n->type != YAML_SEQUENCE_NODE)
		return fail_expected(c, k, n, m);
	count = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
	if (count > MEAD_CFG_LIST_MAX) {
		char want[MEAD_CFG_ERR_MAX];

		expect_text(k, want, sizeof(want));
		return fail(c, m, "expected %s, found %zu items", want, count);
	}
	elem.type = k->type == MEAD_CFG_UINT_LIST     ? MEAD_CFG_UINT
		    : k->type == MEAD_CFG_DOUBLE_LIST ? MEAD_CFG_DOUBLE
						      : MEAD_CFG_STRING;
	if (k->type == MEAD_CFG_STRING_LIST)
		free_string_list(dst);
	else
		*(uint32_t *)dst = 0;

	for (i = 0, it = n->data.sequence.items.start; i < count; i++, it++) {
		const yaml_node_t *item = yaml_document_get_node(c->doc, *it);
		size_t old = path_push_index(c, i);
		int rc;

		if (k->type == MEAD_CFG_UINT_LIST) {
			struct mead_cfg_uint_list *l = dst;

			rc = parse_scalar(c, &elem, item, m, &l->v[i]);
			l->n = rc ? l->n : (uint32_t)i + 1;
		} else if (k->type == MEAD_CFG_DOUBLE_LIST) {
			struct mead_cfg_double_list *l = dst;

			rc = parse_scalar(c, &elem, item, m, &l->v[i]);
			l->n = rc ? l->n : (uint32_t)i + 1;
		} else {
			struct mead_cfg_string_list *l = dst;

			l->v[i] = NULL;
			rc = parse_scalar(c, &elem, item, m, &l->v[i]);
			l->n = rc ? l->n : (uint32_t)i + 1;
		}
		path_pop(c, old);
		if (rc)
			return rc;
	}
	return 0;
}

/* Index of an earlier pair of the mapping with the same scalar key, or -1. */
static long find_duplicate(struct ctx *c, const yaml_node_t *map, const yaml_node_pair_t *pair)
{
	const yaml_node_t *key = yaml_document_get_node(c->doc, pair->key);
	const yaml_node_pair_t *p;

	if (!key || key->type != YAML_SCALAR_NODE)
		return -1;
	for (p = map->data.mapping.pairs.start; p < pair; p++) {
		const yaml_node_t *other = yaml_document_get_node(c->doc, p->key);

		if (other && other->type == YAML_SCALAR_NODE &&
		    other->data.scalar.length == key->data.scalar.length &&
		    !memcmp(other->data.scalar.value, key->data.scalar.value, key->data.scalar.length))
			return p - map->data.mapping.pairs.start;
	}
	return -1;
}

static int fail_duplicate(struct ctx *c, const yaml_node_t *map, long first, yaml_mark_t m)
{
	const yaml_node_t *k =
		yaml_document_get_node(c->doc, map->data.mapping.pairs.start[first].key);

	return fail(c, m, "given twice (first at %u:%u)", mark_line(c, k->start_mark),
		    mark_col(c, k->start_mark));
}

static int map_set(struct ctx *c, struct mead_cfg_map *mp, const char *key, const yaml_node_t *v,
		   yaml_mark_t fallback)
{
	yaml_mark_t m = node_mark(v, fallback);
	char found[FOUND_MAX * 4 + 8];
	uint32_t i;
	char *value;

	if (!is_null(v) && (v->type != YAML_SCALAR_NODE || scalar_has_nul(v))) {
		describe(v, found, sizeof(found));
		return fail(c, m, "expected a single value, found %s", found);
	}
	for (i = 0; i < mp->n && strcmp(mp->key[i], key); i++)
		;
	if (i == MEAD_CFG_MAP_MAX)
		return fail(c, m, "too many entries: at most %d are allowed", MEAD_CFG_MAP_MAX);
	value = strdup(is_null(v) ? "" : scalar_text(v));
	if (!value)
		return oom(c, m);
	if (i == mp->n) {
		mp->key[i] = strdup(key);
		if (!mp->key[i]) {
			free(value);
			return oom(c, m);
		}
		mp->value[i] = NULL;
		mp->n++;
	}
	free(mp->value[i]);
	mp->value[i] = value;
	mp->mark[i].file = c->is_default ? DEFAULT_NAME : c->name;
	mp->mark[i].line = c->is_default ? 0 : mark_line(c, m);
	mp->mark[i].col = c->is_default ? 0 : mark_col(c, m);
	return 0;
}

static int apply_map(struct ctx *c, const struct mead_cfg_key *k, const yaml_node_t *n,
		     yaml_mark_t fallback, struct mead_cfg_map *mp)
{
	yaml_mark_t m = node_mark(n, fallback);
	const yaml_node_pair_t *p;
	size_t count;

	if (is_null(n)) {
		free_map(mp);
		return 0;
	}
	if (n->type != YAML_MAPPING_NODE)
		return fail_expected(c, k, n, m);
	count = (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
	if (count > MEAD_CFG_MAP_MAX) {
		char want[MEAD_CFG_ERR_MAX];

		expect_text(k, want, sizeof(want));
		return fail(c, m, "expected %s, found %zu entries", want, count);
	}
	free_map(mp);
	for (p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
		const yaml_node_t *kn = yaml_document_get_node(c->doc, p->key);
		const yaml_node_t *vn = yaml_document_get_node(c->doc, p->value);
		char found[FOUND_MAX * 4 + 8];
		size_t old;
		long dup;
		int rc;

		if (is_null(kn) || kn->type != YAML_SCALAR_NODE || scalar_has_nul(kn)) {
			describe(kn, found, sizeof(found));
			return fail(c, node_mark(kn, m), "expected a name, found %s", found);
		}
		old = path_push(c, scalar_text(kn));
		dup = find_duplicate(c, n, p);
		rc = dup >= 0 ? fail_duplicate(c, n, dup, kn->start_mark)
			      : map_set(c, mp, scalar_text(kn), vn, m);
		path_pop(c, old);
		if (rc)
			return rc;
	}
	return 0;
}

static int walk_group(struct ctx *c, const struct mead_cfg_key *tbl, char *base, const char *rel,
		      const yaml_node_t *n, yaml_mark_t fallback);

static int apply_key(struct ctx *c, const struct mead_cfg_key *k, char *base,
		     const yaml_node_t *n, yaml_mark_t fallback)
{
	void *dst = base + k->offset;

	switch (k->type) {
	case MEAD_CFG_TABLE:
		return walk_group(c, k->sub, dst, "", n, fallback);
	case MEAD_CFG_MAP:
		return apply_map(c, k, n, fallback, dst);
	case MEAD_CFG_UINT_LIST:
	case MEAD_CFG_DOUBLE_LIST:
	case MEAD_CFG_STRING_LIST:
		return apply_list(c, k, n, fallback, dst);
	default:
		return parse_scalar(c, k, n, fallback, dst);
	}
}

static bool is_group(const struct mead_cfg_key *tbl, const char *rel)
{
	for (const struct mead_cfg_key *k = tbl; k && k->path; k++)
		if (starts_with_path(k->path, rel))
			return true;
	return false;
}

static const struct mead_cfg_key *find_exact(const struct mead_cfg_key *tbl, const char *path)
{
	for (const struct mead_cfg_key *k = tbl; k && k->path; k++)
		if (!strcmp(k->path, path))
			return k;
	return NULL;
}

/* Apply mapping n to the keys of tbl under the relative prefix rel ("" or
 * "a.b."): a key either names an entry of tbl or a deeper implicit group. */
static int walk_group(struct ctx *c, const struct mead_cfg_key *tbl, char *base, const char *rel,
		      const yaml_node_t *n, yaml_mark_t fallback)
{
	yaml_mark_t m = node_mark(n, fallback);
	const yaml_node_pair_t *p;
	char list[MEAD_CFG_ERR_MAX];

	if (is_null(n))
		return 0;
	if (n->type != YAML_MAPPING_NODE) {
		char found[FOUND_MAX * 4 + 8];

		known_keys(tbl, rel, list, sizeof(list));
		describe(n, found, sizeof(found));
		return fail(c, m, "expected a mapping (keys: %s), found %s", list, found);
	}
	for (p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
		const yaml_node_t *kn = yaml_document_get_node(c->doc, p->key);
		const yaml_node_t *vn = yaml_document_get_node(c->doc, p->value);
		const struct mead_cfg_key *k = NULL;
		char cand[PATH_BUF], found[FOUND_MAX * 4 + 8];
		const char *name;
		bool fits, dotted;
		size_t old;
		long dup;
		int rc, len;

		if (!kn || kn->type != YAML_SCALAR_NODE || scalar_has_nul(kn)) {
			describe(kn, found, sizeof(found));
			return fail(c, node_mark(kn, m), "expected a key name, found %s", found);
		}
		name = scalar_text(kn);
		old = path_push(c, name);
		dup = find_duplicate(c, n, p);
		if (dup >= 0) {
			rc = fail_duplicate(c, n, dup, kn->start_mark);
			path_pop(c, old);
			return rc;
		}
		len = snprintf(cand, sizeof(cand) - 1, "%s%s", rel, name);
		fits = len > 0 && (size_t)len < sizeof(cand) - 1;
		dotted = strchr(name, '.') != NULL;
		if (fits && !dotted)
			k = find_exact(tbl, cand);
		if (k) {
			rc = apply_key(c, k, base, vn, kn->start_mark);
		} else if (fits && !dotted && is_group(tbl, cand)) {
			strcat(cand, ".");
			rc = walk_group(c, tbl, base, cand, vn, kn->start_mark);
		} else {
			known_keys(tbl, rel, list, sizeof(list));
			rc = fail(c, kn->start_mark, "unknown key (known keys here: %s)%s", list,
				  dotted ? "; write nested mappings, not dotted keys" : "");
		}
		path_pop(c, old);
		if (rc)
			return rc;
	}
	return 0;
}

/* ---- documents ---- */

static int yaml_fail(struct ctx *c, const yaml_parser_t *p, const char *text, size_t len)
{
	yaml_mark_t m = p->problem_mark;
	const char *problem = p->problem ? p->problem : "unreadable input";

	if (p->error == YAML_MEMORY_ERROR) {
		m = (yaml_mark_t){ 0 };
		return oom(c, m);
	}
	if (p->error == YAML_READER_ERROR) {
		/* The reader reports a byte offset, not a line and column. */
		size_t i;

		m = (yaml_mark_t){ 0 };
		for (i = 0; i < p->problem_offset && i < len; i++) {
			if (text[i] == '\n') {
				m.line++;
				m.column = 0;
			} else {
				m.column++;
			}
		}
		if (p->problem_value >= 0)
			return fail(c, m, "YAML syntax error: %s (byte 0x%02x)", problem,
				    (unsigned)p->problem_value);
		return fail(c, m, "YAML syntax error: %s", problem);
	}
	if (p->context)
		return fail(c, m, "YAML syntax error: %s (%s at %u:%u)", problem, p->context,
			    mark_line(c, p->context_mark), mark_col(c, p->context_mark));
	return fail(c, m, "YAML syntax error: %s", problem);
}

/* Load exactly one document; a second one in the same text is an error
 * rather than silently ignored. */
static int parse_yaml(struct ctx *c, const char *text, size_t len, yaml_document_t *doc)
{
	yaml_parser_t parser;
	yaml_document_t extra;
	int rc = 0;

	if (!yaml_parser_initialize(&parser))
		return oom(c, (yaml_mark_t){ 0 });
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
	if (!yaml_parser_load(&parser, doc)) {
		rc = yaml_fail(c, &parser, text, len);
		yaml_parser_delete(&parser);
		return rc;
	}
	if (!yaml_parser_load(&parser, &extra)) {
		rc = yaml_fail(c, &parser, text, len);
	} else {
		const yaml_node_t *root = yaml_document_get_root_node(&extra);

		if (root)
			rc = fail(c, root->start_mark,
				  "only one YAML document is allowed, found a second one");
		yaml_document_delete(&extra);
	}
	yaml_parser_delete(&parser);
	if (rc)
		yaml_document_delete(doc);
	return rc;
}

/* Parse text as one YAML value and apply it to key k (or, with k NULL, to the
 * group rel of tbl). */
static int apply_text(struct ctx *c, const struct mead_cfg_key *k, const struct mead_cfg_key *tbl,
		      const char *rel, char *base, const char *text)
{
	yaml_document_t doc;
	yaml_document_t *saved = c->doc;
	yaml_mark_t origin = { 0 };
	int rc;

	rc = parse_yaml(c, text, strlen(text), &doc);
	if (rc)
		return rc;
	c->doc = &doc;
	if (k)
		rc = apply_key(c, k, base, yaml_document_get_root_node(&doc), origin);
	else
		rc = walk_group(c, tbl, base, rel, yaml_document_get_root_node(&doc), origin);
	c->doc = saved;
	yaml_document_delete(&doc);
	return rc;
}

static int defaults_rec(struct ctx *c, const struct mead_cfg_key *tbl, char *base)
{
	for (const struct mead_cfg_key *k = tbl; k && k->path; k++) {
		void *dst = base + k->offset;
		size_t old = path_push(c, k->path);
		int rc = 0;

		if (k->type == MEAD_CFG_TABLE) {
			rc = defaults_rec(c, k->sub, dst);
		} else if (k->default_value) {
			rc = apply_text(c, k, NULL, NULL, base, k->default_value);
		} else {
			switch (k->type) {
			case MEAD_CFG_BOOL:
				*(bool *)dst = false;
				break;
			case MEAD_CFG_INT:
				*(int64_t *)dst = 0;
				break;
			case MEAD_CFG_UINT:
				*(uint32_t *)dst = 0;
				break;
			case MEAD_CFG_U64:
				*(uint64_t *)dst = 0;
				break;
			case MEAD_CFG_DOUBLE:
				*(double *)dst = 0.0;
				break;
			case MEAD_CFG_ENUM:
				*(int *)dst = 0;
				break;
			case MEAD_CFG_STRING: {
				/* Never NULL, so users can print and compare without checks. */
				char *v = strdup("");

				if (!v) {
					rc = oom(c, (yaml_mark_t){ 0 });
					break;
				}
				free(*(char **)dst);
				*(char **)dst = v;
				break;
			}
			case MEAD_CFG_UINT_LIST:
			case MEAD_CFG_DOUBLE_LIST:
				*(uint32_t *)dst = 0;
				break;
			case MEAD_CFG_STRING_LIST:
				free_string_list(dst);
				break;
			case MEAD_CFG_MAP:
				free_map(dst);
				break;
			case MEAD_CFG_TABLE:
				break;
			}
		}
		path_pop(c, old);
		if (rc)
			return rc;
	}
	return 0;
}

int mead_cfg_defaults(const struct mead_cfg_key *table, void *obj, char *err, size_t err_len)
{
	struct ctx c = { .err = err, .err_len = err_len, .name = DEFAULT_NAME, .is_default = true };

	if (err && err_len)
		err[0] = '\0';
	if (!table || !obj)
		return -EINVAL;
	return defaults_rec(&c, table, obj);
}

int mead_cfg_load_string(const struct mead_cfg_key *table, void *obj, const char *name,
			 const char *yaml, size_t len, char *err, size_t err_len)
{
	struct ctx c = { .err = err, .err_len = err_len, .name = name ? name : "<string>" };
	yaml_document_t doc;
	int rc;

	if (err && err_len)
		err[0] = '\0';
	if (!table || !obj || (!yaml && len))
		return -EINVAL;
	rc = mead_cfg_defaults(table, obj, err, err_len);
	if (rc)
		return rc;
	rc = parse_yaml(&c, yaml ? yaml : "", len, &doc);
	if (rc)
		return rc;
	c.doc = &doc;
	rc = walk_group(&c, table, obj, "", yaml_document_get_root_node(&doc), (yaml_mark_t){ 0 });
	yaml_document_delete(&doc);
	return rc;
}

int mead_cfg_load_file(const struct mead_cfg_key *table, void *obj, const char *path,
		       char *err, size_t err_len)
{
	size_t at = 0, len = 0, cap = 4096;
	char *text, *grown;
	FILE *f;
	int rc;

	if (err && err_len)
		err[0] = '\0';
	if (!table || !obj || !path)
		return -EINVAL;
	f = fopen(path, "re");
	if (!f) {
		rc = -errno;
		append(err, err_len, &at, "%s: cannot open: %s", path, strerror(-rc));
		return rc;
	}
	text = malloc(cap);
	for (;;) {
		size_t got;

		if (!text) {
			fclose(f);
			append(err, err_len, &at, "%s: out of memory", path);
			return -ENOMEM;
		}
		if (len == cap) {
			if (cap >= FILE_MAX_BYTES) {
				free(text);
				fclose(f);
				append(err, err_len, &at, "%s: larger than %u bytes, not a configuration",
				       path, FILE_MAX_BYTES);
				return -EFBIG;
			}
			cap *= 2;
			grown = realloc(text, cap);
			if (!grown)
				free(text);
			text = grown;
			continue;
		}
		errno = 0;
		got = fread(text + len, 1, cap - len, f);
		len += got;
		if (got)
			continue;
		if (ferror(f)) {
			rc = errno ? -errno : -EIO;
			free(text);
			fclose(f);
			append(err, err_len, &at, "%s: cannot read: %s", path, strerror(-rc));
			return rc;
		}
		break;
	}
	fclose(f);
	rc = mead_cfg_load_string(table, obj, path, text, len, err, err_len);
	free(text);
	return rc;
}

/* ---- lookup ---- */

struct resolved {
	const struct mead_cfg_key *key;   /* the key; NULL for a group */
	const struct mead_cfg_key *table; /* table holding it, or deepest table reached */
	size_t offset;                    /* of the key's storage, or of the table */
	const char *entry;                /* MAP entry name (into path) */
	size_t rel_at;                    /* where the path relative to table starts */
	size_t known_len;                 /* deepest group prefix of that relative path */
};

/* Returns true when path names a key, a MAP entry or a group (key NULL). */
static bool resolve(const struct mead_cfg_key *table, const char *path, struct resolved *r)
{
	const struct mead_cfg_key *tbl = table, *k;
	size_t off = 0, at = 0;

	for (;;) {
		const char *rel = path + at;
		const struct mead_cfg_key *descend = NULL;
		size_t i;

		*r = (struct resolved){ .table = tbl, .offset = off, .rel_at = at };
		if (!*rel)
			return at == 0;
		k = find_exact(tbl, rel);
		if (k) {
			r->key = k;
			r->offset = off + k->offset;
			return true;
		}
		for (k = tbl; k && k->path && !descend; k++)
			if ((k->type == MEAD_CFG_TABLE || k->type == MEAD_CFG_MAP) &&
			    starts_with_path(rel, k->path))
				descend = k;
		if (descend && descend->type == MEAD_CFG_MAP) {
			r->key = descend;
			r->offset = off + descend->offset;
			r->entry = rel + strlen(descend->path) + 1;
			return *r->entry != '\0';
		}
		if (descend) {
			tbl = descend->sub;
			off += descend->offset;
			at += strlen(descend->path) + 1;
			continue;
		}
		{
			char pre[PATH_BUF];
			size_t rl = strlen(rel);

			if (rl + 2 > sizeof(pre))
				return false;
			memcpy(pre, rel, rl);
			pre[rl] = '\0';
			if (is_group(tbl, pre))
				return true;
			/* The longest prefix ending at a '.' that is a group lists
			 * the keys a person most likely meant. */
			for (i = rl; i > 0; i--) {
				if (rel[i - 1] != '.')
					continue;
				pre[i - 1] = '\0';
				if (is_group(tbl, pre)) {
					r->known_len = i;
					break;
				}
			}
			return false;
		}
	}
}

const struct mead_cfg_key *mead_cfg_find(const struct mead_cfg_key *table, const char *path,
					 size_t *ret_obj_offset)
{
	struct resolved r;

	if (!table || !path || !resolve(table, path, &r) || !r.key || r.entry)
		return NULL;
	if (ret_obj_offset)
		*ret_obj_offset = r.offset;
	return r.key;
}

/* ---- overrides ---- */

int mead_cfg_override(const struct mead_cfg_key *table, void *obj, const char *assignment,
		      char *err, size_t err_len)
{
	struct ctx c = { .err = err, .err_len = err_len, .name = CMDLINE_NAME };
	yaml_mark_t m = { 0 };
	const char *eq, *ks, *ke;
	char key[PATH_BUF];
	struct resolved r;
	size_t kl;
	int rc;

	if (err && err_len)
		err[0] = '\0';
	if (!table || !obj || !assignment)
		return -EINVAL;
	/* A file goes through libyaml, which refuses malformed UTF-8; an
	 * override must meet the same bar, or what --print shows could not be
	 * loaded back. */
	for (size_t i = 0, n = strlen(assignment); i < n;) {
		size_t len = mead_utf8_seq_len((const unsigned char *)assignment + i, n - i);
		if (len == 0) {
			if (err && err_len)
				snprintf(err, err_len, "%s:1:%zu: malformed UTF-8 (byte 0x%02x)", CMDLINE_NAME, i + 1,
					 (unsigned char)assignment[i]);
			return -EINVAL;
		}
		i += len;
	}
	eq = strchr(assignment, '=');
	ke = eq ? eq : assignment + strlen(assignment);
	for (ks = assignment; ks < ke && isspace((unsigned char)*ks); ks++)
		;
	while (ke > ks && isspace((unsigned char)ke[-1]))
		ke--;
	kl = (size_t)(ke - ks);
	if (kl >= sizeof(key))
		kl = sizeof(key) - 1;
	memcpy(key, ks, kl);
	key[kl] = '\0';
	path_set(&c, key);
	if (!eq)
		return fail(&c, m, "expected key=value, found no \"=\"");
	if (!kl) {
		m.column = (size_t)(eq - assignment);
		return fail(&c, m, "expected key=value, found no key before \"=\"");
	}
	if (!resolve(table, key, &r)) {
		char list[MEAD_CFG_ERR_MAX], rel[PATH_BUF];

		snprintf(rel, sizeof(rel), "%.*s", (int)r.known_len, key + r.rel_at);
		known_keys(r.table, rel, list, sizeof(list));
		m.column = (size_t)(ks - assignment) + r.rel_at + r.known_len;
		return fail(&c, m, "unknown key (known keys here: %s)", list);
	}

	c.col_shift = (uint32_t)(eq - assignment) + 1;
	c.line_end = (uint32_t)strlen(assignment);
	{
		/* YAML would read "#..." as a comment, and the key as given no
		 * value: a label such as "#0:0" would vanish without a word */
		const char *v = eq + 1;
		while (*v == ' ' || *v == '\t')
			v++;
		if (*v == '#') {
			m.column = (size_t)(v - eq - 1);   /* fail() adds the key's width */
			return fail(&c, m, "the value starts with \"#\", which YAML reads as a comment: quote it (%.*s='%s')",
				    (int)kl, key, v);
		}
	}
	if (r.entry) {
		yaml_document_t doc;

		rc = parse_yaml(&c, eq + 1, strlen(eq + 1), &doc);
		if (rc)
			return rc;
		c.doc = &doc;
		rc = map_set(&c, (struct mead_cfg_map *)((char *)obj + r.offset), r.entry,
			     yaml_document_get_root_node(&doc), m);
		yaml_document_delete(&doc);
		return rc;
	}
	if (r.key)
		return apply_text(&c, r.key, NULL, NULL, (char *)obj + r.offset - r.key->offset,
				  eq + 1);
	{
		char rel[PATH_BUF];

		snprintf(rel, sizeof(rel), "%s%s", key + r.rel_at, key[r.rel_at] ? "." : "");
		return apply_text(&c, NULL, r.table, rel, (char *)obj + r.offset, eq + 1);
	}
}

/* ---- formatting ---- */

static bool plain_safe(const char *s)
{
	if (!*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL"))
		return false;
	if (!isalnum((unsigned char)*s) && !strchr("_./", *s))
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && !strchr("_./+-@", *s))
			return false;
	return true;
}

static void fmt_string(struct out *o, const char *s)
{
	if (!s)
		s = "";
	if (plain_safe(s)) {
		out_printf(o, "%s", s);
		return;
	}
	out_printf(o, "\"");
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\')
			out_printf(o, "\\%c", ch);
		else if (ch == '\n')
			out_printf(o, "\\n");
		else if (ch == '\t')
			out_printf(o, "\\t");
		else if (ch < 0x20 || ch == 0x7f)
			out_printf(o, "\\x%02x", ch);
		else
			out_printf(o, "%c", ch);
	}
	out_printf(o, "\"");
}

/* Shortest text that reads back as the same double. */
static void fmt_double(struct out *o, double v)
{
	char tmp[64];

	for (int prec = 15; prec <= 17; prec++) {
		snprintf(tmp, sizeof(tmp), "%.*g", prec, v);
		if (strtod(tmp, NULL) == v)
			break;
	}
	out_printf(o, "%s", tmp);
}

static void fmt_group(struct out *o, const struct mead_cfg_key *tbl, const char *base,
		      const char *rel);

static void fmt_key(struct out *o, const struct mead_cfg_key *k, const char *base)
{
	const void *p = base + k->offset;

	switch (k->type) {
	case MEAD_CFG_BOOL:
		out_printf(o, "%s", *(const bool *)p ? "true" : "false");
		break;
	case MEAD_CFG_INT:
		out_printf(o, "%lld", (long long)*(const int64_t *)p);
		break;
	case MEAD_CFG_UINT:
		out_printf(o, "%u", *(const uint32_t *)p);
		break;
	case MEAD_CFG_U64:
		out_printf(o, "%llu", (unsigned long long)*(const uint64_t *)p);
		break;
	case MEAD_CFG_DOUBLE:
		fmt_double(o, *(const double *)p);
		break;
	case MEAD_CFG_STRING:
		fmt_string(o, *(char *const *)p);
		break;
	case MEAD_CFG_ENUM: {
		int v = *(const int *)p, i;

		for (i = 0; k->choices && k->choices[i] && i < v; i++)
			;
		if (v >= 0 && k->choices && k->choices[i] && i == v)
			fmt_string(o, k->choices[v]);
		else
			out_printf(o, "%d", v);
		break;
	}
	case MEAD_CFG_UINT_LIST: {
		const struct mead_cfg_uint_list *l = p;

		out_printf(o, "[");
		for (uint32_t i = 0; i < l->n && i < MEAD_CFG_LIST_MAX; i++)
			out_printf(o, "%s%u", i ? ", " : "", l->v[i]);
		out_printf(o, "]");
		break;
	}
	case MEAD_CFG_DOUBLE_LIST: {
		const struct mead_cfg_double_list *l = p;

		out_printf(o, "[");
		for (uint32_t i = 0; i < l->n && i < MEAD_CFG_LIST_MAX; i++) {
			out_printf(o, "%s", i ? ", " : "");
			fmt_double(o, l->v[i]);
		}
		out_printf(o, "]");
		break;
	}
	case MEAD_CFG_STRING_LIST: {
		const struct mead_cfg_string_list *l = p;

		out_printf(o, "[");
		for (uint32_t i = 0; i < l->n && i < MEAD_CFG_LIST_MAX; i++) {
			out_printf(o, "%s", i ? ", " : "");
			fmt_string(o, l->v[i]);
		}
		out_printf(o, "]");
		break;
	}
	case MEAD_CFG_MAP: {
		const struct mead_cfg_map *mp = p;

		out_printf(o, "{");
		for (uint32_t i = 0; i < mp->n && i < MEAD_CFG_MAP_MAX; i++) {
			out_printf(o, "%s", i ? ", " : "");
			fmt_string(o, mp->key[i]);
			out_printf(o, ": ");
			fmt_string(o, mp->value[i]);
		}
		out_printf(o, "}");
		break;
	}
	case MEAD_CFG_TABLE:
		fmt_group(o, k->sub, p, "");
		break;
	}
}

static void fmt_group(struct out *o, const struct mead_cfg_key *tbl, const char *base,
		      const char *rel)
{
	size_t rl = strlen(rel);
	bool first = true;

	out_printf(o, "{");
	for (const struct mead_cfg_key *k = tbl; k && k->path; k++) {
		const struct mead_cfg_key *j;
		const char *comp;
		size_t cl;
		bool seen = false;

		if (strncmp(k->path, rel, rl) != 0)
			continue;
		comp = k->path + rl;
		cl = comp_len(comp);
		if (!cl)
			continue;
		for (j = tbl; j < k && !seen; j++)
			seen = strncmp(j->path, rel, rl) == 0 && comp_len(j->path + rl) == cl &&
			       strncmp(j->path + rl, comp, cl) == 0;
		if (seen)
			continue;
		out_printf(o, "%s%.*s: ", first ? "" : ", ", (int)cl, comp);
		first = false;
		if (!comp[cl]) {
			fmt_key(o, k, base);
		} else {
			char sub[PATH_BUF];

			snprintf(sub, sizeof(sub), "%s%.*s.", rel, (int)cl, comp);
			fmt_group(o, tbl, base, sub);
		}
	}
	out_printf(o, "}");
}

int mead_cfg_format(const struct mead_cfg_key *table, const void *obj, const char *path,
		    char *buf, size_t len)
{
	struct out o = { .buf = buf, .len = len };
	struct resolved r;

	if (!table || !obj || !buf || !len)
		return -EINVAL;
	buf[0] = '\0';
	if (!path)
		path = "";
	if (!resolve(table, path, &r))
		return -ENOENT;
	if (r.entry) {
		const struct mead_cfg_map *mp = (const void *)((const char *)obj + r.offset);
		uint32_t i;

		for (i = 0; i < mp->n && strcmp(mp->key[i], r.entry); i++)
			;
		if (i == mp->n)
			return -ENOENT;
		fmt_string(&o, mp->value[i]);
	} else if (r.key) {
		fmt_key(&o, r.key, (const char *)obj + r.offset - r.key->offset);
	} else {
		char rel[PATH_BUF];

		snprintf(rel, sizeof(rel), "%s%s", path + r.rel_at, path[r.rel_at] ? "." : "");
		fmt_group(&o, r.table, (const char *)obj + r.offset, rel);
	}
	if (o.overflow)
		return -ENOSPC;
	return (int)o.at;
}

/* ---- release ---- */

static void release_rec(const struct mead_cfg_key *tbl, char *base)
{
	for (const struct mead_cfg_key *k = tbl; k && k->path; k++) {
		void *p = base + k->offset;

		switch (k->type) {
		case MEAD_CFG_STRING:
			free(*(char **)p);
			*(char **)p = NULL;
			break;
		case MEAD_CFG_STRING_LIST:
			free_string_list(p);
			break;
		case MEAD_CFG_MAP:
			free_map(p);
			break;
		case MEAD_CFG_TABLE:
			release_rec(k->sub, p);
			break;
		default:
			break;
		}
	}
}

void mead_cfg_release(const struct mead_cfg_key *table, void *obj)
{
	if (table && obj)
		release_rec(table, obj);
}
