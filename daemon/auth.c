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
#include "lib/core/time.h"

/* A client refused over and over (a reconnecting socket retries every
 * 100 ms) must not flood the log: one line, then one per interval. */
#define REFUSAL_LOG_INTERVAL_NS (10ull * 1000000000ull)

struct domain_counters {
	_Atomic uint64_t accepted, refused;
};

struct mead_auth {
	struct mead_auth_params p;
	uint8_t secret[MEAD_KEY_BYTES];
	char public_z85[MEAD_KEY_Z85_LEN + 1];
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

static bool key_authorised(const struct mead_auth *a, const uint8_t *key)
{
	for (size_t i = 0; i < a->n_keys; i++)
		if (memcmp(a->keys + i * MEAD_KEY_BYTES, key, MEAD_KEY_BYTES) == 0)
			return true;
	return false;
}

int mead_auth_new(const struct mead_auth_params *params, struct mead_auth **ret, char *err, size_t err_len)
{
	struct mead_auth *a;
	uint8_t *secret = NULL;
	char secret_z85[MEAD_KEY_Z85_LEN + 1];
	int rc;

	if (!params || !ret)
		return -EINVAL;
	a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	a->p = *params;
	a->p.server_secret_key_file = NULL;
	a->p.authorized_keys_file = NULL;
	rc = mead_keys_read_file(params->server_secret_key_file, true, 1, &secret, err, err_len);
	if (rc < 0)
		goto fail;
	memcpy(a->secret, secret, sizeof(a->secret));
	explicit_bzero(secret, MEAD_KEY_BYTES);
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
	rc = mead_keys_read_file(params->authorized_keys_file, false, MEAD_KEY_MAX, &a->keys, err,
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
	char domain[32] = "", address[64] = "", key_z85[MEAD_KEY_Z85_LEN + 1] = "";
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
		} else if (nf != F_CRED + 1 || zmq_msg_size(&f[F_CRED]) != MEAD_KEY_BYTES) {
			malformed = true;
		} else {
			zmq_z85_encode(key_z85, zmq_msg_data(&f[F_CRED]), MEAD_KEY_BYTES);
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
	zmq_send(a->zap, key_z85, ok ? MEAD_KEY_Z85_LEN : 0, ZMQ_SNDMORE);
	zmq_send(a->zap, "", 0, 0);
	for (size_t i = 0; i < nf; i++)
		zmq_msg_close(&f[i]);

	if (ok) {
		alog(a, LOG_INFO, "%s: client %.8s... accepted (%s)", domain, key_z85, address[0] ? address : "local");
		return;
	}
	uint64_t now = mead_now_ns();
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
