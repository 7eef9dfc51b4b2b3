/* SPDX-License-Identifier: MIT */
#include "config/config.h"
#include "mead-build-config.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define OFF(field) offsetof(struct mead_config, field)

static const char *const clock_modes[] = { "realtime", "virtual", NULL };
static const char *const layout_presets[] = { "grid-6x10", "mcs-60mea200-30", "custom", NULL };
static const char *const sighup_actions[] = { "reject", NULL };

static const struct mead_cfg_key rig_keys[] = {
	{ "name", MEAD_CFG_STRING, OFF(rig.name), MEAD_CFG_NO_RANGE, NULL, "rig", "a name for this rig, shown in status", NULL },
	{ 0 },
};

static const struct mead_cfg_key loop_keys[] = {
	{ "period_us", MEAD_CFG_UINT, OFF(loop.period_us), 10, 1000000, NULL, "1000",
	  "tick period in microseconds (40 for 25 kHz ticks)", NULL },
	{ "clock", MEAD_CFG_ENUM, OFF(loop.clock), MEAD_CFG_NO_RANGE, clock_modes, "realtime",
	  "realtime (paced by the wall clock) or virtual (as fast as possible, same ticks)", NULL },
	{ "priority", MEAD_CFG_INT, OFF(loop.priority), 0, 99, NULL, "80",
	  "SCHED_FIFO priority of the loop thread, 0 for normal scheduling", NULL },
	{ "cpu", MEAD_CFG_INT, OFF(loop.cpu), -2, 1023, NULL, "-1",
	  "CPU the loop thread is pinned to; -1: the last CPU the process may use, -2: no pinning. "
	  "The daemon's other threads keep off that CPU when another is left", NULL },
	{ "lock_memory", MEAD_CFG_BOOL, OFF(loop.lock_memory), MEAD_CFG_NO_RANGE, NULL, "true",
	  "mlockall the process before the loop starts", NULL },
	{ "overrun_fatal", MEAD_CFG_BOOL, OFF(loop.overrun_fatal), MEAD_CFG_NO_RANGE, NULL, "false",
	  "stop the run at the first overrun", NULL },
	{ "exit_when_done", MEAD_CFG_BOOL, OFF(loop.exit_when_done), MEAD_CFG_NO_RANGE, NULL, "false",
	  "end the run when the autostarted protocol finishes", NULL },
	{ "duration_s", MEAD_CFG_DOUBLE, OFF(loop.duration_s), 0, 31536000, NULL, "0",
	  "run length in seconds of acquisition time, 0 for until stopped", NULL },
	{ "spike_capacity", MEAD_CFG_UINT, OFF(loop.spike_capacity), 0, 1000000, NULL, "0",
	  "spike records one tick can hold, 0 for the driver's figure", NULL },
	{ "stim_capacity", MEAD_CFG_UINT, OFF(loop.stim_capacity), 1, 100000, NULL, "4096",
	  "stimulation pulses one tick can hold", NULL },
	{ "ring_kib", MEAD_CFG_UINT, OFF(loop.ring_kib), 64, 1048576, NULL, "16384",
	  "size of the loop's output ring in KiB", NULL },
	{ "require_rt", MEAD_CFG_BOOL, OFF(loop.require_rt), MEAD_CFG_NO_RANGE, NULL, "false",
	  "refuse to run without SCHED_FIFO and locked memory", NULL },
	{ "device_margin_us", MEAD_CFG_UINT, OFF(loop.device_margin_us), 0, 100000, NULL, "250",
	  "with a driver that has its own sample clock: how long after a tick's last sample, by the device's clock, "
	  "the loop reads it (transfer and wake-up slack)", NULL },
	{ "clock_bandwidth_hz", MEAD_CFG_DOUBLE, OFF(loop.clock_bandwidth_hz), 0.01, 10, NULL, "0.5",
	  "how fast the loop's schedule follows the device's clock", NULL },
	{ 0 },
};

static const struct mead_cfg_key layout_keys[] = {
	{ "preset", MEAD_CFG_ENUM, OFF(layout.preset), MEAD_CFG_NO_RANGE, layout_presets, "grid-6x10",
	  "grid-6x10, mcs-60mea200-30 or custom", NULL },
	{ "rows", MEAD_CFG_UINT, OFF(layout.rows), 1, 64, NULL, "6", "rows of the electrode grid (custom)", NULL },
	{ "cols", MEAD_CFG_UINT, OFF(layout.cols), 1, 64, NULL, "10", "columns of the electrode grid (custom)", NULL },
	{ "pitch_um", MEAD_CFG_DOUBLE, OFF(layout.pitch_um), 1, 10000, NULL, "500", "electrode pitch in micrometres (custom)", NULL },
	{ "labels", MEAD_CFG_STRING_LIST, OFF(layout.labels), MEAD_CFG_NO_RANGE, NULL, NULL,
	  "electrode labels in electrode order (custom; default row-major numbers)", NULL },
	{ "excluded", MEAD_CFG_UINT_LIST, OFF(layout.excluded), 0, 255, NULL, NULL,
	  "electrode indices never stimulated (reference, ground)", NULL },
	{ "absent", MEAD_CFG_UINT_LIST, OFF(layout.absent), 0, 4095, NULL, NULL,
	  "grid positions (row*cols+col) with no electrode (custom)", NULL },
	{ 0 },
};

static const struct mead_cfg_key driver_keys[] = {
	{ "name", MEAD_CFG_STRING, OFF(driver.name), MEAD_CFG_NO_RANGE, NULL, "null",
	  "driver module name: null, twin, replay, comedi, usb, or a third-party module", NULL },
	{ "path", MEAD_CFG_STRING, OFF(driver.path), MEAD_CFG_NO_RANGE, NULL, "",
	  "directory searched first for mead-driver-<name>.so", NULL },
	{ "seed", MEAD_CFG_U64, OFF(driver.seed), MEAD_CFG_NO_RANGE, NULL, "1", "seed handed to the driver", NULL },
	{ "options", MEAD_CFG_MAP, OFF(driver.options), MEAD_CFG_NO_RANGE, NULL, NULL,
	  "driver options, checked against the driver's own table", NULL },
	{ 0 },
};

static const struct mead_cfg_key curve_keys[] = {
	{ "enabled", MEAD_CFG_BOOL, OFF(streams.curve.enabled), MEAD_CFG_NO_RANGE, NULL, "false",
	  "control socket: ZeroMQ CURVE, only clients whose public key is in authorized_keys_file (docs/safety.md)", NULL },
	{ "server_secret_key_file", MEAD_CFG_STRING, OFF(streams.curve.server_secret_key_file), MEAD_CFG_NO_RANGE, NULL,
	  "", "the daemon's secret key (Z85, `meactl keygen`), not accessible to others", NULL },
	{ "authorized_keys_file", MEAD_CFG_STRING, OFF(streams.curve.authorized_keys_file), MEAD_CFG_NO_RANGE, NULL, "",
	  "client public keys allowed to connect, one Z85 key per line, `#` comments", NULL },
	{ "streams", MEAD_CFG_BOOL, OFF(streams.curve.streams), MEAD_CFG_NO_RANGE, NULL, "false",
	  "the stream PUB socket too: unauthorised subscribers receive nothing (needs enabled)", NULL },
	{ 0 },
};

static const struct mead_cfg_key streams_keys[] = {
	{ "pub", MEAD_CFG_STRING, OFF(streams.pub), MEAD_CFG_NO_RANGE, NULL, "tcp://127.0.0.1:5555",
	  "ZeroMQ endpoint of the stream PUB socket", NULL },
	{ "control", MEAD_CFG_STRING, OFF(streams.control), MEAD_CFG_NO_RANGE, NULL, "tcp://127.0.0.1:5556",
	  "ZeroMQ endpoint of the control REP socket", NULL },
	{ "raw", MEAD_CFG_BOOL, OFF(streams.raw), MEAD_CFG_NO_RANGE, NULL, "false", "publish raw samples", NULL },
	{ "status_interval_ms", MEAD_CFG_UINT, OFF(streams.status_interval_ms), 50, 1000, NULL, "1000",
	  "status message period in milliseconds", NULL },
	{ "wait_subscribers", MEAD_CFG_UINT, OFF(streams.wait_subscribers), 0, 64, NULL, "0",
	  "subscribers to wait for before the first tick", NULL },
	{ "wait_timeout_ms", MEAD_CFG_UINT, OFF(streams.wait_timeout_ms), 0, 3600000, NULL, "30000",
	  "how long to wait for them, 0 for ever", NULL },
	{ "sndhwm", MEAD_CFG_UINT, OFF(streams.sndhwm), 10, 10000000, NULL, "100000",
	  "messages queued per subscriber before drops (real-time clock)", NULL },
	{ "curve", MEAD_CFG_TABLE, 0, MEAD_CFG_NO_RANGE, NULL, NULL, "access control", curve_keys },
	{ 0 },
};

static const struct mead_cfg_key recording_keys[] = {
	{ "enabled", MEAD_CFG_BOOL, OFF(recording.enabled), MEAD_CFG_NO_RANGE, NULL, "false",
	  "append every published message to recording.path", NULL },
	{ "path", MEAD_CFG_STRING, OFF(recording.path), MEAD_CFG_NO_RANGE, NULL, "mead-recording.mrec",
	  "recording file", NULL },
	{ "overwrite", MEAD_CFG_BOOL, OFF(recording.overwrite), MEAD_CFG_NO_RANGE, NULL, "false",
	  "replace an existing recording file (off: refuse to start rather than lose a recording)", NULL },
	{ "fsync_interval_ms", MEAD_CFG_UINT, OFF(recording.fsync_interval_ms), 0, 600000, NULL, "1000",
	  "fsync period, 0 for never", NULL },
	{ "ring_kib", MEAD_CFG_UINT, OFF(recording.ring_kib), 64, 1048576, NULL, "16384",
	  "publisher -> recorder ring in KiB", NULL },
	{ 0 },
};

static const struct mead_cfg_key safety_keys[] = {
	{ "max_amplitude_ua", MEAD_CFG_DOUBLE, OFF(safety.max_amplitude_ua), 0, 1000, NULL, "50",
	  "largest |first-phase amplitude| in microamperes", NULL },
	{ "max_phase_us", MEAD_CFG_UINT, OFF(safety.max_phase_us), 1, 10000, NULL, "500", "longest phase in microseconds", NULL },
	{ "max_interphase_us", MEAD_CFG_UINT, OFF(safety.max_interphase_us), 0, 10000, NULL, "1000",
	  "longest gap between the two phases", NULL },
	{ "max_charge_nc", MEAD_CFG_DOUBLE, OFF(safety.max_charge_nc), 0, 1000, NULL, "10",
	  "largest charge per phase in nanocoulombs", NULL },
	{ "max_rate_hz", MEAD_CFG_DOUBLE, OFF(safety.max_rate_hz), 0, 10000, NULL, "250",
	  "highest mean pulse rate on one electrode over rate_window_ms", NULL },
	{ "rate_window_ms", MEAD_CFG_UINT, OFF(safety.rate_window_ms), 1, 600000, NULL, "1000",
	  "window of the rate and duty-cycle limits (the burst a window may hold)", NULL },
	{ "min_interval_us", MEAD_CFG_UINT, OFF(safety.min_interval_us), 0, 10000000, NULL, "1000",
	  "shortest time between two pulse starts on one electrode", NULL },
	{ "max_duty_cycle", MEAD_CFG_DOUBLE, OFF(safety.max_duty_cycle), 0, 1, NULL, "0.2",
	  "largest fraction of time one electrode spends inside pulses over rate_window_ms", NULL },
	{ "max_train_pulses", MEAD_CFG_UINT, OFF(safety.max_train_pulses), 1, 100000, NULL, "1000",
	  "most pulses one stim request may ask for", NULL },
	{ 0 },
};

static const struct mead_cfg_key daemon_keys[] = {
	{ "sighup", MEAD_CFG_ENUM, OFF(daemon.sighup), MEAD_CFG_NO_RANGE, sighup_actions, "reject",
	  "what SIGHUP does: reject (re-validate the file, report, apply nothing)", NULL },
	{ "watchdog_ms", MEAD_CFG_UINT, OFF(daemon.watchdog_ms), 0, 600000, NULL, "0",
	  "watchdog ping period, 0 for half of systemd's WatchdogSec", NULL },
	{ 0 },
};

const struct mead_cfg_key mead_config_keys[] = {
	{ "rig", MEAD_CFG_TABLE, 0, MEAD_CFG_NO_RANGE, NULL, NULL, "rig identity", rig_keys },
	{ "loop", MEAD_CFG_TABLE, 0, MEAD_CFG_NO_RANGE, NULL, NULL, "real-time loop", loop_keys },
	{ "layout", MEAD_CFG_TABLE, 0, MEAD_CFG_NO_RANGE, NULL, NULL, "electrode layout", layout_keys },
	{ "driver", MEAD_CFG_TABLE, 0, MEAD_CFG_NO_RANGE, NULL, NULL, "driver module", driver_keys },
	{ "streams", MEAD_CFG_TABLE, 0, MEAD_CFG_NO_RANGE, NULL, NULL, "ZeroMQ streams and control", streams_keys },
	{ "recording", MEAD_CFG_TABLE, 0, MEAD_CFG_NO_RANGE, NULL, NULL, "recording file", recording_keys },
	{ "safety", MEAD_CFG_TABLE, 0, MEAD_CFG_NO_RANGE, NULL, NULL, "stimulation limits", safety_keys },
	{ "daemon", MEAD_CFG_TABLE, 0, MEAD_CFG_NO_RANGE, NULL, NULL, "process behaviour", daemon_keys },
	{ "protocol", MEAD_CFG_TABLE, OFF(protocol), MEAD_CFG_NO_RANGE, NULL, NULL, "stimulus protocols",
	  mead_protocol_config_keys },
	{ 0 },
};

int mead_config_load(struct mead_config *cfg, const char *path, char *const *overrides, size_t n_overrides,
		     char *err, size_t err_len)
{
	int r;

	memset(cfg, 0, sizeof(*cfg));
	if (path)
		r = mead_cfg_load_file(mead_config_keys, cfg, path, err, err_len);
	else
		r = mead_cfg_defaults(mead_config_keys, cfg, err, err_len);
	if (r < 0)
		return r;
	for (size_t i = 0; i < n_overrides; i++) {
		r = mead_cfg_override(mead_config_keys, cfg, overrides[i], err, err_len);
		if (r < 0)
			return r;
	}
	/* "driver: {name: null}" is YAML's null, which a string key reads as
	 * empty: it means the null driver, as a person writing it means. */
	if (!cfg->driver.name || !cfg->driver.name[0]) {
		free(cfg->driver.name);
		cfg->driver.name = strdup("null");
		if (!cfg->driver.name)
			return -ENOMEM;
	}
	return 0;
}

void mead_config_release(struct mead_config *cfg)
{
	if (!cfg)
		return;
	mead_cfg_release(mead_config_keys, cfg);
}

const char *mead_config_data_dir(void)
{
	const char *env = getenv("MEAD_DATA_DIR");
	if (env)
		return env;
	if (access(MEAD_SOURCE_ROOT "/data/mnist", R_OK) == 0)
		return MEAD_SOURCE_ROOT "/data";
	return MEAD_DATADIR;
}
