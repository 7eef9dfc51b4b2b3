/* SPDX-License-Identifier: MIT */
/*
 * The daemon's parts and who holds them.  Built by main.c; read by the
 * status, control and publisher threads (never written by them, except
 * through their own counters and the loop's command ring).
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "mead/driver.h"
#include "daemon/loop.h"

struct mead_config;
struct mead_publisher;
struct mead_recorder;
struct mead_control;
struct mead_auth;
struct mead_safety;
struct mead_ring;
struct mead_driver_module;

struct mead_daemon {
	const struct mead_config *config;
	const char *config_path;
	struct mead_driver_module *module;   /* dlopen handle + ops */
	struct mead_driver_handle driver;    /* ops, state, caps */
	const struct mead_layout_view *layout;
	struct mead_safety *safety;
	struct mead_loop *loop;
	struct mead_ring *out_ring;          /* loop -> publisher */
	struct mead_publisher *publisher;
	struct mead_recorder *recorder;
	struct mead_control *control;
	struct mead_auth *auth;              /* NULL: no access control (streams.curve.enabled off) */
	const char *protocol_data_dir;
	uint64_t started_realtime_ns;        /* CLOCK_REALTIME at start, for status */
	_Atomic int stop_requested;          /* set by signals and by control "shutdown" */
};
