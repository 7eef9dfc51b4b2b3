/* SPDX-License-Identifier: MIT */
/*
 * mead: the daemon.  Configuration, driver, loop, streams, signals,
 * systemd notifications, and an orderly stop: stimulation off first,
 * then the loop, then streams and recordings flushed, then the driver.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mead-build-config.h"
#include "config/config.h"
#include "config/layout.h"
#include "daemon/auth.h"
#include "daemon/daemon.h"
#include "daemon/driver_module.h"
#include "daemon/log.h"
#include "daemon/loop.h"
#include "daemon/notify.h"
#include "daemon/ring.h"
#include "daemon/safety.h"
#include "daemon/control.h"
#include "daemon/publisher.h"
#include "daemon/recorder.h"
#include "daemon/status.h"
#include "lib/core/time.h"
#include "protocol/protocol.h"

/* Exit codes (docs/daemon.md). */
enum {
	EXIT_OK = 0,
	EXIT_USAGE = 1,
	EXIT_CONFIG = 2,      /* configuration invalid: nothing was touched */
	EXIT_DRIVER = 3,      /* the driver could not be opened or started */
	EXIT_RUNTIME = 4,     /* the run ended on a fault (fatal overrun, acquisition ended, real-time refused under loop.require_rt) */
	EXIT_INTERNAL = 5,    /* out of memory, thread creation, ... */
	EXIT_STREAMS = 6,     /* an endpoint could not be bound, the recording not created, subscribers never came */
};

#define MAX_OVERRIDES 128

static void usage(FILE *f)
{
	fprintf(f,
		"usage: mead -c FILE [-o key=value ...] [--check [--print] | --safe-outputs]\n"
		"  -c, --config FILE     YAML configuration\n"
		"  -o, --set KEY=VALUE   override any key by its dotted path (repeatable)\n"
		"      --check           validate the configuration (and the driver's options) and exit\n"
		"      --print           with --check: print every key with its value\n"
		"      --safe-outputs    open the configured driver, zero its outputs, close it and exit\n"
		"                        (what systemd runs after the daemon ended, however it ended)\n"
		"      --list-keys       print every configuration key as a table (docs/configuration.md)\n"
		"      --version\n"
		"exit codes: 0 ok, 1 usage, 2 invalid configuration, 3 driver failed, 4 run ended on a fault,\n"
		"            5 internal, 6 streams or recording could not start\n");
}

static const char *type_name(const struct mead_cfg_key *k)
{
	switch (k->type) {
	case MEAD_CFG_BOOL: return "bool";
	case MEAD_CFG_INT: return "integer";
	case MEAD_CFG_UINT: return "unsigned";
	case MEAD_CFG_U64: return "unsigned 64-bit";
	case MEAD_CFG_DOUBLE: return "number";
	case MEAD_CFG_STRING: return "string";
	case MEAD_CFG_ENUM: return "choice";
	case MEAD_CFG_UINT_LIST: return "list of unsigned";
	case MEAD_CFG_DOUBLE_LIST: return "list of numbers";
	case MEAD_CFG_STRING_LIST: return "list of strings";
	case MEAD_CFG_MAP: return "mapping";
	case MEAD_CFG_TABLE: return "section";
	}
	return "?";
}

/* The reference table of docs/configuration.md, straight from the schema. */
static void print_schema(const struct mead_cfg_key *table, const char *prefix)
{
	char path[256];

	for (const struct mead_cfg_key *k = table; k->path; k++) {
		snprintf(path, sizeof(path), "%s%s%s", prefix, *prefix ? "." : "", k->path);
		if (k->type == MEAD_CFG_TABLE) {
			print_schema(k->sub, path);
			continue;
		}
		printf("| `%s` | %s", path, type_name(k));
		if (k->type == MEAD_CFG_ENUM) {
			printf(":");
			for (const char *const *c = k->choices; *c; c++)
				printf(" `%s`", *c);
		} else if (k->min <= k->max) {
			printf(", %.10g..%.10g", k->min, k->max);
		}
		printf(" | %s | %s |\n", k->default_value && *k->default_value ? k->default_value : "",
		       k->help ? k->help : "");
	}
}

static void print_keys(const struct mead_cfg_key *table, const void *cfg, const char *prefix)
{
	char path[256], value[512];

	for (const struct mead_cfg_key *k = table; k->path; k++) {
		snprintf(path, sizeof(path), "%s%s%s", prefix, *prefix ? "." : "", k->path);
		if (k->type == MEAD_CFG_TABLE) {
			print_keys(k->sub, cfg, path);
			continue;
		}
		if (mead_cfg_format(mead_config_keys, cfg, path, value, sizeof(value)) >= 0)
			printf("%s = %s\n", path, value);
	}
}

struct run {
	struct mead_config cfg;
	struct mead_layout layout;
	struct mead_daemon d;
	struct mead_protocol *autostart;
	char *overrides[MAX_OVERRIDES];
	size_t n_overrides;
	const char *config_path;
	bool driver_started;          /* start() succeeded: stop() is owed */
	_Atomic uint64_t protocols_rejected;
};

static void run_release(struct run *r)
{
	if (r->d.loop) {
		mead_loop_request_stop(r->d.loop);
		mead_loop_free(r->d.loop);
	}
	mead_protocol_free(r->autostart);
	mead_ring_free(r->d.out_ring);
	mead_safety_free(r->d.safety);
	if (r->d.driver.state && r->d.driver.ops->close)
		r->d.driver.ops->close(r->d.driver.state);
	mead_driver_module_free(r->d.module);
	mead_config_release(&r->cfg);
}

/* A protocol is checked whole, against the safety limits, before it runs. */
static int check_protocol(struct run *r, const struct mead_protocol *p, char *why, size_t why_len)
{
	struct mead_protocol_bounds pb;
	struct mead_safety_bounds sb = { 0 };

	if (mead_protocol_bounds(p, &pb) < 0) {
		snprintf(why, why_len, "the protocol cannot state its bounds");
		return -EINVAL;
	}
	sb.max_abs_amplitude_ua = pb.max_abs_amplitude_ua;
	sb.max_phase_us = pb.max_phase_us;
	sb.max_interphase_us = pb.max_interphase_us;
	sb.max_rate_hz = pb.max_rate_hz;
	sb.min_interval_us = pb.min_interval_us;
	sb.electrode_mask[0] = pb.electrode_mask_lo;
	sb.electrode_mask[1] = pb.electrode_mask_hi;
	if (mead_safety_check_bounds(r->d.safety, &sb, why, why_len) != MEAD_SAFE)
		return -EPERM;
	return 0;
}

static void log_summary(const struct mead_loop *loop)
{
	const struct mead_loop_stats *s = mead_loop_stats(loop);
	uint64_t produced = 0, dropped = 0, lost = 0, late = 0;

	for (int k = 1; k <= MEAD_KIND_COUNT; k++) {
		produced += atomic_load(&s->produced[k]);
		dropped += atomic_load(&s->dropped[k]);
	}
	lost = atomic_load(&s->loss_samples[MEAD_EVENT_OVERFLOW]) + atomic_load(&s->loss_samples[MEAD_EVENT_GAP]) +
	       atomic_load(&s->loss_samples[MEAD_EVENT_DEVICE_GONE]) + atomic_load(&s->loss_samples[MEAD_EVENT_UNREAD]);
	late = atomic_load(&s->loss_samples[MEAD_EVENT_LATE]);
	log_notice("run: ticks=%" PRIu64 " overruns=%" PRIu64 " latency_us p50=%.0f p99=%.0f p99.9=%.0f max=%.1f "
		   "spikes=%" PRIu64 " stim=%" PRIu64 " stim_late=%" PRIu64 " stim_rejected=%" PRIu64
		   " messages=%" PRIu64 " dropped=%" PRIu64 " samples_lost=%" PRIu64 " samples_late=%" PRIu64
		   " driver_errors=%" PRIu64 " rt=%s memory_locked=%s",
		   atomic_load(&s->ticks), atomic_load(&s->overruns), mead_loop_latency_percentile(s, 50),
		   mead_loop_latency_percentile(s, 99), mead_loop_latency_percentile(s, 99.9),
		   (double)atomic_load(&s->lat_max_ns) / 1000.0, atomic_load(&s->spikes), atomic_load(&s->stim_pulses),
		   atomic_load(&s->stim_late), atomic_load(&s->stim_rejected), produced, dropped, lost, late,
		   atomic_load(&s->driver_errors), atomic_load(&s->rt_active) ? "SCHED_FIFO" : "normal",
		   atomic_load(&s->memory_locked) ? "yes" : "no");
	if (atomic_load(&s->device_clock))
		log_notice("clock: the device ran %+.1f ppm against this host; start-up backlog %" PRId64
			   " samples, largest backlog %" PRId64 " samples",
			   mead_loop_bits_to_double(atomic_load(&s->drift_ppm_bits)), atomic_load(&s->startup_backlog),
			   atomic_load(&s->backlog_max));
}

static int exit_code_for(int reason)
{
	switch (reason) {
	case MEAD_EXIT_OVERRUN:
	case MEAD_EXIT_DRIVER_FAULT:
		return EXIT_RUNTIME;
	default:
		return EXIT_OK;
	}
}

static void report_sighup(struct run *r)
{
	struct mead_config fresh;
	char err[MEAD_CFG_ERR_MAX];
	int k;

	/* SIGHUP re-validates the file and says so; it never changes a running
	 * rig under the scientist's feet.  Changes take effect at the next start. */
	k = mead_config_load(&fresh, r->config_path, r->overrides, r->n_overrides, err, sizeof(err));
	if (k < 0)
		log_warning("SIGHUP: %s: the file no longer validates, keeping the running configuration: %s",
			    r->config_path ? r->config_path : "(defaults)", err);
	else
		log_notice("SIGHUP: %s validates; the running configuration is kept (restart to apply changes)",
			   r->config_path ? r->config_path : "(defaults)");
	mead_config_release(&fresh);
}

static void stream_log(void *ctx, int prio, const char *msg)
{
	mead_log(prio, "%s", msg);
}

/* Status reports the running protocol by its index in this list. */
static const char *const protocol_names[] = { "mnist", "random", "ruaro", "respond", NULL };

/* Builds a configured protocol by name and checks it whole against the
 * safety limits; returns its index.  Used for autostart and by control. */
static int make_protocol(void *ctx, const char *name, struct mead_protocol **ret, char *err, size_t len)
{
	struct run *r = ctx;
	struct mead_protocol_env env = {
		.layout = &r->layout.view,
		.sample_rate_hz = r->d.driver.caps.sample_rate_hz,
		.period_ns = r->cfg.loop.period_us * 1000u,
		.cap_flags = r->d.driver.caps.flags,
		.units_per_electrode = r->d.driver.caps.units_per_electrode,
		.data_dir = r->d.protocol_data_dir,
	};
	struct mead_protocol *p = NULL;
	char why[512];
	int index = -1, k;

	for (int i = 0; protocol_names[i]; i++)
		if (strcmp(protocol_names[i], name) == 0)
			index = i;
	if (index < 0) {
		snprintf(err, len, "no protocol \"%s\" (configured protocols: mnist, random, ruaro, respond)", name);
		return -ENOENT;
	}
	err[0] = '\0';
	k = mead_protocol_new(&r->cfg.protocol, name, &env, &p, err, len);
	if (k < 0) {
		if (!err[0])
			snprintf(err, len, "%s", strerror(-k));
		return k;
	}
	k = check_protocol(r, p, why, sizeof(why));
	if (k < 0) {
		snprintf(err, len, "refused by the safety limits: %s", why);
		atomic_fetch_add(&r->protocols_rejected, 1);
		mead_protocol_free(p);
		return k;
	}
	*ret = p;
	return index;
}

static int stim_check(void *ctx, const struct mead_command *cmd, char *err, size_t len)
{
	struct run *r = ctx;
	return mead_safety_check_train(r->d.safety, cmd->train.electrodes, cmd->train.n_electrodes,
				       cmd->train.amplitude_ua, cmd->train.phase_us, cmd->train.interphase_us,
				       cmd->train.pulses, cmd->train.rate_hz, err, len) == MEAD_SAFE ? 0 : -EPERM;
}

/* ---- steps of a run; each returns an exit code, EXIT_OK to go on ------- */

enum mode { MODE_RUN, MODE_CHECK, MODE_SAFE_OUTPUTS };

static int parse_args(struct run *r, int argc, char **argv, enum mode *ret_mode, bool *ret_print, bool *ret_done)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "set", required_argument, NULL, 'o' },
		{ "check", no_argument, NULL, 'C' },
		{ "safe-outputs", no_argument, NULL, 'S' },
		{ "print", no_argument, NULL, 'P' },
		{ "version", no_argument, NULL, 'V' },
		{ "list-keys", no_argument, NULL, 'K' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	int c;

	*ret_done = false;
	while ((c = getopt_long(argc, argv, "c:o:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			r->config_path = optarg;
			break;
		case 'o':
			if (r->n_overrides >= MAX_OVERRIDES) {
				fprintf(stderr, "mead: more than %d -o overrides\n", MAX_OVERRIDES);
				return EXIT_USAGE;
			}
			r->overrides[r->n_overrides++] = optarg;
			break;
		case 'C':
			*ret_mode = MODE_CHECK;
			break;
		case 'S':
			*ret_mode = MODE_SAFE_OUTPUTS;
			break;
		case 'P':
			*ret_print = true;
			break;
		case 'V':
			printf("mead %s (driver ABI %u, wire v%u)\n", MEAD_VERSION, MEAD_DRIVER_ABI_VERSION, MEAD_WIRE_VERSION);
			*ret_done = true;
			return EXIT_OK;
		case 'h':
			usage(stdout);
			*ret_done = true;
			return EXIT_OK;
		case 'K':
			printf("| key | type | default | meaning |\n|---|---|---|---|\n");
			print_schema(mead_config_keys, "");
			*ret_done = true;
			return EXIT_OK;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return EXIT_USAGE;
	}
	return EXIT_OK;
}

static const char *config_name(const struct run *r)
{
	return r->config_path ? r->config_path : "<defaults>";
}

/* Configuration, layout, driver module and key files: everything --check
 * validates, before any device is touched. */
static int load_configuration(struct run *r)
{
	char err[MEAD_CFG_ERR_MAX];
	int k;

	k = mead_config_load(&r->cfg, r->config_path, r->overrides, r->n_overrides, err, sizeof(err));
	if (k < 0) {
		log_error("%s", err);
		return EXIT_CONFIG;
	}
	k = mead_layout_build(&r->cfg, &r->layout, err, sizeof(err));
	if (k < 0) {
		log_error("%s: %s", config_name(r), err);
		return EXIT_CONFIG;
	}
	k = mead_driver_module_load(r->cfg.driver.name, r->cfg.driver.path, &r->cfg.driver.options, &r->d.module, err,
				    sizeof(err));
	if (k < 0) {
		log_error("%s", err);
		return EXIT_CONFIG;
	}
	if (r->cfg.streams.curve.streams && !r->cfg.streams.curve.enabled) {
		log_error("%s: streams.curve.streams needs streams.curve.enabled", config_name(r));
		return EXIT_CONFIG;
	}
	if (r->cfg.streams.curve.enabled) {
		struct mead_auth_params ap = {
			.server_secret_key_file = r->cfg.streams.curve.server_secret_key_file,
			.authorized_keys_file = r->cfg.streams.curve.authorized_keys_file,
			.log = stream_log,
		};
		if (!*ap.server_secret_key_file || !*ap.authorized_keys_file) {
			log_error("%s: streams.curve.enabled needs streams.curve.server_secret_key_file and "
				  "streams.curve.authorized_keys_file", config_name(r));
			return EXIT_CONFIG;
		}
		k = mead_auth_new(&ap, &r->d.auth, err, sizeof(err));
		if (k < 0) {
			log_error("streams.curve: %s", err);
			return EXIT_CONFIG;
		}
	}
	r->d.config = &r->cfg;
	r->d.config_path = r->config_path;
	r->d.layout = &r->layout.view;
	r->d.driver.ops = mead_driver_module_ops(r->d.module);
	r->d.protocol_data_dir = mead_config_data_dir();
	return EXIT_OK;
}

static int open_driver(struct run *r)
{
	char err[MEAD_CFG_ERR_MAX];
	size_t n_params;
	const struct mead_driver_param *params = mead_driver_module_params(r->d.module, &n_params);
	struct mead_driver_config dc = {
		/* an ABI-2 module refuses any other number */
		.abi_version = mead_driver_module_abi(r->d.module),
		.period_us = r->cfg.loop.period_us,
		.period_ns = r->cfg.loop.period_us * 1000u,
		.seed = r->cfg.driver.seed,
		.virtual_clock = r->cfg.loop.clock == MEAD_CLOCK_VIRTUAL,
		.want_raw = r->cfg.streams.raw,
		.layout = &r->layout.view,
		.params = params,
		.n_params = n_params,
	};
	int k;

	err[0] = '\0';
	k = r->d.driver.ops->open(&dc, &r->d.driver.state, err, sizeof(err));
	if (k < 0) {
		log_error("driver %s: open failed: %s (%s)", r->cfg.driver.name, err[0] ? err : "no detail",
			  strerror(-k));
		r->d.driver.state = NULL;
		return EXIT_DRIVER;
	}
	/* an ABI-2 module leaves the fields of version 3 alone: zero, no waveforms */
	r->d.driver.caps = (struct mead_driver_caps){ 0 };
	k = r->d.driver.ops->get_caps(r->d.driver.state, &r->d.driver.caps);
	if (mead_driver_module_abi(r->d.module) < 3)
		r->d.driver.caps.flags &= ~(uint32_t)MEAD_CAP_WAVEFORMS;
	if (k < 0 || r->d.driver.caps.sample_rate_hz == 0) {
		log_error("driver %s: no capabilities (%s)", r->cfg.driver.name, strerror(k < 0 ? -k : EINVAL));
		return EXIT_DRIVER;
	}
	if (r->d.driver.caps.electrode_count > r->layout.view.count) {
		log_error("%s: layout: driver %s reports %u electrodes but the layout has %u", config_name(r),
			  r->cfg.driver.name, r->d.driver.caps.electrode_count, r->layout.view.count);
		return EXIT_CONFIG;
	}
	return EXIT_OK;
}

/* The safety layer, the output ring and the loop, all preallocated. */
static int build_loop(struct run *r)
{
	struct mead_safety_limits lim = {
		.max_amplitude_ua = r->cfg.safety.max_amplitude_ua,
		.max_phase_us = r->cfg.safety.max_phase_us,
		.max_interphase_us = r->cfg.safety.max_interphase_us,
		.max_charge_nc = r->cfg.safety.max_charge_nc,
		.max_rate_hz = r->cfg.safety.max_rate_hz,
		.rate_window_ms = r->cfg.safety.rate_window_ms,
		.min_interval_us = r->cfg.safety.min_interval_us,
		.max_duty_cycle = r->cfg.safety.max_duty_cycle,
		.max_train_pulses = r->cfg.safety.max_train_pulses,
	};
	int k = mead_safety_new(&lim, &r->layout.view, &r->d.driver.caps, r->d.driver.caps.sample_rate_hz, &r->d.safety);
	if (k < 0) {
		log_error("safety layer: %s", strerror(-k));
		return EXIT_INTERNAL;
	}
	k = mead_ring_new((size_t)r->cfg.loop.ring_kib * 1024, &r->d.out_ring);
	if (k < 0) {
		log_error("output ring: %s", strerror(-k));
		return EXIT_INTERNAL;
	}
	uint32_t period_ns = r->cfg.loop.period_us * 1000u;
	uint64_t samples_per_tick = mead_tick_first_sample(1, period_ns, r->d.driver.caps.sample_rate_hz) + 1;
	uint32_t spike_cap = r->cfg.loop.spike_capacity;
	if (!spike_cap)
		spike_cap = r->d.driver.caps.max_spikes_per_tick_hint;
	if (!spike_cap)
		spike_cap = (uint32_t)(samples_per_tick * r->layout.view.count + 64);
	struct mead_loop_params lp = {
		.period_ns = period_ns,
		.virtual_clock = r->cfg.loop.clock == MEAD_CLOCK_VIRTUAL,
		.rt_priority = (int)r->cfg.loop.priority,
		/* before the streams' threads exist, so they inherit the
		 * affinity that keeps them off the loop's CPU */
		.cpu = mead_loop_pick_cpu((int)r->cfg.loop.cpu, true),
		.lock_memory = r->cfg.loop.lock_memory,
		.overrun_fatal = r->cfg.loop.overrun_fatal,
		.exit_when_done = r->cfg.loop.exit_when_done,
		.max_ticks = r->cfg.loop.duration_s > 0 ? (uint64_t)llround(r->cfg.loop.duration_s * 1e9 / period_ns) : 0,
		.spike_capacity = spike_cap,
		.stim_capacity = r->cfg.loop.stim_capacity,
		.want_raw = r->cfg.streams.raw,
		.device_margin_samples = (uint32_t)((uint64_t)r->cfg.loop.device_margin_us *
						    r->d.driver.caps.sample_rate_hz / 1000000u),
		.clock_bandwidth_hz = r->cfg.loop.clock_bandwidth_hz,
	};
	k = mead_loop_new(&lp, &r->d.driver, &r->layout.view, r->d.out_ring, r->d.safety, &r->d.loop);
	if (k < 0) {
		log_error("loop: %s", strerror(-k));
		return EXIT_INTERNAL;
	}
	return EXIT_OK;
}

/* Access control, the recording, the publisher and the control socket
 * (created, bound; their threads start later). */
static int open_streams(struct run *r)
{
	static char meta[1 << 16], effective[1 << 18];
	char err[MEAD_CFG_ERR_MAX];
	void *auth_ctx = NULL;
	const uint8_t *secret = NULL;
	int k;

	if (r->d.auth) {
		k = mead_auth_start(r->d.auth, err, sizeof(err));
		if (k < 0) {
			log_error("streams.curve: %s", err);
			return EXIT_STREAMS;
		}
		auth_ctx = mead_auth_zmq_ctx(r->d.auth);
		secret = mead_auth_server_secret(r->d.auth);
		log_notice("access control: CURVE on control%s, %zu authorised key%s, server public key %s",
			   r->cfg.streams.curve.streams ? " and streams" : "", mead_auth_key_count(r->d.auth),
			   mead_auth_key_count(r->d.auth) == 1 ? "" : "s", mead_auth_server_public_z85(r->d.auth));
	}
	if (!r->cfg.streams.curve.enabled && !mead_auth_endpoint_is_local(r->cfg.streams.control))
		log_warning("streams.control %s is reachable from other machines and streams.curve is off: "
			    "anyone who can connect can stimulate", r->cfg.streams.control);
	if (!r->cfg.streams.curve.streams && !mead_auth_endpoint_is_local(r->cfg.streams.pub))
		log_warning("streams.pub %s is reachable from other machines without authentication", r->cfg.streams.pub);
	if (r->cfg.recording.enabled) {
		/* The recording carries the configuration as it was applied,
		 * overrides included, so a run can be reproduced from its file. */
		int cl = mead_cfg_format(mead_config_keys, &r->cfg, "", effective, sizeof(effective));
		mead_status_recording_meta(&r->d, meta, sizeof(meta));
		struct mead_recorder_params rp = {
			.path = r->cfg.recording.path, .overwrite = r->cfg.recording.overwrite,
			.config_text = cl > 0 ? effective : NULL, .config_len = cl > 0 ? (size_t)cl : 0,
			.meta_json = meta, .fsync_interval_ms = r->cfg.recording.fsync_interval_ms,
			.ring_bytes = (size_t)r->cfg.recording.ring_kib * 1024, .log = stream_log,
		};
		k = mead_recorder_new(&rp, &r->d.recorder, err, sizeof(err));
		if (k < 0) {
			log_error("recording.path: %s", err);
			return EXIT_STREAMS;
		}
	}
	struct mead_publisher_params pp = {
		.endpoint = r->cfg.streams.pub, .virtual_clock = r->cfg.loop.clock == MEAD_CLOCK_VIRTUAL,
		.raw = r->cfg.streams.raw, .wait_subscribers = r->cfg.streams.wait_subscribers,
		.sndhwm = (int)r->cfg.streams.sndhwm, .status_interval_ms = r->cfg.streams.status_interval_ms,
		.log = stream_log,
		.zmq_ctx = r->cfg.streams.curve.streams ? auth_ctx : NULL,
		.curve_secret_key = r->cfg.streams.curve.streams ? secret : NULL,
	};
	k = mead_publisher_new(&pp, r->d.out_ring, r->d.recorder, mead_status_json_cb, &r->d, &r->d.publisher, err,
			       sizeof(err));
	if (k < 0) {
		log_error("streams.pub: %s", err);
		return EXIT_STREAMS;
	}
	struct mead_control_params cp = {
		.endpoint = r->cfg.streams.control,
		.limits = {
			.max_amplitude_ua = (float)r->cfg.safety.max_amplitude_ua,
			.max_phase_us = r->cfg.safety.max_phase_us,
			.max_interphase_us = r->cfg.safety.max_interphase_us,
			.max_pulses = r->cfg.safety.max_train_pulses,
			.max_rate_hz = r->cfg.safety.max_rate_hz,
			.max_charge_nc = r->cfg.safety.max_charge_nc,
		},
		.stim_check = stim_check, .stim_check_ctx = r,
		.make_protocol = make_protocol, .protocol_ctx = r,
		.status_json = mead_status_json_cb, .status_ctx = &r->d, .log = stream_log,
		.zmq_ctx = auth_ctx, .curve_secret_key = secret,
	};
	k = mead_control_new(&cp, &r->d, true, &r->d.control, err, sizeof(err));
	if (k < 0) {
		log_error("streams.control: %s", err);
		return EXIT_STREAMS;
	}
	return EXIT_OK;
}

static int autostart_protocol(struct run *r)
{
	char err[MEAD_CFG_ERR_MAX];

	if (!r->cfg.protocol.autostart || !*r->cfg.protocol.autostart)
		return EXIT_OK;
	int index = make_protocol(r, r->cfg.protocol.autostart, &r->autostart, err, sizeof(err));
	if (index < 0) {
		log_error("%s: protocol.autostart: %s: %s", config_name(r), r->cfg.protocol.autostart, err);
		return EXIT_CONFIG;
	}
	struct mead_command cmd = { .type = MEAD_CMD_START_PROTOCOL, .start = { r->autostart, index } };
	if (mead_loop_submit(r->d.loop, &cmd) < 0)
		return EXIT_INTERNAL;
	r->autostart = NULL;   /* the loop owns it now */
	return EXIT_OK;
}

/* Stream threads, subscribers, memory locked; then the driver and at once
 * the loop: the device's sample 0 is just before tick 0. */
static int start_run(struct run *r)
{
	char err[MEAD_CFG_ERR_MAX], warn[1024] = "";
	int k;

	if ((r->d.recorder && (k = mead_recorder_start(r->d.recorder)) < 0) ||
	    (k = mead_publisher_start(r->d.publisher)) < 0 || (k = mead_control_start(r->d.control)) < 0) {
		log_error("streams: cannot start their threads: %s", strerror(-k));
		return EXIT_INTERNAL;
	}
	if (r->cfg.streams.wait_subscribers > 0) {
		log_notice("waiting for %u subscriber%s on %s", r->cfg.streams.wait_subscribers,
			   r->cfg.streams.wait_subscribers > 1 ? "s" : "", mead_publisher_endpoint(r->d.publisher));
		k = mead_publisher_wait_subscribers(r->d.publisher, r->cfg.streams.wait_timeout_ms ?
						    (int)r->cfg.streams.wait_timeout_ms : -1);
		if (k < 0) {
			log_error("streams.wait_subscribers: %u subscriber%s did not come within %u ms",
				  r->cfg.streams.wait_subscribers, r->cfg.streams.wait_subscribers > 1 ? "s" : "",
				  r->cfg.streams.wait_timeout_ms);
			return EXIT_STREAMS;
		}
	}
	mead_loop_prepare(r->d.loop, warn, sizeof(warn));
	if (r->d.driver.ops->start) {
		err[0] = '\0';
		k = r->d.driver.ops->start(r->d.driver.state, err, sizeof(err));
		if (k < 0) {
			log_error("driver %s: start failed: %s (%s)", r->cfg.driver.name, err[0] ? err : "no detail",
				  strerror(-k));
			return EXIT_DRIVER;
		}
	}
	r->driver_started = true;
	r->d.started_realtime_ns = mead_clock_ns(CLOCK_REALTIME);
	k = mead_loop_start(r->d.loop, warn, sizeof(warn));
	if (k < 0) {
		log_error("loop thread: %s", strerror(-k));
		return EXIT_INTERNAL;
	}
	if (warn[0])
		log_warning("degraded real-time mode: %s", warn);

	const struct mead_loop_stats *st = mead_loop_stats(r->d.loop);
	/* Wait until the loop runs: READY means ticks are happening. */
	for (int i = 0; i < 5000 && atomic_load(&st->state) == MEAD_LOOP_CREATED; i++) {
		struct timespec ms = { 0, 1000000 };
		nanosleep(&ms, NULL);
	}
	if (r->cfg.loop.require_rt && (!atomic_load(&st->rt_active) || !atomic_load(&st->memory_locked))) {
		log_error("loop.require_rt is set but SCHED_FIFO or locked memory was refused: stopping");
		mead_loop_request_stop(r->d.loop);
		mead_loop_join(r->d.loop);
		return EXIT_RUNTIME;
	}
	log_notice("running: driver %s, %u electrodes at %u Hz, period %u us, %s clock, %s", r->cfg.driver.name,
		   r->layout.view.count, r->d.driver.caps.sample_rate_hz, r->cfg.loop.period_us,
		   r->cfg.loop.clock == MEAD_CLOCK_VIRTUAL ? "virtual" : "realtime",
		   atomic_load(&st->rt_active) ? "SCHED_FIFO" : "normal priority");
	mead_notify("READY=1\nSTATUS=running");
	return EXIT_OK;
}

/* The main thread while the loop runs: signals, the systemd watchdog and
 * status line, until a stop is asked for or the loop ends by itself. */
static void supervise(struct run *r, const sigset_t *sigs)
{
	const struct mead_loop_stats *st = mead_loop_stats(r->d.loop);
	uint64_t wd_usec = r->cfg.daemon.watchdog_ms ? (uint64_t)r->cfg.daemon.watchdog_ms * 1000 :
		mead_notify_watchdog_usec() / 2;
	uint64_t last_progress = 0;
	uint64_t last_ping = mead_now_ns(), last_status = last_ping;

	for (;;) {
		struct timespec wait = { 0, 10 * 1000000 };
		siginfo_t si;
		int sig = sigtimedwait(sigs, &si, &wait);

		if (sig == SIGTERM || sig == SIGINT) {
			log_notice("%s: stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
			mead_notify("STOPPING=1\nSTATUS=stopping");
			return;
		}
		if (sig == SIGHUP)
			report_sighup(r);
		if (atomic_load(&r->d.stop_requested) || atomic_load(&st->state) == MEAD_LOOP_STOPPED)
			return;

		uint64_t now = mead_now_ns();
		if (wd_usec && now - last_ping >= wd_usec * 1000) {
			uint64_t p = atomic_load(&st->progress);
			/* Ping only while ticks advance: a stuck loop lets systemd act. */
			if (p != last_progress)
				mead_notify("WATCHDOG=1");
			last_progress = p;
			last_ping = now;
		}
		if (now - last_status >= 1000000000ull) {
			char status[256];
			snprintf(status, sizeof(status), "STATUS=ticks=%" PRIu64 " overruns=%" PRIu64 " p99=%.0fus spikes=%" PRIu64,
				 atomic_load(&st->ticks), atomic_load(&st->overruns),
				 mead_loop_latency_percentile(st, 99), atomic_load(&st->spikes));
			mead_notify(status);
			last_status = now;
		}
	}
}

/* Loop, control, publisher, recorder: stopped in that order, so every
 * message the loop produced reaches the streams and the file. */
static int finish_run(struct run *r)
{
	const struct mead_loop_stats *st = mead_loop_stats(r->d.loop);

	mead_loop_request_stop(r->d.loop);
	mead_loop_join(r->d.loop);
	mead_control_stop(r->d.control);
	mead_publisher_stop(r->d.publisher);
	mead_recorder_stop(r->d.recorder);
	log_summary(r->d.loop);
	if (r->d.driver.ops->describe) {
		static char desc[32768];
		if (r->d.driver.ops->describe(r->d.driver.state, desc, sizeof(desc)) > 0)
			log_notice("driver: %s", desc);
	}
	return exit_code_for(atomic_load(&st->exit_reason));
}

/* Outputs off, acquisition stopped, sockets closed, everything freed. */
static void release_all(struct run *r)
{
	if (r->driver_started) {
		if (r->d.driver.ops->stop_outputs)
			r->d.driver.ops->stop_outputs(r->d.driver.state);
		if (r->d.driver.ops->stop)
			r->d.driver.ops->stop(r->d.driver.state);
	}
	mead_control_free(r->d.control);
	mead_publisher_free(r->d.publisher);
	/* After the sockets it vets: its context can only end once they are closed. */
	mead_auth_free(r->d.auth);
	mead_recorder_free(r->d.recorder);
	run_release(r);
}

/*
 * After the daemon ended, however it ended (kill -9 included, which no
 * handler sees): open the configured driver, whose open() leaves the
 * outputs at zero, make sure with stop_outputs(), close.  The unit file
 * runs this as ExecStopPost=.
 */
static int safe_outputs(struct run *r)
{
	int code = open_driver(r);
	if (code != EXIT_OK) {
		log_error("driver %s: the outputs could not be made safe: the device could not be opened",
			  r->cfg.driver.name);
		return code;
	}
	int k = r->d.driver.ops->stop_outputs ? r->d.driver.ops->stop_outputs(r->d.driver.state) : 0;
	if (k < 0) {
		log_error("driver %s: stop_outputs failed: %s", r->cfg.driver.name, strerror(-k));
		return EXIT_DRIVER;
	}
	log_notice("driver %s: outputs at zero", r->cfg.driver.name);
	return EXIT_OK;
}

/*
 * A fatal signal (a crash in the daemon or a driver) must not leave a
 * stimulator on.  stop_outputs is an "any thread" op (no locks, no
 * allocation), so the handler calls it, then lets the default action run
 * (core dump) by re-raising.  On its own stack: a stack overflow is one of
 * the deaths it is for.
 */
static const struct mead_driver_ops *volatile fatal_ops;
static void *volatile fatal_state;

static void on_fatal_signal(int sig)
{
	const struct mead_driver_ops *ops = fatal_ops;
	void *st = fatal_state;
	static const char msg[] = "mead: fatal signal: outputs zeroed\n";

	if (ops && st && ops->stop_outputs) {
		ops->stop_outputs(st);
		(void)!write(STDERR_FILENO, msg, sizeof(msg) - 1);
	}
	signal(sig, SIG_DFL);
	raise(sig);
}

static void guard_fatal_signals(const struct run *r)
{
	static const int sigs[] = { SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGQUIT, SIGTRAP, SIGSYS };
	static char altstack[1 << 16];
	stack_t ss = { .ss_sp = altstack, .ss_size = sizeof(altstack) };
	struct sigaction sa = { .sa_handler = on_fatal_signal, .sa_flags = SA_ONSTACK | SA_RESETHAND };

	fatal_state = r->d.driver.state;
	fatal_ops = r->d.driver.ops;
	sigaltstack(&ss, NULL);
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		sigaction(sigs[i], &sa, NULL);
}

int main(int argc, char **argv)
{
	static struct run r;
	enum mode mode = MODE_RUN;
	bool print = false, done = false;
	sigset_t sigs;
	int code;

	mead_log_init("mead");
	code = parse_args(&r, argc, argv, &mode, &print, &done);
	if (code != EXIT_OK || done)
		return code;
	code = load_configuration(&r);
	if (code == EXIT_OK && mode == MODE_CHECK) {
		printf("%s: valid (driver \"%s\" from %s, %u electrodes, period %u us, %s clock)\n", config_name(&r),
		       r.cfg.driver.name, mead_driver_module_path(r.d.module), r.layout.view.count,
		       r.cfg.loop.period_us, r.cfg.loop.clock == MEAD_CLOCK_VIRTUAL ? "virtual" : "realtime");
		if (print)
			print_keys(mead_config_keys, &r.cfg, "");
		release_all(&r);
		return EXIT_OK;
	}
	if (code == EXIT_OK && mode == MODE_SAFE_OUTPUTS) {
		code = safe_outputs(&r);
		release_all(&r);
		return code;
	}
	if (code == EXIT_OK)
		code = open_driver(&r);
	if (code == EXIT_OK)
		guard_fatal_signals(&r);
	if (code == EXIT_OK)
		code = build_loop(&r);
	if (code == EXIT_OK)
		code = open_streams(&r);
	if (code == EXIT_OK)
		code = autostart_protocol(&r);

	/* Only the main thread takes signals: block them before any thread
	 * starts, so every thread inherits the mask. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (code == EXIT_OK)
		code = start_run(&r);
	if (code == EXIT_OK) {
		supervise(&r, &sigs);
		code = finish_run(&r);
	}
	fatal_ops = NULL;
	release_all(&r);
	return code;
}
