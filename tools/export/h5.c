/* SPDX-License-Identifier: MIT */
#include "tools/export/h5.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/core/rng.h"

#define COL_BUF_BYTES (256u * 1024u)

bool h5_failed(struct h5 *h, int rc, const char *fmt, ...)
{
	if (h->err)
		return true;
	if (rc >= 0)
		return false;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(h->what, sizeof(h->what), fmt, ap);
	va_end(ap);
	h->err = -EIO;
	return true;
}

int h5_create(struct h5 *h, const char *path, uint64_t uuid_seed)
{
	memset(h, 0, sizeof(*h));
	h->uuid_state = uuid_seed;
	h->file = -1;
	/* Errors are reported by what was being written, not HDF5's stack. */
	H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
	h->file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
	if (h5_failed(h, (int)h->file, "creating the file"))
		return h->err;
	h->str_t = H5Tcopy(H5T_C_S1);
	H5Tset_size(h->str_t, H5T_VARIABLE);
	H5Tset_cset(h->str_t, H5T_CSET_UTF8);
	h->bool_t = H5Tenum_create(H5T_NATIVE_INT8);
	int8_t v = 0;
	H5Tenum_insert(h->bool_t, "FALSE", &v);
	v = 1;
	H5Tenum_insert(h->bool_t, "TRUE", &v);
	return 0;
}

int h5_close(struct h5 *h)
{
	if (h->str_t > 0)
		H5Tclose(h->str_t);
	if (h->bool_t > 0)
		H5Tclose(h->bool_t);
	if (h->file >= 0 && H5Fclose(h->file) < 0)
		h5_failed(h, -1, "closing the file");
	h->file = -1;
	return h->err;
}

void h5_close_obj(hid_t id)
{
	if (id < 0)
		return;
	switch (H5Iget_type(id)) {
	case H5I_GROUP: H5Gclose(id); break;
	case H5I_DATASET: H5Dclose(id); break;
	default: break;
	}
}

hid_t h5_group(struct h5 *h, hid_t loc, const char *name)
{
	if (h->err)
		return -1;
	hid_t g = H5Gcreate2(loc, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
	h5_failed(h, (int)g, "group %s", name);
	return g;
}

/* An attribute (attr) or a dataset named name on obj, of type ftype in
 * the file, from v in mtype; takes the dataspace. */
static void put_obj(struct h5 *h, hid_t obj, const char *name, bool attr, hid_t ftype, hid_t mtype, hid_t space,
		    const void *v)
{
	hid_t id = -1;
	if (!h->err)
		id = attr ? H5Acreate2(obj, name, ftype, space, H5P_DEFAULT, H5P_DEFAULT)
			  : H5Dcreate2(obj, name, ftype, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
	if (!h5_failed(h, (int)id, "%s %s", attr ? "attribute" : "dataset", name)) {
		int rc = attr ? H5Awrite(id, mtype, v) : H5Dwrite(id, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
		h5_failed(h, rc, "%s %s", attr ? "attribute" : "dataset", name);
		if (attr)
			H5Aclose(id);
		else
			H5Dclose(id);
	}
	H5Sclose(space);
}

void h5_attr_str(struct h5 *h, hid_t obj, const char *name, const char *value)
{
	put_obj(h, obj, name, true, h->str_t, h->str_t, H5Screate(H5S_SCALAR), &value);
}

void h5_attr_strs(struct h5 *h, hid_t obj, const char *name, size_t n, const char *const *values)
{
	hsize_t dim = n;
	put_obj(h, obj, name, true, h->str_t, h->str_t, H5Screate_simple(1, &dim, NULL), values);
}

void h5_attr_f32(struct h5 *h, hid_t obj, const char *name, float v)
{
	put_obj(h, obj, name, true, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, H5Screate(H5S_SCALAR), &v);
}

void h5_attr_f64(struct h5 *h, hid_t obj, const char *name, double v)
{
	put_obj(h, obj, name, true, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, H5Screate(H5S_SCALAR), &v);
}

void h5_attr_i32(struct h5 *h, hid_t obj, const char *name, int32_t v)
{
	put_obj(h, obj, name, true, H5T_STD_I32LE, H5T_NATIVE_INT32, H5Screate(H5S_SCALAR), &v);
}

void h5_attr_ref(struct h5 *h, hid_t obj, const char *name, const char *path)
{
	hobj_ref_t ref;
	if (h->err)
		return;
	if (h5_failed(h, H5Rcreate(&ref, h->file, path, H5R_OBJECT, -1), "reference to %s", path))
		return;
	put_obj(h, obj, name, true, H5T_STD_REF_OBJ, H5T_STD_REF_OBJ, H5Screate(H5S_SCALAR), &ref);
}

void h5_uuid4(struct h5 *h, char out[37])
{
	uint64_t a = mead_splitmix64(&h->uuid_state), b = mead_splitmix64(&h->uuid_state);
	a = (a & ~0xf000ull) | 0x4000ull;
	b = (b & ~(3ull << 62)) | (2ull << 62);
	snprintf(out, 37, "%08x-%04x-%04x-%04x-%012llx", (unsigned)(a >> 32), (unsigned)(a >> 16) & 0xffff,
		 (unsigned)a & 0xffff, (unsigned)(b >> 48), (unsigned long long)(b & 0xffffffffffffull));
}

void h5_typed(struct h5 *h, hid_t obj, const char *type, const char *ns)
{
	char id[37];
	h5_uuid4(h, id);
	h5_attr_str(h, obj, "namespace", ns);
	h5_attr_str(h, obj, "neurodata_type", type);
	h5_attr_str(h, obj, "object_id", id);
}

hid_t h5_typed_group(struct h5 *h, hid_t loc, const char *name, const char *type, const char *ns)
{
	hid_t g = h5_group(h, loc, name);
	if (g >= 0)
		h5_typed(h, g, type, ns);
	return g;
}

void h5_dset_str(struct h5 *h, hid_t loc, const char *name, const char *value)
{
	put_obj(h, loc, name, false, h->str_t, h->str_t, H5Screate(H5S_SCALAR), &value);
}

void h5_dset_strs(struct h5 *h, hid_t loc, const char *name, size_t n, const char *const *values)
{
	hsize_t dim = n;
	put_obj(h, loc, name, false, h->str_t, h->str_t, H5Screate_simple(1, &dim, NULL), values);
}

hid_t h5_dset(struct h5 *h, hid_t loc, const char *name, hid_t ftype, hsize_t rows, hsize_t width)
{
	if (h->err)
		return -1;
	int rank = width ? 2 : 1;
	hsize_t dims[2] = { rows, width }, chunk[2] = { 1, width ? width : 1 };
	size_t row_bytes = H5Tget_size(ftype) * (width ? width : 1);
	/* chunks of about 1 MiB, whole rows */
	chunk[0] = row_bytes >= (1u << 20) ? 1 : (1u << 20) / row_bytes;
	if (rows && chunk[0] > rows)
		chunk[0] = rows;
	hid_t space = H5Screate_simple(rank, dims, NULL);
	hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
	if (rows)
		H5Pset_chunk(dcpl, rank, chunk);
	hid_t d = H5Dcreate2(loc, name, ftype, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
	h5_failed(h, (int)d, "dataset %s", name);
	H5Pclose(dcpl);
	H5Sclose(space);
	return d;
}

void h5_write_rows(struct h5 *h, hid_t d, hid_t mtype, hsize_t at, hsize_t n, hsize_t width, const void *buf)
{
	if (h->err || n == 0)
		return;
	int rank = width ? 2 : 1;
	hsize_t start[2] = { at, 0 }, count[2] = { n, width };
	hid_t fs = H5Dget_space(d);
	hid_t ms = H5Screate_simple(rank, count, NULL);
	int rc = H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL);
	if (rc >= 0)
		rc = H5Dwrite(d, mtype, ms, fs, H5P_DEFAULT, buf);
	h5_failed(h, rc, "writing rows %llu..%llu", (unsigned long long)at, (unsigned long long)(at + n));
	H5Sclose(ms);
	H5Sclose(fs);
}

static void col_flush(struct h5 *h, struct h5col *c)
{
	if (c->fill && !h->err) {
		hsize_t size = c->rows + c->fill, max = c->rows;
		int rc = H5Dset_extent(c->d, &size);
		if (!h5_failed(h, rc, "extending a column"))
			h5_write_rows(h, c->d, c->mtype, max, c->fill, 0, c->buf);
	}
	if (c->strings)
		for (size_t i = 0; i < c->fill; i++)
			free(((char **)c->buf)[i]);
	c->rows += c->fill;
	c->fill = 0;
}

static void col_create(struct h5 *h, hid_t loc, struct h5col *c, const char *name, hid_t mtype, hid_t ftype,
		       size_t elem)
{
	memset(c, 0, sizeof(*c));
	c->d = -1;
	if (h->err)
		return;
	c->mtype = mtype;
	c->elem = elem;
	c->strings = H5Tis_variable_str(mtype) > 0;
	c->cap = COL_BUF_BYTES / elem;
	c->buf = malloc(c->cap * elem);
	if (!c->buf) {
		h->err = -ENOMEM;
		snprintf(h->what, sizeof(h->what), "column %s", name);
		return;
	}
	hsize_t dims = 0, max = H5S_UNLIMITED, chunk = c->cap;
	hid_t space = H5Screate_simple(1, &dims, &max);
	hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
	H5Pset_chunk(dcpl, 1, &chunk);
	c->d = H5Dcreate2(loc, name, ftype, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
	h5_failed(h, (int)c->d, "column %s", name);
	H5Pclose(dcpl);
	H5Sclose(space);
}

void h5_put(struct h5 *h, struct h5col *c, const void *v)
{
	if (h->err)
		return;
	memcpy(c->buf + c->fill * c->elem, v, c->elem);
	if (++c->fill == c->cap)
		col_flush(h, c);
}

void h5_put_str(struct h5 *h, struct h5col *c, const char *s)
{
	if (h->err)
		return;
	char *copy = strdup(s ? s : "");
	if (!copy) {
		h->err = -ENOMEM;
		return;
	}
	h5_put(h, c, &copy);
}

void h5_put_u64(struct h5 *h, struct h5col *c, uint64_t v)
{
	h5_put(h, c, &v);
}

void h5_put_f64(struct h5 *h, struct h5col *c, double v)
{
	h5_put(h, c, &v);
}

void h5_put_bool(struct h5 *h, struct h5col *c, bool v)
{
	int8_t b = v ? 1 : 0;
	h5_put(h, c, &b);
}

void h5_put_ref(struct h5 *h, struct h5col *c, const char *path)
{
	hobj_ref_t ref;
	if (h->err)
		return;
	if (h5_failed(h, H5Rcreate(&ref, h->file, path, H5R_OBJECT, -1), "reference to %s", path))
		return;
	h5_put(h, c, &ref);
}

void h5_col_close(struct h5 *h, struct h5col *c)
{
	col_flush(h, c);
	if (c->d >= 0)
		H5Dclose(c->d);
	c->d = -1;
	free(c->buf);
	c->buf = NULL;
}

void h5_table_open(struct h5 *h, struct h5table *t, hid_t loc, const char *parent_path, const char *name,
		   const char *type, const char *ns, const char *description)
{
	memset(t, 0, sizeof(*t));
	snprintf(t->path, sizeof(t->path), "%s/%s", parent_path, name);
	t->g = h5_typed_group(h, loc, name, type, ns);
	h5_attr_str(h, t->g, "description", description);
	col_create(h, t->g, &t->id, "id", H5T_NATIVE_INT64, H5T_STD_I64LE, sizeof(int64_t));
	if (t->id.d >= 0)
		h5_typed(h, t->id.d, "ElementIdentifiers", "hdmf-common");
}

void h5_col_open(struct h5 *h, struct h5table *t, struct h5col *c, const char *name, const char *type,
		 hid_t mtype, hid_t ftype, size_t elem, const char *description, bool listed)
{
	col_create(h, t->g, c, name, mtype, ftype, elem);
	if (c->d < 0)
		return;
	h5_typed(h, c->d, type, "hdmf-common");
	h5_attr_str(h, c->d, "description", description);
	if (listed && t->ncols < sizeof(t->cols) / sizeof(t->cols[0]))
		t->cols[t->ncols++] = name;
}

void h5_cols_open(struct h5 *h, struct h5table *t, struct h5col *cols, const struct h5colspec *spec, size_t n,
		  const char *region_table)
{
	for (size_t i = 0; i < n; i++) {
		hid_t m, f;
		size_t size;
		switch (spec[i].kind) {
		case H5K_F64: m = H5T_NATIVE_DOUBLE; f = H5T_IEEE_F64LE; size = 8; break;
		case H5K_F32: m = H5T_NATIVE_FLOAT; f = H5T_IEEE_F32LE; size = 4; break;
		case H5K_I32: m = H5T_NATIVE_INT32; f = H5T_STD_I32LE; size = 4; break;
		case H5K_U16: m = H5T_NATIVE_UINT16; f = H5T_STD_U16LE; size = 2; break;
		case H5K_U32: m = H5T_NATIVE_UINT32; f = H5T_STD_U32LE; size = 4; break;
		case H5K_U64: m = H5T_NATIVE_UINT64; f = H5T_STD_U64LE; size = 8; break;
		case H5K_BOOL: m = f = h->bool_t; size = 1; break;
		case H5K_STR: m = f = h->str_t; size = sizeof(char *); break;
		case H5K_REF: m = f = H5T_STD_REF_OBJ; size = sizeof(hobj_ref_t); break;
		case H5K_REGION: m = H5T_NATIVE_INT32; f = H5T_STD_I32LE; size = 4; break;
		default: continue;
		}
		bool region = spec[i].kind == H5K_REGION;
		h5_col_open(h, t, &cols[i], spec[i].name, region ? "DynamicTableRegion" : "VectorData", m, f, size,
			    spec[i].description, true);
		if (region)
			h5_region_table(h, &cols[i], region_table);
	}
}

void h5_cols_close(struct h5 *h, struct h5table *t, struct h5col *cols, size_t n)
{
	for (size_t i = 0; i < n; i++)
		h5_col_close(h, &cols[i]);
	h5_table_close(h, t);
}

void h5_table_row(struct h5 *h, struct h5table *t, int64_t id)
{
	h5_put(h, &t->id, &id);
	t->rows++;
}

void h5_table_close(struct h5 *h, struct h5table *t)
{
	h5_col_close(h, &t->id);
	if (t->g >= 0) {
		h5_attr_strs(h, t->g, "colnames", t->ncols, t->cols);
		H5Gclose(t->g);
	}
	t->g = -1;
}

void h5_index_target(struct h5 *h, struct h5col *index, const char *target_path)
{
	if (index->d >= 0)
		h5_attr_ref(h, index->d, "target", target_path);
}

void h5_region_table(struct h5 *h, struct h5col *region, const char *table_path)
{
	if (region->d >= 0)
		h5_attr_ref(h, region->d, "table", table_path);
}
