/* SPDX-License-Identifier: MIT */
/*
 * HDF5 as hdmf lays it out (the storage of NWB 2.x): typed groups and
 * datasets carry neurodata_type, namespace and object_id attributes; text
 * is variable-length UTF-8; booleans are the int8 enum {FALSE, TRUE} h5py
 * reads as numpy bool; references are HDF5 object references; tables
 * (hdmf-common DynamicTable) are groups of equally long column datasets
 * listed in a colnames attribute, with an id dataset.
 *
 * Errors are sticky: the first failure is remembered in h->err (with what
 * was being written) and every later call does nothing, so the writer
 * checks once at the end.
 */
#pragma once

#include <hdf5.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct h5 {
	hid_t file;
	hid_t str_t;       /* variable-length UTF-8 */
	hid_t bool_t;      /* enum int8 FALSE=0 TRUE=1 */
	uint64_t uuid_state;
	int err;
	char what[256];
};

int h5_create(struct h5 *h, const char *path, uint64_t uuid_seed);
int h5_close(struct h5 *h);
bool h5_failed(struct h5 *h, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

hid_t h5_group(struct h5 *h, hid_t loc, const char *name);
void h5_close_obj(hid_t id);

void h5_attr_str(struct h5 *h, hid_t obj, const char *name, const char *value);
void h5_attr_strs(struct h5 *h, hid_t obj, const char *name, size_t n, const char *const *values);
void h5_attr_f32(struct h5 *h, hid_t obj, const char *name, float v);
void h5_attr_f64(struct h5 *h, hid_t obj, const char *name, double v);
void h5_attr_i32(struct h5 *h, hid_t obj, const char *name, int32_t v);
/* An object reference to the object at path (absolute). */
void h5_attr_ref(struct h5 *h, hid_t obj, const char *name, const char *path);

/* A version 4 UUID (RFC 4122) from the seeded stream: the same recording
 * gets the same identifiers. */
void h5_uuid4(struct h5 *h, char out[37]);

/* neurodata_type, namespace and a fresh object_id. */
void h5_typed(struct h5 *h, hid_t obj, const char *type, const char *ns);
hid_t h5_typed_group(struct h5 *h, hid_t loc, const char *name, const char *type, const char *ns);

void h5_dset_str(struct h5 *h, hid_t loc, const char *name, const char *value);
void h5_dset_strs(struct h5 *h, hid_t loc, const char *name, size_t n, const char *const *values);
/* A fixed-size chunked dataset of rank 1 or 2 (dims[1] = 0: rank 1). */
hid_t h5_dset(struct h5 *h, hid_t loc, const char *name, hid_t ftype, hsize_t rows, hsize_t width);
/* Writes n rows at row `at` of a dataset made by h5_dset. */
void h5_write_rows(struct h5 *h, hid_t d, hid_t mtype, hsize_t at, hsize_t n, hsize_t width, const void *buf);

/* A column filled one row at a time (buffered), of any length. */
struct h5col {
	hid_t d, mtype;
	size_t elem;
	bool strings;     /* elements are char * (copied on put) */
	uint64_t rows;
	uint8_t *buf;
	size_t fill, cap;
};

/* A table under loc: a typed group with description, id and colnames. */
struct h5table {
	hid_t g;
	char path[256];
	const char *cols[48];
	size_t ncols;
	struct h5col id;
	uint64_t rows;
};

void h5_table_open(struct h5 *h, struct h5table *t, hid_t loc, const char *parent_path, const char *name,
		   const char *type, const char *ns, const char *description);
/* A column of the table; listed: named in colnames (data columns are,
 * their _index columns are not).  type: VectorData, VectorIndex,
 * DynamicTableRegion. */
void h5_col_open(struct h5 *h, struct h5table *t, struct h5col *c, const char *name, const char *type,
		 hid_t mtype, hid_t ftype, size_t elem, const char *description, bool listed);
void h5_put(struct h5 *h, struct h5col *c, const void *v);
void h5_put_str(struct h5 *h, struct h5col *c, const char *s);
void h5_put_u64(struct h5 *h, struct h5col *c, uint64_t v);
void h5_put_f64(struct h5 *h, struct h5col *c, double v);
void h5_put_bool(struct h5 *h, struct h5col *c, bool v);
void h5_put_ref(struct h5 *h, struct h5col *c, const char *path);
void h5_col_close(struct h5 *h, struct h5col *c);
/* Columns described by a table of specs: the memory and file types of
 * each kind, VectorData (DynamicTableRegion for REGION, whose rows are
 * rows of region_table). */
enum h5kind { H5K_F64, H5K_F32, H5K_I32, H5K_U16, H5K_U32, H5K_U64, H5K_BOOL, H5K_STR, H5K_REF, H5K_REGION };
struct h5colspec {
	const char *name;
	enum h5kind kind;
	const char *description;
};
void h5_cols_open(struct h5 *h, struct h5table *t, struct h5col *cols, const struct h5colspec *spec, size_t n,
		  const char *region_table);
/* Closes the columns, then the table. */
void h5_cols_close(struct h5 *h, struct h5table *t, struct h5col *cols, size_t n);

/* One row more in id (value: the row's id). */
void h5_table_row(struct h5 *h, struct h5table *t, int64_t id);
void h5_table_close(struct h5 *h, struct h5table *t);

/* An index column (VectorIndex) whose target attribute names target. */
void h5_index_target(struct h5 *h, struct h5col *index, const char *target_path);
/* A region column's table attribute. */
void h5_region_table(struct h5 *h, struct h5col *region, const char *table_path);
