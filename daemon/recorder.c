/* SPDX-License-Identifier: MIT */
#include "daemon/recorder.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "daemon/ring.h"
#include "lib/core/recording.h"
#include "lib/core/time.h"

struct mead_recorder {
	struct mead_recorder_params p;
	char *path;
	int fd;
	struct mead_ring *ring;
	pthread_t thread;
	bool started, joined;
	_Atomic bool stop;
	_Atomic int state;
	int error;
	char message[192];

	uint8_t *wbuf;
	size_t wlen, wcap;
	uint64_t pending[MEAD_KIND_COUNT + 1];   /* messages in wbuf, per kind */
	uint64_t file_size;                      /* bytes known to be on file */
	uint64_t last_sync_ns;

	_Atomic uint64_t recorded[MEAD_KIND_COUNT + 1];
	_Atomic uint64_t lost[MEAD_KIND_COUNT + 1];
	_Atomic uint64_t not_recorded[MEAD_KIND_COUNT + 1];
	_Atomic uint64_t bytes;
	_Atomic uint64_t fsyncs;
};

static int write_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

const char *mead_recorder_state_name(int state)
{
	switch (state) {
	case MEAD_RECORDER_READY: return "ready";
	case MEAD_RECORDER_RECORDING: return "recording";
	case MEAD_RECORDER_STOPPED: return "stopped";
	case MEAD_RECORDER_FAILED: return "failed";
	}
	return "unknown";
}

static void fsync_dir_of(const char *path)
{
	char *copy = strdup(path);
	if (!copy)
		return;
	int dfd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
	free(copy);
}

int mead_recorder_new(const struct mead_recorder_params *params, struct mead_recorder **ret,
		      char *err, size_t err_len)
{
	struct mead_recorder *rec;
	size_t cfg_len, meta_len, hlen;
	uint8_t *hdr = NULL;
	int rc;

	if (!params || !params->path || !*params->path || !ret) {
		snprintf(err, err_len, "recording: no path");
		return -EINVAL;
	}
	cfg_len = params->config_text ? params->config_len : 0;
	meta_len = params->meta_json ? strlen(params->meta_json) : 0;
	if (cfg_len > MEAD_REC_MAX_CONFIG || meta_len > MEAD_REC_MAX_META) {
		snprintf(err, err_len, "recording: configuration or metadata too large");
		return -E2BIG;
	}
	rec = calloc(1, sizeof(*rec));
	if (!rec)
		return -ENOMEM;
	rec->fd = -1;
	rec->p = *params;
	rec->p.config_text = NULL;
	rec->p.meta_json = NULL;
	rec->path = strdup(params->path);
	rec->wcap = params->write_buffer ? params->write_buffer : (1u << 20);
	rec->wbuf = malloc(rec->wcap);
	if (!rec->path || !rec->wbuf) {
		rc = -ENOMEM;
		goto fail;
	}
	rc = mead_ring_new(params->ring_bytes ? params->ring_bytes : (16u << 20), &rec->ring);
	if (rc < 0) {
		snprintf(err, err_len, "recording: ring: %s", strerror(-rc));
		goto fail;
	}
	rec->fd = open(rec->path, O_WRONLY | O_CREAT | O_CLOEXEC | (params->overwrite ? O_TRUNC : O_EXCL), 0644);
	if (rec->fd < 0) {
		rc = -errno;
		snprintf(err, err_len, "recording: %s: %s%s", rec->path, strerror(errno),
			 errno == EEXIST ? " (refusing to overwrite an existing recording)" : "");
		goto fail;
	}

	hlen = mead_rec_header_size(cfg_len, meta_len);
	hdr = malloc(hlen);
	if (!hdr) {
		rc = -ENOMEM;
		goto fail;
	}
	mead_rec_header_encode(hdr, params->config_text, cfg_len, params->meta_json, meta_len);
	rc = write_all(rec->fd, hdr, hlen);
	if (rc == 0 && fdatasync(rec->fd) < 0)
		rc = -errno;
	free(hdr);
	hdr = NULL;
	if (rc < 0) {
		snprintf(err, err_len, "recording: %s: writing the header: %s", rec->path, strerror(-rc));
		unlink(rec->path);
		goto fail;
	}
	fsync_dir_of(rec->path);
	rec->file_size = hlen;
	atomic_store(&rec->bytes, hlen);
	atomic_store(&rec->state, MEAD_RECORDER_READY);
	*ret = rec;
	return 0;
fail:
	free(hdr);
	mead_recorder_free(rec);
	return rc;
}

static void fail_recording(struct mead_recorder *rec, int rc)
{
	/* Cut the file back to its last complete record so it ends cleanly. */
	if (ftruncate(rec->fd, (off_t)rec->file_size) == 0)
		(void)fdatasync(rec->fd);
	rec->error = rc;
	snprintf(rec->message, sizeof(rec->message),
		 "recording to %s stopped after %" PRIu64 " bytes: %s; the daemon keeps running", rec->path,
		 rec->file_size, strerror(-rc));
	for (int k = 0; k <= MEAD_KIND_COUNT; k++) {
		atomic_fetch_add(&rec->not_recorded[k], rec->pending[k]);
		rec->pending[k] = 0;
	}
	rec->wlen = 0;
	atomic_store_explicit(&rec->state, MEAD_RECORDER_FAILED, memory_order_release);
	if (rec->p.log)
		rec->p.log(rec->p.log_ctx, LOG_ERR, rec->message);
}

static int flush(struct mead_recorder *rec)
{
	int rc;

	if (rec->wlen == 0)
		return 0;
	rc = write_all(rec->fd, rec->wbuf, rec->wlen);
	if (rc < 0) {
		fail_recording(rec, rc);
		return rc;
	}
	rec->file_size += rec->wlen;
	atomic_store_explicit(&rec->bytes, rec->file_size, memory_order_relaxed);
	rec->wlen = 0;
	for (int k = 0; k <= MEAD_KIND_COUNT; k++) {
		if (rec->pending[k])
			atomic_fetch_add_explicit(&rec->recorded[k], rec->pending[k], memory_order_relaxed);
		rec->pending[k] = 0;
	}
	return 0;
}

static int sync_file(struct mead_recorder *rec)
{
	if (fdatasync(rec->fd) < 0) {
		int rc = -errno;
		fail_recording(rec, rc);
		return rc;
	}
	atomic_fetch_add_explicit(&rec->fsyncs, 1, memory_order_relaxed);
	rec->last_sync_ns = mead_now_ns();
	return 0;
}

static unsigned body_kind(const uint8_t *body, size_t len)
{
	uint16_t k;
	size_t off = 1 + (size_t)body[0] + 6;
	if (len < off + 2)
		return 0;
	memcpy(&k, body + off, 2);
	k = le16toh(k);
	return k <= MEAD_KIND_COUNT ? k : 0;
}

/* Appends one record (body from the ring) to the write buffer. */
static int append(struct mead_recorder *rec, const uint8_t *body, size_t len)
{
	uint8_t head[MEAD_REC_FRAME_HEAD], tail[MEAD_REC_FRAME_TAIL];
	size_t total = len + MEAD_REC_FRAME_HEAD + MEAD_REC_FRAME_TAIL;

	mead_rec_frame(body, len, head, tail);
	if (rec->wlen + total > rec->wcap && flush(rec) < 0)
		return -EIO;
	if (total > rec->wcap) {
		/* Larger than the buffer: goes out on its own, in order. */
		int rc = write_all(rec->fd, head, sizeof(head));
		if (rc == 0)
			rc = write_all(rec->fd, body, len);
		if (rc == 0)
			rc = write_all(rec->fd, tail, sizeof(tail));
		if (rc < 0) {
			fail_recording(rec, rc);
			return rc;
		}
		rec->file_size += total;
		atomic_store_explicit(&rec->bytes, rec->file_size, memory_order_relaxed);
		atomic_fetch_add_explicit(&rec->recorded[body_kind(body, len)], 1, memory_order_relaxed);
		return 0;
	}
	memcpy(rec->wbuf + rec->wlen, head, sizeof(head));
	memcpy(rec->wbuf + rec->wlen + sizeof(head), body, len);
	memcpy(rec->wbuf + rec->wlen + sizeof(head) + len, tail, sizeof(tail));
	rec->wlen += total;
	rec->pending[body_kind(body, len)]++;
	return 0;
}

static void *recorder_thread(void *arg)
{
	struct mead_recorder *rec = arg;
	uint64_t interval_ns = (uint64_t)rec->p.fsync_interval_ms * 1000000ull;
	bool dirty = false;

	rec->last_sync_ns = mead_now_ns();
	for (;;) {
		unsigned handled = 0;
		size_t len;
		const uint8_t *m;
		bool failed;

		/* Bounded batches: the sync timer is kept even when data never stops. */
		while (handled < 256 && (m = mead_ring_peek(rec->ring, &len))) {
			failed = atomic_load_explicit(&rec->state, memory_order_relaxed) == MEAD_RECORDER_FAILED;
			if (failed)
				atomic_fetch_add_explicit(&rec->not_recorded[body_kind(m, len)], 1, memory_order_relaxed);
			else if (append(rec, m, len) == 0)
				dirty = true;
			else
				atomic_fetch_add_explicit(&rec->not_recorded[body_kind(m, len)], 1, memory_order_relaxed);
			mead_ring_release(rec->ring);
			handled++;
		}
		failed = atomic_load_explicit(&rec->state, memory_order_relaxed) == MEAD_RECORDER_FAILED;
		/* Ring empty: hand what we have to the kernel so a crash loses little. */
		if (!failed && !handled)
			flush(rec);
		if (!failed && dirty && interval_ns && mead_now_ns() - rec->last_sync_ns >= interval_ns) {
			if (flush(rec) == 0 && sync_file(rec) == 0)
				dirty = false;
		}
		if (handled)
			continue;
		if (atomic_load_explicit(&rec->stop, memory_order_acquire) && mead_ring_empty(rec->ring))
			break;
		struct timespec ts = { 0, 500000 };
		nanosleep(&ts, NULL);
	}
	if (atomic_load(&rec->state) != MEAD_RECORDER_FAILED) {
		if (flush(rec) == 0 && sync_file(rec) == 0)
			atomic_store_explicit(&rec->state, MEAD_RECORDER_STOPPED, memory_order_release);
	}
	return NULL;
}

int mead_recorder_start(struct mead_recorder *rec)
{
	sigset_t all, old;
	int rc;

	if (!rec || rec->started)
		return -EINVAL;
	/* Signals belong to the main thread. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	atomic_store(&rec->state, MEAD_RECORDER_RECORDING);
	rc = -pthread_create(&rec->thread, NULL, recorder_thread, rec);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc < 0) {
		atomic_store(&rec->state, MEAD_RECORDER_READY);
		return rc;
	}
	pthread_setname_np(rec->thread, "mead-recorder");
	rec->started = true;
	return 0;
}

int mead_recorder_stop(struct mead_recorder *rec)
{
	if (!rec)
		return 0;
	atomic_store_explicit(&rec->stop, true, memory_order_release);
	if (rec->started && !rec->joined) {
		pthread_join(rec->thread, NULL);
		rec->joined = true;
	} else if (!rec->started && atomic_load(&rec->state) == MEAD_RECORDER_READY) {
		atomic_store(&rec->state, MEAD_RECORDER_STOPPED);
	}
	if (rec->fd >= 0) {
		if (close(rec->fd) < 0 && atomic_load(&rec->state) != MEAD_RECORDER_FAILED) {
			rec->fd = -1;
			fail_recording(rec, -errno);
		}
		rec->fd = -1;
	}
	return rec->error;
}

void mead_recorder_free(struct mead_recorder *rec)
{
	if (!rec)
		return;
	if (rec->started && !rec->joined)
		mead_recorder_stop(rec);
	if (rec->fd >= 0)
		close(rec->fd);
	mead_ring_free(rec->ring);
	free(rec->wbuf);
	free(rec->path);
	free(rec);
}

int mead_recorder_submit(struct mead_recorder *rec, const char *topic, const void *hdr,
			 const void *payload, size_t payload_len, bool wait)
{
	size_t tl = strlen(topic), len = 1 + tl + sizeof(struct mead_wire_header) + payload_len;
	uint16_t kind_le;
	unsigned kind;
	uint8_t *p;

	memcpy(&kind_le, (const uint8_t *)hdr + 6, 2);
	kind = le16toh(kind_le);
	if (kind > MEAD_KIND_COUNT)
		kind = 0;
	for (;;) {
		int st = atomic_load_explicit(&rec->state, memory_order_relaxed);
		if (st == MEAD_RECORDER_FAILED || st == MEAD_RECORDER_STOPPED ||
		    atomic_load_explicit(&rec->stop, memory_order_relaxed)) {
			atomic_fetch_add_explicit(&rec->not_recorded[kind], 1, memory_order_relaxed);
			return -EIO;
		}
		if (tl == 0 || tl > MEAD_REC_MAX_TOPIC || len > MEAD_REC_MAX_BODY ||
		    len > mead_ring_max_message(rec->ring)) {
			atomic_fetch_add_explicit(&rec->lost[kind], 1, memory_order_relaxed);
			return -EMSGSIZE;
		}
		p = mead_ring_reserve(rec->ring, len);
		if (p)
			break;
		if (!wait) {
			atomic_fetch_add_explicit(&rec->lost[kind], 1, memory_order_relaxed);
			return -ENOBUFS;
		}
		struct timespec ts = { 0, 50000 };
		nanosleep(&ts, NULL);
	}
	p[0] = (uint8_t)tl;
	memcpy(p + 1, topic, tl);
	memcpy(p + 1 + tl, hdr, sizeof(struct mead_wire_header));
	if (payload_len)
		memcpy(p + 1 + tl + sizeof(struct mead_wire_header), payload, payload_len);
	mead_ring_commit(rec->ring, len);
	return 0;
}

void mead_recorder_get_counters(const struct mead_recorder *rec, struct mead_recorder_counters *ret)
{
	struct mead_recorder *r = (struct mead_recorder *)rec;
	memset(ret, 0, sizeof(*ret));
	for (int k = 0; k <= MEAD_KIND_COUNT; k++) {
		ret->recorded[k] = atomic_load_explicit(&r->recorded[k], memory_order_relaxed);
		ret->lost[k] = atomic_load_explicit(&r->lost[k], memory_order_relaxed);
		ret->not_recorded[k] = atomic_load_explicit(&r->not_recorded[k], memory_order_relaxed);
	}
	ret->bytes = atomic_load_explicit(&r->bytes, memory_order_relaxed);
	ret->fsyncs = atomic_load_explicit(&r->fsyncs, memory_order_relaxed);
	ret->state = atomic_load_explicit(&r->state, memory_order_acquire);
	if (ret->state == MEAD_RECORDER_FAILED) {
		ret->error = r->error;
		snprintf(ret->message, sizeof(ret->message), "%s", r->message);
	}
}

const char *mead_recorder_path(const struct mead_recorder *rec)
{
	return rec->path;
}
