/* SPDX-License-Identifier: MIT */
#include "daemon/auth.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#define KEY_FILE_MAX (1u << 20)
/* A client refused over and over (a reconnecting socket retries every
 * 100 ms) must not flood the log: one line, then one per interval. */
#define REFUSAL_LOG_INTERVAL_NS (10ull * 1000000000ull)

static const char z85_chars[] = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";

struct domain_counters {
	_Atomic uint64_t accepted, refused;
};

struct mead_auth {
	struct mead_auth_params p;
	uint8_t secret[MEAD_AUTH_KEY_BYTES];
	char public_z85[MEAD_AUTH_Z85_LEN + 1];
	uint8_t *keys;
	size_t n_keys;

	void *ctx, *zap;
	pthread_t thread;
	bool started, joined;
	_Atomic bool stop;

	struct domain_counters control, streams, other;
	_Atomic uint64_t malformed;
	uint64_t last_refusal_log_ns, refusals_unlogged;
};

static void alog(struct mead_auth *a, int prio, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void alog(struct mead_auth *a, int prio, const char *fmt, ...)
{
	char msg[320];
	va_list ap;

	if (!a->p.log)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	a->p.log(a->p.log_ctx, prio, msg);
}

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
static bool z85_decode_key(const char *s, uint8_t out[MEAD_AUTH_KEY_BYTES])
{
	for (size_t g = 0; g < MEAD_AUTH_Z85_LEN / 5; g++) {
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

int mead_auth_parse_keys(const char *text, size_t len, const char *name, size_t max_keys, uint8_t **ret,
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
		if (k - i != MEAD_AUTH_Z85_LEN) {
			snprintf(err, err_len, "%s:%u: a key is %d Z85 characters, found %zu", name, line, MEAD_AUTH_Z85_LEN,
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
			uint8_t *nk = realloc(keys, ncap * MEAD_AUTH_KEY_BYTES);
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
		if (!z85_decode_key(text + i, keys + n * MEAD_AUTH_KEY_BYTES)) {
			snprintf(err, err_len, "%s:%u: not a Z85 key (a group of 5 characters exceeds 32 bits)", name, line);
			goto out;
		}
		for (size_t j = 0; j < n; j++) {
			if (memcmp(keys + j * MEAD_AUTH_KEY_BYTES, keys + n * MEAD_AUTH_KEY_BYTES, MEAD_AUTH_KEY_BYTES) == 0) {
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
		explicit_bzero(keys, cap * MEAD_AUTH_KEY_BYTES);
	free(keys);
	free(lines);
	return rc;
}

int mead_auth_read_key_file(const char *path, bool secret, size_t max_keys, uint8_t **ret, char *err,
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
	rc = mead_auth_parse_keys(text, got, path, secret ? 1 : max_keys, ret, err, err_len);
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

int mead_auth_key_arg(const char *arg, uint8_t key[MEAD_AUTH_KEY_BYTES], char *err, size_t err_len)
{
	uint8_t *keys = NULL;
	int rc;

	if (!arg)
		return -EINVAL;
	if (access(arg, F_OK) == 0) {
		rc = mead_auth_read_key_file(arg, false, 1, &keys, err, err_len);
	} else {
		if (strlen(arg) != MEAD_AUTH_Z85_LEN) {
			snprintf(err, err_len, "%s: no such file, and not a key (40 Z85 characters)", arg);
			return -ENOENT;
		}
		rc = mead_auth_parse_keys(arg, strlen(arg), "key", 1, &keys, err, err_len);
	}
	if (rc < 0)
		return rc;
	memcpy(key, keys, MEAD_AUTH_KEY_BYTES);
	free(keys);
	return 0;
}

static bool key_authorised(const struct mead_auth *a, const uint8_t *key)
{
	for (size_t i = 0; i < a->n_keys; i++)
		if (memcmp(a->keys + i * MEAD_AUTH_KEY_BYTES, key, MEAD_AUTH_KEY_BYTES) == 0)
			return true;
	return false;
}

int mead_auth_new(const struct mead_auth_params *params, struct mead_auth **ret, char *err, size_t err_len)
{
	struct mead_auth *a;
	uint8_t *secret = NULL;
	char secret_z85[MEAD_AUTH_Z85_LEN + 1];
	int rc;

	if (!params || !ret)
		return -EINVAL;
	a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	a->p = *params;
	a->p.server_secret_key_file = NULL;
	a->p.authorized_keys_file = NULL;
	rc = mead_auth_read_key_file(params->server_secret_key_file, true, 1, &secret, err, err_len);
	if (rc < 0)
		goto fail;
	memcpy(a->secret, secret, sizeof(a->secret));
	explicit_bzero(secret, MEAD_AUTH_KEY_BYTES);
	free(secret);
	if (!zmq_z85_encode(secret_z85, a->secret, sizeof(a->secret)) ||
	    zmq_curve_public(a->public_z85, secret_z85) < 0) {
		rc = errno == ENOTSUP ? -ENOTSUP : -EINVAL;
		snprintf(err, err_len, "%s: cannot derive the public key: %s", params->server_secret_key_file,
			 rc == -ENOTSUP ? "this libzmq was built without CURVE" : zmq_strerror(errno));
		explicit_bzero(secret_z85, sizeof(secret_z85));
		goto fail;
	}
	explicit_bzero(secret_z85, sizeof(secret_z85));
	rc = mead_auth_read_key_file(params->authorized_keys_file, false, MEAD_AUTH_MAX_KEYS, &a->keys, err,
				     err_len);
	if (rc < 0)
		goto fail;
	a->n_keys = (size_t)rc;
	*ret = a;
	return 0;
fail:
	mead_auth_free(a);
	return rc;
}

static struct domain_counters *counters_for(struct mead_auth *a, const char *domain, size_t n)
{
	if (n == strlen(MEAD_AUTH_DOMAIN_CONTROL) && memcmp(domain, MEAD_AUTH_DOMAIN_CONTROL, n) == 0)
		return &a->control;
	if (n == strlen(MEAD_AUTH_DOMAIN_STREAMS) && memcmp(domain, MEAD_AUTH_DOMAIN_STREAMS, n) == 0)
		return &a->streams;
	return &a->other;
}

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* One ZAP request: version, request id, domain, address, routing id,
 * mechanism, credentials (RFC 27).  Replies 200 only for CURVE with an
 * authorised key; everything else is refused. */
static void handle_request(struct mead_auth *a)
{
	enum { F_VERSION, F_ID, F_DOMAIN, F_ADDRESS, F_IDENTITY, F_MECHANISM, F_CRED, F_MAX = 8 };
	zmq_msg_t f[F_MAX];
	size_t nf = 0;
	int more = 1;
	bool ok = false, malformed = false;
	char domain[32] = "", address[64] = "", key_z85[MEAD_AUTH_Z85_LEN + 1] = "";
	const char *why = "malformed request";

	while (more) {
		zmq_msg_t m;
		size_t ml = sizeof(more);
		zmq_msg_init(&m);
		if (zmq_msg_recv(&m, a->zap, 0) < 0) {
			zmq_msg_close(&m);
			break;
		}
		if (nf < F_MAX)
			f[nf++] = m;
		else {
			malformed = true;
			zmq_msg_close(&m);
		}
		if (zmq_getsockopt(a->zap, ZMQ_RCVMORE, &more, &ml) < 0)
			more = 0;
	}
	if (nf == 0)
		return;   /* nothing was received, so there is nothing to answer */
	if (nf < F_CRED || zmq_msg_size(&f[F_VERSION]) != 3 || memcmp(zmq_msg_data(&f[F_VERSION]), "1.0", 3) != 0)
		malformed = true;
	struct domain_counters *dc = &a->other;
	if (nf > F_DOMAIN) {
		size_t dn = zmq_msg_size(&f[F_DOMAIN]);
		dc = counters_for(a, zmq_msg_data(&f[F_DOMAIN]), dn);
		snprintf(domain, sizeof(domain), "%.*s", (int)(dn < sizeof(domain) ? dn : sizeof(domain) - 1),
			 (const char *)zmq_msg_data(&f[F_DOMAIN]));
	}
	if (nf > F_ADDRESS) {
		size_t an = zmq_msg_size(&f[F_ADDRESS]);
		snprintf(address, sizeof(address), "%.*s", (int)(an < sizeof(address) ? an : sizeof(address) - 1),
			 (const char *)zmq_msg_data(&f[F_ADDRESS]));
	}
	if (!malformed) {
		if (zmq_msg_size(&f[F_MECHANISM]) != 5 || memcmp(zmq_msg_data(&f[F_MECHANISM]), "CURVE", 5) != 0) {
			why = "not CURVE";
		} else if (nf != F_CRED + 1 || zmq_msg_size(&f[F_CRED]) != MEAD_AUTH_KEY_BYTES) {
			malformed = true;
		} else {
			zmq_z85_encode(key_z85, zmq_msg_data(&f[F_CRED]), MEAD_AUTH_KEY_BYTES);
			ok = key_authorised(a, zmq_msg_data(&f[F_CRED]));
			why = ok ? "OK" : "client key not authorised";
		}
	}
	if (malformed)
		atomic_fetch_add(&a->malformed, 1);
	atomic_fetch_add(ok ? &dc->accepted : &dc->refused, 1);

	/* Reply: version, request id, status code, status text, user id, metadata. */
	const char *code = ok ? "200" : "400";
	zmq_send(a->zap, "1.0", 3, ZMQ_SNDMORE);
	if (nf > F_ID)
		zmq_send(a->zap, zmq_msg_data(&f[F_ID]), zmq_msg_size(&f[F_ID]), ZMQ_SNDMORE);
	else
		zmq_send(a->zap, "", 0, ZMQ_SNDMORE);
	zmq_send(a->zap, code, 3, ZMQ_SNDMORE);
	zmq_send(a->zap, why, strlen(why), ZMQ_SNDMORE);
	zmq_send(a->zap, key_z85, ok ? MEAD_AUTH_Z85_LEN : 0, ZMQ_SNDMORE);
	zmq_send(a->zap, "", 0, 0);
	for (size_t i = 0; i < nf; i++)
		zmq_msg_close(&f[i]);

	if (ok) {
		alog(a, LOG_INFO, "%s: client %.8s... accepted (%s)", domain, key_z85, address[0] ? address : "local");
		return;
	}
	uint64_t now = mono_ns();
	if (a->last_refusal_log_ns && now - a->last_refusal_log_ns < REFUSAL_LOG_INTERVAL_NS) {
		a->refusals_unlogged++;
		return;
	}
	alog(a, LOG_WARNING, "%s: client %s%s refused: %s (%s)%s", domain[0] ? domain : "(no domain)",
	     key_z85[0] ? key_z85 : "", key_z85[0] ? "" : "without a key", why, address[0] ? address : "local",
	     a->refusals_unlogged ? "; more refusals since the last report" : "");
	a->last_refusal_log_ns = now;
	a->refusals_unlogged = 0;
}

static void *auth_thread(void *arg)
{
	struct mead_auth *a = arg;

	while (!atomic_load_explicit(&a->stop, memory_order_acquire)) {
		zmq_pollitem_t it = { .socket = a->zap, .events = ZMQ_POLLIN };
		if (zmq_poll(&it, 1, 100) > 0 && (it.revents & ZMQ_POLLIN))
			handle_request(a);
	}
	zmq_close(a->zap);
	a->zap = NULL;
	return NULL;
}

int mead_auth_start(struct mead_auth *a, char *err, size_t err_len)
{
	sigset_t all, old;
	int rc, linger = 0;

	if (!a || a->started)
		return -EINVAL;
	if (!zmq_has("curve")) {
		snprintf(err, err_len, "this libzmq was built without CURVE");
		return -ENOTSUP;
	}
	a->ctx = zmq_ctx_new();
	a->zap = a->ctx ? zmq_socket(a->ctx, ZMQ_REP) : NULL;
	if (!a->zap) {
		rc = -errno;
		snprintf(err, err_len, "ZAP handler: %s", zmq_strerror(errno));
		return rc;
	}
	zmq_setsockopt(a->zap, ZMQ_LINGER, &linger, sizeof(linger));
	if (zmq_bind(a->zap, MEAD_ZAP_ENDPOINT) < 0) {
		rc = -errno;
		snprintf(err, err_len, "ZAP handler: bind %s: %s", MEAD_ZAP_ENDPOINT, zmq_strerror(errno));
		return rc;
	}
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = -pthread_create(&a->thread, NULL, auth_thread, a);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc < 0) {
		snprintf(err, err_len, "ZAP handler: thread: %s", strerror(-rc));
		return rc;
	}
	pthread_setname_np(a->thread, "mead-auth");
	a->started = true;
	return 0;
}

int mead_auth_stop(struct mead_auth *a)
{
	if (!a)
		return 0;
	atomic_store_explicit(&a->stop, true, memory_order_release);
	if (a->started && !a->joined) {
		pthread_join(a->thread, NULL);
		a->joined = true;
	}
	return 0;
}

void mead_auth_free(struct mead_auth *a)
{
	if (!a)
		return;
	mead_auth_stop(a);
	if (a->zap)
		zmq_close(a->zap);
	if (a->ctx)
		zmq_ctx_term(a->ctx);
	explicit_bzero(a->secret, sizeof(a->secret));
	free(a->keys);
	free(a);
}

void *mead_auth_zmq_ctx(const struct mead_auth *a)
{
	return a ? a->ctx : NULL;
}

const uint8_t *mead_auth_server_secret(const struct mead_auth *a)
{
	return a->secret;
}

const char *mead_auth_server_public_z85(const struct mead_auth *a)
{
	return a->public_z85;
}

size_t mead_auth_key_count(const struct mead_auth *a)
{
	return a ? a->n_keys : 0;
}

static void load_domain(const struct domain_counters *c, struct mead_auth_domain_counters *ret)
{
	ret->accepted = atomic_load_explicit(&c->accepted, memory_order_relaxed);
	ret->refused = atomic_load_explicit(&c->refused, memory_order_relaxed);
}

void mead_auth_get_counters(const struct mead_auth *a, struct mead_auth_counters *ret)
{
	memset(ret, 0, sizeof(*ret));
	if (!a)
		return;
	load_domain(&a->control, &ret->control);
	load_domain(&a->streams, &ret->streams);
	load_domain(&a->other, &ret->other);
	ret->malformed = atomic_load_explicit(&a->malformed, memory_order_relaxed);
}

bool mead_auth_endpoint_is_local(const char *ep)
{
	static const char *const local[] = { "tcp://127.", "tcp://localhost:", "tcp://[::1]:", "ipc://", "inproc://",
					     NULL };

	if (!ep)
		return true;
	for (size_t i = 0; local[i]; i++)
		if (strncmp(ep, local[i], strlen(local[i])) == 0)
			return true;
	return false;
}
