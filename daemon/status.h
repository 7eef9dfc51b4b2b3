/* SPDX-License-Identifier: MIT */
/*
 * The status JSON object (docs/streams.md lists every field): published on
 * the status topic, returned by the control "status" request.  Reads only
 * atomics and immutable setup data, so any non-real-time thread may call it.
 */
#pragma once

#include <stddef.h>

struct mead_daemon;
struct mead_jw;
struct mead_layout_view;

/* Fills buf (NUL-terminated); returns the length or -ENOSPC. */
int mead_status_json(const struct mead_daemon *d, char *buf, size_t len);

/* Matches mead_status_json_fn: ctx is the struct mead_daemon. */
int mead_status_json_cb(void *ctx, char *buf, size_t len);

/* Metadata written into a recording's header: rate, scale, layout, driver. */
int mead_status_recording_meta(const struct mead_daemon *d, char *buf, size_t len);

/* {"rows":..,"cols":..,"count":..,"pitch_um":..,"labels":[..],"excluded":[..]} */
void mead_status_layout(struct mead_jw *w, const struct mead_layout_view *layout);
