/* SPDX-License-Identifier: MIT */
/*
 * The twin driver: the simulated culture of libmeadsim behind the driver
 * ABI.  One acquisition sample is one simulation step (sample rate =
 * 1000 / dt_ms Hz), so the twin only ever sees sample numbers: the same seed
 * gives the same spikes whether the loop runs on the wall clock or a virtual
 * one.  A stimulation pulse is one input spike of its electrode at
 * pulse.sample (the amplitude is not modelled); a neuron spike is reported on
 * the electrode of the cell the neuron lies in.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mead/driver.h"
#include "lib/core/err.h"
#include "lib/core/time.h"
#include "sim/mead_sim.h"

#define TWIN_PENDING_MAX 4096u
#define TWIN_SPIKE_UV (-60.0f)

struct twin {
	struct mead_sim *sim;
	char preset[32];
	char save_path[PATH_MAX];
	uint32_t rate_hz;
	uint32_t max_steps_per_tick;
	uint32_t ne;
	uint32_t neurons;
	uint64_t synapses;
	uint32_t per_electrode[4096];
	bool excluded[4096];

	struct mead_stim_pulse pending[TWIN_PENDING_MAX];
	uint32_t npending;
	uint64_t next_sample;

	double step_ns;             /* measured at open for the real-time clock; 0: not measured */

	/* read by describe() from another thread */
	bool learning;
	uint64_t steps;
	uint64_t spikes_total;
	uint64_t pulses_dropped;
};

static const struct mead_param_spec twin_params[] = {
	{ "preset", MEAD_PARAM_STRING, "bio-240", 0, -1,
	  "bio-240, bio-10140, tsk-240 or tsk-10140 (docs/digital-twin.md); sets the defaults below" },
	{ "neurons", MEAD_PARAM_STRING, "", 0, -1, "neuron count; empty: the preset's" },
	{ "dt_ms", MEAD_PARAM_DOUBLE, "1", 0.001, 100, "simulation step; sample rate is 1000/dt_ms Hz" },
	{ "tau_m_ms", MEAD_PARAM_DOUBLE, "50", 0.001, 1e6, "membrane decay time constant" },
	{ "v_rest_mv", MEAD_PARAM_STRING, "", 0, -1, "resting potential; empty: the preset's (-70 bio, -90 tsk)" },
	{ "v_reset_mv", MEAD_PARAM_DOUBLE, "-70", -1000, 1000, "reset potential" },
	{ "v_threshold_mv", MEAD_PARAM_DOUBLE, "-50", -1000, 1000, "threshold" },
	{ "v_lower_bound_mv", MEAD_PARAM_STRING, "", 0, -1,
	  "membrane clamp; 'none' for no bound; empty: the preset's (-90 bio, none tsk)" },
	{ "refractory_ms", MEAD_PARAM_DOUBLE, "5", 0, 1e6, "refractory period" },
	{ "tau_stdp_ms", MEAD_PARAM_DOUBLE, "20", 0.001, 1e6, "STDP trace time constant" },
	{ "a_plus", MEAD_PARAM_DOUBLE, "0.01", 0, 1e3, "potentiation rate (post spike, times pre trace)" },
	{ "a_minus", MEAD_PARAM_DOUBLE, "0.0001", 0, 1e3, "depression rate (pre spike, times post trace)" },
	{ "exc_strength", MEAD_PARAM_STRING, "", 0, -1, "per-neuron excitatory budget; empty: the preset's (1 bio, 3 tsk)" },
	{ "inh_strength", MEAD_PARAM_STRING, "", 0, -1, "per-neuron inhibitory budget; empty: the preset's (10 bio, 300 tsk)" },
	{ "input_strength", MEAD_PARAM_DOUBLE, "1", 0, 1e6, "per-neuron electrode input budget" },
	{ "sigma_e_mm", MEAD_PARAM_DOUBLE, "1.2", 1e-6, 1e3, "excitatory reach" },
	{ "sigma_i_mm", MEAD_PARAM_DOUBLE, "0.15", 1e-6, 1e3, "inhibitory reach" },
	{ "electrode_reach_mm", MEAD_PARAM_DOUBLE, "0.3", 1e-6, 1e3, "electrode stimulation reach" },
	{ "placement", MEAD_PARAM_STRING, "uniform", 0, -1,
	  "uniform (the reference's: independent positions) or even (the same count over every electrode cell)" },
	{ "prune_threshold", MEAD_PARAM_DOUBLE, "0.001", 0, 1e3, "|w| below this at construction is pruned for ever" },
	{ "stdp", MEAD_PARAM_BOOL, "true", 0, -1, "plasticity on at start (MEAD_CTL_LEARNING switches it)" },
	{ "weights_load", MEAD_PARAM_STRING, "", 0, -1, "learned weights to load at open (same preset and seed)" },
	{ "weights_save", MEAD_PARAM_STRING, "", 0, -1, "where to save the learned weights at stop" },
	{ "realtime_check", MEAD_PARAM_BOOL, "true", 0, -1,
	  "at the real-time clock, time the culture at open and refuse it when a tick's steps take longer than 70% of a tick" },
	{ "snapshot_slots", MEAD_PARAM_INT, "-1", -1, 4,
	  "weight copies kept for MEAD_CTL_SNAPSHOT_SAVE/RESTORE; -1: 4 when they fit in 256 MiB, else 0" },
	/* declared so that asking for them gets a reason, not "unknown option" */
	MEAD_WAVEFORM_PARAM_SPECS,
	{ NULL, 0, NULL, 0, 0, NULL },
};

static const char *param(const struct mead_driver_config *cfg, const char *key)
{
	const char *v = cfg->params ? mead_driver_param_get(cfg, key) : NULL;
	if (v)
		return v;
	for (const struct mead_param_spec *p = twin_params; p->key; p++)
		if (!strcmp(p->key, key))
			return p->default_value;
	return NULL;
}

static int num(const struct mead_driver_config *cfg, const char *key, double lo, double hi, double *out,
	       char *err, size_t err_len)
{
	const char *v = param(cfg, key);
	if (!v || !*v)
		return 0; /* keep the preset's value */
	char *end;
	errno = 0;
	double d = strtod(v, &end);
	while (*end == ' ')
		end++;
	if (errno || end == v || *end || !isfinite(d) || d < lo || d > hi) {
		mead_set_err(err, err_len, "twin: option %s: '%s' is not a number in [%g, %g]", key, v, lo, hi);
		return -EINVAL;
	}
	*out = d;
	return 0;
}

/* ns per step of an active culture: every electrode driven, learning off,
 * so the weights stay as built; the state is reset afterwards. */
static double time_steps(struct twin *t)
{
	const int steps = 50;
	bool learning = mead_sim_learning(t->sim);
	mead_sim_set_learning(t->sim, false);
	uint64_t t0 = mead_now_ns();
	for (int i = 0; i < steps; i++) {
		if (i % 5 == 0)
			for (uint32_t e = 0; e < t->ne; e++)
				mead_sim_input(t->sim, e);
		const uint32_t *sp;
		uint32_t ns;
		mead_sim_step(t->sim, &sp, &ns);
	}
	double per = (double)(mead_now_ns() - t0) / steps;
	mead_sim_reset_state(t->sim);
	mead_sim_set_learning(t->sim, learning);
	return per;
}

static int twin_open(const struct mead_driver_config *cfg, void **ret_state, char *err, size_t err_len)
{
	if (!cfg || !ret_state)
		return -EINVAL;
	if (cfg->abi_version != MEAD_DRIVER_ABI_VERSION) {
		mead_set_err(err, err_len, "twin: driver ABI %u, daemon %u", MEAD_DRIVER_ABI_VERSION, cfg->abi_version);
		return -EPROTO;
	}
	/* the simulation has spike times, no extracellular signal to cut */
	if (mead_driver_no_waveforms(cfg, "twin", err, err_len) < 0)
		return -EINVAL;
	struct mead_sim_params p = { .seed = cfg->seed };
	const char *preset = param(cfg, "preset");
	if (mead_sim_params_preset(preset, &p) < 0) {
		mead_set_err(err, err_len, "twin: unknown preset '%s' (bio-240, bio-10140, tsk-240, tsk-10140)", preset);
		return -EINVAL;
	}
	p.seed = cfg->seed;
	double neurons = p.neurons, strength;
	int r;
	if ((r = num(cfg, "neurons", 2, 60000, &neurons, err, err_len)) < 0)
		return r;
	if (neurons != floor(neurons)) {
		mead_set_err(err, err_len, "twin: option neurons must be an integer");
		return -EINVAL;
	}
	p.neurons = (uint32_t)neurons;
	if ((r = num(cfg, "dt_ms", 0.001, 100, &p.dt_ms, err, err_len)) < 0 ||
	    (r = num(cfg, "tau_m_ms", 0.001, 1e6, &p.tau_m_ms, err, err_len)) < 0 ||
	    (r = num(cfg, "v_rest_mv", -1000, 1000, &p.v_rest_mv, err, err_len)) < 0 ||
	    (r = num(cfg, "v_reset_mv", -1000, 1000, &p.v_reset_mv, err, err_len)) < 0 ||
	    (r = num(cfg, "v_threshold_mv", -1000, 1000, &p.v_threshold_mv, err, err_len)) < 0 ||
	    (r = num(cfg, "refractory_ms", 0, 1e6, &p.refractory_ms, err, err_len)) < 0 ||
	    (r = num(cfg, "tau_stdp_ms", 0.001, 1e6, &p.tau_stdp_ms, err, err_len)) < 0 ||
	    (r = num(cfg, "a_plus", 0, 1e3, &p.a_plus, err, err_len)) < 0 ||
	    (r = num(cfg, "a_minus", 0, 1e3, &p.a_minus, err, err_len)) < 0 ||
	    (r = num(cfg, "exc_strength", 0, 1e6, &p.exc_strength, err, err_len)) < 0 ||
	    (r = num(cfg, "inh_strength", 0, 1e6, &p.inh_strength, err, err_len)) < 0 ||
	    (r = num(cfg, "input_strength", 0, 1e6, &p.input_strength, err, err_len)) < 0 ||
	    (r = num(cfg, "sigma_e_mm", 1e-6, 1e3, &p.sigma_e_mm, err, err_len)) < 0 ||
	    (r = num(cfg, "sigma_i_mm", 1e-6, 1e3, &p.sigma_i_mm, err, err_len)) < 0 ||
	    (r = num(cfg, "electrode_reach_mm", 1e-6, 1e3, &p.electrode_reach_mm, err, err_len)) < 0 ||
	    (r = num(cfg, "prune_threshold", 0, 1e3, &p.prune_threshold, err, err_len)) < 0)
		return r;
	(void)strength;
	const char *lb = param(cfg, "v_lower_bound_mv");
	if (lb && !strcmp(lb, "none")) {
		p.has_lower_bound = false;
	} else if (lb && *lb) {
		if ((r = num(cfg, "v_lower_bound_mv", -1000, 1000, &p.v_lower_bound_mv, err, err_len)) < 0)
			return r;
		p.has_lower_bound = true;
	}
	const char *place = param(cfg, "placement");
	if (!strcmp(place, "uniform")) {
		p.placement = MEAD_SIM_PLACE_UNIFORM;
	} else if (!strcmp(place, "even")) {
		p.placement = MEAD_SIM_PLACE_EVEN;
	} else {
		mead_set_err(err, err_len, "twin: option placement: '%s' is neither uniform nor even", place);
		return -EINVAL;
	}
	p.stdp = mead_driver_param_bool(cfg, "stdp", true);

	uint32_t ne = p.electrode_rows * p.electrode_cols;
	if (cfg->layout && cfg->layout->count != ne) {
		mead_set_err(err, err_len, "twin: the layout has %u electrodes, the simulated culture %u (6 x 10 grid)",
		       cfg->layout->count, ne);
		return -EINVAL;
	}
	double rate = 1000.0 / p.dt_ms;
	if (fabs(rate - nearbyint(rate)) > 1e-9 * rate || rate < 1) {
		mead_set_err(err, err_len, "twin: dt_ms %g does not give a whole sample rate in Hz", p.dt_ms);
		return -EINVAL;
	}
	uint64_t period_ns = cfg->period_ns ? cfg->period_ns : (uint64_t)cfg->period_us * 1000u;
	uint64_t max_steps = (period_ns * (uint64_t)nearbyint(rate) + 999999999u) / 1000000000u;
	if (max_steps == 0)
		max_steps = 1;
	if (max_steps * p.neurons > UINT32_MAX) {
		mead_set_err(err, err_len, "twin: a tick of %llu steps of %u neurons is too long",
		       (unsigned long long)max_steps, p.neurons);
		return -EINVAL;
	}

	struct twin *t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	r = mead_sim_new(&p, &t->sim);
	if (r < 0) {
		mead_set_err(err, err_len, "twin: cannot build the culture: %s", strerror(-r));
		free(t);
		return r;
	}
	const char *load = param(cfg, "weights_load");
	if (load && *load) {
		r = mead_sim_load(t->sim, load);
		if (r < 0) {
			const char *why = r == -EBADMSG ? "not a weights file, truncated or corrupt" :
					  r == -EPROTONOSUPPORT ? "unsupported format version" :
					  r == -ESTALE ? "saved from another network (preset, neurons or seed differ)" :
					  strerror(-r);
			mead_set_err(err, err_len, "twin: weights_load %s: %s", load, why);
			mead_sim_free(t->sim);
			free(t);
			return r;
		}
	}
	double slots = -1;
	if ((r = num(cfg, "snapshot_slots", -1, 4, &slots, err, err_len)) < 0) {
		mead_sim_free(t->sim);
		free(t);
		return r;
	}
	if (slots < 0)
		slots = 4.0 * (double)mead_sim_snapshot_bytes(t->sim) <= 256.0 * 1024 * 1024 ? 4 : 0;
	r = mead_sim_snapshots_alloc(t->sim, (uint32_t)slots);
	if (r < 0) {
		mead_set_err(err, err_len, "twin: cannot reserve %u weight snapshots: %s", (unsigned)slots, strerror(-r));
		mead_sim_free(t->sim);
		free(t);
		return r;
	}
	const char *save = param(cfg, "weights_save");
	if (save && strlen(save) >= sizeof(t->save_path)) {
		mead_set_err(err, err_len, "twin: weights_save path too long");
		mead_sim_free(t->sim);
		free(t);
		return -ENAMETOOLONG;
	}
	snprintf(t->save_path, sizeof(t->save_path), "%s", save ? save : "");
	snprintf(t->preset, sizeof(t->preset), "%s", preset);
	t->rate_hz = (uint32_t)nearbyint(rate);
	t->max_steps_per_tick = (uint32_t)max_steps;
	t->ne = ne;
	t->neurons = mead_sim_neurons(t->sim);
	t->synapses = mead_sim_synapses(t->sim);
	for (uint32_t e = 0; e < ne; e++) {
		t->per_electrode[e] = mead_sim_electrode_neurons(t->sim, e);
		t->excluded[e] = cfg->layout && cfg->layout->electrodes && cfg->layout->electrodes[e].excluded;
	}
	t->learning = mead_sim_learning(t->sim);
	if (!cfg->virtual_clock) {
		/* A culture that cannot step as fast as the clock would fall ever
		 * further behind the loop: say so now, with the figure. */
		t->step_ns = time_steps(t);
		double tick_ns = t->step_ns * t->max_steps_per_tick;
		if (mead_driver_param_bool(cfg, "realtime_check", true) && tick_ns > 0.7 * (double)period_ns) {
			mead_set_err(err, err_len,
				     "twin: a culture of %u neurons and %llu synapses (preset %s) takes %.3g ms for a tick's %u "
				     "step%s on this machine, %.2fx real time: it cannot keep the real-time clock "
				     "(loop.period_us %u); run it with loop.clock: virtual, or set "
				     "driver.options.realtime_check: false to run it late",
				     t->neurons, (unsigned long long)t->synapses, preset, tick_ns / 1e6, t->max_steps_per_tick,
				     t->max_steps_per_tick == 1 ? "" : "s", (double)period_ns / tick_ns, cfg->period_us);
			mead_sim_free(t->sim);
			free(t);
			return -EOVERFLOW;
		}
	}
	*ret_state = t;
	return 0;
}

static void twin_close(void *state)
{
	struct twin *t = state;
	if (!t)
		return;
	mead_sim_free(t->sim);
	free(t);
}

static int twin_get_caps(void *state, struct mead_driver_caps *ret_caps)
{
	struct twin *t = state;
	*ret_caps = (struct mead_driver_caps){
		.electrode_count = t->ne,
		.sample_rate_hz = t->rate_hz,
		.raw_channels = 0,
		.uv_per_count = 0.0f,
		.max_spikes_per_tick_hint = t->neurons * t->max_steps_per_tick,
		.flags = MEAD_CAP_STIMULATE | MEAD_CAP_SIMULATED | MEAD_CAP_PLASTICITY | MEAD_CAP_RESETTABLE,
		.max_amplitude_ua = 1000.0f,
		.max_phase_us = 1000000u,
		.max_pulses_per_tick = TWIN_PENDING_MAX,
		/* the culture rule's denominators (docs/protocols.md) */
		.units_per_electrode = t->per_electrode,
	};
	return 0;
}

static int twin_start(void *state, char *err, size_t err_len)
{
	(void)state;
	(void)err;
	(void)err_len;
	return 0;
}

static int twin_write_stim(void *state, uint64_t tick, const struct mead_stim_pulse *pulses, uint32_t n,
			   struct mead_stim_result *results)
{
	struct twin *t = state;
	(void)tick;
	for (uint32_t i = 0; i < n; i++) {
		const struct mead_stim_pulse *p = &pulses[i];
		results[i] = (struct mead_stim_result){ .pulse = *p, .status = MEAD_STIM_REFUSED };
		if (p->electrode >= t->ne || t->excluded[p->electrode]) {
			results[i].reason = MEAD_STIM_REASON_RANGE;
			continue;
		}
		if (t->npending == TWIN_PENDING_MAX) {
			__atomic_store_n(&t->pulses_dropped, t->pulses_dropped + 1, __ATOMIC_RELAXED);
			results[i].reason = MEAD_STIM_REASON_QUEUE_FULL;
			continue;
		}
		/* a pulse for a step already simulated lands on the next one */
		results[i].status = MEAD_STIM_DELIVERED;
		results[i].sample = p->sample < t->next_sample ? t->next_sample : p->sample;
		t->pending[t->npending++] = *p;
	}
	return 0;
}

static void step_once(struct twin *t, uint64_t sample, struct mead_frame *f)
{
	/* pulses due now (or overdue: the tick they were written for has come) */
	uint32_t keep = 0;
	for (uint32_t i = 0; i < t->npending; i++) {
		if (t->pending[i].sample <= sample)
			mead_sim_input(t->sim, t->pending[i].electrode);
		else
			t->pending[keep++] = t->pending[i];
	}
	t->npending = keep;
	const uint32_t *sp;
	uint32_t ns;
	mead_sim_step(t->sim, &sp, &ns);
	if (f) {
		for (uint32_t q = 0; q < ns; q++) {
			if (f->n_spikes < f->spike_capacity && f->spikes) {
				f->spikes[f->n_spikes++] = (struct mead_spike){
					.sample = sample,
					.electrode = (uint16_t)mead_sim_neuron_electrode(t->sim, sp[q]),
					.flags = 0,
					.amplitude_uv = TWIN_SPIKE_UV,
				};
			} else {
				f->spikes_dropped++;
			}
		}
	}
	__atomic_store_n(&t->spikes_total, t->spikes_total + ns, __ATOMIC_RELAXED);
	__atomic_store_n(&t->steps, t->steps + 1, __ATOMIC_RELAXED);
}

static int twin_read_frame(void *state, uint64_t tick, struct mead_frame *f)
{
	struct twin *t = state;
	(void)tick;
	f->flags = 0;
	f->n_spikes = 0;
	f->spikes_dropped = 0;
	f->raw_samples = 0;
	/* A culture does not pause: samples the loop skipped are lived through
	 * unreported, so the network stays on the loop's sample clock. */
	while (t->next_sample < f->first_sample) {
		step_once(t, t->next_sample, NULL);
		t->next_sample++;
	}
	uint64_t end = f->first_sample + f->n_samples;
	for (uint64_t s = f->first_sample; s < end; s++) {
		if (s < t->next_sample)
			continue; /* already simulated */
		step_once(t, s, f);
		t->next_sample = s + 1;
	}
	return 0;
}

static int twin_control(void *state, enum mead_driver_control op, int64_t value)
{
	struct twin *t = state;
	switch (op) {
	case MEAD_CTL_RESET_STATE:
		mead_sim_reset_state(t->sim);
		return 0;
	case MEAD_CTL_LEARNING:
		mead_sim_set_learning(t->sim, value != 0);
		__atomic_store_n(&t->learning, value != 0, __ATOMIC_RELAXED);
		return 0;
	case MEAD_CTL_SAMPLE_END:
		mead_sim_normalise(t->sim);
		return 0;
	case MEAD_CTL_SNAPSHOT_SAVE:
		if (value < 0 || value > UINT32_MAX)
			return -ERANGE;
		return mead_sim_snapshot_save(t->sim, (uint32_t)value);
	case MEAD_CTL_SNAPSHOT_RESTORE:
		if (value < 0 || value > UINT32_MAX)
			return -ERANGE;
		return mead_sim_snapshot_restore(t->sim, (uint32_t)value);
	case MEAD_CTL_THRESHOLD:
		break;   /* its spikes are its neurons', no detector has a threshold */
	}
	return -EOPNOTSUPP;
}

static int twin_stop_outputs(void *state)
{
	struct twin *t = state;
	/* Stop means no pulse already written reaches the culture either. */
	__atomic_store_n(&t->npending, 0, __ATOMIC_RELAXED);
	return 0;
}

static int twin_stop(void *state)
{
	struct twin *t = state;
	if (t->save_path[0])
		return mead_sim_save(t->sim, t->save_path);
	return 0;
}

static int twin_describe(void *state, char *buf, size_t len)
{
	struct twin *t = state;
	char tmp[8192];
	size_t o = 0;
	int k = snprintf(tmp, sizeof(tmp),
			 "{\"preset\":\"%s\",\"placement\":\"%s\",\"neurons\":%u,\"synapses\":%llu,\"electrodes\":%u,"
			 "\"sample_rate_hz\":%u,\"dt_ms\":%g,\"seed\":%llu,\"learning\":%s,\"steps\":%llu,\"spikes\":%llu,"
			 "\"pulses_dropped\":%llu,\"step_us_at_open\":%.3f,\"neurons_per_electrode\":[",
			 t->preset,
			 mead_sim_get_params(t->sim)->placement == MEAD_SIM_PLACE_EVEN ? "even" : "uniform",
			 t->neurons, (unsigned long long)t->synapses, t->ne, t->rate_hz,
			 mead_sim_get_params(t->sim)->dt_ms, (unsigned long long)mead_sim_get_params(t->sim)->seed,
			 __atomic_load_n(&t->learning, __ATOMIC_RELAXED) ? "true" : "false",
			 (unsigned long long)__atomic_load_n(&t->steps, __ATOMIC_RELAXED),
			 (unsigned long long)__atomic_load_n(&t->spikes_total, __ATOMIC_RELAXED),
			 (unsigned long long)__atomic_load_n(&t->pulses_dropped, __ATOMIC_RELAXED), t->step_ns / 1e3);
	if (k < 0)
		return -EIO;
	o = (size_t)k;
	for (uint32_t e = 0; e < t->ne && o < sizeof(tmp); e++) {
		k = snprintf(tmp + o, sizeof(tmp) - o, "%s%u", e ? "," : "", t->per_electrode[e]);
		if (k < 0)
			return -EIO;
		o += (size_t)k;
	}
	if (o < sizeof(tmp))
		o += (size_t)snprintf(tmp + o, sizeof(tmp) - o, "]}");
	if (o >= sizeof(tmp))
		return -ENOSPC;
	if (!buf || len <= o)
		return -ENOSPC;
	memcpy(buf, tmp, o + 1);
	return (int)o;
}

static const struct mead_driver_ops twin_ops = {
	.abi_version = MEAD_DRIVER_ABI_VERSION,
	.ops_size = sizeof(struct mead_driver_ops),
	.name = "twin",
	.description = "simulated MEA culture (docs/twin.md): LIF network with STDP, one sample per step",
	.params = twin_params,
	.open = twin_open,
	.close = twin_close,
	.get_caps = twin_get_caps,
	.start = twin_start,
	.write_stim = twin_write_stim,
	.read_frame = twin_read_frame,
	.control = twin_control,
	.stop_outputs = twin_stop_outputs,
	.stop = twin_stop,
	.describe = twin_describe,
};

MEAD_DRIVER_EXPORT(twin_ops)
