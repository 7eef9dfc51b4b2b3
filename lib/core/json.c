/* SPDX-License-Identifier: MIT */
#include "lib/core/json.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/core/utf8.h"

struct mead_json {
	struct mead_json_value *v;
	uint32_t n, cap;
	char *arena;
	size_t arena_pos, arena_len;
};

struct parser {
	const char *p, *end, *start;
	struct mead_json *doc;
	const struct mead_json_limits *lim;
	char *err;
	size_t err_len;
	int rc;
};

static int fail(struct parser *ps, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(struct parser *ps, int rc, const char *fmt, ...)
{
	if (ps->rc == 0) {
		char msg[160];
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(msg, sizeof(msg), fmt, ap);
		va_end(ap);
		if (ps->err && ps->err_len)
			snprintf(ps->err, ps->err_len, "invalid JSON at byte %zu: %s", (size_t)(ps->p - ps->start), msg);
		ps->rc = rc;
	}
	return ps->rc;
}

static void skip_ws(struct parser *ps)
{
	while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
		ps->p++;
}

static int new_node(struct parser *ps, enum mead_json_type t)
{
	struct mead_json *d = ps->doc;
	if (d->n >= d->cap) {
		fail(ps, -E2BIG, "more than %" PRIu32 " values", d->cap);
		return -1;
	}
	struct mead_json_value *v = &d->v[d->n];
	memset(v, 0, sizeof(*v));
	v->type = t;
	v->first = -1;
	v->next = -1;
	return (int)d->n++;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9') return c - '0';
	if (c >= 'a' && c <= 'f') return c - 'a' + 10;
	if (c >= 'A' && c <= 'F') return c - 'A' + 10;
	return -1;
}

static int read_hex4(struct parser *ps, uint32_t *ret)
{
	uint32_t v = 0;
	if (ps->end - ps->p < 4)
		return fail(ps, -EINVAL, "truncated \\u escape");
	for (int i = 0; i < 4; i++) {
		int h = hexval(ps->p[i]);
		if (h < 0)
			return fail(ps, -EINVAL, "bad \\u escape");
		v = v << 4 | (uint32_t)h;
	}
	ps->p += 4;
	*ret = v;
	return 0;
}

static void put_utf8(char *out, size_t *pos, uint32_t cp)
{
	if (cp < 0x80) {
		out[(*pos)++] = (char)cp;
	} else if (cp < 0x800) {
		out[(*pos)++] = (char)(0xC0 | cp >> 6);
		out[(*pos)++] = (char)(0x80 | (cp & 0x3F));
	} else if (cp < 0x10000) {
		out[(*pos)++] = (char)(0xE0 | cp >> 12);
		out[(*pos)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
		out[(*pos)++] = (char)(0x80 | (cp & 0x3F));
	} else {
		out[(*pos)++] = (char)(0xF0 | cp >> 18);
		out[(*pos)++] = (char)(0x80 | ((cp >> 12) & 0x3F));
		out[(*pos)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
		out[(*pos)++] = (char)(0x80 | (cp & 0x3F));
	}
}

/* Parses a string at ps->p (on the opening quote); returns its arena copy. */
static int parse_string(struct parser *ps, const char **ret, uint32_t *ret_len)
{
	struct mead_json *d = ps->doc;
	char *out = d->arena + d->arena_pos;
	size_t pos = 0;

	ps->p++; /* opening quote */
	for (;;) {
		if (ps->p >= ps->end)
			return fail(ps, -EINVAL, "unterminated string");
		if (pos > ps->lim->max_string)
			return fail(ps, -E2BIG, "string longer than %zu bytes", ps->lim->max_string);
		unsigned char c = (unsigned char)*ps->p;
		if (c == '"') {
			ps->p++;
			break;
		}
		if (c < 0x20)
			return fail(ps, -EINVAL, "control character in string");
		if (c == '\\') {
			ps->p++;
			if (ps->p >= ps->end)
				return fail(ps, -EINVAL, "unterminated escape");
			char e = *ps->p++;
			uint32_t cp;
			switch (e) {
			case '"': out[pos++] = '"'; break;
			case '\\': out[pos++] = '\\'; break;
			case '/': out[pos++] = '/'; break;
			case 'b': out[pos++] = '\b'; break;
			case 'f': out[pos++] = '\f'; break;
			case 'n': out[pos++] = '\n'; break;
			case 'r': out[pos++] = '\r'; break;
			case 't': out[pos++] = '\t'; break;
			case 'u':
				if (read_hex4(ps, &cp) < 0)
					return ps->rc;
				if (cp >= 0xDC00 && cp <= 0xDFFF)
					return fail(ps, -EINVAL, "lone low surrogate");
				if (cp >= 0xD800 && cp <= 0xDBFF) {
					uint32_t lo;
					if (ps->end - ps->p < 2 || ps->p[0] != '\\' || ps->p[1] != 'u')
						return fail(ps, -EINVAL, "lone high surrogate");
					ps->p += 2;
					if (read_hex4(ps, &lo) < 0)
						return ps->rc;
					if (lo < 0xDC00 || lo > 0xDFFF)
						return fail(ps, -EINVAL, "bad surrogate pair");
					cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
				}
				put_utf8(out, &pos, cp);
				break;
			default:
				return fail(ps, -EINVAL, "bad escape '\\%c'", e >= 0x20 && e < 0x7f ? e : '?');
			}
			continue;
		}
		size_t n = mead_utf8_seq_len((const unsigned char *)ps->p, (size_t)(ps->end - ps->p));
		if (n == 0)
			return fail(ps, -EINVAL, "invalid UTF-8 in string");
		memcpy(out + pos, ps->p, n);
		pos += n;
		ps->p += n;
	}
	if (pos > ps->lim->max_string)
		return fail(ps, -E2BIG, "string longer than %zu bytes", ps->lim->max_string);
	out[pos] = '\0';
	d->arena_pos += pos + 1;
	*ret = out;
	*ret_len = (uint32_t)pos;
	return 0;
}

static int parse_number(struct parser *ps, struct mead_json_value *v)
{
	const char *s = ps->p;
	bool integral = true;
	char tmp[64];

	if (ps->p < ps->end && *ps->p == '-')
		ps->p++;
	if (ps->p >= ps->end)
		return fail(ps, -EINVAL, "truncated number");
	if (*ps->p == '0') {
		ps->p++;
	} else if (*ps->p >= '1' && *ps->p <= '9') {
		while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9')
			ps->p++;
	} else {
		return fail(ps, -EINVAL, "bad number");
	}
	if (ps->p < ps->end && *ps->p == '.') {
		integral = false;
		ps->p++;
		if (ps->p >= ps->end || *ps->p < '0' || *ps->p > '9')
			return fail(ps, -EINVAL, "bad fraction");
		while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9')
			ps->p++;
	}
	if (ps->p < ps->end && (*ps->p == 'e' || *ps->p == 'E')) {
		integral = false;
		ps->p++;
		if (ps->p < ps->end && (*ps->p == '+' || *ps->p == '-'))
			ps->p++;
		if (ps->p >= ps->end || *ps->p < '0' || *ps->p > '9')
			return fail(ps, -EINVAL, "bad exponent");
		while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9')
			ps->p++;
	}
	size_t n = (size_t)(ps->p - s);
	if (n >= sizeof(tmp))
		return fail(ps, -EINVAL, "number too long");
	memcpy(tmp, s, n);
	tmp[n] = '\0';
	errno = 0;
	v->num = strtod(tmp, NULL);
	if (!isfinite(v->num))
		return fail(ps, -EINVAL, "number out of range");
	if (integral) {
		errno = 0;
		long long ll = strtoll(tmp, NULL, 10);
		if (errno == 0) {
			v->is_int = true;
			v->i = ll;
		}
	}
	return 0;
}

static int parse_value(struct parser *ps, uint32_t depth, int *ret_idx);

static int parse_container(struct parser *ps, uint32_t depth, int idx, bool object)
{
	char close = object ? '}' : ']';
	int last = -1;

	ps->p++;
	skip_ws(ps);
	if (ps->p < ps->end && *ps->p == close) {
		ps->p++;
		return 0;
	}
	for (;;) {
		const char *key = NULL;
		uint32_t key_len = 0;
		int child;

		skip_ws(ps);
		if (object) {
			if (ps->p >= ps->end || *ps->p != '"')
				return fail(ps, -EINVAL, "expected a string key");
			if (parse_string(ps, &key, &key_len) < 0)
				return ps->rc;
			if (memchr(key, '\0', key_len))
				return fail(ps, -EINVAL, "NUL in key");
			for (int m = ps->doc->v[idx].first; m >= 0; m = ps->doc->v[m].next)
				if (strcmp(ps->doc->v[m].key, key) == 0)
					return fail(ps, -EINVAL, "duplicate key \"%.40s\"", key);
			skip_ws(ps);
			if (ps->p >= ps->end || *ps->p != ':')
				return fail(ps, -EINVAL, "expected ':'");
			ps->p++;
		}
		if (parse_value(ps, depth + 1, &child) < 0)
			return ps->rc;
		ps->doc->v[child].key = key;
		if (last < 0)
			ps->doc->v[idx].first = child;
		else
			ps->doc->v[last].next = child;
		last = child;
		ps->doc->v[idx].n++;
		skip_ws(ps);
		if (ps->p >= ps->end)
			return fail(ps, -EINVAL, "unterminated %s", object ? "object" : "array");
		if (*ps->p == ',') {
			ps->p++;
			continue;
		}
		if (*ps->p == close) {
			ps->p++;
			return 0;
		}
		return fail(ps, -EINVAL, "expected ',' or '%c'", close);
	}
}

static int literal(struct parser *ps, const char *word)
{
	size_t n = strlen(word);
	if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0)
		return fail(ps, -EINVAL, "unexpected token");
	ps->p += n;
	return 0;
}

static int parse_value(struct parser *ps, uint32_t depth, int *ret_idx)
{
	int idx;

	if (depth > ps->lim->max_depth)
		return fail(ps, -E2BIG, "nested deeper than %" PRIu32, ps->lim->max_depth);
	skip_ws(ps);
	if (ps->p >= ps->end)
		return fail(ps, -EINVAL, "expected a value");
	switch (*ps->p) {
	case '{':
	case '[':
		idx = new_node(ps, *ps->p == '{' ? MEAD_JSON_OBJECT : MEAD_JSON_ARRAY);
		if (idx < 0)
			return ps->rc;
		if (parse_container(ps, depth, idx, *ps->p == '{') < 0)
			return ps->rc;
		break;
	case '"':
		idx = new_node(ps, MEAD_JSON_STRING);
		if (idx < 0)
			return ps->rc;
		{
			const char *s;
			uint32_t n;
			if (parse_string(ps, &s, &n) < 0)
				return ps->rc;
			ps->doc->v[idx].s = s;
			ps->doc->v[idx].n = n;
		}
		break;
	case 't':
	case 'f':
		idx = new_node(ps, MEAD_JSON_BOOL);
		if (idx < 0)
			return ps->rc;
		ps->doc->v[idx].b = *ps->p == 't';
		if (literal(ps, *ps->p == 't' ? "true" : "false") < 0)
			return ps->rc;
		break;
	case 'n':
		idx = new_node(ps, MEAD_JSON_NULL);
		if (idx < 0)
			return ps->rc;
		if (literal(ps, "null") < 0)
			return ps->rc;
		break;
	default:
		if (*ps->p != '-' && (*ps->p < '0' || *ps->p > '9'))
			return fail(ps, -EINVAL, "unexpected character");
		idx = new_node(ps, MEAD_JSON_NUMBER);
		if (idx < 0)
			return ps->rc;
		if (parse_number(ps, &ps->doc->v[idx]) < 0)
			return ps->rc;
		break;
	}
	*ret_idx = idx;
	return 0;
}

void mead_json_free(struct mead_json *doc)
{
	if (!doc)
		return;
	free(doc->v);
	free(doc->arena);
	free(doc);
}

int mead_json_parse(const char *text, size_t len, const struct mead_json_limits *limits,
		    struct mead_json **ret, char *err, size_t err_len)
{
	static const struct mead_json_limits def = MEAD_JSON_REQUEST_LIMITS;
	struct parser ps = { .p = text, .end = text + len, .start = text, .err = err, .err_len = err_len };
	struct mead_json *doc;
	int root;

	ps.lim = limits ? limits : &def;
	if (!text || !ret)
		return -EINVAL;
	if (len > ps.lim->max_input) {
		if (err && err_len)
			snprintf(err, err_len, "request larger than %zu bytes", ps.lim->max_input);
		return -E2BIG;
	}
	doc = calloc(1, sizeof(*doc));
	if (!doc)
		return -ENOMEM;
	/* Every value takes at least one input byte and a decoded string is
	 * never longer than its source, so these sizes are enough. */
	doc->cap = len + 1 < ps.lim->max_nodes ? (uint32_t)len + 1 : ps.lim->max_nodes;
	doc->v = calloc(doc->cap, sizeof(*doc->v));
	doc->arena_len = len + 1;
	doc->arena = malloc(doc->arena_len);
	if (!doc->v || !doc->arena) {
		mead_json_free(doc);
		return -ENOMEM;
	}
	ps.doc = doc;
	if (parse_value(&ps, 1, &root) == 0) {
		skip_ws(&ps);
		if (ps.p != ps.end)
			fail(&ps, -EINVAL, "trailing bytes after the value");
	}
	if (ps.rc < 0) {
		mead_json_free(doc);
		return ps.rc;
	}
	*ret = doc;
	return 0;
}

const struct mead_json_value *mead_json_root(const struct mead_json *doc)
{
	return doc && doc->n ? &doc->v[0] : NULL;
}

const struct mead_json_value *mead_json_first(const struct mead_json *doc, const struct mead_json_value *v)
{
	if (!v || (v->type != MEAD_JSON_ARRAY && v->type != MEAD_JSON_OBJECT) || v->first < 0)
		return NULL;
	return &doc->v[v->first];
}

const struct mead_json_value *mead_json_next(const struct mead_json *doc, const struct mead_json_value *v)
{
	return v && v->next >= 0 ? &doc->v[v->next] : NULL;
}

const struct mead_json_value *mead_json_get(const struct mead_json *doc, const struct mead_json_value *v,
					    const char *key)
{
	if (!v || v->type != MEAD_JSON_OBJECT)
		return NULL;
	for (const struct mead_json_value *m = mead_json_first(doc, v); m; m = mead_json_next(doc, m))
		if (strcmp(m->key, key) == 0)
			return m;
	return NULL;
}

const struct mead_json_value *mead_json_at(const struct mead_json *doc, const struct mead_json_value *v, uint32_t i)
{
	if (!v || v->type != MEAD_JSON_ARRAY)
		return NULL;
	const struct mead_json_value *m = mead_json_first(doc, v);
	while (m && i--)
		m = mead_json_next(doc, m);
	return m;
}

const struct mead_json_value *mead_json_path(const struct mead_json *doc, const struct mead_json_value *v,
					     const char *path)
{
	char key[128];

	while (v && path && *path) {
		const char *dot = strchr(path, '.');
		size_t n = dot ? (size_t)(dot - path) : strlen(path);
		if (n >= sizeof(key))
			return NULL;
		memcpy(key, path, n);
		key[n] = '\0';
		v = mead_json_get(doc, v, key);
		path = dot ? dot + 1 : NULL;
	}
	return v;
}

double mead_json_number_at(const struct mead_json *doc, const struct mead_json_value *v, const char *path,
			   double def)
{
	const struct mead_json_value *n = mead_json_path(doc, v, path);
	return n && n->type == MEAD_JSON_NUMBER ? n->num : def;
}

/* ---- writer ---- */

static void put(struct mead_jw *w, const char *s, size_t n)
{
	if (w->overflow)
		return;
	if (w->len == 0 || n >= w->len - w->pos) {
		w->overflow = true;
		return;
	}
	memcpy(w->buf + w->pos, s, n);
	w->pos += n;
	w->buf[w->pos] = '\0';
}

static void before_value(struct mead_jw *w)
{
	if (w->after_key) {
		w->after_key = false;
		return;
	}
	if (w->depth < 64 && (w->need_comma >> w->depth & 1))
		put(w, ",", 1);
	if (w->depth < 64)
		w->need_comma |= 1ull << w->depth;
}

void mead_jw_init(struct mead_jw *w, char *buf, size_t len)
{
	memset(w, 0, sizeof(*w));
	w->buf = buf;
	w->len = len;
	if (len)
		buf[0] = '\0';
}

static void open_c(struct mead_jw *w, const char *c)
{
	before_value(w);
	put(w, c, 1);
	w->depth++;
	if (w->depth < 64)
		w->need_comma &= ~(1ull << w->depth);
}

static void close_c(struct mead_jw *w, const char *c)
{
	if (w->depth)
		w->depth--;
	put(w, c, 1);
}

void mead_jw_obj_begin(struct mead_jw *w) { open_c(w, "{"); }
void mead_jw_obj_end(struct mead_jw *w) { close_c(w, "}"); }
void mead_jw_arr_begin(struct mead_jw *w) { open_c(w, "["); }
void mead_jw_arr_end(struct mead_jw *w) { close_c(w, "]"); }

/* Strings reach replies from clients and configuration, possibly cut in the
 * middle of a character: what is not well-formed UTF-8 goes out as U+FFFD,
 * so every document this writer produces is valid JSON. */
static void put_escaped(struct mead_jw *w, const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;

	put(w, "\"", 1);
	for (size_t i = 0; i < n;) {
		unsigned char c = u[i];
		char esc[8];
		if (c == '"' || c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)c;
			put(w, esc, 2);
			i++;
		} else if (c < 0x20 || c == 0x7f) {
			snprintf(esc, sizeof(esc), "\\u%04x", c);
			put(w, esc, 6);
			i++;
		} else {
			size_t len = mead_utf8_seq_len(u + i, n - i);
			if (len == 0) {
				put(w, "\xef\xbf\xbd", 3);
				i++;
			} else {
				put(w, s + i, len);
				i += len;
			}
		}
	}
	put(w, "\"", 1);
}

void mead_jw_key(struct mead_jw *w, const char *key)
{
	before_value(w);
	put_escaped(w, key, strlen(key));
	put(w, ":", 1);
	w->after_key = true;
}

void mead_jw_strn(struct mead_jw *w, const char *s, size_t n)
{
	before_value(w);
	put_escaped(w, s, n);
}

void mead_jw_str(struct mead_jw *w, const char *s)
{
	if (!s) {
		mead_jw_null(w);
		return;
	}
	mead_jw_strn(w, s, strlen(s));
}

void mead_jw_u64(struct mead_jw *w, uint64_t v)
{
	char t[24];
	before_value(w);
	put(w, t, (size_t)snprintf(t, sizeof(t), "%" PRIu64, v));
}

void mead_jw_i64(struct mead_jw *w, int64_t v)
{
	char t[24];
	before_value(w);
	put(w, t, (size_t)snprintf(t, sizeof(t), "%" PRId64, v));
}

void mead_jw_double(struct mead_jw *w, double v)
{
	char t[40];
	if (!isfinite(v)) {
		mead_jw_null(w);
		return;
	}
	before_value(w);
	put(w, t, (size_t)snprintf(t, sizeof(t), "%.9g", v));
}

void mead_jw_float(struct mead_jw *w, float v)
{
	char t[40];
	if (!isfinite(v)) {
		mead_jw_null(w);
		return;
	}
	before_value(w);
	/* %.9g of a float shows its binary noise (0.194999993); the shortest
	 * precision that reads back as the same float is what a person wrote. */
	for (int prec = 6; prec <= 9; prec++) {
		snprintf(t, sizeof(t), "%.*g", prec, (double)v);
		if (strtof(t, NULL) == v)
			break;
	}
	put(w, t, strlen(t));
}

void mead_jw_bool(struct mead_jw *w, bool v)
{
	before_value(w);
	put(w, v ? "true" : "false", v ? 4 : 5);
}

void mead_jw_null(struct mead_jw *w)
{
	before_value(w);
	put(w, "null", 4);
}

void mead_jw_raw(struct mead_jw *w, const char *json, size_t n)
{
	before_value(w);
	put(w, json, n);
}

void mead_jw_append(struct mead_jw *w, const char *text, size_t n)
{
	put(w, text, n);
}

int mead_jw_finish(struct mead_jw *w)
{
	if (w->overflow)
		return -ENOSPC;
	return (int)w->pos;
}
