/* SPDX-License-Identifier: MIT */
/*
 * A small strict JSON (RFC 8259) parser and a bounded writer.
 *
 * The parser exists because requests on the control socket come from
 * anyone who can reach it: it accepts exactly one value, rejects trailing
 * bytes, duplicate object keys, invalid UTF-8, control characters in
 * strings, lone surrogates, leading zeros, NaN/Infinity, and enforces
 * bounds on input size, nesting depth, node count and string length so a
 * request can never make it allocate without limit.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum mead_json_type {
	MEAD_JSON_NULL = 0,
	MEAD_JSON_BOOL,
	MEAD_JSON_NUMBER,
	MEAD_JSON_STRING,
	MEAD_JSON_ARRAY,
	MEAD_JSON_OBJECT,
};

struct mead_json_limits {
	size_t max_input;     /* bytes */
	uint32_t max_depth;
	uint32_t max_nodes;
	size_t max_string;    /* bytes of one decoded string (keys included) */
};

/* Limits for requests on the control socket. */
#define MEAD_JSON_REQUEST_LIMITS ((struct mead_json_limits){ 16384, 8, 512, 1024 })
/* Limits for documents from the project's own processes (status replies,
 * results on a pipe, recording metadata): large, still bounded. */
#define MEAD_JSON_DOCUMENT_LIMITS ((struct mead_json_limits){ 64u << 20, 64, 4u << 20, 16u << 20 })

struct mead_json;   /* a parsed document */

struct mead_json_value {
	enum mead_json_type type;
	uint32_t n;               /* ARRAY/OBJECT: members; STRING: bytes */
	bool b;
	bool is_int;              /* NUMBER written without fraction/exponent and fits int64 */
	int64_t i;
	double num;
	const char *s;            /* STRING: decoded, NUL-terminated (may hold \u0000) */
	const char *key;          /* member of an OBJECT: its key */
	int32_t first, next;      /* node indexes; -1 none */
};

/* Parse text (len bytes, need not be terminated).  NULL limits: request limits.
 * Returns 0 and *ret, or -EINVAL (err says where and what) / -ENOMEM / -E2BIG. */
int mead_json_parse(const char *text, size_t len, const struct mead_json_limits *limits,
		    struct mead_json **ret, char *err, size_t err_len);
void mead_json_free(struct mead_json *doc);

const struct mead_json_value *mead_json_root(const struct mead_json *doc);
/* Children: first member, next member (NULL at the end). */
const struct mead_json_value *mead_json_first(const struct mead_json *doc, const struct mead_json_value *v);
const struct mead_json_value *mead_json_next(const struct mead_json *doc, const struct mead_json_value *v);
/* OBJECT member by key, NULL if absent or v is not an object. */
const struct mead_json_value *mead_json_get(const struct mead_json *doc, const struct mead_json_value *v,
					    const char *key);
/* A member by a dotted path of object keys ("loop.latency_us.p99"); NULL
 * when any step is missing or not an object. */
const struct mead_json_value *mead_json_path(const struct mead_json *doc, const struct mead_json_value *v,
					     const char *path);
/* The number at path, or def when it is absent, null or not a number. */
double mead_json_number_at(const struct mead_json *doc, const struct mead_json_value *v, const char *path,
			   double def);
/* Array element by index, NULL if out of range. */
const struct mead_json_value *mead_json_at(const struct mead_json *doc, const struct mead_json_value *v, uint32_t i);

/*
 * Bounded writer.  Every call appends what fits; once something did not fit
 * the writer is marked overflowed and mead_jw_finish() reports -ENOSPC, so
 * callers check once at the end.  Commas between members are inserted by
 * the writer.
 */
struct mead_jw {
	char *buf;
	size_t len, pos;
	bool overflow;
	uint32_t depth;
	uint64_t need_comma;      /* bit per depth level */
	bool after_key;
};

void mead_jw_init(struct mead_jw *w, char *buf, size_t len);
void mead_jw_obj_begin(struct mead_jw *w);
void mead_jw_obj_end(struct mead_jw *w);
void mead_jw_arr_begin(struct mead_jw *w);
void mead_jw_arr_end(struct mead_jw *w);
void mead_jw_key(struct mead_jw *w, const char *key);
void mead_jw_str(struct mead_jw *w, const char *s);
void mead_jw_strn(struct mead_jw *w, const char *s, size_t n);
void mead_jw_u64(struct mead_jw *w, uint64_t v);
void mead_jw_i64(struct mead_jw *w, int64_t v);
void mead_jw_double(struct mead_jw *w, double v);   /* non-finite: null */
void mead_jw_float(struct mead_jw *w, float v);     /* shortest text that reads back as v */
void mead_jw_bool(struct mead_jw *w, bool v);
void mead_jw_null(struct mead_jw *w);
/* Insert already-valid JSON text as a value (e.g. a driver's describe()). */
void mead_jw_raw(struct mead_jw *w, const char *json, size_t n);
/* Append text as is, no separator logic (splicing prepared JSON). */
void mead_jw_append(struct mead_jw *w, const char *text, size_t n);
/* Returns the length written (buffer NUL-terminated) or -ENOSPC. */
int mead_jw_finish(struct mead_jw *w);
