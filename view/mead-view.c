/* SPDX-License-Identifier: MIT */
/*
 * mead-view: the live view.  One more subscriber of the daemon's streams
 * that folds them into a few frames a second (view/agg.h) and serves them,
 * with the page, over HTTP and WebSocket to any number of browsers.  One
 * thread: zmq_poll over the SUB socket, the listening socket and the
 * browsers' connections.  A browser that does not keep up loses frames
 * (counted), never the view's place in the streams.  docs/live-view.md.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zmq.h>

#include "mead-build-config.h"
#include "mead/wire.h"
#include "lib/core/json.h"
#include "lib/core/keys.h"
#include "lib/core/time.h"
#include "view/agg.h"
#include "view/ws.h"

#define FRAME_NS (50ull * 1000000ull)          /* 20 frames a second */
#define BEHIND_NS (1000ull * 1000000ull)       /* busy this long without catching up: behind */
#define DRAIN_BATCH 4096
#define DRAIN_NS (20ull * 1000000ull)          /* then the browsers get their turn */
#define OUT_CAP (8u << 20)                     /* a browser further behind than this loses frames */
#define MAX_CONNS 64
#define MAX_TRACES 64
#define IN_CAP (64u << 10)

enum conn_state { C_HTTP, C_WS };

struct conn {
	int fd;
	enum conn_state state;
	uint8_t in[IN_CAP];
	size_t in_len;
	uint8_t *out;
	size_t out_len, out_off, out_cap;
	bool close_after_write, dead;
	uint16_t traces[MAX_TRACES];
	uint32_t n_traces;
	bool traces_set;
	uint64_t frames_skipped;
};

struct page_file {
	const char *name, *type;
	char *data;
	size_t len;
};

struct view {
	void *ctx, *sub;
	int lfd;
	char listen_host[256];
	unsigned listen_port;
	char token[40];
	struct mv_agg *agg;
	struct conn *conns[MAX_CONNS];
	size_t n_conns;
	struct page_file files[3];
	char *frame;
	size_t frame_cap;
	uint8_t *raw;
	size_t raw_cap;
	bool status_pending;
	uint64_t busy_since_ns;
	uint64_t pages_served, browsers_total, frames_sent, frames_skipped;
	bool quiet;
};

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: mead-view [-c ENDPOINT] [-l HOST:PORT] [--server-key FILE|Z85 --client-key FILE]\n"
		"                 [--token TOKEN | --no-token] [--threshold-k K] [--page DIR] [--seconds S] [-q]\n"
		"  -c, --connect EP    the daemon's streams (default tcp://127.0.0.1:5555)\n"
		"  -l, --listen H:P    where the page is served (default 127.0.0.1:8080; port 0 picks one)\n"
		"  --server-key        the daemon's public key (.pub file or 40 Z85 characters): CURVE\n"
		"  --client-key        this client's secret key file (meactl keygen), with --server-key\n"
		"  --token TOKEN       the page's data needs ?token=TOKEN (default: a random one when the\n"
		"                      address is not loopback); --no-token: anyone who reaches it sees it\n"
		"  --threshold-k K     the threshold drawn on traces when the driver reports none:\n"
		"                      K x the noise estimate of the rig drivers' detector (default 5; 0 off)\n"
		"  --page DIR          the page's files (default: installed, or the source tree's view/page)\n"
		"  --seconds S         end after S seconds (default: until SIGINT/SIGTERM)\n"
		"Prints the page's address on standard output.\n");
}

static void vlog(const struct view *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void vlog(const struct view *v, const char *fmt, ...)
{
	va_list ap;
	if (v->quiet)
		return;
	va_start(ap, fmt);
	fprintf(stderr, "mead-view: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
}

/* CURVE client: the daemon's public key and this client's key pair
 * (lib/core/keys.h reads them; the public half is derived by libzmq). */
static int curve_client(void *sock, const char *server_key, const char *client_key)
{
	uint8_t server[MEAD_KEY_BYTES], secret[MEAD_KEY_BYTES];
	char sec_z85[MEAD_KEY_Z85_LEN + 1], pub_z85[MEAD_KEY_Z85_LEN + 1], err[600];
	const char *why = NULL;

	if (mead_keys_client(server_key, client_key, server, secret, err, sizeof(err)) < 0) {
		fprintf(stderr, "mead-view: %s\n", err);
		return -1;
	}
	zmq_z85_encode(sec_z85, secret, MEAD_KEY_BYTES);
	if (zmq_curve_public(pub_z85, sec_z85) < 0)
		why = errno == ENOTSUP ? "this libzmq was built without CURVE" : zmq_strerror(errno);
	else if (zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, server, sizeof(server)) < 0 ||
		 zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, pub_z85, MEAD_KEY_Z85_LEN) < 0 ||
		 zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, secret, MEAD_KEY_BYTES) < 0)
		why = zmq_strerror(errno);
	explicit_bzero(sec_z85, sizeof(sec_z85));
	explicit_bzero(secret, sizeof(secret));
	if (why)
		fprintf(stderr, "mead-view: CURVE: %s\n", why);
	return why ? -1 : 0;
}

/* The page's files: --page, $MEAD_VIEW_PAGE, the source tree for a
 * program in the build tree, else the installed copy. */
static int page_dir(const char *opt, char *out, size_t len)
{
	char exe[PATH_MAX];
	ssize_t n;

	if (opt)
		return snprintf(out, len, "%s", opt) < (int)len ? 0 : -ENAMETOOLONG;
	if (getenv("MEAD_VIEW_PAGE"))
		return snprintf(out, len, "%s", getenv("MEAD_VIEW_PAGE")) < (int)len ? 0 : -ENAMETOOLONG;
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n > 0) {
		exe[n] = '\0';
		size_t bl = strlen(MEAD_BUILD_ROOT);
		if (strncmp(exe, MEAD_BUILD_ROOT, bl) == 0 && exe[bl] == '/')
			return snprintf(out, len, "%s/view/page", MEAD_SOURCE_ROOT) < (int)len ? 0 : -ENAMETOOLONG;
	}
	return snprintf(out, len, "%s/view", MEAD_DATADIR) < (int)len ? 0 : -ENAMETOOLONG;
}

static int load_file(const char *dir, struct page_file *f)
{
	char path[PATH_MAX + 64];
	FILE *fp;
	struct stat st;

	snprintf(path, sizeof(path), "%s/%s", dir, f->name);
	fp = fopen(path, "rb");
	if (!fp || fstat(fileno(fp), &st) < 0 || st.st_size <= 0 || st.st_size > (16 << 20)) {
		fprintf(stderr, "mead-view: %s: %s\n", path, fp ? "empty or too large" : strerror(errno));
		if (fp)
			fclose(fp);
		return -ENOENT;
	}
	f->len = (size_t)st.st_size;
	f->data = malloc(f->len);
	if (!f->data || fread(f->data, 1, f->len, fp) != f->len) {
		fprintf(stderr, "mead-view: %s: cannot read\n", path);
		fclose(fp);
		return -EIO;
	}
	fclose(fp);
	return 0;
}

static bool host_is_loopback(const char *h)
{
	return strcmp(h, "localhost") == 0 || strncmp(h, "127.", 4) == 0 || strcmp(h, "::1") == 0;
}

/* The host part of a Host header ("127.0.0.1:8080", "[::1]:8080", "localhost"). */
static bool host_is_loopback_header(const char *h)
{
	char host[256];
	size_t n = strlen(h);
	const char *end = h + n;

	if (h[0] == '[') {
		const char *b = strchr(h, ']');
		if (!b)
			return false;
		snprintf(host, sizeof(host), "%.*s", (int)(b - h - 1), h + 1);
	} else {
		const char *c = strrchr(h, ':');
		snprintf(host, sizeof(host), "%.*s", (int)((c ? c : end) - h), h);
	}
	return host_is_loopback(host);
}

static int listen_on(struct view *v, const char *spec)
{
	char host[256];
	const char *colon = strrchr(spec, ':');
	struct addrinfo hints = { .ai_flags = AI_PASSIVE | AI_NUMERICSERV, .ai_socktype = SOCK_STREAM }, *ai;
	char port[16];
	int one = 1;

	if (!colon || (size_t)(colon - spec) >= sizeof(host) || !colon[1]) {
		fprintf(stderr, "mead-view: --listen %s: expected HOST:PORT\n", spec);
		return -EINVAL;
	}
	memcpy(host, spec, (size_t)(colon - spec));
	host[colon - spec] = '\0';
	if (host[0] == '[' && host[strlen(host) - 1] == ']') {
		memmove(host, host + 1, strlen(host) - 2);
		host[strlen(host) - 2] = '\0';
	}
	snprintf(port, sizeof(port), "%s", colon + 1);
	int g = getaddrinfo(host[0] && strcmp(host, "*") ? host : NULL, port, &hints, &ai);
	if (g != 0) {
		fprintf(stderr, "mead-view: --listen %s: %s\n", spec, gai_strerror(g));
		return -EINVAL;
	}
	v->lfd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (v->lfd < 0 || setsockopt(v->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(v->lfd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(v->lfd, 16) < 0) {
		fprintf(stderr, "mead-view: --listen %s: %s\n", spec, strerror(errno));
		freeaddrinfo(ai);
		return -errno;
	}
	freeaddrinfo(ai);
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	getsockname(v->lfd, (struct sockaddr *)&ss, &sl);
	char a[INET6_ADDRSTRLEN] = "";
	if (ss.ss_family == AF_INET6) {
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, a, sizeof(a));
		v->listen_port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
		snprintf(v->listen_host, sizeof(v->listen_host), "[%s]", a);
	} else {
		inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, a, sizeof(a));
		v->listen_port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
		snprintf(v->listen_host, sizeof(v->listen_host), "%s", a);
	}
	return 0;
}

static int out_append(struct conn *c, const void *a, size_t al, const void *b, size_t bl)
{
	if (c->out_off == c->out_len)
		c->out_off = c->out_len = 0;
	size_t need = c->out_len + al + bl;
	if (need > c->out_cap) {
		if (c->out_off) {
			memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
			c->out_len -= c->out_off;
			c->out_off = 0;
			need = c->out_len + al + bl;
		}
		if (need > c->out_cap) {
			size_t cap = c->out_cap ? c->out_cap : 65536;
			while (cap < need)
				cap *= 2;
			uint8_t *n = realloc(c->out, cap);
			if (!n)
				return -ENOMEM;
			c->out = n;
			c->out_cap = cap;
		}
	}
	memcpy(c->out + c->out_len, a, al);
	if (bl)
		memcpy(c->out + c->out_len + al, b, bl);
	c->out_len += al + bl;
	return 0;
}

/* What a non-blocking send or recv came to. */
enum io { IO_DONE, IO_AGAIN, IO_LATER, IO_DEAD };

static enum io io_result(ssize_t n)
{
	if (n > 0)
		return IO_DONE;
	if (n < 0 && errno == EINTR)
		return IO_AGAIN;
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return IO_LATER;
	return IO_DEAD;   /* an error, or the end of the connection */
}

static void conn_flush(struct conn *c)
{
	while (c->out_off < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
		enum io r = io_result(n);
		if (r == IO_DONE)
			c->out_off += (size_t)n;
		else if (r == IO_LATER)
			return;
		else if (r == IO_DEAD) {
			c->dead = true;
			return;
		}
	}
	c->out_off = c->out_len = 0;
	if (c->close_after_write)
		c->dead = true;
}

static size_t pending(const struct conn *c)
{
	return c->out_len - c->out_off;
}

/* One WebSocket message; frames and status are dropped for a browser that
 * is OUT_CAP behind, control frames never. */
static bool ws_send(struct view *v, struct conn *c, enum mv_ws_opcode op, const void *data, size_t len)
{
	uint8_t h[10];
	size_t hl = mv_ws_header(h, op, len);

	if (op < MV_WS_CLOSE && pending(c) > OUT_CAP) {
		c->frames_skipped++;
		v->frames_skipped++;
		return false;
	}
	if (out_append(c, h, hl, data, len) < 0) {
		c->dead = true;
		return false;
	}
	conn_flush(c);
	return true;
}

static void http_reply(struct conn *c, const char *status, const char *type, const char *body, size_t len)
{
	char head[512];
	int n = snprintf(head, sizeof(head),
			 "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nCache-Control: no-cache\r\n"
			 "Content-Security-Policy: default-src 'self'; connect-src 'self'; img-src 'self' data:\r\n"
			 "X-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n",
			 status, type, len);
	out_append(c, head, (size_t)n, body, len);
	c->close_after_write = true;
	conn_flush(c);
}

static void send_hello(struct view *v, struct conn *c)
{
	size_t sl = 0;
	mv_agg_status(v->agg, &sl);
	size_t cap = sl + 8192;
	char *buf = malloc(cap);
	if (!buf)
		return;
	int n = mv_agg_hello_json(v->agg, buf, cap);
	if (n > 0)
		ws_send(v, c, MV_WS_TEXT, buf, (size_t)n);
	free(buf);
}

/* The page's data is for whoever holds the token (when there is one) and
 * only for pages served from here: a page elsewhere must not read it
 * through the user's browser. */
static const char *ws_refusal(const struct view *v, const struct mv_http_request *r)
{
	char tok[64];

	if (v->token[0] && (!mv_query_get(r->query, "token", tok, sizeof(tok)) || strcmp(tok, v->token) != 0))
		return "403 Forbidden";
	/* Without a token on loopback, only a loopback name may be asked for: a
	 * name of another site made to point here (DNS rebinding) is refused. */
	if (!v->token[0] && host_is_loopback(v->listen_host) && !host_is_loopback_header(r->host))
		return "403 Forbidden";
	if (r->origin[0]) {
		const char *o = r->origin;
		if (strncmp(o, "http://", 7) != 0 || strcmp(o + 7, r->host) != 0)
			return "403 Forbidden";
	}
	if (!r->ws_key[0] || r->ws_version != 13)
		return "400 Bad Request";
	return NULL;
}

static void http_request(struct view *v, struct conn *c)
{
	struct mv_http_request r;
	int n = mv_http_parse((const char *)c->in, c->in_len, &r);

	if (n == 0)
		return;
	if (n < 0) {
		static const char msg[] = "bad request\n";
		http_reply(c, n == -E2BIG ? "431 Request Header Fields Too Large" : "400 Bad Request", "text/plain", msg,
			   sizeof(msg) - 1);
		c->in_len = 0;
		return;
	}
	memmove(c->in, c->in + n, c->in_len - (size_t)n);
	c->in_len -= (size_t)n;
	if (strcmp(r.method, "GET") != 0) {
		static const char msg[] = "only GET\n";
		http_reply(c, "405 Method Not Allowed", "text/plain", msg, sizeof(msg) - 1);
		return;
	}
	if (strcmp(r.path, "/ws") == 0) {
		const char *why = r.upgrade_websocket ? ws_refusal(v, &r) : "400 Bad Request";
		if (why) {
			http_reply(c, why, "text/plain", why, strlen(why));
			return;
		}
		char accept[29], head[256];
		mv_ws_accept(r.ws_key, accept);
		int hl = snprintf(head, sizeof(head),
				  "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
				  "Sec-WebSocket-Accept: %s\r\n\r\n",
				  accept);
		out_append(c, head, (size_t)hl, NULL, 0);
		c->state = C_WS;
		v->browsers_total++;
		send_hello(v, c);
		return;
	}
	const char *name = strcmp(r.path, "/") == 0 ? "index.html" : r.path + 1;
	for (size_t i = 0; i < sizeof(v->files) / sizeof(v->files[0]); i++) {
		if (strcmp(name, v->files[i].name) == 0) {
			http_reply(c, "200 OK", v->files[i].type, v->files[i].data, v->files[i].len);
			v->pages_served++;
			return;
		}
	}
	if (strcmp(r.path, "/favicon.ico") == 0) {
		http_reply(c, "204 No Content", "text/plain", "", 0);
		return;
	}
	static const char msg[] = "not found\n";
	http_reply(c, "404 Not Found", "text/plain", msg, sizeof(msg) - 1);
}

/* {"traces":[e, ...]}: the channels this page draws traces of. */
static void ws_text(struct conn *c, const uint8_t *p, size_t len)
{
	struct mead_json *doc;
	if (mead_json_parse((const char *)p, len, NULL, &doc, NULL, 0) < 0)
		return;
	const struct mead_json_value *t = mead_json_get(doc, mead_json_root(doc), "traces");
	if (t && t->type == MEAD_JSON_ARRAY) {
		c->n_traces = 0;
		for (const struct mead_json_value *e = mead_json_first(doc, t); e && c->n_traces < MAX_TRACES;
		     e = mead_json_next(doc, e))
			if (e->type == MEAD_JSON_NUMBER && e->is_int && e->i >= 0 && e->i < MV_MAX_CHANNELS)
				c->traces[c->n_traces++] = (uint16_t)e->i;
		c->traces_set = true;
	}
	mead_json_free(doc);
}

static void ws_input(struct view *v, struct conn *c)
{
	for (;;) {
		struct mv_ws_frame f;
		int n = mv_ws_parse(c->in, c->in_len, IN_CAP - 16, &f);
		if (n == 0)
			return;
		if (n < 0) {
			uint8_t body[2] = { 0x03, n == -EMSGSIZE ? 0xf1 : 0xea };   /* 1009 too big, 1002 protocol */
			ws_send(v, c, MV_WS_CLOSE, body, 2);
			c->close_after_write = true;
			c->in_len = 0;
			return;
		}
		if (f.opcode == MV_WS_TEXT && f.fin)
			ws_text(c, f.payload, (size_t)f.len);
		else if (f.opcode == MV_WS_PING)
			ws_send(v, c, MV_WS_PONG, f.payload, (size_t)f.len);
		else if (f.opcode == MV_WS_CLOSE) {
			ws_send(v, c, MV_WS_CLOSE, f.payload, f.len >= 2 ? 2 : 0);
			c->close_after_write = true;
		}
		memmove(c->in, c->in + n, c->in_len - (size_t)n);
		c->in_len -= (size_t)n;
	}
}

static void conn_read(struct view *v, struct conn *c)
{
	for (;;) {
		if (c->in_len == IN_CAP) {
			c->dead = true;   /* a request or a message larger than anything the page sends */
			return;
		}
		ssize_t n = recv(c->fd, c->in + c->in_len, IN_CAP - c->in_len, 0);
		enum io r = io_result(n);
		if (r == IO_LATER)
			return;
		if (r == IO_DEAD) {
			c->dead = true;
			return;
		}
		if (r == IO_DONE) {
			c->in_len += (size_t)n;
			if (c->state == C_HTTP)
				http_request(v, c);
			if (c->state == C_WS)
				ws_input(v, c);
		}
	}
}

static void accept_conns(struct view *v)
{
	for (;;) {
		int fd = accept4(v->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC), one = 1;
		if (fd < 0)
			return;
		if (v->n_conns == MAX_CONNS) {
			close(fd);
			continue;
		}
		struct conn *c = calloc(1, sizeof(*c));
		if (!c) {
			close(fd);
			continue;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		c->fd = fd;
		v->conns[v->n_conns++] = c;
	}
}

static void reap_conns(struct view *v)
{
	for (size_t i = 0; i < v->n_conns;) {
		struct conn *c = v->conns[i];
		if (!c->dead) {
			i++;
			continue;
		}
		close(c->fd);
		free(c->out);
		free(c);
		v->conns[i] = v->conns[--v->n_conns];
	}
}

static int ensure(char **buf, size_t *cap, size_t need)
{
	if (need <= *cap)
		return 0;
	char *n = realloc(*buf, need);
	if (!n)
		return -ENOMEM;
	*buf = n;
	*cap = need;
	return 0;
}

static void broadcast_frame(struct view *v)
{
	size_t need = mv_agg_frame_size(v->agg);
	int n = -ENOSPC;
	/* the size is an estimate: a frame that does not fit gets twice the room */
	for (int tries = 0; n == -ENOSPC && tries < 4; tries++, need *= 2)
		if (ensure(&v->frame, &v->frame_cap, need) == 0)
			n = mv_agg_frame_json(v->agg, v->frame, v->frame_cap);
	if (n < 0) {
		mv_agg_frame_drop(v->agg);
		return;
	}
	for (size_t i = 0; i < v->n_conns; i++) {
		struct conn *c = v->conns[i];
		if (c->state != C_WS || c->dead)
			continue;
		if (ws_send(v, c, MV_WS_TEXT, v->frame, (size_t)n))
			v->frames_sent++;
		uint32_t nt = c->n_traces;
		uint16_t def[8];
		const uint16_t *ch = c->traces;
		if (!c->traces_set) {
			/* until the page says, the first channels */
			nt = mv_agg_raw_channels(v->agg) < 8 ? mv_agg_raw_channels(v->agg) : 8;
			for (uint32_t k = 0; k < nt; k++)
				def[k] = (uint16_t)k;
			ch = def;
		}
		size_t rn = mv_agg_raw_binary_size(v->agg, nt);
		if (nt && ensure((char **)&v->raw, &v->raw_cap, rn) == 0) {
			size_t w = mv_agg_raw_binary(v->agg, ch, nt, v->raw, v->raw_cap);
			if (w)
				ws_send(v, c, MV_WS_BINARY, v->raw, w);
		}
	}
	mv_agg_raw_done(v->agg);
}

static void broadcast_status(struct view *v)
{
	size_t sl = 0;
	const char *st = mv_agg_status(v->agg, &sl);
	char bridge[4096];
	int bl = mv_agg_bridge_json(v->agg, bridge, sizeof(bridge));

	v->status_pending = false;
	if (!st || bl < 0 || ensure(&v->frame, &v->frame_cap, sl + (size_t)bl + 512) < 0)
		return;
	struct mead_jw w;
	mead_jw_init(&w, v->frame, v->frame_cap);
	mead_jw_obj_begin(&w);
	mead_jw_key(&w, "type");
	mead_jw_str(&w, "status");
	mead_jw_key(&w, "status");
	mead_jw_raw(&w, st, sl);
	mead_jw_key(&w, "bridge");
	mead_jw_raw(&w, bridge, (size_t)bl);
	mead_jw_obj_end(&w);
	int n = mead_jw_finish(&w);
	if (n < 0)
		return;
	for (size_t i = 0; i < v->n_conns; i++)
		if (v->conns[i]->state == C_WS && !v->conns[i]->dead)
			ws_send(v, v->conns[i], MV_WS_TEXT, v->frame, (size_t)n);
}

/* Takes what the SUB socket holds, at most a batch or 20 ms of work.  A
 * view that finds more waiting after each batch for a second is behind: it
 * keeps counting but stops listing spikes and binning raw until it has
 * caught up. */
static void drain(struct view *v)
{
	unsigned taken = 0;
	uint64_t t0 = mead_now_ns();
	bool waiting = true;   /* false once the socket had nothing more */

	for (; taken < DRAIN_BATCH; taken++) {
		if (taken % 64 == 63 && mead_now_ns() - t0 > DRAIN_NS)
			break;
		zmq_msg_t f[3];
		int nf = 0, more = 1;
		for (int i = 0; i < 3; i++)
			zmq_msg_init(&f[i]);
		if (zmq_msg_recv(&f[0], v->sub, ZMQ_DONTWAIT) < 0) {
			for (int i = 0; i < 3; i++)
				zmq_msg_close(&f[i]);
			waiting = false;
			break;
		}
		nf = 1;
		more = zmq_msg_more(&f[0]);
		while (more && nf < 3) {
			zmq_msg_recv(&f[nf], v->sub, 0);
			more = zmq_msg_more(&f[nf]);
			nf++;
		}
		while (more) {   /* not wire v1: more than three frames */
			zmq_msg_t x;
			zmq_msg_init(&x);
			zmq_msg_recv(&x, v->sub, 0);
			more = zmq_msg_more(&x);
			zmq_msg_close(&x);
			nf++;
		}
		struct mead_wire_header h;
		if (nf == 3 && mead_wire_header_decode(zmq_msg_data(&f[1]), zmq_msg_size(&f[1]), &h) == 0) {
			if (mv_agg_message(v->agg, &h, zmq_msg_data(&f[2]), zmq_msg_size(&f[2])) == 0 &&
			    h.kind == MEAD_KIND_STATUS)
				v->status_pending = true;
		} else {
			mv_agg_bad_message(v->agg);
		}
		for (int i = 0; i < 3; i++)
			zmq_msg_close(&f[i]);
	}
	uint64_t now = mead_now_ns();
	if (!waiting) {
		v->busy_since_ns = 0;
		mv_agg_set_behind(v->agg, false);
	} else {
		if (!v->busy_since_ns)
			v->busy_since_ns = now;
		if (now - v->busy_since_ns > BEHIND_NS)
			mv_agg_set_behind(v->agg, true);
	}
}

static int run(struct view *v, double seconds)
{
	zmq_pollitem_t items[2 + MAX_CONNS];
	uint64_t t0 = mead_now_ns(), next_frame = t0 + FRAME_NS;
	uint64_t end = seconds > 0 ? t0 + (uint64_t)(seconds * 1e9) : 0;

	while (!stop_requested && (!end || mead_now_ns() < end)) {
		size_t k = 0;
		items[k++] = (zmq_pollitem_t){ .socket = v->sub, .events = ZMQ_POLLIN };
		items[k++] = (zmq_pollitem_t){ .fd = v->lfd, .events = ZMQ_POLLIN };
		for (size_t i = 0; i < v->n_conns; i++)
			items[k++] = (zmq_pollitem_t){ .fd = v->conns[i]->fd,
						       .events = (short)(ZMQ_POLLIN | (pending(v->conns[i]) ? ZMQ_POLLOUT : 0)) };
		uint64_t now = mead_now_ns();
		long timeout = next_frame > now ? (long)((next_frame - now) / 1000000ull) : 0;
		int rc = zmq_poll(items, (int)k, v->busy_since_ns ? 0 : timeout);
		if (rc < 0 && errno != EINTR) {
			fprintf(stderr, "mead-view: poll: %s\n", zmq_strerror(errno));
			return 1;
		}
		if (rc > 0 || v->busy_since_ns) {
			if (items[0].revents || v->busy_since_ns)
				drain(v);
			if (items[1].revents)
				accept_conns(v);
			size_t n = k - 2;
			for (size_t i = 0; i < n && i < v->n_conns; i++) {
				struct conn *c = v->conns[i];
				if (items[2 + i].revents & ZMQ_POLLIN)
					conn_read(v, c);
				if (items[2 + i].revents & ZMQ_POLLOUT)
					conn_flush(c);
				if (items[2 + i].revents & ZMQ_POLLERR)
					c->dead = true;
			}
		}
		if (v->status_pending)
			broadcast_status(v);
		now = mead_now_ns();
		if (now >= next_frame) {
			broadcast_frame(v);
			next_frame = now + FRAME_NS;
		}
		reap_conns(v);
	}
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "connect", required_argument, NULL, 'c' }, { "listen", required_argument, NULL, 'l' },
		{ "server-key", required_argument, NULL, 'S' }, { "client-key", required_argument, NULL, 'C' },
		{ "token", required_argument, NULL, 'T' }, { "no-token", no_argument, NULL, 'N' },
		{ "threshold-k", required_argument, NULL, 'k' }, { "page", required_argument, NULL, 'P' },
		{ "seconds", required_argument, NULL, 's' }, { "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' }, { 0 },
	};
	static struct view v;
	const char *endpoint = "tcp://127.0.0.1:5555", *listen_spec = "127.0.0.1:8080";
	const char *server_key = NULL, *client_key = NULL, *page_opt = NULL, *token = NULL;
	bool no_token = false;
	double seconds = 0, k = 5.0;
	char dir[PATH_MAX], *end;
	int c;

	while ((c = getopt_long(argc, argv, "c:l:qh", opts, NULL)) != -1) {
		switch (c) {
		case 'c': endpoint = optarg; break;
		case 'l': listen_spec = optarg; break;
		case 'S': server_key = optarg; break;
		case 'C': client_key = optarg; break;
		case 'T': token = optarg; break;
		case 'N': no_token = true; break;
		case 'P': page_opt = optarg; break;
		case 'q': v.quiet = true; break;
		case 'k':
			k = strtod(optarg, &end);
			if (*end || end == optarg || k < 0 || k > 100) {
				fprintf(stderr, "mead-view: --threshold-k %s: a number from 0 to 100\n", optarg);
				return 2;
			}
			break;
		case 's':
			seconds = strtod(optarg, &end);
			if (*end || end == optarg || seconds < 0) {
				fprintf(stderr, "mead-view: --seconds %s: a number of seconds\n", optarg);
				return 2;
			}
			break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc || (!server_key != !client_key) || (token && no_token)) {
		if (!server_key != !client_key)
			fprintf(stderr, "mead-view: --server-key and --client-key go together\n");
		if (token && no_token)
			fprintf(stderr, "mead-view: --token and --no-token exclude each other\n");
		usage(stderr);
		return 2;
	}
	if (token && (strlen(token) < 8 || strlen(token) >= sizeof(v.token) || strspn(token,
		      "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") != strlen(token))) {
		fprintf(stderr, "mead-view: --token: 8 to %zu letters, digits, - or _\n", sizeof(v.token) - 1);
		return 2;
	}

	v.files[0] = (struct page_file){ "index.html", "text/html; charset=utf-8" };
	v.files[1] = (struct page_file){ "view.js", "text/javascript; charset=utf-8" };
	v.files[2] = (struct page_file){ "view.css", "text/css; charset=utf-8" };
	if (page_dir(page_opt, dir, sizeof(dir)) < 0) {
		fprintf(stderr, "mead-view: the page's directory: too long a path\n");
		return 1;
	}
	for (size_t i = 0; i < 3; i++)
		if (load_file(dir, &v.files[i]) < 0)
			return 1;

	struct mv_agg_params ap = { .threshold_k = k };
	if (mv_agg_new(&ap, &v.agg) < 0)
		return 1;
	v.lfd = -1;
	if (listen_on(&v, listen_spec) < 0)
		return 1;
	if (token) {
		snprintf(v.token, sizeof(v.token), "%s", token);
	} else if (!no_token && !host_is_loopback(v.listen_host) && strcmp(v.listen_host, "[::1]") != 0) {
		uint8_t r[16];
		if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r)) {
			fprintf(stderr, "mead-view: a token: %s\n", strerror(errno));
			return 1;
		}
		for (size_t i = 0; i < sizeof(r); i++)
			snprintf(v.token + 2 * i, 3, "%02x", r[i]);
	}

	v.ctx = zmq_ctx_new();
	v.sub = zmq_socket(v.ctx, ZMQ_SUB);
	/* No receive limit: this side never makes the daemon drop or wait; the
	 * view keeps up by skipping detail (see drain). */
	int zero = 0;
	zmq_setsockopt(v.sub, ZMQ_RCVHWM, &zero, sizeof(zero));
	zmq_setsockopt(v.sub, ZMQ_LINGER, &zero, sizeof(zero));
	if (server_key && curve_client(v.sub, server_key, client_key) < 0)
		return 1;
	zmq_setsockopt(v.sub, ZMQ_SUBSCRIBE, "", 0);
	if (zmq_connect(v.sub, endpoint) < 0) {
		fprintf(stderr, "mead-view: --connect %s: %s\n", endpoint, zmq_strerror(errno));
		return 1;
	}

	struct sigaction sa = { .sa_handler = on_signal };
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	const char *shown = strcmp(v.listen_host, "0.0.0.0") == 0 ? "localhost" : v.listen_host;
	printf("http://%s:%u/%s%s\n", shown, v.listen_port, v.token[0] ? "?token=" : "", v.token);
	fflush(stdout);
	vlog(&v, "streams from %s%s; the page at http://%s:%u/ (from %s)", endpoint, server_key ? " (CURVE)" : "",
	     shown, v.listen_port, dir);
	if (!v.token[0] && !host_is_loopback(v.listen_host))
		vlog(&v, "listening beyond this machine without a token: anyone who reaches it sees the streams");

	int rc = run(&v, seconds);

	const struct mv_seq *sp = mv_agg_seq(v.agg, MEAD_KIND_SPIKES);
	vlog(&v, "%" PRIu64 " spikes messages (%" PRIu64 " missing), %" PRIu64 " browsers, %" PRIu64
	     " frames sent, %" PRIu64 " skipped for slow browsers",
	     sp->messages, sp->gaps, v.browsers_total, v.frames_sent, v.frames_skipped);
	for (size_t i = 0; i < v.n_conns; i++) {
		close(v.conns[i]->fd);
		free(v.conns[i]->out);
		free(v.conns[i]);
	}
	close(v.lfd);
	zmq_close(v.sub);
	zmq_ctx_term(v.ctx);
	mv_agg_free(v.agg);
	for (size_t i = 0; i < 3; i++)
		free(v.files[i].data);
	free(v.frame);
	free(v.raw);
	return rc;
}
