/* SPDX-License-Identifier: MIT */
/*
 * Schema-driven YAML binding.  A module describes its configuration as a
 * table of keys (dotted path, type, offset into its struct, range, default);
 * the loader walks the YAML document, fills the struct and reports every
 * problem as "FILE:LINE:COL: key: what was expected, what was found".
 * Unknown keys are errors.  Overrides ("-o a.b.c=value") go through the same
 * validation, reported against "<command line>".
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MEAD_CFG_LIST_MAX 256
#define MEAD_CFG_MAP_MAX 64
#define MEAD_CFG_ERR_MAX 1024

enum mead_cfg_type {
	MEAD_CFG_BOOL = 1,   /* bool */
	MEAD_CFG_INT,        /* int64_t */
	MEAD_CFG_UINT,       /* uint32_t */
	MEAD_CFG_U64,        /* uint64_t */
	MEAD_CFG_DOUBLE,     /* double */
	MEAD_CFG_STRING,     /* char * (owned) */
	MEAD_CFG_ENUM,       /* int: index into choices */
	MEAD_CFG_UINT_LIST,  /* struct mead_cfg_uint_list */
	MEAD_CFG_DOUBLE_LIST,/* struct mead_cfg_double_list */
	MEAD_CFG_STRING_LIST,/* struct mead_cfg_string_list */
	MEAD_CFG_MAP,        /* struct mead_cfg_map: free string->scalar map, validated by its owner */
	MEAD_CFG_TABLE,      /* nested table: sub, at offset */
};

struct mead_cfg_uint_list {
	uint32_t n;
	uint32_t v[MEAD_CFG_LIST_MAX];
};

struct mead_cfg_double_list {
	uint32_t n;
	double v[MEAD_CFG_LIST_MAX];
};

struct mead_cfg_string_list {
	uint32_t n;
	char *v[MEAD_CFG_LIST_MAX];
};

/* Where a value came from, for errors reported after loading (for example a
 * driver option its driver rejects). */
struct mead_cfg_mark {
	const char *file;   /* points into the config's source name */
	uint32_t line, col; /* 1-based; 0 for defaults */
};

struct mead_cfg_map {
	uint32_t n;
	char *key[MEAD_CFG_MAP_MAX];
	char *value[MEAD_CFG_MAP_MAX];
	struct mead_cfg_mark mark[MEAD_CFG_MAP_MAX];
};

struct mead_cfg_key {
	const char *path;                 /* dotted, relative to the table; NULL ends the table */
	enum mead_cfg_type type;
	size_t offset;
	double min, max;                  /* numeric range (and list length for lists); ignored if min > max */
	const char *const *choices;       /* ENUM: NULL-terminated */
	const char *default_value;        /* text as it would appear in YAML; NULL: zero/empty */
	const char *help;                 /* what is expected, for a person */
	const struct mead_cfg_key *sub;   /* TABLE */
};

#define MEAD_CFG_NO_RANGE 1.0, 0.0

/* Apply every default of the table to obj (which must be zeroed). */
int mead_cfg_defaults(const struct mead_cfg_key *table, void *obj, char *err, size_t err_len);

/* Load FILE into obj (defaults first).  -EINVAL with err filled on any problem. */
int mead_cfg_load_file(const struct mead_cfg_key *table, void *obj, const char *path,
		       char *err, size_t err_len);

/* Same, from a string (name is used in messages). */
int mead_cfg_load_string(const struct mead_cfg_key *table, void *obj, const char *name,
			 const char *yaml, size_t len, char *err, size_t err_len);

/* "a.b.c=value": value is parsed as a YAML scalar or flow sequence ("[1,2]"). */
int mead_cfg_override(const struct mead_cfg_key *table, void *obj, const char *assignment,
		      char *err, size_t err_len);

/* Free owned strings of obj. obj may be NULL. */
void mead_cfg_release(const struct mead_cfg_key *table, void *obj);

/* Look a value up by dotted path and print it as text (for status/--check). */
int mead_cfg_format(const struct mead_cfg_key *table, const void *obj, const char *path,
		    char *buf, size_t len);

/* Find a key by dotted path (NULL if none); *ret_obj_offset gets the offset of
 * the key's storage from the root object. */
const struct mead_cfg_key *mead_cfg_find(const struct mead_cfg_key *table, const char *path,
					 size_t *ret_obj_offset);
