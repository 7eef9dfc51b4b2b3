/* SPDX-License-Identifier: MIT */
/*
 * Writes a small recording with the daemon's own recorder (daemon/recorder.c),
 * for the recording reader's seed corpus and its regression run: a few
 * messages of every kind (spikes, stim, events, raw, status, waveforms),
 * some empty, and one of a kind no build knows yet (kind 99, "future"),
 * which a reader passes over.
 *
 *   fuzz-gen-recording OUTPUT [MESSAGES]
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/recorder.h"
#include "mead/wire.h"

static const char config_text[] =
	"rig:\n  name: fuzz-seed\nloop:\n  clock: virtual\ndriver:\n  name: twin\nrecording:\n  enabled: true\n";
static const char meta[] =
	"{\"sample_rate_hz\":25000,\"electrode_count\":60,\"raw_channels\":2,\"uv_per_count\":0.195}";

int main(int argc, char **argv)
{
	struct mead_recorder_params p = {
		.overwrite = true,
		.config_text = config_text,
		.config_len = sizeof(config_text) - 1,
		.meta_json = meta,
		.ring_bytes = 1u << 20,
		.write_buffer = 4096,
	};
	struct mead_recorder *rec;
	struct mead_recorder_counters cc;
	unsigned n = argc > 2 ? (unsigned)strtoul(argv[2], NULL, 10) : 10;
	char err[256];
	int rc;

	if (argc < 2) {
		fprintf(stderr, "usage: %s OUTPUT [MESSAGES]\n", argv[0]);
		return 2;
	}
	p.path = argv[1];
	rc = mead_recorder_new(&p, &rec, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	if (mead_recorder_start(rec) < 0) {
		fprintf(stderr, "%s: cannot start the recorder\n", argv[1]);
		mead_recorder_free(rec);
		return 1;
	}
	for (unsigned i = 0; i <= n; i++) {
		static const uint16_t kinds[] = { MEAD_KIND_SPIKES, MEAD_KIND_STIM, MEAD_KIND_EVENTS, MEAD_KIND_RAW,
						  MEAD_KIND_STATUS, MEAD_KIND_WAVEFORMS };
		uint16_t kind = i == n ? 99 : kinds[i % 6];
		struct mead_wire_header h;
		uint8_t payload[256];
		uint32_t count, rsize;

		if (kind == MEAD_KIND_STATUS) {
			int len = snprintf((char *)payload, sizeof(payload), "{\"ticks\":%u,\"state\":\"running\"}", i);
			count = 1;
			rsize = (uint32_t)len;
		} else if (kind == MEAD_KIND_WAVEFORMS) {
			/* 2 samples before, 3 after */
			rsize = mead_waveform_size(2, 3);
			count = i % 4 == 3 ? 0 : 1 + i % 3;
			for (uint32_t k = 0; k < count; k++) {
				struct mead_waveform w = { .sample = 40ull * i + k, .electrode = (uint16_t)k, .pre = 2, .post = 3,
							   .amplitude_uv = -50.0f };
				float v[6] = { 1, -10, -50, -20, 3, 1 };
				memcpy(payload + k * rsize, &w, sizeof(w));
				memcpy(payload + k * rsize + sizeof(w), v, sizeof(v));
			}
		} else {
			rsize = kind == MEAD_KIND_RAW ? 4 : kind == MEAD_KIND_STIM ? 24 : 16;
			count = i % 3 == 2 ? 0 : 1 + i % 4;
			for (uint32_t b = 0; b < count * rsize; b++)
				payload[b] = (uint8_t)(i * 31 + b);
		}
		mead_wire_header_encode(&h, kind, i == n ? 0 : i / 6, 40ull * i, count, rsize);
		rc = mead_recorder_submit(rec, kind == 99 ? "future" : mead_wire_topic((enum mead_wire_kind)kind), &h, payload,
					  (size_t)count * rsize, true);
		if (rc < 0) {
			fprintf(stderr, "%s: message %u not recorded: %s\n", argv[1], i, strerror(-rc));
			mead_recorder_free(rec);
			return 1;
		}
	}
	rc = mead_recorder_stop(rec);
	mead_recorder_get_counters(rec, &cc);
	mead_recorder_free(rec);
	if (rc < 0 || cc.state != MEAD_RECORDER_STOPPED) {
		fprintf(stderr, "%s: recording did not stop cleanly: %s\n", argv[1], cc.message);
		return 1;
	}
	return 0;
}
