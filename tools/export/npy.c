/* SPDX-License-Identifier: MIT */
/*
 * --to npy: the recording's records as NumPy arrays with structured dtypes
 * (the wire records byte for byte) and recording.json, in one pass.
 *   numpy.load("DIR/spikes.npy")["electrode"]
 * With spike waveforms: waveforms.npy (float32 µV, [n, pre + 1 + post]),
 * waveform_samples.npy (uint64: each one's spike sample),
 * waveform_electrodes.npy (uint16) and waveform_flags.npy (uint16), row i
 * of each the same waveform.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tools/export/export.h"
#include "tools/export/npyfile.h"

struct npy_export {
	const char *dir;
	struct npy spikes, stim, events, raw, raw_sample;
	uint32_t raw_channels;
	struct npy wf, wf_sample, wf_electrode, wf_flags;
};

static int on_waveforms(void *ctx, const uint8_t *recs, uint32_t n, uint32_t size)
{
	struct npy_export *e = ctx;
	const uint32_t len = (size - (uint32_t)sizeof(struct mead_waveform)) / 4;
	int rc = 0;

	if (!e->wf.f) {
		char tail[32];
		snprintf(tail, sizeof(tail), ", %" PRIu32, len);
		rc = npy_open(&e->wf, e->dir, "waveforms.npy", "'<f4'", tail, (size_t)len * 4);
		if (rc == 0)
			rc = npy_open(&e->wf_sample, e->dir, "waveform_samples.npy", "'<u8'", "", 8);
		if (rc == 0)
			rc = npy_open(&e->wf_electrode, e->dir, "waveform_electrodes.npy", "'<u2'", "", 2);
		if (rc == 0)
			rc = npy_open(&e->wf_flags, e->dir, "waveform_flags.npy", "'<u2'", "", 2);
		if (rc < 0)
			return rc;
	}
	for (uint32_t i = 0; rc == 0 && i < n; i++) {
		struct mead_waveform h;
		const uint8_t *r = recs + (size_t)i * size;
		memcpy(&h, r, sizeof(h));
		rc = npy_write(&e->wf, r + sizeof(h), 1);
		if (rc == 0)
			rc = npy_write(&e->wf_sample, &h.sample, 1);
		if (rc == 0)
			rc = npy_write(&e->wf_electrode, &h.electrode, 1);
		if (rc == 0)
			rc = npy_write(&e->wf_flags, &h.flags, 1);
	}
	return rc;
}

static int on_spikes(void *ctx, const struct mead_spike *s, uint32_t n)
{
	struct npy_export *e = ctx;
	return npy_write(&e->spikes, s, n);
}

static int on_stim(void *ctx, const struct mead_wire_stim *s, uint32_t n)
{
	struct npy_export *e = ctx;
	return npy_write(&e->stim, s, n);
}

static int on_events(void *ctx, const struct mead_event *ev, uint32_t n)
{
	struct npy_export *e = ctx;
	return npy_write(&e->events, ev, n);
}

static int on_raw(void *ctx, uint64_t first, const int16_t *frames, uint32_t n, uint32_t channels)
{
	struct npy_export *e = ctx;
	uint64_t s[1024];

	if (!e->raw.f) {
		char tail[32];
		snprintf(tail, sizeof(tail), ", %" PRIu32, channels);
		e->raw_channels = channels;
		int rc = npy_open(&e->raw, e->dir, "raw.npy", "'<i2'", tail, (size_t)channels * 2);
		if (rc == 0)
			rc = npy_open(&e->raw_sample, e->dir, "raw_sample.npy", "'<u8'", "", 8);
		if (rc < 0)
			return rc;
	}
	int rc = npy_write(&e->raw, frames, n);
	for (uint32_t i = 0; rc == 0 && i < n; i += 1024) {
		uint32_t m = n - i < 1024 ? n - i : 1024;
		for (uint32_t j = 0; j < m; j++)
			s[j] = first + i + j;
		rc = npy_write(&e->raw_sample, s, m);
	}
	return rc;
}

int exp_npy(struct exp_rec *x, const char *dir)
{
	struct npy_export e = { .dir = dir };
	struct exp_counts c;
	char *path = NULL, *json = NULL, damage[512];
	int status = 1;

	if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
		fprintf(stderr, "mead-export: %s: %s\n", dir, strerror(errno));
		return 1;
	}
	if (npy_open(&e.spikes, dir, "spikes.npy",
		     "[('sample', '<u8'), ('electrode', '<u2'), ('flags', '<u2'), ('amplitude_uv', '<f4')]", "",
		     sizeof(struct mead_spike)) < 0 ||
	    npy_open(&e.stim, dir, "stim.npy",
		     "[('sample', '<u8'), ('electrode', '<u2'), ('flags', '<u2'), ('amplitude_ua', '<f4'), "
		     "('phase_us', '<u4'), ('interphase_us', '<u4'), ('requested_sample', '<u8')]",
		     "", sizeof(struct mead_wire_stim)) < 0 ||
	    npy_open(&e.events, dir, "events.npy",
		     "[('sample', '<u8'), ('type', '<u4'), ('value', '<i4'), ('samples', '<u4'), "
		     "('electrode', '<u2'), ('reserved', '<u2')]", "", sizeof(struct mead_event)) < 0)
		goto done;

	const struct exp_sink sink = { &e, on_spikes, on_stim, on_events, on_raw, NULL, on_waveforms };
	int rc = exp_walk(x, "writing npy", &sink, &c);
	if (rc < 0) {
		fprintf(stderr, "mead-export: writing %s: %s\n", dir, strerror(-rc));
		exp_counts_free(&c);
		goto done;
	}
	static const char *const files[] = { "spikes", "spikes.npy", "stim", "stim.npy", "events", "events.npy", NULL };
	static const char *const files_raw[] = { "spikes", "spikes.npy", "stim", "stim.npy", "events", "events.npy",
						 "raw", "raw.npy", "raw_sample", "raw_sample.npy", NULL };
	const char *listed[24];
	size_t nl = 0;
	for (const char *const *f = e.raw.f ? files_raw : files; *f; f++)
		listed[nl++] = *f;
	if (e.wf.f) {
		static const char *const wf_files[] = { "waveforms", "waveforms.npy", "waveform_samples",
							"waveform_samples.npy", "waveform_electrodes",
							"waveform_electrodes.npy", "waveform_flags", "waveform_flags.npy" };
		for (size_t i = 0; i < sizeof(wf_files) / sizeof(wf_files[0]); i++)
			listed[nl++] = wf_files[i];
	}
	listed[nl] = NULL;
	json = exp_summary_json(x, &c, listed);
	if (!json || asprintf(&path, "%s/recording.json", dir) < 0 || exp_write_file(path, json) < 0) {
		exp_counts_free(&c);
		goto done;
	}
	uint64_t spikes = e.spikes.rows, stim = e.stim.rows, events = e.events.rows, raw = e.raw.rows, wf = e.wf.rows;
	if (npy_close(&e.spikes) == 0 && npy_close(&e.stim) == 0 && npy_close(&e.events) == 0 &&
	    npy_close(&e.raw) == 0 && npy_close(&e.raw_sample) == 0 && npy_close(&e.wf) == 0 &&
	    npy_close(&e.wf_sample) == 0 && npy_close(&e.wf_electrode) == 0 && npy_close(&e.wf_flags) == 0) {
		char wft[64] = "";
		if (wf)
			snprintf(wft, sizeof(wft), ", %" PRIu64 " waveforms", wf);
		exp_damage(&c, damage, sizeof(damage));
		printf("%s: %" PRIu64 " spikes, %" PRIu64 " stim pulses, %" PRIu64 " events, %" PRIu64
		       " raw frames%s -> %s%s\n",
		       x->path, spikes, stim, events, raw, wft, dir, damage);
		status = 0;
	}
	exp_counts_free(&c);
done:
	npy_close(&e.spikes);
	npy_close(&e.stim);
	npy_close(&e.events);
	npy_close(&e.raw);
	npy_close(&e.raw_sample);
	npy_close(&e.wf);
	npy_close(&e.wf_sample);
	npy_close(&e.wf_electrode);
	npy_close(&e.wf_flags);
	free(path);
	free(json);
	return status;
}
