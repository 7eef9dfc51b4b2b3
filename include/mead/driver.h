/* SPDX-License-Identifier: MIT */
/*
 * mead driver ABI, version 1.
 *
 * A driver is a shared object named mead-driver-<name>.so that exports
 * mead_driver_entry(), which returns a pointer to a const vtable.  The daemon
 * finds it by the name given in the configuration (driver.name), checks
 * abi_version, validates the driver's options against its param table and
 * then calls the ops below.  A driver knows only this header: it never logs
 * (errors come back as negative errno values, with a human message where the
 * op has an err buffer) and never allocates on the real-time path.
 *
 * Threads:
 *   main  - the daemon's main thread, before the loop starts or after it ended;
 *           may block, may allocate.
 *   rt    - the real-time loop thread; must not block, allocate, take locks or
 *           make syscalls it can avoid.  Called once per tick in this order:
 *           control (0..n times, between ticks), write_stim, read_frame.
 *   any   - may be called from any thread, concurrently with rt ops; must be
 *           async-signal-safe in spirit: no locks, no allocation.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MEAD_DRIVER_ABI_VERSION 1u
#define MEAD_DRIVER_ENTRY_SYMBOL "mead_driver_entry"

/* One detected spike.  Same layout as the wire v1 spike record. */
struct mead_spike {
	uint64_t sample;       /* acquisition-clock sample index of the spike itself */
	uint16_t electrode;    /* 0-based index into the configured layout */
	uint16_t flags;
	float amplitude_uv;
};

/* One biphasic stimulation pulse.  Same layout as the wire v1 stim record.
 * The second phase has the opposite sign and equal charge. */
struct mead_stim_pulse {
	uint64_t sample;       /* sample index at which the pulse starts */
	uint16_t electrode;
	uint16_t flags;
	float amplitude_ua;    /* first phase, signed: negative = cathodic */
	uint32_t phase_us;
	uint32_t interphase_us;
};

_Static_assert(sizeof(struct mead_spike) == 16, "wire v1 spike record is 16 bytes");
_Static_assert(sizeof(struct mead_stim_pulse) == 24, "wire v1 stim record is 24 bytes");

enum mead_frame_flags {
	MEAD_FRAME_OVERFLOW    = 1u << 0, /* the device lost samples (buffer overflow) */
	MEAD_FRAME_DEVICE_GONE = 1u << 1, /* the device disappeared; outputs are off */
	MEAD_FRAME_GAP         = 1u << 2, /* samples missing (counter jump) */
	MEAD_FRAME_LATE        = 1u << 3, /* fewer samples than the tick asked for were ready */
};

/*
 * What one tick produced.  The loop owns every buffer; the driver fills them.
 * Samples of tick t are [first_sample, first_sample + n_samples): the loop
 * computes them from the tick counter, the period and the sample rate, so a
 * tick may hold zero samples (period shorter than a sample).
 */
struct mead_frame {
	uint64_t first_sample;      /* in: first sample of this tick */
	uint32_t n_samples;         /* in: samples in this tick */
	uint32_t flags;             /* out: enum mead_frame_flags */

	struct mead_spike *spikes;  /* in: buffer of spike_capacity records */
	uint32_t spike_capacity;    /* in */
	uint32_t n_spikes;          /* out: records written, sample-ordered */
	uint32_t spikes_dropped;    /* out: spikes that did not fit */

	int16_t *raw;               /* in: NULL unless raw is wanted; n_samples x raw_channels, interleaved */
	uint32_t raw_channels;      /* in */
	uint32_t raw_samples;       /* out: sample frames written to raw */
};

enum mead_cap_flags {
	MEAD_CAP_STIMULATE  = 1u << 0, /* accepts write_stim */
	MEAD_CAP_RAW        = 1u << 1, /* can fill frame.raw */
	MEAD_CAP_SIMULATED  = 1u << 2, /* no hardware behind it (twin, null, replay) */
	MEAD_CAP_PLASTICITY = 1u << 3, /* MEAD_CTL_LEARNING changes something */
	MEAD_CAP_RESETTABLE = 1u << 4, /* MEAD_CTL_RESET_STATE changes something */
};

struct mead_driver_caps {
	uint32_t electrode_count;     /* electrodes the driver reports spikes for */
	uint32_t sample_rate_hz;      /* acquisition clock */
	uint32_t raw_channels;        /* 0 when no raw data */
	float uv_per_count;           /* raw counts to microvolts */
	uint32_t max_spikes_per_tick_hint; /* 0: the loop picks a default */
	uint32_t flags;               /* enum mead_cap_flags */
	/* What the device itself can do; the safety layer also applies the
	 * configured limits.  0 means "no stimulation". */
	float max_amplitude_ua;
	uint32_t max_phase_us;
	uint32_t max_pulses_per_tick;
	/* Simulated cultures: how many neurons each electrode records (electrode_count
	 * entries, owned by the driver, valid until close); NULL for hardware. */
	const uint32_t *units_per_electrode;
};

/* Electrode layout as configured (see config/layout). */
struct mead_electrode {
	uint16_t row, col;
	float x_um, y_um;             /* centre, from the top-left electrode */
	char label[8];
	bool excluded;                /* reference/ground: never stimulated */
};

struct mead_layout_view {
	uint32_t rows, cols;
	uint32_t count;               /* electrodes present (rows*cols minus absent ones) */
	float pitch_um;
	const struct mead_electrode *electrodes;
};

enum mead_param_type {
	MEAD_PARAM_INT = 1,
	MEAD_PARAM_DOUBLE,
	MEAD_PARAM_BOOL,
	MEAD_PARAM_STRING,
};

/* A driver option.  The daemon validates driver.options.<key> against these
 * (type, range) and reports errors with file:line:column before open(). */
struct mead_param_spec {
	const char *key;              /* NULL terminates the table */
	enum mead_param_type type;
	const char *default_value;    /* as text; NULL means required */
	double min, max;              /* numeric range, inclusive; ignored when min > max */
	const char *help;
};

struct mead_driver_param {
	const char *key;
	const char *value;            /* validated text; defaults already applied */
};

struct mead_driver_config {
	uint32_t abi_version;         /* MEAD_DRIVER_ABI_VERSION of the daemon */
	uint32_t period_us;           /* tick period, 1 µs resolution */
	uint32_t period_ns;           /* the same, in ns (period_us * 1000 unless sub-µs) */
	uint64_t seed;
	bool virtual_clock;           /* paced as fast as possible, not by the wall clock */
	bool want_raw;
	const struct mead_layout_view *layout;
	const struct mead_driver_param *params;
	size_t n_params;
};

/* Between-tick commands, driven by protocols.  A rig answers -EOPNOTSUPP to
 * what it cannot do; the loop then treats the command as a marker only. */
enum mead_driver_control {
	MEAD_CTL_RESET_STATE = 1,  /* value ignored: membranes, traces, refractory state */
	MEAD_CTL_LEARNING    = 2,  /* value 0/1: plasticity off/on */
	MEAD_CTL_SAMPLE_END  = 3,  /* value ignored: end-of-sample housekeeping (synaptic scaling) */
	MEAD_CTL_SNAPSHOT_SAVE    = 4, /* value: slot 0..3; copy the learned state (weights) aside */
	MEAD_CTL_SNAPSHOT_RESTORE = 5, /* value: slot 0..3; bring a saved copy back */
};

struct mead_driver_ops {
	uint32_t abi_version;         /* MEAD_DRIVER_ABI_VERSION */
	uint32_t ops_size;            /* sizeof(struct mead_driver_ops) the driver was built with */
	const char *name;
	const char *description;
	const struct mead_param_spec *params;

	/* main, may block.  On failure returns -errno, writes a message for a
	 * person into err and leaves *ret_state untouched. */
	int (*open)(const struct mead_driver_config *cfg, void **ret_state, char *err, size_t err_len);

	/* main, may block.  Must leave the hardware safe (outputs off).  NULL ok. */
	void (*close)(void *state);

	/* main. */
	int (*get_caps)(void *state, struct mead_driver_caps *ret_caps);

	/* main, may block: last preparation before the first tick (arm
	 * acquisition, pre-fault buffers).  The first read_frame is tick 0. */
	int (*start)(void *state, char *err, size_t err_len);

	/* rt, must not block.  Pulses for this tick, sample-ordered, already
	 * checked by the safety layer. */
	int (*write_stim)(void *state, uint64_t tick, const struct mead_stim_pulse *pulses, uint32_t n);

	/* rt, must not block.  Fill frame with what the tick produced.
	 * -ENODEV: device gone (the loop stops stimulation and reports it);
	 * other negative values: a fault for this tick. */
	int (*read_frame)(void *state, uint64_t tick, struct mead_frame *frame);

	/* rt, between ticks, must not block; NULL or -EOPNOTSUPP: marker only. */
	int (*control)(void *state, enum mead_driver_control op, int64_t value);

	/* any, must not block: zero every output now. */
	int (*stop_outputs)(void *state);

	/* main, may block: after the last tick; acquisition stopped, outputs off. */
	int (*stop)(void *state);

	/* main or the status thread (never rt): a JSON object describing the
	 * driver's state for status output, NUL-terminated; returns length or -errno. */
	int (*describe)(void *state, char *buf, size_t len);
};

typedef const struct mead_driver_ops *(*mead_driver_entry_fn)(void);

/* The one symbol a driver module exports. */
const struct mead_driver_ops *mead_driver_entry(void);

/*
 * Typed readers of a driver's options.  The daemon has checked every value
 * against the param table (type and range), applied the defaults, and
 * written booleans as "true" or "false" whatever the configuration said
 * (yes, on, True ...), so a driver reads them back with these and nothing
 * else.  def is returned for a key the table does not declare.
 */
static inline const char *mead_driver_param_get(const struct mead_driver_config *cfg, const char *key)
{
	for (size_t i = 0; cfg->params && i < cfg->n_params; i++) {
		const char *a = cfg->params[i].key, *b = key;
		while (*a && *a == *b) { a++; b++; }
		if (*a == '\0' && *b == '\0')
			return cfg->params[i].value;
	}
	return NULL;
}

static inline const char *mead_driver_param_string(const struct mead_driver_config *cfg, const char *key,
						   const char *def)
{
	const char *v = mead_driver_param_get(cfg, key);
	return v ? v : def;
}

static inline bool mead_driver_param_bool(const struct mead_driver_config *cfg, const char *key, bool def)
{
	const char *v = mead_driver_param_get(cfg, key);
	if (!v)
		return def;
	return v[0] == 't' && v[1] == 'r' && v[2] == 'u' && v[3] == 'e' && v[4] == '\0';
}

static inline int64_t mead_driver_param_int(const struct mead_driver_config *cfg, const char *key, int64_t def)
{
	const char *v = mead_driver_param_get(cfg, key);
	return v ? (int64_t)strtoll(v, NULL, 0) : def;
}

static inline double mead_driver_param_double(const struct mead_driver_config *cfg, const char *key, double def)
{
	const char *v = mead_driver_param_get(cfg, key);
	return v ? strtod(v, NULL) : def;
}

/* How a module exports its entry point (modules are built with hidden
 * visibility):  MEAD_DRIVER_EXPORT(my_ops)  */
#define MEAD_DRIVER_EXPORT(ops) \
	__attribute__((visibility("default"))) const struct mead_driver_ops *mead_driver_entry(void) \
	{ \
		return &(ops); \
	}

#ifdef __cplusplus
}
#endif
