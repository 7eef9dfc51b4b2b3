/* SPDX-License-Identifier: MIT */
#include "lib/core/keys.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define KEY_FILE_MAX (1u << 20)

static const char z85_chars[] = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";

static int z85_index(unsigned char ch)
{
	const char *p;

	if (!ch)
		return -1;
	p = strchr(z85_chars, ch);
	return p ? (int)(p - z85_chars) : -1;
}

static bool is_blank(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r';
}

/* 40 characters already known to be Z85; false when a group exceeds 32 bits
 * (such text encodes no key at all). */
static bool z85_decode_key(const char *s, uint8_t out[MEAD_KEY_BYTES])
{
	for (size_t g = 0; g < MEAD_KEY_Z85_LEN / 5; g++) {
		uint64_t v = 0;
		for (size_t i = 0; i < 5; i++)
			v = v * 85 + (uint64_t)z85_index((unsigned char)s[g * 5 + i]);
		if (v > UINT32_MAX)
			return false;
		out[g * 4 + 0] = (uint8_t)(v >> 24);
		out[g * 4 + 1] = (uint8_t)(v >> 16);
		out[g * 4 + 2] = (uint8_t)(v >> 8);
		out[g * 4 + 3] = (uint8_t)v;
	}
	return true;
}

static void printable(char *buf, size_t len, unsigned char ch)
{
	if (ch >= 0x21 && ch < 0x7f)
		snprintf(buf, len, "'%c'", ch);
	else
		snprintf(buf, len, "byte 0x%02x", ch);
}

int mead_keys_parse(const char *text, size_t len, const char *name, size_t max_keys, uint8_t **ret,
			 char *err, size_t err_len)
{
	uint8_t *keys = NULL;
	uint32_t *lines = NULL;
	size_t n = 0, cap = 0, pos = 0;
	uint32_t line = 0;
	int rc = -EINVAL;

	if (!ret || (!text && len))
		return -EINVAL;
	*ret = NULL;
	while (pos < len) {
		size_t start = pos, end, i, k;
		char what[24];

		line++;
		while (pos < len && text[pos] != '\n')
			pos++;
		end = pos;
		if (pos < len)
			pos++;
		i = start;
		while (i < end && is_blank(text[i]))
			i++;
		if (i == end || text[i] == '#')
			continue;
		k = i;
		while (k < end && !is_blank(text[k]))
			k++;
		if (k - i != MEAD_KEY_Z85_LEN) {
			snprintf(err, err_len, "%s:%u: a key is %d Z85 characters, found %zu", name, line, MEAD_KEY_Z85_LEN,
				 k - i);
			goto out;
		}
		for (size_t c = i; c < k; c++) {
			if (z85_index((unsigned char)text[c]) < 0) {
				printable(what, sizeof(what), (unsigned char)text[c]);
				snprintf(err, err_len, "%s:%u:%zu: %s is not a Z85 character", name, line, c - start + 1, what);
				goto out;
			}
		}
		for (size_t c = k; c < end; c++) {
			if (is_blank(text[c]))
				continue;
			if (text[c] == '#')
				break;
			snprintf(err, err_len, "%s:%u:%zu: unexpected text after the key (a comment starts with '#')", name,
				 line, c - start + 1);
			goto out;
		}
		if (n >= max_keys) {
			snprintf(err, err_len, "%s:%u: more than %zu key%s", name, line, max_keys, max_keys == 1 ? "" : "s");
			goto out;
		}
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 8;
			uint8_t *nk = realloc(keys, ncap * MEAD_KEY_BYTES);
			if (!nk) {
				rc = -ENOMEM;
				goto out;
			}
			keys = nk;
			uint32_t *nl = realloc(lines, ncap * sizeof(*lines));
			if (!nl) {
				rc = -ENOMEM;
				goto out;
			}
			lines = nl;
			cap = ncap;
		}
		if (!z85_decode_key(text + i, keys + n * MEAD_KEY_BYTES)) {
			snprintf(err, err_len, "%s:%u: not a Z85 key (a group of 5 characters exceeds 32 bits)", name, line);
			goto out;
		}
		for (size_t j = 0; j < n; j++) {
			if (memcmp(keys + j * MEAD_KEY_BYTES, keys + n * MEAD_KEY_BYTES, MEAD_KEY_BYTES) == 0) {
				snprintf(err, err_len, "%s:%u: the same key as line %u", name, line, lines[j]);
				goto out;
			}
		}
		lines[n++] = line;
	}
	free(lines);
	*ret = keys;
	return (int)n;
out:
	if (keys)
		explicit_bzero(keys, cap * MEAD_KEY_BYTES);
	free(keys);
	free(lines);
	return rc;
}

int mead_keys_read_file(const char *path, bool secret, size_t max_keys, uint8_t **ret, char *err,
			    size_t err_len)
{
	struct stat st;
	char *text = NULL;
	size_t got = 0;
	int fd, rc;

	if (!path || !*path) {
		snprintf(err, err_len, "no key file named");
		return -EINVAL;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		snprintf(err, err_len, "%s: %s", path, strerror(errno));
		return rc;
	}
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		snprintf(err, err_len, "%s: %s", path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, err_len, "%s: not a regular file", path);
		rc = -EINVAL;
		goto out;
	}
	if (secret && (st.st_mode & S_IRWXO)) {
		snprintf(err, err_len, "%s: a secret key must not be accessible to others (mode %04o; chmod 600 it)",
			 path, (unsigned)(st.st_mode & 07777));
		rc = -EPERM;
		goto out;
	}
	if (st.st_size > (off_t)KEY_FILE_MAX) {
		snprintf(err, err_len, "%s: larger than %u bytes", path, KEY_FILE_MAX);
		rc = -EFBIG;
		goto out;
	}
	text = malloc((size_t)st.st_size + 1);
	if (!text) {
		rc = -ENOMEM;
		goto out;
	}
	while (got < (size_t)st.st_size) {
		ssize_t r = read(fd, text + got, (size_t)st.st_size - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			rc = -errno;
			snprintf(err, err_len, "%s: %s", path, strerror(errno));
			goto out;
		}
		if (r == 0)
			break;
		got += (size_t)r;
	}
	rc = mead_keys_parse(text, got, path, secret ? 1 : max_keys, ret, err, err_len);
	if (rc == 0) {
		snprintf(err, err_len, "%s: no key in the file", path);
		rc = -EINVAL;
	}
out:
	if (text) {
		explicit_bzero(text, got);
		free(text);
	}
	close(fd);
	return rc;
}

int mead_keys_from_arg(const char *arg, uint8_t key[MEAD_KEY_BYTES], char *err, size_t err_len)
{
	uint8_t *keys = NULL;
	int rc;

	if (!arg)
		return -EINVAL;
	if (access(arg, F_OK) == 0) {
		rc = mead_keys_read_file(arg, false, 1, &keys, err, err_len);
	} else {
		if (strlen(arg) != MEAD_KEY_Z85_LEN) {
			snprintf(err, err_len, "%s: no such file, and not a key (40 Z85 characters)", arg);
			return -ENOENT;
		}
		rc = mead_keys_parse(arg, strlen(arg), "key", 1, &keys, err, err_len);
	}
	if (rc < 0)
		return rc;
	memcpy(key, keys, MEAD_KEY_BYTES);
	free(keys);
	return 0;
}


int mead_keys_client(const char *server_arg, const char *client_key_file, uint8_t server[MEAD_KEY_BYTES],
		     uint8_t secret[MEAD_KEY_BYTES], char *err, size_t err_len)
{
	uint8_t *sec = NULL;
	char why[512];
	int rc;

	rc = mead_keys_from_arg(server_arg, server, why, sizeof(why));
	if (rc < 0) {
		snprintf(err, err_len, "--server-key: %s", why);
		return rc;
	}
	rc = mead_keys_read_file(client_key_file, true, 1, &sec, why, sizeof(why));
	if (rc < 0) {
		snprintf(err, err_len, "--client-key: %s", why);
		return rc;
	}
	memcpy(secret, sec, MEAD_KEY_BYTES);
	explicit_bzero(sec, MEAD_KEY_BYTES);
	free(sec);
	return 0;
}
