/* SPDX-License-Identifier: MIT */
/*
 * mead driver ABI, version 3.
 *
 * A driver is a shared object named mead-driver-<name>.so that exports
 * mead_driver_entry() (MEAD_DRIVER_EXPORT), which returns a pointer to a
 * const vtable.  The daemon finds it by the name given in the configuration
 * (driver.name), checks abi_version, validates the driver's options against
 * its param table and then calls the ops below.  A driver knows only this
 * header and the libraries under lib/: it never logs (errors come back as
 * negative errno values, with a human message where the op has an err
 * buffer, and as events in its frames) and never allocates on the
 * real-time path.
 *
 * Threads:
 *   main  - the daemon's main thread, before the loop starts or after it ended;
 *           may block, may allocate.
 *   rt    - the real-time loop thread; must not block, allocate, take locks or
 *           make syscalls it can avoid.  Each tick, once the tick's samples
 *           are due: control (0..n times, commands between ticks),
 *           read_frame (this tick's samples), control (the protocol's, for
 *           the next tick), write_stim (pulses for the next tick).  Before
 *           the first read_frame, write_stim may be called once with the
 *           pulses of tick 0.
 *   any   - may be called from any thread (a fatal-signal handler
 *           included), concurrently with rt ops; no locks, no allocation.
 *
 * What a driver reports is what the device did: a pulse is recorded as
 * delivered only once the driver knows it started, at the sample it
 * started on; samples the device lost or could not deliver in time are
 * events with their sample ranges, never silence.
 *
 * Version 2 changed write_stim (a result per pulse), the frame (settled
 * pulses, events, late raw samples, the device clock) and the caps (the
 * stimulators' busy time); the daemon refuses modules of version 1.
 *
 * Version 3 added spike waveforms at the end of the frame (waveforms ...)
 * and of the caps (waveform_pre, waveform_post, MEAD_CAP_WAVEFORMS).  The
 * daemon still loads modules of version 2: it hands them cfg.abi_version
 * 2, zeroes the caps before get_caps and never gives them a waveform
 * buffer, so they run as before, without waveforms.
 */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MEAD_DRIVER_ABI_VERSION 3u
/* The oldest version the daemon still loads. */
#define MEAD_DRIVER_ABI_MIN 2u
#define MEAD_DRIVER_ENTRY_SYMBOL "mead_driver_entry"

/* One detected spike.  Same layout as the wire v1 spike record. */
struct mead_spike {
	uint64_t sample;       /* acquisition-clock sample index of the spike itself */
	uint16_t electrode;    /* 0-based index into the configured layout */
	uint16_t flags;
	float amplitude_uv;
};

/* One biphasic stimulation pulse.  The first 24 bytes of the wire v1 stim
 * record.  The second phase has the opposite sign and equal charge. */
struct mead_stim_pulse {
	uint64_t sample;       /* sample index at which the pulse starts */
	uint16_t electrode;
	uint16_t flags;        /* enum mead_stim_flags (on the wire) */
	float amplitude_ua;    /* first phase, signed: negative = cathodic */
	uint32_t phase_us;
	uint32_t interphase_us;
};

/*
 * A spike's waveform (ABI 3, wire v1.2 record kind 6): the signal the
 * detector looked at (baseline removed, or with SALPA the artifact
 * subtracted) around the spike's own sample, as float µV.  The header is
 * followed by pre + 1 + post samples: samples [sample - pre, sample + post].
 * Every record of a run has the same pre and post (the driver's
 * waveform_pre_us and waveform_post_us), so a record is
 * mead_waveform_size(pre, post) bytes.
 */
struct mead_waveform {
	uint64_t sample;       /* the spike's sample (as in its spike record) */
	uint16_t electrode;
	uint16_t flags;        /* enum mead_waveform_flags */
	uint16_t pre;          /* samples before sample */
	uint16_t post;         /* samples after sample */
	float amplitude_uv;    /* the spike record's amplitude */
	uint32_t reserved;     /* 0 */
	/* float uv[pre + 1 + post]; */
};

enum mead_waveform_flags {
	MEAD_WAVEFORM_BLANKED = 1u << 0, /* some samples were blanked (a stimulation artifact): they are 0 */
	MEAD_WAVEFORM_MISSING = 1u << 1, /* some samples do not exist (before the run's first sample, or lost in a gap): they are 0 */
};

#define MEAD_WAVEFORM_MAX_SAMPLES 1024u   /* pre + 1 + post at most */

static inline uint32_t mead_waveform_size(uint32_t pre, uint32_t post)
{
	return (uint32_t)(sizeof(struct mead_waveform) + 4u * (pre + 1u + post));
}

enum mead_stim_flags {
	MEAD_STIM_LATE = 1u << 0,  /* started after the sample it was asked for (wire: sample is when it started) */
};

/* One event: protocol marks, data losses, device changes, stimulation
 * refused, blanking windows.  Same layout as the wire v1.1 event record;
 * records of v1.0 were the first 16 bytes. */
struct mead_event {
	uint64_t sample;       /* first sample the event concerns */
	uint32_t type;         /* enum mead_event_type */
	int32_t value;
	uint32_t samples;      /* length of the sample range it covers; 0: a point in time */
	uint16_t electrode;    /* STIM_REFUSED, BLANK: the electrode (MEAD_EVENT_ALL_ELECTRODES); DIGITAL: the line; others: 0 */
	uint16_t reserved;
};

#define MEAD_EVENT_ALL_ELECTRODES 0xffffu

enum mead_event_type {
	MEAD_EVENT_RUN_START    = 1,  /* value: sample rate in Hz */
	MEAD_EVENT_RUN_END      = 2,
	MEAD_EVENT_TRIAL_START  = 3,  /* value: trial index */
	MEAD_EVENT_TRIAL_END    = 4,  /* value: trial index */
	MEAD_EVENT_LABEL        = 5,  /* value: class shown */
	MEAD_EVENT_PHASE        = 6,  /* value: enum mead_phase */
	MEAD_EVENT_ITEM         = 7,  /* value: dataset index of the stimulus */
	/* v1.1 */
	MEAD_EVENT_STIM_REFUSED = 8,  /* sample: the pulse's requested start; electrode; value: enum mead_stim_reason */
	MEAD_EVENT_OVERFLOW     = 9,  /* the device's or the kernel's buffer overflowed: samples [sample, +samples) are lost */
	MEAD_EVENT_GAP          = 10, /* samples [sample, +samples) never arrived (counter jump); delivered as zeros */
	MEAD_EVENT_LATE         = 11, /* samples [sample, +samples) were not ready when their tick ran; they come later */
	MEAD_EVENT_DEVICE_GONE  = 12, /* from sample on, no device: stimulation stopped, samples zero until DEVICE_BACK */
	MEAD_EVENT_DEVICE_BACK  = 13, /* the device streams again from sample; samples: how many were lost while away */
	MEAD_EVENT_BLANK        = 14, /* a stimulation artifact on electrode over [sample, +samples): value 0 detection off, 1 artifact subtracted (SALPA) */
	MEAD_EVENT_STALL        = 15, /* the device stalled its sample endpoint; value: times cleared so far */
	MEAD_EVENT_STIM_LOST    = 16, /* the device stopped its outputs by itself (its host watchdog): value: pulses it dropped */
	MEAD_EVENT_UNREAD       = 17, /* samples [sample, +samples) of the run's last ticks had not come when it ended: lost */
	MEAD_EVENT_THRESHOLD    = 18, /* electrode's spike threshold changed from sample on; value: mead_threshold_event_value() */
	MEAD_EVENT_DIGITAL      = 19, /* a digital input line seen at level value (0/1) at sample; electrode: the line number */
};

enum mead_phase {
	MEAD_PHASE_TRAIN = 0,
	MEAD_PHASE_TEST  = 1,
	MEAD_PHASE_REST  = 2,
};

_Static_assert(sizeof(struct mead_spike) == 16, "wire v1 spike record is 16 bytes");
_Static_assert(sizeof(struct mead_stim_pulse) == 24, "the pulse is the first 24 bytes of the wire v1 stim record");
_Static_assert(sizeof(struct mead_event) == 24, "wire v1.1 event record is 24 bytes");
_Static_assert(sizeof(struct mead_waveform) == 24, "wire v1.2 waveform record header is 24 bytes");

/* What became of a pulse. */
enum mead_stim_status {
	MEAD_STIM_DELIVERED = 0,   /* started at result.sample (the requested sample, or later) */
	MEAD_STIM_PENDING   = 1,   /* handed to the device; its fate comes in a later frame's stim_results */
	MEAD_STIM_REFUSED   = 2,   /* never started; result.reason says why */
};

/* Why a pulse was refused.  The driver's reasons first, then the loop's. */
enum mead_stim_reason {
	MEAD_STIM_REASON_NONE = 0,
	MEAD_STIM_REASON_BUSY = 1,           /* the stimulator was still playing an earlier pulse */
	MEAD_STIM_REASON_RANGE = 2,          /* beyond what the device can do (electrode, amplitude, phase) */
	MEAD_STIM_REASON_QUEUE_FULL = 3,     /* no room in the driver's or the device's queue */
	MEAD_STIM_REASON_DEVICE_GONE = 4,    /* no device */
	MEAD_STIM_REASON_IO = 5,             /* the command did not reach the device */
	MEAD_STIM_REASON_CANCELLED = 6,      /* dropped before it started (outputs stopped, host watchdog) */
	MEAD_STIM_REASON_UNKNOWN = 7,        /* sent, but the device went away before saying what it did */
	MEAD_STIM_REASON_TOO_LATE = 8,       /* its start had passed and the device cannot start it later */
	MEAD_STIM_REASON_UNSUPPORTED = 9,    /* the driver cannot stimulate */
	/* refused by the loop before any driver call */
	MEAD_STIM_REASON_SAFETY = 32,        /* a safety limit (value + verdict, see docs/safety.md) */
	MEAD_STIM_REASON_TICK_LIMIT = 64,    /* more pulses in one tick than the driver takes (caps.max_pulses_per_tick) */
	MEAD_STIM_REASON_OVERLAP = 65,       /* it would overlap another pulse on the same stimulator */
	MEAD_STIM_REASON_NO_DEVICE = 66,     /* the device was gone when the pulse was due */
};

/* The outcome of one pulse: write_stim fills one per pulse it is given,
 * read_frame one per pending pulse that has settled since. */
struct mead_stim_result {
	struct mead_stim_pulse pulse;   /* as asked for */
	uint64_t sample;                /* DELIVERED: the sample its first phase started on */
	uint16_t status;                /* enum mead_stim_status */
	uint16_t reason;                /* enum mead_stim_reason when REFUSED */
	uint32_t reserved;
};

enum mead_frame_flags {
	MEAD_FRAME_OVERFLOW    = 1u << 0, /* the device lost samples (buffer overflow) */
	MEAD_FRAME_DEVICE_GONE = 1u << 1, /* the device disappeared; outputs are off */
	MEAD_FRAME_GAP         = 1u << 2, /* samples missing (counter jump) */
	MEAD_FRAME_LATE        = 1u << 3, /* fewer samples than the tick asked for were ready */
};

/*
 * What one tick produced.  The loop owns every buffer; the driver fills
 * them.  Samples of tick t are [first_sample, first_sample + n_samples):
 * the loop computes them from the tick counter, the period and the sample
 * rate, so a tick may hold zero samples (period shorter than a sample).
 * A driver that could not read all of them says so (MEAD_FRAME_LATE and a
 * LATE event) and hands them over in a later frame, in order: spikes keep
 * their own samples, raw frames start at raw_first_sample.
 */
struct mead_frame {
	uint64_t first_sample;      /* in: first sample of this tick */
	uint32_t n_samples;         /* in: samples in this tick */
	uint32_t flags;             /* out: enum mead_frame_flags */

	struct mead_spike *spikes;  /* in: buffer of spike_capacity records */
	uint32_t spike_capacity;    /* in */
	uint32_t n_spikes;          /* out: records written, sample-ordered */
	uint32_t spikes_dropped;    /* out: spikes that did not fit */

	int16_t *raw;               /* in: NULL unless raw is wanted; raw_capacity x raw_channels, interleaved */
	uint32_t raw_channels;      /* in */
	uint32_t raw_capacity;      /* in: sample frames raw holds (several ticks: late samples catch up) */
	uint32_t raw_samples;       /* out: sample frames written to raw */
	uint64_t raw_first_sample;  /* out: the sample of raw's first frame */

	struct mead_stim_result *stim_results; /* in: buffer; out: pending pulses settled since the last frame */
	uint32_t stim_result_capacity;         /* in */
	uint32_t n_stim_results;               /* out */

	struct mead_event *events;  /* in: buffer; out: data-loss and device events, sample ranges included */
	uint32_t event_capacity;    /* in */
	uint32_t n_events;          /* out */
	uint32_t events_dropped;    /* out: events that did not fit (mead_frame_event counts them) */

	/* out, MEAD_CAP_DEVICE_CLOCK: samples the device has acquired by now
	 * (since sample 0 of the run), read or not: the device's clock, which
	 * the loop follows. */
	uint64_t acquired;

	/* ABI 3, MEAD_CAP_WAVEFORMS.  Complete waveforms, each
	 * waveform_size bytes (struct mead_waveform and its samples), in the
	 * order they were completed (per electrode, sample-ordered); a
	 * spike's waveform comes once its post samples are in, so up to
	 * caps.waveform_post samples after the spike record.  NULL: the loop
	 * wants none (an ABI-2 module, or no MEAD_CAP_WAVEFORMS). */
	void *waveforms;            /* in: waveform_capacity records */
	uint32_t waveform_size;     /* in: mead_waveform_size(caps.waveform_pre, caps.waveform_post) */
	uint32_t waveform_capacity; /* in */
	uint32_t n_waveforms;       /* out */
	uint32_t waveforms_dropped; /* out: complete waveforms that did not fit, or that the driver could not keep */
};

enum mead_cap_flags {
	MEAD_CAP_STIMULATE    = 1u << 0, /* accepts write_stim */
	MEAD_CAP_RAW          = 1u << 1, /* can fill frame.raw */
	MEAD_CAP_SIMULATED    = 1u << 2, /* no hardware behind it (twin, null, replay) */
	MEAD_CAP_PLASTICITY   = 1u << 3, /* MEAD_CTL_LEARNING changes something */
	MEAD_CAP_RESETTABLE   = 1u << 4, /* MEAD_CTL_RESET_STATE changes something */
	MEAD_CAP_DEVICE_CLOCK = 1u << 5, /* frame.acquired is the device's own sample clock */
	MEAD_CAP_THRESHOLDS   = 1u << 6, /* detects spikes from a signal: MEAD_CTL_THRESHOLD */
	MEAD_CAP_WAVEFORMS    = 1u << 7, /* ABI 3: cuts spike waveforms into frame.waveforms (caps.waveform_pre/post) */
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
	uint32_t max_pulses_per_tick; /* the loop refuses the rest of a tick's pulses */
	/* Simulated cultures: how many neurons each electrode records (electrode_count
	 * entries, owned by the driver, valid until close); NULL for hardware. */
	const uint32_t *units_per_electrode;
	/*
	 * The stimulators.  0: every electrode has its own (pulses on
	 * different electrodes never collide).  n > 0: n stimulators, each
	 * plays one pulse at a time; electrode e is wired to
	 * stimulator_of_electrode[e] (NULL: all to stimulator 0).  A pulse
	 * keeps its stimulator busy for its two phases and interphase gap plus
	 * stim_guard_us, and stim_switch_us more when the next pulse on it is
	 * on another electrode (routing settles); the safety layer refuses
	 * overlap before write_stim.
	 */
	uint32_t stimulators;
	const uint16_t *stimulator_of_electrode;
	uint32_t stim_guard_us;
	uint32_t stim_switch_us;
	/* ABI 3, MEAD_CAP_WAVEFORMS: samples of a waveform before and after
	 * its spike's sample. */
	uint32_t waveform_pre, waveform_post;
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
	uint32_t abi_version;         /* the module's own version (MEAD_DRIVER_ABI_MIN..MEAD_DRIVER_ABI_VERSION) */
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
	MEAD_CTL_THRESHOLD   = 6,  /* value: mead_ctl_threshold_pack(); -ENOENT: no channel records that electrode */
};

/* A spike threshold: a multiple of the electrode's noise estimate, or a
 * fixed magnitude in µV (applied on each side the polarity detects). */
enum mead_threshold_mode {
	MEAD_THRESHOLD_NOISE = 1,
	MEAD_THRESHOLD_UV    = 2,
};
#define MEAD_THRESHOLD_K_MIN 2.0
#define MEAD_THRESHOLD_K_MAX 20.0
#define MEAD_THRESHOLD_UV_MAX 100000.0

/* electrode MEAD_EVENT_ALL_ELECTRODES: every electrode */
static inline int64_t mead_ctl_threshold_pack(uint16_t electrode, enum mead_threshold_mode mode, float value)
{
	uint32_t bits;
	memcpy(&bits, &value, sizeof(bits));
	return (int64_t)(((uint64_t)bits << 32) | ((uint64_t)(mode & 0xff) << 16) | electrode);
}

static inline void mead_ctl_threshold_unpack(int64_t packed, uint16_t *electrode, enum mead_threshold_mode *mode,
					     float *value)
{
	uint32_t bits = (uint32_t)((uint64_t)packed >> 32);
	*electrode = (uint16_t)(packed & 0xffff);
	*mode = (enum mead_threshold_mode)(((uint64_t)packed >> 16) & 0xff);
	memcpy(value, &bits, sizeof(*value));
}

struct mead_driver_ops {
	uint32_t abi_version;         /* MEAD_DRIVER_ABI_VERSION */
	uint32_t ops_size;            /* sizeof(struct mead_driver_ops) the driver was built with */
	const char *name;
	const char *description;
	const struct mead_param_spec *params;

	/* main, may block.  On failure returns -errno, writes a message for a
	 * person into err and leaves *ret_state untouched.  A stimulating
	 * driver leaves its outputs at zero when it returns. */
	int (*open)(const struct mead_driver_config *cfg, void **ret_state, char *err, size_t err_len);

	/* main, may block.  Must leave the hardware safe (outputs off).  NULL ok. */
	void (*close)(void *state);

	/* main. */
	int (*get_caps)(void *state, struct mead_driver_caps *ret_caps);

	/* main, may block: arm acquisition.  Sample 0 of the run is the first
	 * sample the device acquires after this call; the daemon starts the
	 * loop right after it, and the first read_frame is tick 0. */
	int (*start)(void *state, char *err, size_t err_len);

	/* rt, must not block.  Pulses for the next tick, sample-ordered, already
	 * checked by the safety layer (limits, busy stimulators, the per-tick
	 * count).  Called every tick a stimulating driver runs, with n = 0 when
	 * there are none, so a driver that streams its stimulation keeps the
	 * stream fed from here.  Fills results[i] for pulses[i]: DELIVERED with the sample it
	 * starts on, PENDING when only the device can tell, or REFUSED with a
	 * reason.  Returns 0, or -errno for a fault (the results still say
	 * what became of each pulse). */
	int (*write_stim)(void *state, uint64_t tick, const struct mead_stim_pulse *pulses, uint32_t n,
			  struct mead_stim_result *results);

	/* rt, must not block.  Fill frame with what the tick produced.
	 * -ENODEV: device gone (the loop stops stimulation and reports it);
	 * -EPIPE: acquisition has ended for good (the loop ends the run as a
	 * driver fault); other negative values: a fault for this tick. */
	int (*read_frame)(void *state, uint64_t tick, struct mead_frame *frame);

	/* rt, between ticks, must not block; NULL or -EOPNOTSUPP: marker only. */
	int (*control)(void *state, enum mead_driver_control op, int64_t value);

	/* any, must not block: zero every output now and drop every pulse not
	 * yet started. */
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

/*
 * The spike waveform options (ABI 3).  A rig driver's signal path reads
 * them (lib/signal); a driver with no raw signal declares them too, so
 * that asking it for waveforms gets a reason rather than "unknown option",
 * and refuses them at open with mead_driver_no_waveforms().
 */
#define MEAD_WAVEFORM_PARAM_SPECS \
	{ "waveforms", MEAD_PARAM_BOOL, "false", 1, 0, "cut each spike's waveform and stream it (topic waveforms) and record it" }, \
	{ "waveform_pre_us", MEAD_PARAM_INT, "1000", 0, 20000, "waveforms: length before the spike's sample (whole samples)" }, \
	{ "waveform_post_us", MEAD_PARAM_INT, "2000", 0, 40000, "waveforms: length after the spike's sample (whole samples)" }

/* -EINVAL with a message naming the driver when cfg asks for
 * waveforms, else 0. */
static inline int mead_driver_no_waveforms(const struct mead_driver_config *cfg, const char *driver, char *err,
					   size_t err_len)
{
	if (!mead_driver_param_bool(cfg, "waveforms", false))
		return 0;
	if (err && err_len)
		snprintf(err, err_len, "waveforms: driver %s has no raw signal, so no spike waveforms (set waveforms: false)",
			 driver);
	return -EINVAL;
}

/* Appends an event to a frame; false (and the event counted in
 * events_dropped, which the loop adds to its own count) when the buffer is
 * full. */
static inline bool mead_frame_event(struct mead_frame *f, uint32_t type, uint64_t sample, uint64_t samples,
				    uint16_t electrode, int32_t value)
{
	if (!f->events || f->n_events >= f->event_capacity) {
		f->events_dropped++;
		return false;
	}
	f->events[f->n_events++] = (struct mead_event){
		.sample = sample, .type = type, .value = value,
		.samples = samples > UINT32_MAX ? UINT32_MAX : (uint32_t)samples,
		.electrode = electrode,
	};
	return true;
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
