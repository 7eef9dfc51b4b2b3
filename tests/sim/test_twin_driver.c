/* SPDX-License-Identifier: MIT */
/* The twin driver loaded the way the daemon loads it (dlopen + entry
 * symbol) and driven tick by tick through its vtable. */
#include <dlfcn.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "mead/driver.h"
#include "sim/mead_sim.h"
#include "tests/lib/harness.h"

static const struct mead_driver_ops *ops;
static struct mead_stim_result res[256];   /* what write_stim says of each pulse */
static struct harness h;

static int load(void **state)
{
	(void)state;
	ops = harness_load(&h, "twin");
	if (!ops) {
		fprintf(stderr, "cannot load the twin driver from $MEAD_DRIVER_PATH: %s\n", dlerror());
		return -1;
	}
	return 0;
}

static int unload(void **state)
{
	(void)state;
	harness_unload(&h);
	return 0;
}

struct kv { const char *k, *v; };

static void *open_twin(uint32_t period_us, uint64_t seed, bool virt, const struct mead_layout_view *layout,
		       const struct kv *extra, int *ret_err, char *err, size_t err_len)
{
	struct mead_driver_param params[16];
	size_t n = 0;
	bool has_preset = false;
	for (const struct kv *e = extra; e && e->k; e++)
		has_preset |= !strcmp(e->k, "preset");
	if (!has_preset)
		params[n++] = (struct mead_driver_param){ "preset", "bio-240" };
	for (; extra && extra->k; extra++)
		params[n++] = (struct mead_driver_param){ extra->k, extra->v };
	struct mead_driver_config cfg = {
		.abi_version = MEAD_DRIVER_ABI_VERSION,
		.period_us = period_us,
		.period_ns = period_us * 1000u,
		.seed = seed,
		.virtual_clock = virt,
		.layout = layout,
		.params = params,
		.n_params = n,
	};
	void *st = (void *)0x1;
	char dummy[256];
	int r = ops->open(&cfg, &st, err ? err : dummy, err ? err_len : sizeof(dummy));
	if (ret_err)
		*ret_err = r;
	if (r < 0) {
		assert_ptr_equal(st, (void *)0x1);
		return NULL;
	}
	return st;
}

static void test_vtable(void **state)
{
	(void)state;
	assert_int_equal(ops->abi_version, MEAD_DRIVER_ABI_VERSION);
	assert_int_equal(ops->ops_size, sizeof(struct mead_driver_ops));
	assert_string_equal(ops->name, "twin");
	const char *need[] = { "preset", "neurons", "dt_ms", "tau_m_ms", "v_rest_mv", "v_reset_mv",
			       "v_threshold_mv", "v_lower_bound_mv", "refractory_ms", "tau_stdp_ms", "a_plus",
			       "a_minus", "exc_strength", "inh_strength", "input_strength", "sigma_e_mm",
			       "sigma_i_mm", "electrode_reach_mm", "prune_threshold", "stdp", "weights_load",
			       "weights_save" };
	for (size_t i = 0; i < sizeof(need) / sizeof(need[0]); i++) {
		bool found = false;
		for (const struct mead_param_spec *p = ops->params; p->key; p++)
			found |= !strcmp(p->key, need[i]);
		assert_true(found);
	}
	assert_non_null(ops->open);
	assert_non_null(ops->read_frame);
	assert_non_null(ops->write_stim);
	assert_non_null(ops->control);
	assert_non_null(ops->describe);
}

static void test_bad_options(void **state)
{
	(void)state;
	char err[256] = "";
	int r;
	assert_null(open_twin(1000, 1, false, NULL, (struct kv[]){ { "preset", "bio-7" }, { 0 } }, &r, err, sizeof(err)));
	assert_int_equal(r, -EINVAL);
	assert_true(strlen(err) > 0);
	assert_null(open_twin(1000, 1, false, NULL, (struct kv[]){ { "v_lower_bound_mv", "low" }, { 0 } }, &r, err,
			      sizeof(err)));
	assert_int_equal(r, -EINVAL);
	assert_non_null(strstr(err, "v_lower_bound_mv"));
	assert_null(open_twin(1000, 1, false, NULL, (struct kv[]){ { "placement", "grid" }, { 0 } }, &r, err,
			      sizeof(err)));
	assert_int_equal(r, -EINVAL);
	assert_non_null(strstr(err, "placement"));
	assert_non_null(strstr(err, "'grid'"));
}

/* Runs ticks of `period_us` over `samples` samples with pulses on electrodes
 * 0..5 every 5th sample (and on `extra_e` when >= 0), collecting spikes. */
struct run {
	struct mead_spike sp[200000];
	uint32_t n;
	uint64_t dropped;
};

static void drive(void *st, uint32_t spt, uint64_t first, uint32_t samples, int extra_e, struct run *out)
{
	static struct mead_spike buf[65536];
	for (uint64_t s0 = first; s0 < first + samples; s0 += spt) {
		uint64_t tick = s0 / spt;
		struct mead_stim_pulse p[128];
		uint32_t np = 0;
		for (uint64_t s = s0; s < s0 + spt; s++) {
			if (s % 5)
				continue;
			for (uint16_t e = 0; e < 6; e++)
				p[np++] = (struct mead_stim_pulse){ .sample = s, .electrode = e, .amplitude_ua = -20 };
			if (extra_e >= 0)
				p[np++] = (struct mead_stim_pulse){ .sample = s, .electrode = (uint16_t)extra_e,
								    .amplitude_ua = -20 };
		}
		assert_int_equal(ops->write_stim(st, tick, p, np, res), 0);
		struct mead_frame f = { .first_sample = s0, .n_samples = spt, .spikes = buf,
					.spike_capacity = 65536 };
		assert_int_equal(ops->read_frame(st, tick, &f), 0);
		assert_int_equal(f.spikes_dropped, 0);
		for (uint32_t q = 0; q < f.n_spikes; q++) {
			assert_true(f.spikes[q].sample >= s0 && f.spikes[q].sample < s0 + spt);
			if (q)
				assert_true(f.spikes[q].sample >= f.spikes[q - 1].sample);
			assert_true(f.spikes[q].electrode < 60);
			assert_true(f.spikes[q].amplitude_uv < 0);
			assert_int_equal(f.spikes[q].flags, 0);
			if (out && out->n < 200000)
				out->sp[out->n++] = f.spikes[q];
		}
	}
}

static bool same(const struct run *a, const struct run *b)
{
	if (a->n != b->n)
		return false;
	for (uint32_t i = 0; i < a->n; i++)
		if (a->sp[i].sample != b->sp[i].sample || a->sp[i].electrode != b->sp[i].electrode)
			return false;
	return true;
}

static void test_caps_and_ticks(void **state)
{
	(void)state;
	static struct run a, b, c, lib;
	void *st = open_twin(1000, 7, false, NULL, NULL, NULL, NULL, 0);
	assert_non_null(st);
	struct mead_driver_caps caps;
	assert_int_equal(ops->get_caps(st, &caps), 0);
	assert_int_equal(caps.electrode_count, 60);
	assert_int_equal(caps.sample_rate_hz, 1000);
	assert_int_equal(caps.max_spikes_per_tick_hint, 240);
	assert_int_equal(caps.flags, MEAD_CAP_STIMULATE | MEAD_CAP_SIMULATED | MEAD_CAP_PLASTICITY | MEAD_CAP_RESETTABLE);
	/* every neuron lies in one electrode's cell: the protocol's rule divides by these */
	assert_non_null(caps.units_per_electrode);
	uint32_t units = 0;
	for (uint32_t e = 0; e < caps.electrode_count; e++)
		units += caps.units_per_electrode[e];
	assert_int_equal(units, 240);
	assert_int_equal(ops->start(st, NULL, 0), 0);
	drive(st, 1, 0, 1000, -1, &a);
	assert_int_equal(ops->stop(st), 0);
	ops->close(st);
	assert_true(a.n > 1000);

	/* 10 samples a tick, virtual clock: the same spikes */
	st = open_twin(10000, 7, true, NULL, NULL, NULL, NULL, 0);
	assert_int_equal(ops->get_caps(st, &caps), 0);
	assert_int_equal(caps.max_spikes_per_tick_hint, 2400);
	drive(st, 10, 0, 1000, -1, &b);
	ops->close(st);
	assert_true(same(&a, &b));

	/* the library driven directly, one step per sample: the same spikes */
	struct mead_sim_params p = { .seed = 7 };
	mead_sim_params_preset("bio-240", &p);
	p.seed = 7;
	struct mead_sim *sim;
	assert_int_equal(mead_sim_new(&p, &sim), 0);
	for (uint64_t s = 0; s < 1000; s++) {
		if (s % 5 == 0)
			for (uint32_t e = 0; e < 6; e++)
				mead_sim_input(sim, e);
		const uint32_t *sp;
		uint32_t ns;
		mead_sim_step(sim, &sp, &ns);
		for (uint32_t q = 0; q < ns; q++)
			lib.sp[lib.n++] = (struct mead_spike){ .sample = s,
							       .electrode = (uint16_t)mead_sim_neuron_electrode(sim, sp[q]) };
	}
	mead_sim_free(sim);
	assert_true(same(&a, &lib));

	/* another seed: another culture */
	st = open_twin(1000, 8, false, NULL, NULL, NULL, NULL, 0);
	drive(st, 1, 0, 1000, -1, &c);
	ops->close(st);
	assert_false(same(&a, &c));
}

static void test_excluded_and_out_of_range(void **state)
{
	(void)state;
	static struct run a, b, c;
	static struct mead_electrode el[60];
	for (uint16_t e = 0; e < 60; e++)
		el[e] = (struct mead_electrode){ .row = e / 10, .col = e % 10, .excluded = e == 33 };
	struct mead_layout_view lay = { .rows = 6, .cols = 10, .count = 60, .pitch_um = 500, .electrodes = el };
	void *st = open_twin(1000, 4, false, &lay, NULL, NULL, NULL, 0);
	drive(st, 1, 0, 500, -1, &a);
	ops->close(st);
	st = open_twin(1000, 4, false, &lay, NULL, NULL, NULL, 0);
	drive(st, 1, 0, 500, 33, &b); /* excluded: ignored */
	ops->close(st);
	assert_true(same(&a, &b));
	st = open_twin(1000, 4, false, &lay, NULL, NULL, NULL, 0);
	drive(st, 1, 0, 500, 60, &c); /* out of range: ignored */
	ops->close(st);
	assert_true(same(&a, &c));
	st = open_twin(1000, 4, false, NULL, NULL, NULL, NULL, 0);
	drive(st, 1, 0, 500, 33, &c); /* not excluded: it matters */
	ops->close(st);
	assert_false(same(&a, &c));
	struct mead_layout_view small = { .rows = 8, .cols = 8, .count = 59, .electrodes = el };
	int r;
	assert_null(open_twin(1000, 4, false, &small, NULL, &r, NULL, 0));
	assert_int_equal(r, -EINVAL);
}

/* What the twin says of each pulse: delivered at the sample asked for (it
 * misses nothing), refused with a reason on an excluded or absent
 * electrode. */
static void test_stim_results(void **state)
{
	(void)state;
	static struct mead_electrode el[60];
	for (uint16_t e = 0; e < 60; e++)
		el[e] = (struct mead_electrode){ .row = e / 10, .col = e % 10, .excluded = e == 33 };
	struct mead_layout_view lay = { .rows = 6, .cols = 10, .count = 60, .pitch_um = 500, .electrodes = el };
	void *st = open_twin(1000, 4, true, &lay, NULL, NULL, NULL, 0);
	struct mead_stim_pulse p[3] = {
		{ .sample = 7, .electrode = 2, .amplitude_ua = -20 },
		{ .sample = 7, .electrode = 33, .amplitude_ua = -20 },
		{ .sample = 8, .electrode = 60, .amplitude_ua = -20 },
	};
	assert_int_equal(ops->write_stim(st, 7, p, 3, res), 0);
	assert_int_equal(res[0].status, MEAD_STIM_DELIVERED);
	assert_int_equal(res[0].sample, 7);
	assert_int_equal(res[1].status, MEAD_STIM_REFUSED);
	assert_int_equal(res[1].reason, MEAD_STIM_REASON_RANGE);
	assert_int_equal(res[2].status, MEAD_STIM_REFUSED);
	ops->close(st);
}

/* stop_outputs drops what was written but has not started: a pulse queued
 * for a later sample never reaches the culture. */
static void test_stop_outputs_drops_queued(void **state)
{
	(void)state;
	static struct mead_spike buf[65536];
	uint64_t spikes[2] = { 0, 0 };
	for (int stop = 0; stop < 2; stop++) {
		void *st = open_twin(1000, 9, true, NULL, NULL, NULL, NULL, 0);
		struct mead_stim_pulse p[6];
		for (uint16_t e = 0; e < 6; e++)
			p[e] = (struct mead_stim_pulse){ .sample = 20, .electrode = e, .amplitude_ua = -20 };
		assert_int_equal(ops->write_stim(st, 0, p, 6, res), 0);
		if (stop)
			assert_int_equal(ops->stop_outputs(st), 0);
		for (uint64_t t = 0; t < 100; t++) {
			struct mead_frame f = { .first_sample = t, .n_samples = 1, .spikes = buf, .spike_capacity = 65536 };
			assert_int_equal(ops->read_frame(st, t, &f), 0);
			spikes[stop] += f.n_spikes;
		}
		ops->close(st);
	}
	print_message("spikes after a queued burst: %llu, after the same burst and stop_outputs: %llu\n",
		      (unsigned long long)spikes[0], (unsigned long long)spikes[1]);
	assert_true(spikes[0] > 0);
	assert_int_equal(spikes[1], 0);
}

/* At the real-time clock a culture too slow for its ticks is refused at
 * open with its measured cost, not left to fall behind the loop. */
static void test_realtime_too_slow_refused(void **state)
{
	(void)state;
	char err[512] = "";
	int r;
	/* 1000 steps of 2000 neurons per 1 ms tick: far beyond any machine */
	assert_null(open_twin(1000, 1, false, NULL, (struct kv[]){ { "dt_ms", "0.001" }, { "neurons", "2000" }, { 0 } },
			      &r, err, sizeof(err)));
	assert_int_equal(r, -EOVERFLOW);
	print_message("%s\n", err);
	assert_non_null(strstr(err, "cannot keep the real-time clock"));
	assert_non_null(strstr(err, "real time"));
	/* the virtual clock has no deadline; the check can also be waived */
	void *st = open_twin(1000, 1, true, NULL, (struct kv[]){ { "dt_ms", "0.001" }, { 0 } }, &r, err, sizeof(err));
	assert_non_null(st);
	ops->close(st);
	st = open_twin(1000, 1, false, NULL, (struct kv[]){ { "dt_ms", "0.001" }, { "realtime_check", "false" }, { 0 } },
		       &r, err, sizeof(err));
	assert_non_null(st);
	ops->close(st);
}

static void test_describe_and_control(void **state)
{
	(void)state;
	void *st = open_twin(1000, 2, false, NULL, NULL, NULL, NULL, 0);
	char buf[4096];
	int n = ops->describe(st, buf, sizeof(buf));
	assert_true(n > 0 && (size_t)n == strlen(buf));
	assert_non_null(strstr(buf, "\"preset\":\"bio-240\""));
	assert_non_null(strstr(buf, "\"neurons\":240"));
	assert_non_null(strstr(buf, "\"synapses\":"));
	assert_non_null(strstr(buf, "\"learning\":true"));
	const char *npe = strstr(buf, "\"neurons_per_electrode\":[");
	assert_non_null(npe);
	npe = strchr(npe, '[') + 1;
	unsigned sum = 0, count = 0;
	while (*npe && *npe != ']') {
		char *end;
		sum += (unsigned)strtoul(npe, &end, 10);
		count++;
		npe = *end == ',' ? end + 1 : end;
	}
	assert_int_equal(count, 60);
	assert_int_equal(sum, 240);
	assert_true(ops->describe(st, buf, 10) < 0);

	assert_int_equal(ops->control(st, MEAD_CTL_LEARNING, 0), 0);
	ops->describe(st, buf, sizeof(buf));
	assert_non_null(strstr(buf, "\"learning\":false"));
	assert_int_equal(ops->control(st, MEAD_CTL_RESET_STATE, 0), 0);
	assert_int_equal(ops->control(st, MEAD_CTL_SAMPLE_END, 0), 0);
	assert_int_equal(ops->control(st, (enum mead_driver_control)99, 0), -EOPNOTSUPP);
	assert_int_equal(ops->stop_outputs(st), 0);

	/* snapshots: a probe after restoring gives what it gave when saved */
	static struct run p1, p2, p3;
	assert_int_equal(ops->control(st, MEAD_CTL_SNAPSHOT_RESTORE, 0), -ENOENT);
	assert_int_equal(ops->control(st, MEAD_CTL_SNAPSHOT_SAVE, 0), 0);
	drive(st, 1, 0, 200, -1, &p1);
	ops->control(st, MEAD_CTL_RESET_STATE, 0);
	ops->control(st, MEAD_CTL_LEARNING, 1);
	drive(st, 1, 200, 2000, -1, NULL);
	ops->control(st, MEAD_CTL_LEARNING, 0);
	ops->control(st, MEAD_CTL_RESET_STATE, 0);
	drive(st, 1, 2200, 200, -1, &p2);
	assert_int_equal(ops->control(st, MEAD_CTL_SNAPSHOT_RESTORE, 0), 0);
	ops->control(st, MEAD_CTL_RESET_STATE, 0);
	drive(st, 1, 2400, 200, -1, &p3);
	for (uint32_t i = 0; i < p1.n; i++)
		p1.sp[i].sample += 2400;
	assert_true(same(&p1, &p3));
	for (uint32_t i = 0; i < p2.n; i++)
		p2.sp[i].sample += 200;
	assert_false(same(&p2, &p3));
	assert_int_equal(ops->control(st, MEAD_CTL_SNAPSHOT_SAVE, 9), -ERANGE);
	ops->close(st);
}

static void test_capacity(void **state)
{
	(void)state;
	void *st = open_twin(100000, 1, false, NULL, NULL, NULL, NULL, 0);
	struct mead_stim_pulse p[60];
	for (uint16_t e = 0; e < 60; e++)
		p[e] = (struct mead_stim_pulse){ .sample = 0, .electrode = e };
	ops->write_stim(st, 0, p, 60, res);
	struct mead_spike buf[4];
	struct mead_frame f = { .first_sample = 0, .n_samples = 100, .spikes = buf, .spike_capacity = 4 };
	assert_int_equal(ops->read_frame(st, 0, &f), 0);
	assert_int_equal(f.n_spikes, 4);
	assert_true(f.spikes_dropped > 0);
	/* zero samples in a tick is fine */
	f = (struct mead_frame){ .first_sample = 100, .n_samples = 0, .spikes = buf, .spike_capacity = 4 };
	assert_int_equal(ops->read_frame(st, 1, &f), 0);
	assert_int_equal(f.n_spikes, 0);
	ops->close(st);
}

static void test_weights_save_load(void **state)
{
	(void)state;
	char path[256], bad[256], err[256];
	const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	snprintf(path, sizeof(path), "%s/mead-twin-test-%d.w", tmp, (int)getpid());
	snprintf(bad, sizeof(bad), "%s/mead-twin-test-%d.bad", tmp, (int)getpid());
	static struct run pa, pb, pc;
	void *a = open_twin(1000, 3, false, NULL, (struct kv[]){ { "weights_save", path }, { 0 } }, NULL, NULL, 0);
	assert_non_null(a);
	drive(a, 1, 0, 3000, -1, NULL); /* training */
	ops->control(a, MEAD_CTL_SAMPLE_END, 0);
	ops->control(a, MEAD_CTL_RESET_STATE, 0);
	ops->control(a, MEAD_CTL_LEARNING, 0);
	drive(a, 1, 3000, 300, -1, &pa);
	assert_int_equal(ops->stop(a), 0);
	ops->close(a);
	assert_int_equal(access(path, R_OK), 0);

	void *b = open_twin(1000, 3, false, NULL,
			    (struct kv[]){ { "weights_load", path }, { "stdp", "false" }, { 0 } }, NULL, NULL, 0);
	assert_non_null(b);
	drive(b, 1, 0, 300, -1, &pb);
	ops->close(b);
	for (uint32_t i = 0; i < pb.n; i++)
		pb.sp[i].sample += 3000;
	assert_true(same(&pa, &pb));

	void *c = open_twin(1000, 3, false, NULL, (struct kv[]){ { "stdp", "false" }, { 0 } }, NULL, NULL, 0);
	drive(c, 1, 0, 300, -1, &pc);
	ops->close(c);
	for (uint32_t i = 0; i < pc.n; i++)
		pc.sp[i].sample += 3000;
	assert_false(same(&pa, &pc)); /* the training mattered */

	FILE *f = fopen(bad, "wb");
	fputs("garbage garbage garbage garbage garbage garbage garbage garbage garbage", f);
	fclose(f);
	int r;
	assert_null(open_twin(1000, 3, false, NULL, (struct kv[]){ { "weights_load", bad }, { 0 } }, &r, err,
			      sizeof(err)));
	assert_int_equal(r, -EBADMSG);
	assert_non_null(strstr(err, "weights_load"));
	assert_null(open_twin(1000, 4, false, NULL, (struct kv[]){ { "weights_load", path }, { 0 } }, &r, err,
			      sizeof(err)));
	assert_int_equal(r, -ESTALE);
	remove(path);
	remove(bad);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vtable),
		cmocka_unit_test(test_bad_options),
		cmocka_unit_test(test_caps_and_ticks),
		cmocka_unit_test(test_excluded_and_out_of_range),
		cmocka_unit_test(test_stim_results),
		cmocka_unit_test(test_stop_outputs_drops_queued),
		cmocka_unit_test(test_realtime_too_slow_refused),
		cmocka_unit_test(test_describe_and_control),
		cmocka_unit_test(test_capacity),
		cmocka_unit_test(test_weights_save_load),
	};
	return cmocka_run_group_tests(tests, load, unload);
}
