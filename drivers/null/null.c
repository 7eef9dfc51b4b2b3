/* SPDX-License-Identifier: MIT */
/*
 * The null driver: a rig with nothing attached.  It accepts stimulation,
 * reports silence (or, when asked, seeded synthetic spikes and raw noise so
 * streams can be exercised without a culture), and keeps a running hash of
 * every call it receives so two runs can be compared tick by tick.
 *
 * Two things a rig has can be pretended, so the daemon's handling of them
 * is tested without hardware: a sample clock of its own that runs faster
 * or slower than the host's (device_clock_ppm; samples exist only once the
 * pretend device has acquired them), and a stimulator whose state outlives
 * the process (outputs_file: one byte, '1' while outputs may be driven,
 * '0' once they are off, in a shared mapping, so a supervisor's clean-up
 * after kill -9 can be checked).
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "lib/core/rng.h"
#include "lib/core/time.h"
#include "mead/driver.h"


struct null_driver {
	uint32_t electrodes;
	uint32_t rate_hz;
	double spike_rate_hz;
	bool raw;
	uint64_t rng;
	uint64_t traffic_hash;     /* FNV-1a over every call and its arguments */
	uint64_t calls;
	uint64_t pulses;
	uint64_t spikes;
	bool outputs_on;
	volatile char *outputs_flag;      /* outputs_file, mapped shared */
	/* the pretend device clock */
	bool device_clock;
	double device_rate;               /* samples per host second: rate x (1 + ppm) */
	uint64_t t0_ns;
	uint64_t delivered;               /* next sample not yet handed to the loop */
};

static const struct mead_param_spec null_params[] = {
	{ "sample_rate_hz", MEAD_PARAM_INT, "1000", 1, 1000000, "acquisition rate the driver pretends to have" },
	{ "spike_rate_hz", MEAD_PARAM_DOUBLE, "0", 0, 1000, "synthetic spikes per electrode per second (0: silence)" },
	{ "raw", MEAD_PARAM_BOOL, "false", 1, 0, "produce raw noise frames" },
	{ "device_clock_ppm", MEAD_PARAM_STRING, "", 1, 0,
	  "pretend a device sample clock this many ppm faster (+) or slower (-) than the host's; empty: none" },
	{ "outputs_file", MEAD_PARAM_STRING, "", 1, 0,
	  "a file whose first byte mirrors the pretend stimulator: 1 while on, 0 once off" },
	{ NULL, 0, NULL, 1, 0, NULL },
};

static void hash_bytes(struct null_driver *d, const void *p, size_t n)
{
	const unsigned char *b = p;

	for (size_t i = 0; i < n; i++) {
		d->traffic_hash ^= b[i];
		d->traffic_hash *= 0x100000001b3ull;
	}
}

static int null_open(const struct mead_driver_config *cfg, void **ret_state, char *err, size_t err_len)
{
	struct null_driver *d;

	if (!cfg || !cfg->layout || cfg->layout->count == 0) {
		snprintf(err, err_len, "null: no electrode layout");
		return -EINVAL;
	}
	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->electrodes = cfg->layout->count;
	d->rate_hz = (uint32_t)mead_driver_param_int(cfg, "sample_rate_hz", 1000);
	d->spike_rate_hz = mead_driver_param_double(cfg, "spike_rate_hz", 0);
	d->raw = mead_driver_param_bool(cfg, "raw", false);
	d->rng = cfg->seed;
	d->traffic_hash = 0xcbf29ce484222325ull;
	const char *ppm = mead_driver_param_string(cfg, "device_clock_ppm", "");
	if (*ppm) {
		char *end;
		double v = strtod(ppm, &end);
		if (*end || !isfinite(v) || fabs(v) > 100000) {
			snprintf(err, err_len, "null: device_clock_ppm: '%s' is not a number of ppm within +-100000", ppm);
			free(d);
			return -EINVAL;
		}
		/* A clock of its own makes sense only against the wall clock. */
		d->device_clock = !cfg->virtual_clock;
		d->device_rate = d->rate_hz * (1.0 + v * 1e-6);
	}
	const char *file = mead_driver_param_string(cfg, "outputs_file", "");
	if (*file) {
		int fd = open(file, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
		if (fd < 0 || ftruncate(fd, 1) < 0) {
			snprintf(err, err_len, "null: outputs_file %s: %s", file, strerror(errno));
			if (fd >= 0)
				close(fd);
			free(d);
			return -EINVAL;
		}
		void *m = mmap(NULL, 1, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		close(fd);
		if (m == MAP_FAILED) {
			snprintf(err, err_len, "null: outputs_file %s: %s", file, strerror(errno));
			free(d);
			return -EINVAL;
		}
		d->outputs_flag = m;
		d->outputs_flag[0] = '0';   /* open leaves the outputs off */
	}
	*ret_state = d;
	return 0;
}

static void set_outputs(struct null_driver *d, bool on)
{
	d->outputs_on = on;
	if (d->outputs_flag)
		d->outputs_flag[0] = on ? '1' : '0';
}

static void null_close(void *state)
{
	struct null_driver *d = state;
	if (!d)
		return;
	if (d->outputs_flag) {
		d->outputs_flag[0] = '0';
		munmap((void *)d->outputs_flag, 1);
	}
	free(d);
}

static int null_get_caps(void *state, struct mead_driver_caps *ret)
{
	struct null_driver *d = state;

	*ret = (struct mead_driver_caps){
		.electrode_count = d->electrodes,
		.sample_rate_hz = d->rate_hz,
		.raw_channels = d->raw ? d->electrodes : 0,
		.uv_per_count = 0.1f,
		.max_spikes_per_tick_hint = 0,
		.flags = MEAD_CAP_STIMULATE | MEAD_CAP_SIMULATED | (d->raw ? MEAD_CAP_RAW : 0) |
			 (d->device_clock ? MEAD_CAP_DEVICE_CLOCK : 0),
		.max_amplitude_ua = 1000.0f,
		.max_phase_us = 10000,
		.max_pulses_per_tick = 0,
	};
	return 0;
}

static int null_start(void *state, char *err, size_t err_len)
{
	struct null_driver *d = state;

	d->t0_ns = mead_now_ns();
	d->delivered = 0;
	return 0;
}

static int null_write_stim(void *state, uint64_t tick, const struct mead_stim_pulse *pulses, uint32_t n,
			   struct mead_stim_result *results)
{
	struct null_driver *d = state;

	hash_bytes(d, "W", 1);
	hash_bytes(d, &tick, sizeof(tick));
	hash_bytes(d, pulses, (size_t)n * sizeof(*pulses));
	d->calls++;
	d->pulses += n;
	if (n)
		set_outputs(d, true);
	/* nothing to miss: every pulse starts when asked */
	for (uint32_t i = 0; i < n; i++)
		results[i] = (struct mead_stim_result){ .pulse = pulses[i], .sample = pulses[i].sample,
							.status = MEAD_STIM_DELIVERED };
	return 0;
}

static int null_read_frame(void *state, uint64_t tick, struct mead_frame *f)
{
	struct null_driver *d = state;

	hash_bytes(d, "R", 1);
	hash_bytes(d, &tick, sizeof(tick));
	hash_bytes(d, &f->first_sample, sizeof(f->first_sample));
	hash_bytes(d, &f->n_samples, sizeof(f->n_samples));
	d->calls++;
	f->n_spikes = 0;
	f->flags = 0;
	f->raw_samples = 0;

	/* Which samples exist: the tick's, or with a device clock of its own
	 * those it has acquired, from the first not yet delivered (a late
	 * tick's samples come with a later one, none skipped). */
	uint64_t from = f->first_sample, upto = f->first_sample + f->n_samples;
	if (d->device_clock) {
		uint64_t acquired = (uint64_t)((double)(mead_now_ns() - d->t0_ns) * 1e-9 * d->device_rate);
		f->acquired = acquired;
		from = d->delivered;
		if (upto > acquired) {
			mead_frame_event(f, MEAD_EVENT_LATE, acquired > from ? acquired : from,
					 upto - (acquired > from ? acquired : from), 0, 0);
			f->flags |= MEAD_FRAME_LATE;
			upto = acquired > from ? acquired : from;
		}
		if (f->raw && upto - from > f->raw_capacity)
			upto = from + f->raw_capacity;
		d->delivered = upto;
	}
	f->raw_first_sample = from;
	if (d->spike_rate_hz > 0) {
		/* Bernoulli per sample and electrode: exact mean, seeded. */
		uint64_t threshold = (uint64_t)(d->spike_rate_hz / d->rate_hz * 18446744073709551615.0);
		for (uint64_t s = from; s < upto; s++)
			for (uint32_t e = 0; e < d->electrodes; e++) {
				if (mead_splitmix64(&d->rng) >= threshold)
					continue;
				if (f->n_spikes >= f->spike_capacity) {
					f->spikes_dropped++;
					continue;
				}
				f->spikes[f->n_spikes++] = (struct mead_spike){
					.sample = s, .electrode = (uint16_t)e,
					.flags = 0, .amplitude_uv = -40.0f,
				};
			}
		d->spikes += f->n_spikes;
	}
	if (f->raw && d->raw) {
		uint32_t n = (uint32_t)(upto - from);
		for (uint32_t s = 0; s < n; s++)
			for (uint32_t c = 0; c < f->raw_channels; c++)
				f->raw[(size_t)s * f->raw_channels + c] = (int16_t)((int64_t)(mead_splitmix64(&d->rng) >> 58) - 32);
		f->raw_samples = n;
	}
	return 0;
}

static int null_control(void *state, enum mead_driver_control op, int64_t value)
{
	struct null_driver *d = state;

	hash_bytes(d, "C", 1);
	hash_bytes(d, &op, sizeof(op));
	hash_bytes(d, &value, sizeof(value));
	d->calls++;
	return -EOPNOTSUPP;
}

static int null_stop_outputs(void *state)
{
	struct null_driver *d = state;

	set_outputs(d, false);
	return 0;
}

static int null_stop(void *state)
{
	return null_stop_outputs(state);
}

static int null_describe(void *state, char *buf, size_t len)
{
	struct null_driver *d = state;
	int n = snprintf(buf, len,
			 "{\"name\":\"null\",\"electrodes\":%u,\"sample_rate_hz\":%u,\"calls\":%llu,"
			 "\"pulses\":%llu,\"spikes\":%llu,\"traffic_hash\":\"%016llx\",\"outputs_on\":%s}",
			 d->electrodes, d->rate_hz, (unsigned long long)d->calls, (unsigned long long)d->pulses,
			 (unsigned long long)d->spikes, (unsigned long long)d->traffic_hash,
			 d->outputs_on ? "true" : "false");
	return n < 0 ? -EIO : n;
}

static const struct mead_driver_ops null_ops = {
	.abi_version = MEAD_DRIVER_ABI_VERSION,
	.ops_size = sizeof(struct mead_driver_ops),
	.name = "null",
	.description = "no hardware: accepts stimulation, reports silence or synthetic spikes",
	.params = null_params,
	.open = null_open,
	.close = null_close,
	.get_caps = null_get_caps,
	.start = null_start,
	.write_stim = null_write_stim,
	.read_frame = null_read_frame,
	.control = null_control,
	.stop_outputs = null_stop_outputs,
	.stop = null_stop,
	.describe = null_describe,
};

MEAD_DRIVER_EXPORT(null_ops)
