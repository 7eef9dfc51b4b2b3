/* SPDX-License-Identifier: MIT */
/*
 * What the live view keeps of the streams: the decoded wire v1.1 messages
 * folded into what a page draws, so that the page gets a few small frames a
 * second whatever the daemon's rate.
 *
 * Exact, always: spike counts per electrode since the start (and the last
 * spikes seq they include), every pulse, every event, seq gaps per topic.
 * For drawing, per frame: the spikes themselves up to max_frame_spikes (the
 * rest counted, not listed), raw as min/max per bin of bin_samples, and
 * each channel's threshold (the driver's when status reports one, else the
 * rig drivers' estimator of lib/signal run on raw with threshold_k).  When
 * the view falls behind (mv_agg_set_behind) the spike lists and raw bins
 * are skipped, and counted, until it catches up; the counts stay exact.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mead/wire.h"

#define MV_MAX_ELECTRODES 1024
#define MV_MAX_CHANNELS 1024

struct mv_agg_params {
	double threshold_k;          /* 0: no recomputed threshold */
	uint32_t max_frame_spikes;   /* 0: 20000 */
};

struct mv_seq {
	bool have;
	uint64_t last, messages, gaps;   /* gaps: messages missing between those received */
};

struct mv_stim {
	uint64_t sample, requested;
	uint16_t electrode, flags;
	float amplitude_ua;
	uint32_t phase_us, interphase_us;
};

struct mv_agg;

int mv_agg_new(const struct mv_agg_params *p, struct mv_agg **ret);
void mv_agg_free(struct mv_agg *a);

/* One wire message (header decoded, payload as received).  Returns 0, or
 * -EBADMSG for a payload that does not match its header (counted). */
int mv_agg_message(struct mv_agg *a, const struct mead_wire_header *h, const void *payload, size_t len);
void mv_agg_set_behind(struct mv_agg *a, bool behind);
/* A message that is not wire v1 (not three frames, a bad header). */
void mv_agg_bad_message(struct mv_agg *a);

/* The frame since the last one, as JSON (type "frame"), then a new frame
 * begins.  Returns the length, or -ENOSPC (buf too small: nothing reset;
 * mv_agg_frame_size() says what is needed). */
int mv_agg_frame_json(struct mv_agg *a, char *buf, size_t len);
size_t mv_agg_frame_size(const struct mv_agg *a);
/* A frame that could not be written: its lists are dropped (counts stay). */
void mv_agg_frame_drop(struct mv_agg *a);
/* The raw bins of the frame just written, for the channels chosen, as the
 * page's binary message (docs/live-view.md); 0 when there are none. */
size_t mv_agg_raw_binary(const struct mv_agg *a, const uint16_t *channels, uint32_t n, uint8_t *out, size_t len);
size_t mv_agg_raw_binary_size(const struct mv_agg *a, uint32_t n);
/* The raw bins belong to the frame just written: dropped once every page
 * had its copy, before the next frame. */
void mv_agg_raw_done(struct mv_agg *a);

/* The last status message (valid JSON), NULL before the first. */
const char *mv_agg_status(const struct mv_agg *a, size_t *len);
/* A hello for a page that just connected: the last status and the totals. */
int mv_agg_hello_json(const struct mv_agg *a, char *buf, size_t len);
/* The view's own counters as a JSON object (messages, gaps, skipped detail). */
int mv_agg_bridge_json(const struct mv_agg *a, char *buf, size_t len);

/* Totals, for tests and the bridge's own report. */
uint32_t mv_agg_electrodes(const struct mv_agg *a);
uint64_t mv_agg_count(const struct mv_agg *a, uint32_t electrode);
const struct mv_seq *mv_agg_seq(const struct mv_agg *a, unsigned kind);
uint64_t mv_agg_bad_messages(const struct mv_agg *a);
uint32_t mv_agg_raw_channels(const struct mv_agg *a);
