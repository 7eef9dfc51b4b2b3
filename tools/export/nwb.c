/* SPDX-License-Identifier: MIT */
/*
 * --to nwb: an NWB 2.6.0 file (HDF5, laid out as pynwb/hdmf write it).
 *
 *   /acquisition/raw                    ElectricalSeries: int16 counts, conversion to volts
 *   /general/devices/<driver>           Device
 *   /general/extracellular_ephys/mea    ElectrodeGroup
 *   /general/extracellular_ephys/electrodes   the layout: rel_x, rel_y (um), label, excluded
 *   /units                              Units: one row per electrode, its threshold crossings
 *                                       (spike_times, amplitude_uv, spike_flags, electrodes)
 *   /intervals/trials                   TimeIntervals: trial_start..trial_end, item, label, phase
 *   /intervals/stimulation              TimeIntervals: every delivered pulse
 *   /intervals/events                   TimeIntervals: every event record, sample range included
 *   /intervals/invalid_times            TimeIntervals: samples the rig lost (overflow, gap, device away)
 *   /general/data_collection            the configuration as applied (YAML)
 *   /general/notes                      the export's account (recording.json of the npy export)
 *
 * Times are seconds from sample 0 of the run (sample / sample_rate_hz).
 * Two passes over the recording: the first counts (spikes per electrode,
 * raw frames), so the second writes fixed-size datasets and the Units
 * table's concatenated columns in electrode order without holding spikes
 * in memory.
 *
 * Spike waveforms, when the recording has them (wire 1.2), are one
 * SpikeEventSeries per electrode that has any:
 *   /processing/ecephys/waveforms_<label>   data float32 [n, pre + 1 + post] µV
 *                                           (conversion 1e-6: volts), timestamps
 *                                           of the spikes' samples, electrodes
 *                                           the one row of the electrodes table
 * A waveform is not kept per unit in /units: not every spike has one (the
 * last of a run, or one dropped, does not).  New event types
 * (threshold changes, digital input edges) need nothing here: every event
 * record becomes a row of /intervals/events, named by
 * mead_event_type_name().
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "lib/core/time.h"
#include "mead-build-config.h"
#include "tools/export/export.h"
#include "tools/export/h5.h"

#define NWB_VERSION "2.6.0"
#define ELECTRODES_PATH "/general/extracellular_ephys/electrodes"
#define GROUP_PATH "/general/extracellular_ephys/mea"
#define RAW_BUF_FRAMES 65536u

/* A per-spike column of the Units table.  Spikes come in time order,
 * the column holds them electrode by electrode: each electrode's slice
 * starts at the sum of the earlier electrodes' counts (from the first
 * pass) and is filled through a small buffer. */
struct ragged {
	const char *name;
	hid_t d, mtype;
	size_t elem;
	uint8_t *buf;    /* electrodes x cap elements */
};

struct units {
	uint32_t n, cap;
	uint64_t *start, *written;
	uint32_t *fill;
	struct ragged col[3];
	size_t ncol;
	struct h5table t;
};

enum { S_START, S_STOP, S_EL, S_AMP, S_PHASE, S_IP, S_SAMPLE, S_REQ, S_LATE, S_FLAGS, S_N };
enum { E_START, E_STOP, E_SAMPLE, E_SAMPLES, E_TYPE, E_NAME, E_VALUE, E_EL, E_DETAIL, E_N };
enum { T_START, T_STOP, T_TRIAL, T_ITEM, T_LABEL, T_PHASE, T_S0, T_S1, T_ENDED, T_N };
enum { I_START, I_STOP, I_REASON, I_S0, I_S1, I_N };

struct nwb {
	struct h5 h;
	struct exp_rec *x;
	const struct exp_counts *pre;
	hid_t raw, raw_ts;
	uint32_t channels;
	uint64_t raw_rows, raw_at;
	int16_t *raw_buf;
	double *ts_buf;
	uint32_t raw_fill;
	struct units u;
	struct h5table stim, ev, trials, invalid;
	struct h5col sc[S_N], ec[E_N], tc[T_N], ic[I_N];
	bool with_trials, with_invalid;
	/* the open trial, the phase in force, the device's absence */
	bool trial_open;
	uint64_t trial_sample;
	int32_t trial_index, trial_item, trial_label, trial_phase, phase;
	bool gone;
	uint64_t gone_sample;
	uint64_t trials_written, invalid_written;
	/* spike waveforms, per electrode: data and timestamps, rows written */
	uint32_t wf_len;
	hid_t *wf_data, *wf_ts;
	uint64_t *wf_at;
	uint64_t wf_written;
};

static const char *phase_name(int32_t p)
{
	switch (p) {
	case MEAD_PHASE_TRAIN: return "train";
	case MEAD_PHASE_TEST: return "test";
	case MEAD_PHASE_REST: return "rest";
	}
	return "";
}

/* ---- Units --------------------------------------------------------- */

static void ragged_add(struct nwb *w, const char *name, hid_t mtype, hid_t ftype, size_t elem, uint64_t total)
{
	struct units *u = &w->u;
	struct ragged *r = &u->col[u->ncol++];
	r->name = name;
	r->mtype = mtype;
	r->elem = elem;
	r->buf = malloc((size_t)(u->n ? u->n : 1) * u->cap * elem);
	r->d = h5_dset(&w->h, u->t.g, name, ftype, total, 0);
	if (!r->buf && !w->h.err) {
		w->h.err = -ENOMEM;
		snprintf(w->h.what, sizeof(w->h.what), "buffers of %s", name);
	}
}

static void ragged_flush(struct nwb *w, uint32_t e)
{
	struct units *u = &w->u;
	for (size_t i = 0; i < u->ncol; i++) {
		struct ragged *r = &u->col[i];
		h5_write_rows(&w->h, r->d, r->mtype, u->start[e] + u->written[e], u->fill[e], 0,
			      r->buf + (size_t)e * u->cap * r->elem);
	}
	u->written[e] += u->fill[e];
	u->fill[e] = 0;
}

/* an index column holding the running sums of counts */
static void write_index(struct nwb *w, struct h5col *c, const uint64_t *counts, uint32_t n)
{
	uint64_t sum = 0;
	for (uint32_t i = 0; i < n; i++) {
		sum += counts ? counts[i] : 1;
		h5_put_u64(&w->h, c, sum);
	}
}

static void units_open(struct nwb *w, hid_t root)
{
	struct units *u = &w->u;
	const struct exp_rec *x = w->x;
	char desc[512];
	uint64_t total = 0;

	u->n = x->layout.count;
	/* about 1 MiB of buffers whatever the electrode count */
	u->cap = u->n ? (1u << 20) / 16 / u->n : 64;
	if (u->cap < 64)
		u->cap = 64;
	if (u->cap > 4096)
		u->cap = 4096;
	u->start = calloc(u->n + 1, sizeof(uint64_t));
	u->written = calloc(u->n + 1, sizeof(uint64_t));
	u->fill = calloc(u->n + 1, sizeof(uint32_t));
	if (!u->start || !u->written || !u->fill) {
		w->h.err = -ENOMEM;
		return;
	}
	for (uint32_t e = 0; e < u->n; e++) {
		u->start[e] = total;
		total += w->pre->spikes_per_electrode[e];
	}
	snprintf(desc, sizeof(desc),
		 "threshold crossings detected by the %s driver, one unit per electrode (not spike-sorted): "
		 "unit i is electrode i of the electrodes table",
		 x->driver_name[0] ? x->driver_name : "recording's");
	h5_table_open(&w->h, &u->t, root, "", "units", "Units", "core", desc);
	ragged_add(w, "spike_times", H5T_NATIVE_DOUBLE, H5T_IEEE_F64LE, sizeof(double), total);
	ragged_add(w, "amplitude_uv", H5T_NATIVE_FLOAT, H5T_IEEE_F32LE, sizeof(float), total);
	ragged_add(w, "spike_flags", H5T_NATIVE_UINT16, H5T_STD_U16LE, sizeof(uint16_t), total);
	static const char *const col_desc[] = {
		"the spike times of each unit, in seconds from sample 0 of the run (sample / rate)",
		"the amplitude of each spike as the detector reported it, in microvolts",
		"the flags of each spike record (wire v1 spike record)",
	};
	for (size_t i = 0; i < u->ncol; i++) {
		struct ragged *r = &u->col[i];
		if (r->d < 0)
			continue;
		h5_typed(&w->h, r->d, "VectorData", "hdmf-common");
		h5_attr_str(&w->h, r->d, "description", col_desc[i]);
		if (u->t.ncols < sizeof(u->t.cols) / sizeof(u->t.cols[0]))
			u->t.cols[u->t.ncols++] = r->name;
	}
	if (u->col[0].d >= 0)
		h5_attr_f64(&w->h, u->col[0].d, "resolution", 1.0 / x->sample_rate_hz);
}

static void units_close(struct nwb *w)
{
	struct units *u = &w->u;
	struct h5col idx, el, el_idx;
	char path[300];

	for (uint32_t e = 0; e < u->n; e++) {
		ragged_flush(w, e);
		if (u->written[e] != w->pre->spikes_per_electrode[e] && !w->h.err) {
			w->h.err = -EIO;
			snprintf(w->h.what, sizeof(w->h.what), "spikes of electrode %u: the file changed while it was read", e);
		}
	}
	for (uint32_t e = 0; e < u->n; e++)
		h5_table_row(&w->h, &u->t, e);
	for (size_t i = 0; i < u->ncol; i++) {
		char name[64];
		snprintf(name, sizeof(name), "%s_index", u->col[i].name);
		snprintf(path, sizeof(path), "/units/%s", u->col[i].name);
		h5_col_open(&w->h, &u->t, &idx, name, "VectorIndex", H5T_NATIVE_UINT64, H5T_STD_U64LE, 8,
			    "the end of each unit's spikes in the column it indexes", false);
		h5_index_target(&w->h, &idx, path);
		write_index(w, &idx, w->pre->spikes_per_electrode, u->n);
		h5_col_close(&w->h, &idx);
		if (u->col[i].d >= 0)
			H5Dclose(u->col[i].d);
		free(u->col[i].buf);
	}
	h5_col_open(&w->h, &u->t, &el, "electrodes", "DynamicTableRegion", H5T_NATIVE_INT32, H5T_STD_I32LE, 4,
		    "the electrode of each unit (a row of the electrodes table)", true);
	h5_region_table(&w->h, &el, ELECTRODES_PATH);
	for (uint32_t e = 0; e < u->n; e++) {
		int32_t v = (int32_t)e;
		h5_put(&w->h, &el, &v);
	}
	h5_col_close(&w->h, &el);
	h5_col_open(&w->h, &u->t, &el_idx, "electrodes_index", "VectorIndex", H5T_NATIVE_UINT64, H5T_STD_U64LE, 8,
		    "one electrode per unit", false);
	h5_index_target(&w->h, &el_idx, "/units/electrodes");
	write_index(w, &el_idx, NULL, u->n);
	h5_col_close(&w->h, &el_idx);
	h5_table_close(&w->h, &u->t);
	free(u->start);
	free(u->written);
	free(u->fill);
}

static int on_spikes(void *ctx, const struct mead_spike *s, uint32_t n)
{
	struct nwb *w = ctx;
	struct units *u = &w->u;

	for (uint32_t i = 0; i < n; i++) {
		uint32_t e = s[i].electrode;
		if (e >= u->n)
			continue;
		if (u->written[e] + u->fill[e] >= w->pre->spikes_per_electrode[e]) {
			w->h.err = -EIO;
			snprintf(w->h.what, sizeof(w->h.what), "spikes of electrode %u: the file changed while it was read",
				 e);
			return w->h.err;
		}
		double t = exp_seconds(w->x, s[i].sample);
		size_t at = (size_t)e * u->cap + u->fill[e];
		memcpy(u->col[0].buf + at * sizeof(double), &t, sizeof(double));
		memcpy(u->col[1].buf + at * sizeof(float), &s[i].amplitude_uv, sizeof(float));
		memcpy(u->col[2].buf + at * sizeof(uint16_t), &s[i].flags, sizeof(uint16_t));
		if (++u->fill[e] == u->cap)
			ragged_flush(w, e);
	}
	return w->h.err;
}

/* ---- Raw ----------------------------------------------------------- */

static void raw_flush(struct nwb *w)
{
	h5_write_rows(&w->h, w->raw, H5T_NATIVE_INT16, w->raw_at, w->raw_fill, w->channels, w->raw_buf);
	if (w->raw_ts >= 0)
		h5_write_rows(&w->h, w->raw_ts, H5T_NATIVE_DOUBLE, w->raw_at, w->raw_fill, 0, w->ts_buf);
	w->raw_at += w->raw_fill;
	w->raw_fill = 0;
}

static int on_raw(void *ctx, uint64_t first, const int16_t *frames, uint32_t n, uint32_t channels)
{
	struct nwb *w = ctx;

	if (w->raw < 0 || channels != w->channels)
		return 0;
	for (uint32_t i = 0; i < n; i++) {
		if (w->raw_at + w->raw_fill >= w->raw_rows) {
			w->h.err = -EIO;
			snprintf(w->h.what, sizeof(w->h.what), "raw frames: the file changed while it was read");
			return w->h.err;
		}
		memcpy(w->raw_buf + (size_t)w->raw_fill * channels, frames + (size_t)i * channels,
		       (size_t)channels * sizeof(int16_t));
		if (w->ts_buf)
			w->ts_buf[w->raw_fill] = exp_seconds(w->x, first + i);
		if (++w->raw_fill == RAW_BUF_FRAMES)
			raw_flush(w);
	}
	return w->h.err;
}

/* /acquisition/raw: what the device delivered, as int16 counts; volts =
 * data x conversion.  Regularly sampled from its first frame (the usual
 * case: a late tick's samples come later, never skipped) it has
 * starting_time and rate; otherwise a timestamp per frame. */
static void raw_open(struct nwb *w, hid_t acq)
{
	const struct exp_rec *x = w->x;
	const struct exp_counts *c = w->pre;
	char desc[512];

	w->raw = w->raw_ts = -1;
	if (!c->raw_frames)
		return;
	if (c->raw_channels > x->layout.count) {
		fprintf(stderr, "mead-export: raw frames have %u channels but the layout %u electrodes: raw not exported\n",
			c->raw_channels, x->layout.count);
		return;
	}
	w->channels = c->raw_channels;
	w->raw_rows = c->raw_frames;
	w->raw_buf = malloc((size_t)RAW_BUF_FRAMES * w->channels * sizeof(int16_t));
	if (!c->raw_contiguous)
		w->ts_buf = malloc(RAW_BUF_FRAMES * sizeof(double));
	if (!w->raw_buf || (!c->raw_contiguous && !w->ts_buf)) {
		w->h.err = -ENOMEM;
		return;
	}
	hid_t es = h5_typed_group(&w->h, acq, "raw", "ElectricalSeries", "core");
	snprintf(desc, sizeof(desc),
		 "raw samples as the %s driver delivered them: int16 counts of %g uV (data x conversion = volts); "
		 "channel i is electrode i", x->driver_name[0] ? x->driver_name : "recording's", x->info->uv_per_count);
	h5_attr_str(&w->h, es, "description", desc);
	h5_attr_str(&w->h, es, "comments",
		    c->raw_contiguous ? "every sample from the first frame on, in order"
				      : "frames are not contiguous: see timestamps and /intervals/invalid_times");
	w->raw = h5_dset(&w->h, es, "data", H5T_STD_I16LE, w->raw_rows, w->channels);
	float conv = (float)(x->info->uv_per_count * 1e-6);
	h5_attr_f32(&w->h, w->raw, "conversion", conv);
	h5_attr_f32(&w->h, w->raw, "offset", 0.0f);
	h5_attr_f32(&w->h, w->raw, "resolution", conv);
	h5_attr_str(&w->h, w->raw, "unit", "volts");
	h5_attr_str(&w->h, w->raw, "continuity", "continuous");
	if (c->raw_contiguous) {
		hid_t s = H5Screate(H5S_SCALAR);
		double t0 = exp_seconds(x, c->raw_first_sample);
		hid_t d = w->h.err ? -1 : H5Dcreate2(es, "starting_time", H5T_IEEE_F64LE, s, H5P_DEFAULT, H5P_DEFAULT,
						      H5P_DEFAULT);
		if (!h5_failed(&w->h, (int)d, "starting_time")) {
			h5_failed(&w->h, H5Dwrite(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, &t0), "starting_time");
			h5_attr_f32(&w->h, d, "rate", (float)x->sample_rate_hz);
			h5_attr_str(&w->h, d, "unit", "seconds");
			H5Dclose(d);
		}
		H5Sclose(s);
	} else {
		w->raw_ts = h5_dset(&w->h, es, "timestamps", H5T_IEEE_F64LE, w->raw_rows, 0);
		h5_attr_i32(&w->h, w->raw_ts, "interval", 1);
		h5_attr_str(&w->h, w->raw_ts, "unit", "seconds");
	}
	/* the channels' electrodes: rows 0..channels-1 of the electrodes table */
	hsize_t dim = w->channels;
	hid_t space = H5Screate_simple(1, &dim, NULL);
	hid_t d = w->h.err ? -1 : H5Dcreate2(es, "electrodes", H5T_STD_I32LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
	if (!h5_failed(&w->h, (int)d, "electrodes of the ElectricalSeries")) {
		int32_t *rows = malloc((size_t)w->channels * sizeof(int32_t) + 1);
		for (uint32_t i = 0; rows && i < w->channels; i++)
			rows[i] = (int32_t)i;
		h5_failed(&w->h, rows ? H5Dwrite(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, rows) : -1,
			  "electrodes of the ElectricalSeries");
		free(rows);
		h5_typed(&w->h, d, "DynamicTableRegion", "hdmf-common");
		h5_attr_str(&w->h, d, "description", "the electrode of each channel");
		h5_attr_ref(&w->h, d, "table", ELECTRODES_PATH);
		H5Dclose(d);
	}
	H5Sclose(space);
	h5_close_obj(es);
}

static void raw_close(struct nwb *w)
{
	if (w->raw >= 0) {
		raw_flush(w);
		if (w->raw_at != w->raw_rows && !w->h.err) {
			w->h.err = -EIO;
			snprintf(w->h.what, sizeof(w->h.what), "raw frames: the file changed while it was read");
		}
		H5Dclose(w->raw);
	}
	if (w->raw_ts >= 0)
		H5Dclose(w->raw_ts);
	free(w->raw_buf);
	free(w->ts_buf);
}

/* ---- Intervals ------------------------------------------------------- */

static const struct h5colspec stim_cols[S_N] = {
	[S_START] = { "start_time", H5K_F64, "the sample the pulse started on, in seconds" },
	[S_STOP] = { "stop_time", H5K_F64, "the end of its second phase, in seconds" },
	[S_EL] = { "electrode", H5K_REGION, "the electrode stimulated (a row of the electrodes table)" },
	[S_AMP] = { "amplitude_ua", H5K_F32, "the first phase's current in microamperes (signed: negative = cathodic)" },
	[S_PHASE] = { "phase_us", H5K_U32, "length of each phase, microseconds" },
	[S_IP] = { "interphase_us", H5K_U32, "gap between the phases, microseconds" },
	[S_SAMPLE] = { "sample", H5K_U64, "the sample the pulse started on" },
	[S_REQ] = { "requested_sample", H5K_U64, "the sample it was asked for (earlier than sample only when late)" },
	[S_LATE] = { "late", H5K_BOOL, "started later than asked (flag late)" },
	[S_FLAGS] = { "flags", H5K_U16, "the record's flags (bit 0: late)" },
};

static const struct h5colspec event_cols[E_N] = {
	[E_START] = { "start_time", H5K_F64, "the event's first sample, in seconds" },
	[E_STOP] = { "stop_time", H5K_F64, "the end of the sample range it covers, in seconds (= start_time for a point)" },
	[E_SAMPLE] = { "sample", H5K_U64, "the event's first sample" },
	[E_SAMPLES] = { "samples", H5K_U32, "the length of the sample range it covers (0: a point in time)" },
	[E_TYPE] = { "type", H5K_U32, "the event type code (wire v1.1)" },
	[E_NAME] = { "name", H5K_STR, "the event type's name" },
	[E_VALUE] = { "value", H5K_I32, "the event's value (trial index, label, phase code, refusal reason, ...)" },
	[E_EL] = { "electrode", H5K_U16, "stim_refused and blank: the electrode (65535: all electrodes); digital: the "
		   "input line, not an electrode; 0 for others" },
	[E_DETAIL] = { "detail", H5K_STR, "the value's name where it has one (refusal reason, phase, threshold, digital level)" },
};

static const struct h5colspec trial_cols[T_N] = {
	[T_START] = { "start_time", H5K_F64, "trial_start, in seconds" },
	[T_STOP] = { "stop_time", H5K_F64, "trial_end, in seconds (the end of the recording when ended is false)" },
	[T_TRIAL] = { "trial", H5K_I32, "the trial index (0-based over the run)" },
	[T_ITEM] = { "item", H5K_I32, "the stimulus's index in its data set" },
	[T_LABEL] = { "label", H5K_I32, "the class shown" },
	[T_PHASE] = { "phase", H5K_STR, "train, test or rest" },
	[T_S0] = { "start_sample", H5K_U64, "trial_start's sample" },
	[T_S1] = { "stop_sample", H5K_U64, "trial_end's sample" },
	[T_ENDED] = { "ended", H5K_BOOL, "its trial_end is in the recording (false: the recording stopped first)" },
};

static const struct h5colspec invalid_cols[I_N] = {
	[I_START] = { "start_time", H5K_F64, "first sample lost, in seconds" },
	[I_STOP] = { "stop_time", H5K_F64, "first sample after the loss, in seconds" },
	[I_REASON] = { "reason", H5K_STR, "the event that reported it" },
	[I_S0] = { "start_sample", H5K_U64, "first sample lost" },
	[I_S1] = { "stop_sample", H5K_U64, "first sample after" },
};

static void intervals_open(struct nwb *w, hid_t root)
{
	hid_t iv = h5_group(&w->h, root, "intervals");
	const struct exp_counts *c = w->pre;

	h5_table_open(&w->h, &w->stim, iv, "/intervals", "stimulation", "TimeIntervals", "core",
		      "every stimulation pulse the device delivered (wire stim records): a biphasic pulse from "
		      "start_time, first phase amplitude_ua (negative: cathodic) for phase_us, interphase_us, then the "
		      "opposite phase of equal charge; pulses refused are stim_refused rows of /intervals/events");
	h5_cols_open(&w->h, &w->stim, w->sc, stim_cols, S_N, ELECTRODES_PATH);
	h5_table_open(&w->h, &w->ev, iv, "/intervals", "events", "TimeIntervals", "core",
		      "every event record of the recording (docs/wire-v1.md): protocol marks (run_start, trial_start, "
		      "label, phase, item, ...), refusals (stim_refused), data losses with their sample ranges "
		      "(overflow, gap, late, device_gone, device_back, stall, stim_lost, unread), blanking windows (blank), "
		      "threshold changes (threshold) "
		      "and digital input levels (digital: the line in the electrode column, the level in value)");
	h5_cols_open(&w->h, &w->ev, w->ec, event_cols, E_N, NULL);
	w->with_trials = c->event_types[MEAD_EVENT_TRIAL_START] > 0;
	if (w->with_trials) {
		h5_table_open(&w->h, &w->trials, iv, "/intervals", "trials", "TimeIntervals", "core",
			      "the protocol's trials, from trial_start to trial_end; item, label and phase as the protocol "
			      "announced them (-1 / \"\": not announced)");
		h5_cols_open(&w->h, &w->trials, w->tc, trial_cols, T_N, NULL);
	}
	w->with_invalid = c->event_types[MEAD_EVENT_OVERFLOW] || c->event_types[MEAD_EVENT_GAP] ||
			  c->event_types[MEAD_EVENT_DEVICE_GONE];
	if (w->with_invalid) {
		h5_table_open(&w->h, &w->invalid, iv, "/intervals", "invalid_times", "TimeIntervals", "core",
			      "samples the rig lost: overflow (a buffer overflowed), gap (never arrived; zeros in raw), "
			      "device_gone (from device_gone to device_back, or the end of the recording)");
		h5_cols_open(&w->h, &w->invalid, w->ic, invalid_cols, I_N, NULL);
	}
	h5_close_obj(iv);
}

static void trial_row(struct nwb *w, uint64_t end, bool ended)
{
	const struct exp_rec *x = w->x;
	h5_table_row(&w->h, &w->trials, (int64_t)w->trials_written++);
	h5_put_f64(&w->h, &w->tc[T_START], exp_seconds(x, w->trial_sample));
	h5_put_f64(&w->h, &w->tc[T_STOP], exp_seconds(x, end));
	h5_put(&w->h, &w->tc[T_TRIAL], &w->trial_index);
	h5_put(&w->h, &w->tc[T_ITEM], &w->trial_item);
	h5_put(&w->h, &w->tc[T_LABEL], &w->trial_label);
	h5_put_str(&w->h, &w->tc[T_PHASE], phase_name(w->trial_phase));
	h5_put_u64(&w->h, &w->tc[T_S0], w->trial_sample);
	h5_put_u64(&w->h, &w->tc[T_S1], end);
	h5_put_bool(&w->h, &w->tc[T_ENDED], ended);
	w->trial_open = false;
}

static void invalid_row(struct nwb *w, const char *reason, uint64_t from, uint64_t to)
{
	const struct exp_rec *x = w->x;
	h5_table_row(&w->h, &w->invalid, (int64_t)w->invalid_written++);
	h5_put_f64(&w->h, &w->ic[I_START], exp_seconds(x, from));
	h5_put_f64(&w->h, &w->ic[I_STOP], exp_seconds(x, to));
	h5_put_str(&w->h, &w->ic[I_REASON], reason);
	h5_put_u64(&w->h, &w->ic[I_S0], from);
	h5_put_u64(&w->h, &w->ic[I_S1], to);
}

static void protocol_state(struct nwb *w, const struct mead_event *e)
{
	switch (e->type) {
	case MEAD_EVENT_PHASE:
		w->phase = e->value;
		break;
	case MEAD_EVENT_TRIAL_START:
		/* a trial never ended is closed by the next one */
		if (w->trial_open)
			trial_row(w, e->sample, false);
		w->trial_open = true;
		w->trial_sample = e->sample;
		w->trial_index = e->value;
		w->trial_item = w->trial_label = -1;
		w->trial_phase = w->phase;
		break;
	case MEAD_EVENT_ITEM:
		if (w->trial_open)
			w->trial_item = e->value;
		break;
	case MEAD_EVENT_LABEL:
		if (w->trial_open)
			w->trial_label = e->value;
		break;
	case MEAD_EVENT_TRIAL_END:
		if (w->trial_open)
			trial_row(w, e->sample, true);
		break;
	case MEAD_EVENT_OVERFLOW:
	case MEAD_EVENT_GAP:
		if (w->with_invalid && e->samples)
			invalid_row(w, mead_event_type_name(e->type), e->sample, e->sample + e->samples);
		break;
	case MEAD_EVENT_DEVICE_GONE:
		if (!w->gone) {
			w->gone = true;
			w->gone_sample = e->sample;
		}
		break;
	case MEAD_EVENT_DEVICE_BACK:
		if (w->gone && w->with_invalid)
			invalid_row(w, "device_gone", w->gone_sample, e->sample > w->gone_sample ? e->sample : w->gone_sample);
		w->gone = false;
		break;
	}
}

static int on_events(void *ctx, const struct mead_event *e, uint32_t n)
{
	struct nwb *w = ctx;
	const struct exp_rec *x = w->x;

	for (uint32_t i = 0; i < n; i++) {
		char other[32], thr[32];
		const char *name = mead_event_type_name(e[i].type);
		const char *detail = "";
		if (!name) {
			snprintf(other, sizeof(other), "type_%u", e[i].type);
			name = other;
		}
		if (e[i].type == MEAD_EVENT_STIM_REFUSED) {
			detail = e[i].value >= 0 ? mead_stim_reason_name((uint32_t)e[i].value) : NULL;
			if (!detail)
				detail = "unknown reason";
		} else if (e[i].type == MEAD_EVENT_PHASE) {
			detail = phase_name(e[i].value);
		} else if (e[i].type == MEAD_EVENT_THRESHOLD) {
			/* the wire's hundredths, as meactl takes them */
			if (e[i].value >= 0)
				snprintf(thr, sizeof(thr), "%.2fx", e[i].value / 100.0);
			else
				snprintf(thr, sizeof(thr), "%.2fuV", -(double)e[i].value / 100.0);
			detail = thr;
		} else if (e[i].type == MEAD_EVENT_DIGITAL) {
			detail = e[i].value ? "high" : "low";
		}
		h5_table_row(&w->h, &w->ev, (int64_t)w->ev.rows);
		h5_put_f64(&w->h, &w->ec[E_START], exp_seconds(x, e[i].sample));
		h5_put_f64(&w->h, &w->ec[E_STOP], exp_seconds(x, e[i].sample + e[i].samples));
		h5_put_u64(&w->h, &w->ec[E_SAMPLE], e[i].sample);
		h5_put(&w->h, &w->ec[E_SAMPLES], &e[i].samples);
		h5_put(&w->h, &w->ec[E_TYPE], &e[i].type);
		h5_put_str(&w->h, &w->ec[E_NAME], name);
		h5_put(&w->h, &w->ec[E_VALUE], &e[i].value);
		h5_put(&w->h, &w->ec[E_EL], &e[i].electrode);
		h5_put_str(&w->h, &w->ec[E_DETAIL], detail);
		protocol_state(w, &e[i]);
	}
	return w->h.err;
}

static int on_stim(void *ctx, const struct mead_wire_stim *s, uint32_t n)
{
	struct nwb *w = ctx;
	const struct exp_rec *x = w->x;

	for (uint32_t i = 0; i < n; i++) {
		const struct mead_stim_pulse *p = &s[i].pulse;
		double t = exp_seconds(x, p->sample);
		int32_t el = p->electrode;
		h5_table_row(&w->h, &w->stim, (int64_t)w->stim.rows);
		h5_put_f64(&w->h, &w->sc[S_START], t);
		h5_put_f64(&w->h, &w->sc[S_STOP], t + (2.0 * p->phase_us + p->interphase_us) * 1e-6);
		h5_put(&w->h, &w->sc[S_EL], &el);
		h5_put(&w->h, &w->sc[S_AMP], &p->amplitude_ua);
		h5_put(&w->h, &w->sc[S_PHASE], &p->phase_us);
		h5_put(&w->h, &w->sc[S_IP], &p->interphase_us);
		h5_put_u64(&w->h, &w->sc[S_SAMPLE], p->sample);
		h5_put_u64(&w->h, &w->sc[S_REQ], s[i].requested_sample);
		h5_put_bool(&w->h, &w->sc[S_LATE], (p->flags & MEAD_STIM_LATE) != 0);
		h5_put(&w->h, &w->sc[S_FLAGS], &p->flags);
	}
	return w->h.err;
}

static void intervals_close(struct nwb *w, uint64_t end)
{
	if (w->with_trials && w->trial_open)
		trial_row(w, end > w->trial_sample ? end : w->trial_sample, false);
	if (w->with_invalid && w->gone)
		invalid_row(w, "device_gone", w->gone_sample, end > w->gone_sample ? end : w->gone_sample);
	h5_cols_close(&w->h, &w->stim, w->sc, S_N);
	h5_cols_close(&w->h, &w->ev, w->ec, E_N);
	if (w->with_trials)
		h5_cols_close(&w->h, &w->trials, w->tc, T_N);
	if (w->with_invalid)
		h5_cols_close(&w->h, &w->invalid, w->ic, I_N);
}

/* ---- General ------------------------------------------------------- */

enum { L_LOC, L_GROUP, L_GROUP_NAME, L_X, L_Y, L_LABEL, L_EXCLUDED, L_N };
static const struct h5colspec electrode_cols[L_N] = {
	[L_LOC] = { "location", H5K_STR, "the location of channel within the subject e.g. brain region" },
	[L_GROUP] = { "group", H5K_REF, "a reference to the ElectrodeGroup this electrode is a part of" },
	[L_GROUP_NAME] = { "group_name", H5K_STR, "the name of the ElectrodeGroup this electrode is a part of" },
	[L_X] = { "rel_x", H5K_F32, "x position on the array, micrometres (columns)" },
	[L_Y] = { "rel_y", H5K_F32, "y position on the array, micrometres (rows, downwards)" },
	[L_LABEL] = { "label", H5K_STR, "the electrode's label in the layout" },
	[L_EXCLUDED] = { "excluded", H5K_BOOL, "a reference or ground electrode: never stimulated" },
};

static void electrodes(struct nwb *w, hid_t ecephys)
{
	const struct exp_layout *l = &w->x->layout;
	struct h5table t;
	struct h5col c[L_N];
	char desc[600];

	snprintf(desc, sizeof(desc),
		 "the electrodes of the recording's layout, in index order (the index of spikes, stimulation and raw "
		 "channels): rel_x and rel_y are micrometres from the top-left electrode, from %s; label as "
		 "configured; excluded: a reference or ground electrode, never stimulated",
		 l->positions_from);
	h5_table_open(&w->h, &t, ecephys, "/general/extracellular_ephys", "electrodes", "DynamicTable", "hdmf-common",
		      desc);
	h5_cols_open(&w->h, &t, c, electrode_cols, L_N, NULL);
	for (uint32_t i = 0; i < l->count; i++) {
		h5_table_row(&w->h, &t, i);
		h5_put_str(&w->h, &c[L_LOC], "unknown");
		h5_put_ref(&w->h, &c[L_GROUP], GROUP_PATH);
		h5_put_str(&w->h, &c[L_GROUP_NAME], "mea");
		h5_put(&w->h, &c[L_X], &l->x_um[i]);
		h5_put(&w->h, &c[L_Y], &l->y_um[i]);
		h5_put_str(&w->h, &c[L_LABEL], l->labels[i]);
		h5_put_bool(&w->h, &c[L_EXCLUDED], l->excluded[i]);
	}
	h5_cols_close(&w->h, &t, c, L_N);
}

static void general(struct nwb *w, hid_t root, const char *device)
{
	const struct exp_rec *x = w->x;
	char desc[1024], path[160];
	hid_t g = h5_group(&w->h, root, "general");
	hid_t devs = h5_group(&w->h, g, "devices");
	hid_t dev = h5_typed_group(&w->h, devs, device, "Device", "core");
	snprintf(desc, sizeof(desc), "the rig behind mead's %s driver%s%s", x->driver_name[0] ? x->driver_name : "unknown",
		 x->rig_name[0] ? ", rig " : "", x->rig_name);
	h5_attr_str(&w->h, dev, "description", desc);
	h5_close_obj(dev);
	h5_close_obj(devs);

	hid_t ecephys = h5_group(&w->h, g, "extracellular_ephys");
	hid_t grp = h5_typed_group(&w->h, ecephys, "mea", "ElectrodeGroup", "core");
	snprintf(desc, sizeof(desc), "the multi-electrode array: %u electrodes, %u x %u, pitch %g um", x->layout.count,
		 x->layout.rows, x->layout.cols, x->layout.pitch_um);
	h5_attr_str(&w->h, grp, "description", desc);
	h5_attr_str(&w->h, grp, "location", "unknown");
	snprintf(path, sizeof(path), "/general/devices/%s", device);
	if (!w->h.err)
		h5_failed(&w->h, H5Lcreate_soft(path, grp, "device", H5P_DEFAULT, H5P_DEFAULT), "link to the device");
	h5_close_obj(grp);
	electrodes(w, ecephys);
	h5_close_obj(ecephys);
	h5_close_obj(g);
}

/* What was known of the run, in the text fields NWB has for it. */
static void general_text(struct nwb *w, const struct exp_counts *c, const char *start_from)
{
	const struct exp_rec *x = w->x;
	char desc[1024];
	const char *files[] = { "nwb", "(this file)", NULL };
	hid_t g = w->h.err ? -1 : H5Gopen2(w->h.file, "/general", H5P_DEFAULT);
	if (h5_failed(&w->h, (int)g, "/general"))
		return;

	char *config = x->info->config_len ? strndup(x->info->config, x->info->config_len) : strdup("");
	h5_dset_str(&w->h, g, "data_collection", config ? config : "");
	free(config);
	snprintf(desc, sizeof(desc),
		 "recorded by mead %s (wire %s), driver %s (seed %" PRIu64 ")%s%s%s%s; protocol %s (seed %" PRIu64
		 "); %u electrodes at %u Hz; session_start_time from %s; electrode positions from %s",
		 x->mead_version[0] ? x->mead_version : "?", x->wire[0] ? x->wire : "?",
		 x->driver_name[0] ? x->driver_name : "?", x->driver_seed, x->rig_name[0] ? ", rig " : "", x->rig_name,
		 x->config_loaded ? "" : " (configuration not readable by this mead-export: seeds unknown)", "",
		 x->protocol[0] ? x->protocol : "none", x->protocol_seed, x->layout.count, x->info->sample_rate_hz,
		 start_from, x->layout.positions_from);
	h5_dset_str(&w->h, g, "experiment_description", desc);
	char *json = exp_summary_json(x, c, files);
	h5_dset_str(&w->h, g, "notes", json ? json : "{}");
	free(json);
	const char *base = strrchr(x->path, '/');
	h5_dset_str(&w->h, g, "session_id", base ? base + 1 : x->path);
	hid_t s = H5Screate(H5S_SCALAR);
	hid_t d = w->h.err ? -1 : H5Dcreate2(g, "source_script", w->h.str_t, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
	if (!h5_failed(&w->h, (int)d, "source_script")) {
		const char *v = "mead-export " MEAD_VERSION " (mead recording format 1 to NWB " NWB_VERSION ")";
		h5_failed(&w->h, H5Dwrite(d, w->h.str_t, H5S_ALL, H5S_ALL, H5P_DEFAULT, &v), "source_script");
		h5_attr_str(&w->h, d, "file_name", "mead-export");
		H5Dclose(d);
	}
	H5Sclose(s);
	H5Gclose(g);
}

static uint64_t uuid_seed(const struct exp_rec *x)
{
	uint64_t a = crc32(0L, (const Bytef *)x->info->meta, (uInt)x->info->meta_len);
	uint64_t b = x->info->config_len ? crc32(0L, (const Bytef *)x->info->config, (uInt)x->info->config_len) : 0;
	return (a << 32 | b) ^ x->info->file_size ^ 0x6d6561642d6e7762ull;
}

const bool exp_nwb_built = true;

/* A dataset of rows x width (width 0: rank 1) in chunks of at most 256
 * rows: one is open per electrode, each with its own chunk cache. */
static hid_t wf_dset(struct nwb *w, hid_t loc, const char *name, hid_t ftype, hsize_t rows, hsize_t width)
{
	if (w->h.err)
		return -1;
	int rank = width ? 2 : 1;
	hsize_t dims[2] = { rows, width }, chunk[2] = { rows < 256 ? rows : 256, width };
	hid_t space = H5Screate_simple(rank, dims, NULL);
	hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
	H5Pset_chunk(dcpl, rank, chunk);
	hid_t d = H5Dcreate2(loc, name, ftype, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
	h5_failed(&w->h, (int)d, "dataset %s", name);
	H5Pclose(dcpl);
	H5Sclose(space);
	return d;
}

static void waveforms_open(struct nwb *w, hid_t processing)
{
	const struct exp_rec *x = w->x;
	const struct exp_counts *c = w->pre;
	const uint32_t n = x->layout.count;

	if (!c->waveforms || !c->waveform_size)
		return;
	w->wf_len = c->waveform_pre + 1 + c->waveform_post;
	w->wf_data = calloc(n, sizeof(hid_t));
	w->wf_ts = calloc(n, sizeof(hid_t));
	w->wf_at = calloc(n, sizeof(uint64_t));
	if (!w->wf_data || !w->wf_ts || !w->wf_at) {
		w->h.err = -ENOMEM;
		return;
	}
	for (uint32_t e = 0; e < n; e++)
		w->wf_data[e] = w->wf_ts[e] = -1;
	hid_t pm = h5_typed_group(&w->h, processing, "ecephys", "ProcessingModule", "core");
	h5_attr_str(&w->h, pm, "description", "what the rig computed online from the signal: spike waveforms");
	for (uint32_t e = 0; e < n && !w->h.err; e++) {
		const uint64_t rows = c->waveforms_per_electrode[e];
		char name[64], label[EXP_LABEL_MAX * 2], desc[512];
		if (!rows)
			continue;
		exp_safe_name(x->layout.labels[e], label, sizeof(label));
		snprintf(name, sizeof(name), "waveforms_%s", label);
		if (!w->h.err && H5Lexists(pm, name, H5P_DEFAULT) > 0)   /* two electrodes with one label */
			snprintf(name, sizeof(name), "waveforms_%s_%u", label, e);
		hid_t g = h5_typed_group(&w->h, pm, name, "SpikeEventSeries", "core");
		snprintf(desc, sizeof(desc),
			 "spike waveforms of electrode %u (label %s): the signal the online detector looked at (baseline "
			 "removed; artifact-subtracted inside SALPA windows), %u samples before to %u after each spike's "
			 "sample; data x conversion = volts",
			 e, x->layout.labels[e], c->waveform_pre, c->waveform_post);
		h5_attr_str(&w->h, g, "description", desc);
		h5_attr_str(&w->h, g, "comments",
			    "blanked or missing samples are 0: see waveform_flags in the npy export and "
			    "/intervals/invalid_times");
		w->wf_data[e] = wf_dset(w, g, "data", H5T_IEEE_F32LE, rows, w->wf_len);
		h5_attr_f32(&w->h, w->wf_data[e], "conversion", 1e-6f);
		h5_attr_f32(&w->h, w->wf_data[e], "offset", 0.0f);
		h5_attr_f32(&w->h, w->wf_data[e], "resolution", -1.0f);
		h5_attr_str(&w->h, w->wf_data[e], "unit", "volts");
		w->wf_ts[e] = wf_dset(w, g, "timestamps", H5T_IEEE_F64LE, rows, 0);
		h5_attr_i32(&w->h, w->wf_ts[e], "interval", 1);
		h5_attr_str(&w->h, w->wf_ts[e], "unit", "seconds");
		hsize_t one = 1;
		hid_t space = H5Screate_simple(1, &one, NULL);
		hid_t d = w->h.err ? -1 : H5Dcreate2(g, "electrodes", H5T_STD_I32LE, space, H5P_DEFAULT, H5P_DEFAULT,
						      H5P_DEFAULT);
		if (!h5_failed(&w->h, (int)d, "electrodes of %s", name)) {
			int32_t row = (int32_t)e;
			h5_failed(&w->h, H5Dwrite(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, &row),
				  "electrodes of %s", name);
			h5_typed(&w->h, d, "DynamicTableRegion", "hdmf-common");
			h5_attr_str(&w->h, d, "description", "the electrode the waveforms were recorded on");
			h5_attr_ref(&w->h, d, "table", ELECTRODES_PATH);
			H5Dclose(d);
		}
		H5Sclose(space);
		h5_close_obj(g);
	}
	h5_close_obj(pm);
}

static int on_waveforms(void *ctx, const uint8_t *recs, uint32_t n, uint32_t size)
{
	struct nwb *w = ctx;
	if (!w->wf_data)
		return 0;
	for (uint32_t i = 0; i < n && !w->h.err; i++) {
		struct mead_waveform h;
		memcpy(&h, recs + (size_t)i * size, sizeof(h));
		if (h.electrode >= w->x->layout.count || w->wf_data[h.electrode] < 0)
			continue;
		const uint32_t e = h.electrode;
		if (w->wf_at[e] >= w->pre->waveforms_per_electrode[e]) {
			w->h.err = -EIO;
			snprintf(w->h.what, sizeof(w->h.what), "waveforms: the file changed while it was read");
			break;
		}
		const double t = exp_seconds(w->x, h.sample);
		h5_write_rows(&w->h, w->wf_data[e], H5T_NATIVE_FLOAT, w->wf_at[e], 1, w->wf_len, recs + (size_t)i * size + sizeof(h));
		h5_write_rows(&w->h, w->wf_ts[e], H5T_NATIVE_DOUBLE, w->wf_at[e], 1, 0, &t);
		w->wf_at[e]++;
		w->wf_written++;
	}
	return w->h.err;
}

static void waveforms_close(struct nwb *w)
{
	for (uint32_t e = 0; w->wf_data && e < w->x->layout.count; e++) {
		if (w->wf_data[e] >= 0) {
			if (w->wf_at[e] != w->pre->waveforms_per_electrode[e] && !w->h.err) {
				w->h.err = -EIO;
				snprintf(w->h.what, sizeof(w->h.what), "waveforms: the file changed while it was read");
			}
			H5Dclose(w->wf_data[e]);
			H5Dclose(w->wf_ts[e]);
		}
	}
	free(w->wf_data);
	free(w->wf_ts);
	free(w->wf_at);
	w->wf_data = w->wf_ts = NULL;
	w->wf_at = NULL;
}

int exp_nwb(struct exp_rec *x, const char *out, bool force)
{
	static struct nwb w;
	struct exp_counts pre, post;
	char *part = NULL, iso[64], now_iso[64], damage[512], device[80];
	const char *start_from = "";
	int status = 1;

	memset(&w, 0, sizeof(w));
	w.x = x;
	w.raw = w.raw_ts = -1;
	w.phase = -1;
	struct stat st;
	if (!force && stat(out, &st) == 0) {
		fprintf(stderr, "mead-export: %s exists (--force replaces it)\n", out);
		return 1;
	}
	if (asprintf(&part, "%s.part", out) < 0)
		return 1;
	if (exp_count(x, &pre) < 0) {
		free(part);
		return 1;
	}
	w.pre = &pre;
	if (h5_create(&w.h, part, uuid_seed(x)) < 0) {
		fprintf(stderr, "mead-export: %s: cannot create it\n", part);
		exp_counts_free(&pre);
		free(part);
		return 1;
	}
	hid_t root = w.h.file;
	h5_typed(&w.h, root, "NWBFile", "core");
	h5_attr_str(&w.h, root, "nwb_version", NWB_VERSION);
	char ident[37];
	h5_uuid4(&w.h, ident);
	exp_iso8601(exp_start_ns(x, &pre, &start_from), iso, sizeof(iso));
	exp_iso8601(mead_clock_ns(CLOCK_REALTIME), now_iso, sizeof(now_iso));
	const char *dates[] = { now_iso };
	h5_dset_strs(&w.h, root, "file_create_date", 1, dates);
	h5_dset_str(&w.h, root, "identifier", ident);
	char sd[512];
	const char *base = strrchr(x->path, '/');
	snprintf(sd, sizeof(sd), "mead recording %s: %u electrodes at %u Hz, %.3f s%s", base ? base + 1 : x->path,
		 x->layout.count, x->info->sample_rate_hz, exp_seconds(x, pre.end_sample),
		 pre.raw_frames ? ", raw samples" : "");
	h5_dset_str(&w.h, root, "session_description", sd);
	h5_dset_str(&w.h, root, "session_start_time", iso);
	h5_dset_str(&w.h, root, "timestamps_reference_time", iso);
	hid_t acq = h5_group(&w.h, root, "acquisition");
	h5_close_obj(h5_group(&w.h, root, "analysis"));
	hid_t processing = h5_group(&w.h, root, "processing");
	hid_t stimg = h5_group(&w.h, root, "stimulus");
	h5_close_obj(h5_group(&w.h, stimg, "presentation"));
	h5_close_obj(h5_group(&w.h, stimg, "templates"));
	h5_close_obj(stimg);
	exp_safe_name(x->driver_name[0] ? x->driver_name : "mead", device, sizeof(device));
	general(&w, root, device);
	raw_open(&w, acq);
	h5_close_obj(acq);
	waveforms_open(&w, processing);
	h5_close_obj(processing);
	intervals_open(&w, root);
	units_open(&w, root);
	if (w.h.err)
		goto fail;

	const struct exp_sink sink = { &w, on_spikes, on_stim, on_events, on_raw, NULL, on_waveforms };
	int rc = exp_walk(x, "writing NWB", &sink, &post);
	if (rc < 0 && !w.h.err) {
		w.h.err = rc;
		snprintf(w.h.what, sizeof(w.h.what), "reading the recording");
	}
	raw_close(&w);
	waveforms_close(&w);
	intervals_close(&w, post.end_sample);
	units_close(&w);
	general_text(&w, &post, start_from);
	if (h5_close(&w.h) < 0)
		goto fail_counts;
	if (rename(part, out) < 0) {
		fprintf(stderr, "mead-export: %s: %s\n", out, strerror(errno));
		unlink(part);
		goto fail_counts;
	}
	exp_damage(&post, damage, sizeof(damage));
	printf("%s: %" PRIu64 " spikes on %u electrodes, %" PRIu64 " stim pulses, %" PRIu64 " events, %" PRIu64
	       " trials, %" PRIu64 " raw frames, %" PRIu64 " waveforms -> %s (NWB %s)%s\n",
	       x->path, post.spikes - post.spikes_outside, w.u.n, post.stim, post.events, w.trials_written,
	       post.raw_frames, w.wf_written, out, NWB_VERSION, damage);
	status = 0;
	exp_counts_free(&post);
	exp_counts_free(&pre);
	free(part);
	return status;

fail_counts:
	exp_counts_free(&post);
fail:
	waveforms_close(&w);
	if (w.h.file >= 0)
		h5_close(&w.h);
	fprintf(stderr, "mead-export: %s: %s failed%s%s\n", out, w.h.what[0] ? w.h.what : "writing",
		w.h.err != -EIO ? ": " : "", w.h.err != -EIO ? strerror(-w.h.err) : "");
	unlink(part);
	exp_counts_free(&pre);
	free(part);
	return status;
}
