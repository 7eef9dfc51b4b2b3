/* SPDX-License-Identifier: MIT */
/*
 * Shared signal path of the rig drivers: counts to microvolts, stimulation
 * artifact blanking or subtraction, online spike detection.  Pure
 * computation: no I/O, no allocation after mead_sig_new(), bounded work per
 * sample, safe to call from the real-time thread.  The samples handed in are
 * only read: raw keeps what the amplifier gave, and what the detector did
 * about artifacts goes out as BLANK events.
 *
 * Noise is estimated per channel in the style of MeaBench's LimAda: the RMS
 * of consecutive short windows is kept in a ring and the estimate is a low
 * percentile of that ring.  A burst raises the RMS of the few windows it
 * covers, which sit above the percentile, so the threshold does not climb
 * with activity the way a running RMS or variance would.
 *
 * Artifacts: after each pulse the affected channels are blanked for a hard
 * window (blank_pre_us before to blank_us after the pulse).  With
 * MEAD_SIG_ARTIFACT_SALPA detection then goes on, instead of staying off,
 * on the signal minus a local cubic fit, in the style of SALPA (Wagenaar &
 * Potter 2002, J Neurosci Methods 120:113-120): the fit over 2N+1 samples
 * centred on each sample is updated recursively in O(1), anchored at the
 * window's start right after the blank, and subtraction ends when the fit
 * is back at the baseline or after salpa_max_us.  The centred fit needs N
 * samples after the one it cleans, so spikes in a subtraction window come
 * out about salpa_half_width_us later than others.
 *
 * Waveforms (cfg.waveforms): each detected spike's cutout, waveform_pre_us
 * before to waveform_post_us after its sample, of the signal the detector
 * looked at (float µV, the slow baseline removed; in a SALPA window the
 * artifact-subtracted signal; blanked samples 0 and flagged), taken from a
 * per-channel history allocated by mead_sig_new(), so the samples before
 * a spike come whatever block they were in.  A waveform goes into the
 * frame once its last sample has been processed: at most
 * waveform_post_us after the spike (with SALPA, the window's lag later).
 * A spike whose post samples never come (the run ended, mead_sig_reset())
 * has no waveform and is counted in waveforms_unfinished; across a gap in
 * the stream the waveform is cut with what there is and flagged
 * MEAD_WAVEFORM_MISSING.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mead/driver.h"

enum mead_sig_polarity {
	MEAD_SIG_NEG = 1,
	MEAD_SIG_POS = 2,
	MEAD_SIG_BOTH = 3,
};

enum mead_sig_artifact {
	MEAD_SIG_ARTIFACT_BLANK = 0,  /* detection off over the hard window only */
	MEAD_SIG_ARTIFACT_SALPA = 1,  /* then detection on the signal minus a local cubic fit */
};

struct mead_sig_config {
	uint32_t channels;
	uint32_t sample_rate_hz;
	double threshold_k;          /* threshold = k x noise estimate */
	enum mead_sig_polarity polarity;
	uint32_t dead_time_us;       /* no second spike on a channel within this */
	uint32_t peak_window_us;     /* how long after a crossing the extremum is sought */
	uint32_t noise_window_us;    /* length of one RMS window */
	uint32_t noise_windows;      /* windows in the ring */
	double noise_percentile;     /* 0..1, which window RMS is the estimate */
	uint32_t warmup_windows;     /* no detection before this many windows */
	uint32_t blank_us;           /* blanking after each pulse */
	uint32_t blank_pre_us;       /* blanking before each pulse (DAC/switch lead) */
	enum mead_sig_artifact artifact;
	uint32_t salpa_half_width_us; /* N: the fit window is 2N+1 samples */
	uint32_t salpa_max_us;       /* subtraction ends at the latest this long after the pulse */
	double salpa_threshold;      /* decayed: the fit within this many noise estimates of the baseline */
	float salpa_rail_uv;         /* |µV| at or beyond which a sample is pegged; 0: the converter's limits only */
	const uint16_t *electrode_of_channel; /* NULL: channel i is electrode i */
	bool waveforms;              /* cut a waveform around each spike */
	uint32_t waveform_pre_us;    /* before the spike's sample: a whole number of samples */
	uint32_t waveform_post_us;   /* after it: a whole number of samples */
};

struct mead_sig;

/* Fills cfg with the defaults the drivers document. */
void mead_sig_config_defaults(struct mead_sig_config *cfg, uint32_t channels, uint32_t rate_hz);

/* main thread: allocates everything the detector will ever use.  NULL and
 * errno set on bad configuration or no memory. */
struct mead_sig *mead_sig_new(const struct mead_sig_config *cfg);
void mead_sig_free(struct mead_sig *s);

/* Forget every estimate and state (a new run). */
void mead_sig_reset(struct mead_sig *s);

/* The converter's limits on channel ch (every channel: UINT32_MAX) in µV:
 * a sample at or beyond them is pegged (the amplifier or the ADC at its
 * rail) and, inside a SALPA window, blanked rather than fitted.  Without a
 * call only salpa_rail_uv applies.  main thread, after mead_sig_new(). */
void mead_sig_set_rail(struct mead_sig *s, uint32_t ch, float lo_uv, float hi_uv);

/*
 * Blank channel ch (or every channel when ch == UINT32_MAX) around a pulse
 * starting at sample `pulse_sample`, for the configured window: spike
 * detection is off there (with SALPA: then runs on the artifact-subtracted
 * signal), and the next mead_sig_process() reports the window as one BLANK
 * event, value 0, on the channel's electrode or MEAD_EVENT_ALL_ELECTRODES:
 * one event per call (identical ones reported once), even where windows
 * overlap; the detector blanks their union.  The part of a window before
 * the first sample not yet processed cannot be blanked any more: it is left
 * out of the window and of the event, and counted in windows_late.  rt.
 */
void mead_sig_blank_pulse(struct mead_sig *s, uint32_t ch, uint64_t pulse_sample);

/*
 * Process n sample frames of interleaved microvolts (n x channels) whose
 * first frame is sample first_sample.  uv is only read: raw taken from it
 * keeps what the amplifier gave, artifacts included.  Detected spikes are
 * appended to the frame's spikes in sample order (those that do not fit
 * counted in spikes_dropped), blanking windows to its events.  Spikes whose
 * peak search runs past the end of the block come out with a later block,
 * as do those of a SALPA window (the fit looks N samples ahead).  BLANK
 * events that do not fit the frame's event buffer wait for the next call
 * (n may be 0 just to hand them over); only those that overflow the
 * detector's own queue are lost, and counted.  A first_sample other than
 * the end of the previous block is a gap: windows in progress end there.
 *
 * SALPA windows are reported when they end, as one BLANK event with value 1
 * per window (per merged window on every electrode when blanking is for
 * all electrodes): from the end of the hard blank to the sample where
 * detection is back on the plain signal.  Inside it detection runs on the
 * signal minus the fit, except where the amplifier is pegged or the fit is
 * not yet good, where it is off.
 */
void mead_sig_process(struct mead_sig *s, uint64_t first_sample, const float *uv, uint32_t n,
		      struct mead_frame *f);

/* The current threshold of a channel in µV (the magnitude on each side
 * detected; 0 while warming up) and its noise estimate (0 until the
 * first): any thread, as last published by the one processing. */
float mead_sig_threshold_uv(const struct mead_sig *s, uint32_t ch);
float mead_sig_noise_uv(const struct mead_sig *s, uint32_t ch);

/*
 * Per-electrode thresholds (enum mead_threshold_mode, value k or µV) for
 * every channel recording electrode (MEAD_EVENT_ALL_ELECTRODES: all of
 * them); kept across mead_sig_reset().  A multiple of the noise follows
 * the estimate from the next window on (or, still warming up, once there
 * is one); a fixed one holds from the next sample processed.  Returns the
 * channels changed, -EINVAL for a value out of range, -ENOENT when no
 * channel records the electrode.  rt: bounded, no allocation.
 */
int mead_sig_set_threshold(struct mead_sig *s, uint32_t electrode, int mode, double value);
int mead_sig_get_threshold(const struct mead_sig *s, uint32_t ch, int *ret_mode, double *ret_value);

/* The `thresholds` option: "ELECTRODE=VALUE,..." (ELECTRODE an index or
 * all, VALUE as mead_parse_threshold() reads it), applied in order.
 * main thread; -EINVAL with a message in err. */
int mead_sig_set_thresholds(struct mead_sig *s, const char *spec, char *err, size_t err_len);

/* A rig driver's control op, for what the detector does (MEAD_CTL_THRESHOLD);
 * -EOPNOTSUPP for the rest.  rt. */
int mead_sig_control(struct mead_sig *s, enum mead_driver_control op, int64_t value);

/* Adds "detector": {electrodes, noise_uv, threshold_uv, threshold} (per
 * channel; with waveforms also "waveforms": {pre, post, cut, dropped,
 * unfinished, pending}) to the JSON object of length n in buf: the driver's describe().
 * Returns the new length, or -ENOSPC (buf as it was). */
int mead_sig_describe(const struct mead_sig *s, char *buf, size_t len, int n);
uint64_t mead_sig_spike_count(const struct mead_sig *s);
uint64_t mead_sig_blanked_samples(const struct mead_sig *s);

/* BLANK events lost because the detector's queue was full: the frame's
 * event buffer stayed full for many calls in a row. */
uint64_t mead_sig_events_lost(const struct mead_sig *s);

struct mead_sig_counts {
	uint64_t spikes;          /* detected, whether they fitted the frame or not */
	uint64_t blanked;         /* channel-samples with detection off */
	uint64_t subtracted;      /* channel-samples detected on the artifact-subtracted signal */
	uint64_t events_deferred; /* BLANK events that waited for a later frame */
	uint64_t events_lost;     /* BLANK events never reported */
	uint64_t windows_late;    /* blanking windows cut short: they began before the first unprocessed sample */
	uint64_t windows_merged;  /* windows joined to a neighbour: too many pending on one channel */
	uint64_t salpa_runs;      /* SALPA windows, per channel */
	uint64_t salpa_forced;    /* of which ended by salpa_max_us before the artifact had decayed */
	uint64_t waveforms;       /* cut: complete (or cut short by a gap), whether they fitted the frame or not */
	uint64_t waveforms_dropped;    /* of which lost: the frame's buffer or the channel's pending queue was full */
	uint64_t waveforms_unfinished; /* spikes whose post samples never came (the run ended): no waveform */
	uint64_t waveforms_pending;    /* spikes waiting for their post samples now */
};
/* The processing thread (or any once it is stopped); describe() reads
 * published copies. */
void mead_sig_get_counts(const struct mead_sig *s, struct mead_sig_counts *ret);

/* Samples of a waveform window of us microseconds at rate_hz: -EINVAL
 * unless us is a whole number of samples. */
int mead_sig_waveform_samples(uint32_t us, uint32_t rate_hz, uint32_t *ret);

/* Whether the detector cuts waveforms, and their pre and post samples
 * (0, 0 when off). */
bool mead_sig_waveforms(const struct mead_sig *s);
void mead_sig_waveform_window(const struct mead_sig *s, uint32_t *ret_pre, uint32_t *ret_post);

/* Parses "blank" or "salpa"; -EINVAL otherwise. */
int mead_sig_parse_artifact(const char *text, enum mead_sig_artifact *ret);

/* Parses "neg", "pos" or "both"; -EINVAL otherwise. */
int mead_sig_parse_polarity(const char *text, enum mead_sig_polarity *ret);

/* Counts to µV with a first-order calibration: uv = (c - offset) * scale. */
static inline void mead_sig_counts_to_uv_u16(const uint16_t *in, float *out, size_t n,
					     const float *offset, const float *scale, uint32_t channels)
{
	for (size_t i = 0; i < n; i++) {
		uint32_t ch = (uint32_t)(i % channels);
		out[i] = ((float)in[i] - offset[ch]) * scale[ch];
	}
}

static inline void mead_sig_counts_to_uv_s16(const int16_t *in, float *out, size_t n, float scale)
{
	for (size_t i = 0; i < n; i++)
		out[i] = (float)in[i] * scale;
}

/* µV back to signed raw counts for frame.raw, saturating. */
static inline int16_t mead_sig_uv_to_raw(float uv, float uv_per_count)
{
	float c = uv / uv_per_count;
	c += c >= 0 ? 0.5f : -0.5f;
	if (c > 32767.0f)
		return 32767;
	if (c < -32768.0f)
		return -32768;
	return (int16_t)c;
}

/*
 * Detection options every rig driver accepts, for its param table, and the
 * reader that turns them into a mead_sig_config.
 */
#define MEAD_SIG_PARAM_SPECS \
	{ "threshold_k", MEAD_PARAM_DOUBLE, "5", MEAD_THRESHOLD_K_MIN, MEAD_THRESHOLD_K_MAX, "spike threshold in multiples of the noise estimate" }, \
	{ "thresholds", MEAD_PARAM_STRING, "", 1, 0, "per-electrode thresholds over threshold_k: ELECTRODE=VALUE,... (e.g. 12=6x,14=-40uV)" }, \
	{ "polarity", MEAD_PARAM_STRING, "neg", 1, 0, "spike polarity: neg, pos or both" }, \
	{ "dead_time_us", MEAD_PARAM_INT, "1000", 0, 100000, "no second spike on a channel within this time" }, \
	{ "peak_window_us", MEAD_PARAM_INT, "500", 40, 5000, "longest search for the extremum after a crossing" }, \
	{ "noise_window_ms", MEAD_PARAM_INT, "10", 1, 1000, "length of one noise RMS window" }, \
	{ "noise_windows", MEAD_PARAM_INT, "500", 4, 100000, "RMS windows kept for the noise estimate" }, \
	{ "noise_percentile", MEAD_PARAM_DOUBLE, "0.5", 0.01, 0.99, "which window RMS becomes the noise estimate" }, \
	{ "warmup_windows", MEAD_PARAM_INT, "10", 1, 100000, "windows needed before detection starts" }, \
	{ "blank_us", MEAD_PARAM_INT, "2000", 0, 1000000, "hard artifact blanking after each pulse" }, \
	{ "blank_pre_us", MEAD_PARAM_INT, "0", 0, 10000, "hard artifact blanking before each pulse" }, \
	{ "blank_channels", MEAD_PARAM_STRING, "all", 1, 0, "channels blanked after a pulse: all or stimulated" }, \
	{ "artifact", MEAD_PARAM_STRING, "blank", 1, 0, "after the hard blank: blank (nothing more) or salpa (subtract a local cubic fit)" }, \
	{ "salpa_half_width_us", MEAD_PARAM_INT, "3000", 200, 20000, "SALPA: half the fit window (N samples; the window is 2N+1)" }, \
	{ "salpa_max_us", MEAD_PARAM_INT, "20000", 1000, 1000000, "SALPA: subtraction ends at the latest this long after the pulse" }, \
	{ "salpa_threshold", MEAD_PARAM_DOUBLE, "1", 0.1, 20, "SALPA: the artifact has decayed when the fit is this many noise estimates from the baseline" }, \
	{ "salpa_rail_uv", MEAD_PARAM_DOUBLE, "0", 0, 10000000, "SALPA: samples at or beyond this many uV are pegged; 0: the converter's limits" }, \
	MEAD_WAVEFORM_PARAM_SPECS

/* Reads the options above; -EINVAL with a message in err on a bad value.
 * *blank_all tells whether every channel is blanked after a pulse. */
int mead_sig_config_from_params(struct mead_sig_config *sc, const struct mead_driver_config *cfg,
				 bool *blank_all, char *err, size_t err_len);
