/* SPDX-License-Identifier: MIT */
#include "readout/state.h"

#include <endian.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "lib/core/err.h"

#define SAVE_MAGIC "MEADREAD"
#define SAVE_VERSION 1u
#define SAVE_CULTURE 1u
#define SAVE_PIXEL 2u

int mead_readout_state_save(const char *path, const struct mead_model *culture, const struct mead_model *pixel,
			    char *err, size_t err_len)
{
	char tmp[4096];
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	FILE *f = fopen(tmp, "wb");
	int r = 0;
	if (!f) {
		r = -errno;
		goto out;
	}
	uint32_t flags = (culture ? SAVE_CULTURE : 0u) | (pixel ? SAVE_PIXEL : 0u);
	uint32_t v = htole32(SAVE_VERSION), fl = htole32(flags);
	if (fwrite(SAVE_MAGIC, 8, 1, f) != 1 || fwrite(&v, 4, 1, f) != 1 || fwrite(&fl, 4, 1, f) != 1)
		r = -EIO;
	if (!r && culture)
		r = mead_model_write(culture, f);
	if (!r && pixel)
		r = mead_model_write(pixel, f);
	if (fclose(f) != 0 && !r)
		r = -EIO;
	if (!r && rename(tmp, path) < 0)
		r = -errno;
	if (r)
		remove(tmp);
out:
	if (r)
		mead_set_err(err, err_len, "%s: cannot save: %s", path, strerror(-r));
	return r;
}

int mead_readout_state_load(const char *path, const struct mead_model_options *o, struct mead_model **culture,
			    struct mead_model **pixel, char *err, size_t err_len)
{
	struct mead_model *c = NULL, *p = NULL;
	char magic[8];
	uint32_t v, fl;
	int r = 0;
	FILE *f = fopen(path, "rb");
	if (!f) {
		r = -errno;
		goto out;
	}
	if (fread(magic, 8, 1, f) != 1 || memcmp(magic, SAVE_MAGIC, 8) != 0 || fread(&v, 4, 1, f) != 1 ||
	    fread(&fl, 4, 1, f) != 1)
		r = -EINVAL;
	else if (le32toh(v) != SAVE_VERSION)
		r = -EPROTO;
	if (!r && (le32toh(fl) & SAVE_CULTURE))
		r = mead_model_read(f, o, &c);
	if (!r && (le32toh(fl) & SAVE_PIXEL))
		r = mead_model_read(f, o, &p);
	fclose(f);
out:
	if (r) {
		mead_model_free(c);
		mead_model_free(p);
		mead_set_err(err, err_len, "%s: cannot load saved state: %s", path,
			     r == -EINVAL ? "not a mead-readout state file, or damaged" : strerror(-r));
		return r;
	}
	*culture = c;
	*pixel = p;
	return 0;
}
