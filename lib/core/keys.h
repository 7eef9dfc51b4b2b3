/* SPDX-License-Identifier: MIT */
/*
 * CURVE key files, for the daemon's access control and its clients.
 *
 * Key files are text: one Z85 key (40 characters, 32 bytes) per line,
 * optionally followed by blanks and a '#' comment; blank lines and lines
 * whose first non-blank character is '#' are skipped.  Anything else is an
 * error naming the file and the line.  `meactl keygen` writes such files.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MEAD_KEY_BYTES 32
#define MEAD_KEY_Z85_LEN 40
#define MEAD_KEY_MAX 4096

/* Parses key text (see above).  name is used in errors ("NAME:LINE: ...").
 * Returns the number of keys and *ret (malloc'd, n x 32 bytes; NULL for 0),
 * or -EINVAL with err.  A key listed twice is an error. */
int mead_keys_parse(const char *text, size_t len, const char *name, size_t max_keys, uint8_t **ret,
			 char *err, size_t err_len);

/* Reads and parses a key file (at most 1 MiB).  secret: the file must hold
 * exactly one key and must not be accessible to others (mode & 007). */
int mead_keys_read_file(const char *path, bool secret, size_t max_keys, uint8_t **ret, char *err,
			    size_t err_len);

/* A key given on a command line: a file holding exactly one key, or the key
 * itself as 40 Z85 characters (when no such file exists). */
int mead_keys_from_arg(const char *arg, uint8_t key[MEAD_KEY_BYTES], char *err, size_t err_len);

/* A CURVE client's keys from its command line: the server's public key (a
 * file or 40 Z85 characters) and this client's secret key file.  Errors
 * name the option ("--server-key: ...", "--client-key: ..."). */
int mead_keys_client(const char *server_arg, const char *client_key_file, uint8_t server[MEAD_KEY_BYTES],
		     uint8_t secret[MEAD_KEY_BYTES], char *err, size_t err_len);
