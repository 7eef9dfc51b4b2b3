/* SPDX-License-Identifier: MIT */
/*
 * The daemon's configuration: typed, validated, with every key's default.
 * docs/configuration.md lists the keys; `mead --check --print` shows them.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "lib/cfg/cfg.h"
#include "protocol/protocol_config.h"

enum mead_clock_mode {
	MEAD_CLOCK_REALTIME = 0,
	MEAD_CLOCK_VIRTUAL,
};

enum mead_layout_preset {
	MEAD_LAYOUT_GRID_6X10 = 0,     /* 6 x 10, 500 µm pitch: the twin's culture */
	MEAD_LAYOUT_MCS_60MEA200 = 1,  /* MCS 60MEA200/30: 8 x 8 minus corners, 200 µm, labels 12..87 */
	MEAD_LAYOUT_CUSTOM = 2,
};

enum mead_sighup_action {
	MEAD_SIGHUP_REJECT = 0,        /* validate the file again and say whether it changed; apply nothing */
	MEAD_SIGHUP_RELOAD_STREAMS,    /* reserved */
};

struct mead_config {
	struct {
		char *name;
	} rig;

	struct {
		uint32_t period_us;
		int clock;                 /* enum mead_clock_mode */
		int64_t priority;          /* SCHED_FIFO priority, 0 = normal scheduling */
		int64_t cpu;               /* -1: the last allowed CPU, -2: no affinity */
		bool lock_memory;
		bool overrun_fatal;
		bool exit_when_done;
		double duration_s;         /* 0: until stopped */
		uint32_t spike_capacity;   /* spike records per tick; 0: driver's hint */
		uint32_t stim_capacity;
		uint32_t ring_kib;         /* loop -> publisher ring */
		bool require_rt;           /* refuse to start without SCHED_FIFO */
		uint32_t device_margin_us; /* read a tick this long after its last sample, by the device's clock */
		double clock_bandwidth_hz; /* how fast the schedule follows the device's clock */
	} loop;

	struct {
		int preset;                /* enum mead_layout_preset */
		uint32_t rows, cols;
		double pitch_um;
		struct mead_cfg_string_list labels;
		struct mead_cfg_uint_list excluded;   /* electrode indices never stimulated */
		struct mead_cfg_uint_list absent;     /* custom: grid positions with no electrode */
	} layout;

	struct {
		char *name;
		char *path;                /* extra module directory, searched first */
		uint64_t seed;
		struct mead_cfg_map options;
	} driver;

	struct {
		char *pub;
		char *control;
		bool raw;
		uint32_t status_interval_ms;
		uint32_t wait_subscribers;
		uint32_t wait_timeout_ms;
		uint32_t sndhwm;
		struct {
			bool enabled;              /* control: CURVE, authorised client keys only */
			char *server_secret_key_file;
			char *authorized_keys_file;
			bool streams;              /* the PUB socket too */
		} curve;
	} streams;

	struct {
		bool enabled;
		char *path;
		bool overwrite;
		uint32_t fsync_interval_ms;
		uint32_t ring_kib;
	} recording;

	struct {
		double max_amplitude_ua;
		uint32_t max_phase_us;
		uint32_t max_interphase_us;
		double max_charge_nc;
		double max_rate_hz;
		uint32_t rate_window_ms;
		uint32_t min_interval_us;
		double max_duty_cycle;
		uint32_t max_train_pulses;
	} safety;

	struct {
		int sighup;                /* enum mead_sighup_action */
		uint32_t watchdog_ms;      /* 0: from systemd's WATCHDOG_USEC */
	} daemon;

	struct mead_protocol_config protocol;
};

extern const struct mead_cfg_key mead_config_keys[];

/* Defaults, then FILE, then each override in order.  -EINVAL with err set. */
int mead_config_load(struct mead_config *cfg, const char *path, char *const *overrides, size_t n_overrides,
		     char *err, size_t err_len);
void mead_config_release(struct mead_config *cfg);

/* Where protocol data paths (protocol.mnist.*_images, ...) are looked up:
 * $MEAD_DATA_DIR, else the source tree this binary was built from (running
 * from a checkout), else the installed data directory.  The daemon resolves
 * against it, and so does every tool that must find the same files. */
const char *mead_config_data_dir(void);
