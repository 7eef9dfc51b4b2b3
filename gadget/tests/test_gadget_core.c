/* SPDX-License-Identifier: MIT */
/*
 * The pure parts of mead-usb-device, without a kernel: protocol v2 byte
 * layouts, the sample clock, the signal's determinism and the stimulator's
 * scheduling (in time, late, overlapping, out of range, queue full, drops).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gadget/devclock.h"
#include "gadget/proto.h"
#include "gadget/stim.h"
#include "gadget/synth.h"

/* --- clock ---------------------------------------------------------------- */

static void test_muldiv(void **unused)
{
	assert_int_equal(mg_muldiv(10, 10, 3), 33);
	assert_int_equal(mg_muldiv_ceil(10, 10, 3), 34);
	assert_int_equal(mg_muldiv_ceil(10, 9, 3), 30);
	/* a product far past 64 bits */
	assert_true(mg_muldiv(UINT64_MAX, 1000000000u, 1000000001u) == 18446744055262807559ull);
	assert_true(mg_muldiv(1ull << 62, 1ull << 40, 1ull << 50) == 1ull << 52);
	uint64_t x = 0x123456789abcdefull;
	for (int i = 0; i < 1000; i++) {
		x = x * 6364136223846793005ull + 1442695040888963407ull;
		uint64_t a = x >> 20, b = (x & 0xffffffu) + 1, c = ((x >> 7) & 0xffffffffu) + 1;
		uint64_t q = mg_muldiv(a, b, c);
		/* q*c <= a*b < (q+1)*c, checked in long double where it fits */
		long double p = (long double)a * (long double)b;
		assert_true((long double)q * c <= p);
		assert_true(((long double)q + 1) * c > p);
	}
}

static void test_clock_nominal_and_drift(void **unused)
{
	struct mg_clock c = { .rate = 25000, .ppb = 0 };
	assert_int_equal(mg_clock_samples(&c, 1000000000u), 25000);
	assert_int_equal(mg_clock_true_ns_of(&c, 25000), 1000000000u);
	assert_int_equal(mg_clock_true_ns_of(&c, 1), 40000);
	assert_int_equal(mg_clock_samples(&c, 39999), 0);
	assert_int_equal(mg_clock_samples(&c, 40000), 1);

	/* +100 ppm: 2.5 samples ahead after a second, 90 after an hour */
	c.ppb = 100000;
	assert_int_equal(mg_clock_samples(&c, 1000000000u), 25002);
	assert_int_equal(mg_clock_samples(&c, 3600ull * 1000000000u), 3600ull * 25000 + 9000);
	assert_int_equal(mg_clock_dev_ns(&c, 1000000000u), 1000100000u);
	c.ppb = -250000;
	assert_int_equal(mg_clock_samples(&c, 1000000000u), 24993);

	/* true_ns_of is the first instant the count is reached */
	uint32_t rates[] = { 25000, 30000, 44100, 1, 999983 };
	int64_t ppbs[] = { 0, 1, -1, 123456, -98765432 };
	for (int r = 0; r < 5; r++) {
		for (int p = 0; p < 5; p++) {
			c = (struct mg_clock){ .rate = rates[r], .ppb = ppbs[p] };
			for (uint64_t s = 1; s < 5000000000ull; s = s * 7 + 3) {
				uint64_t t = mg_clock_true_ns_of(&c, s);
				assert_true(mg_clock_samples(&c, t) >= s);
				assert_true(mg_clock_samples(&c, t - 1) < s);
			}
		}
	}
}

/* --- protocol layouts ---------------------------------------------------------- */

static void test_info_layout(void **unused)
{
	struct mg_info in = {
		.version = 2, .channels = 60, .rate = 25000, .nv_per_count = 195, .spp = 25,
		.flags = MEAD_USB_INFO_CAN_STIMULATE | MEAD_USB_INFO_REPORTS | MEAD_USB_INFO_WATCHDOG,
		.max_na = 150000, .max_phase_us = 1000, .max_pulses = 16,
	};
	strcpy(in.serial, "MEAD0001");
	strcpy(in.model, "mead-usb-device");
	uint8_t b[64];
	mg_info_encode(b, &in);
	static const uint8_t head[32] = {
		0x4d, 0x45, 0x41, 0x31, 2, 0, 60, 0, 0xa8, 0x61, 0, 0, 195, 0, 0, 0,
		25, 0, 7, 0, 0xf0, 0x49, 0x02, 0, 0xe8, 0x03, 0, 0, 16, 0, 0, 0,
	};
	assert_memory_equal(b, head, 32);
	assert_memory_equal(b + 32, "MEAD0001\0\0\0\0\0\0\0\0", 16);
	assert_memory_equal(b + 48, "mead-usb-device\0", 16);
	struct mg_info out;
	assert_int_equal(mg_info_decode(b, 64, &out), 0);
	assert_int_equal(out.version, 2);
	assert_int_equal(out.flags, 7);
	assert_string_equal(out.serial, "MEAD0001");
	b[0] ^= 1;
	assert_int_equal(mg_info_decode(b, 64, &out), -EPROTO);
}

static void test_sp_header(void **unused)
{
	uint8_t b[16];
	mg_sp_header(b, MEAD_USB_SP_OVERRUN | MEAD_USB_SP_WATCHDOG, 0x01020304u, 0x1122334455667788ull);
	static const uint8_t want[16] = { 0x53, 0x50, 3, 0, 4, 3, 2, 1, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11 };
	assert_memory_equal(b, want, 16);
	assert_int_equal(mg_sp_bytes(25, 60), 3016);
}

static void test_sr_layout(void **unused)
{
	struct mg_record r[2] = {
		{ .started = 0x0102030405060708ull, .cmd_seq = 0xa1a2a3a4u, .index = 0x0b0c, .status = MEAD_USB_ST_LATE,
		  .requested = 0x1112131415161718ull },
		{ .started = 0, .cmd_seq = 7, .index = 1, .status = MEAD_USB_ST_DROPPED, .requested = 99 },
	};
	uint8_t b[8 + 48];
	assert_int_equal(mg_sr_encode(b, 5, r, 2), 56);
	static const uint8_t want[32] = {
		0x53, 0x52, 2, 0, 5, 0, 0, 0,
		8, 7, 6, 5, 4, 3, 2, 1, 0xa4, 0xa3, 0xa2, 0xa1, 0x0c, 0x0b, 1, 0,
		0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12, 0x11,
	};
	assert_memory_equal(b, want, 32);
	uint32_t rseq;
	uint16_t n;
	struct mg_record o[2];
	assert_int_equal(mg_sr_decode(b, 56, &rseq, o, 2, &n), 0);
	assert_int_equal(rseq, 5);
	assert_int_equal(n, 2);
	assert_memory_equal(&o[1], &r[1], sizeof(r[1]));
	assert_int_equal(mg_sr_decode(b, 55, &rseq, o, 2, &n), -EPROTO);
	/* an SR is never longer than the sample packet */
	assert_int_equal(mg_sr_capacity(3016), 125);
	assert_int_equal(mg_sr_capacity(31), 0);
	assert_int_equal(mg_sr_capacity(32), 1);
}

static void test_commands(void **unused)
{
	struct mg_pulse p[2] = {
		{ .start = 1000, .electrode = 3, .amp_na = -20000, .phase_us = 200, .interphase_us = 50 },
		{ .start = 0xffffffffffull, .electrode = 59, .flags = 0, .amp_na = 150000, .phase_us = 1000 },
	};
	uint8_t b[8 + 48];
	assert_int_equal(mg_sc_encode(b, 42, p, 2), 56);
	static const uint8_t want[32] = {
		0x53, 0x43, 2, 0, 42, 0, 0, 0,
		0xe8, 0x03, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0xe0, 0xb1, 0xff, 0xff,
		200, 0, 0, 0, 50, 0, 0, 0,
	};
	assert_memory_equal(b, want, 32);
	struct mg_cmd h;
	assert_int_equal(mg_cmd_length(b, 7, 16, &h), 0);
	assert_int_equal(mg_cmd_length(b, 8, 16, &h), 56);
	assert_int_equal(h.seq, 42);
	assert_int_equal(mg_cmd_length(b, 8, 1, &h), -E2BIG);
	struct mg_pulse q;
	mg_pulse_decode(b + 8 + 24, 42, 1, &q);
	assert_true(q.start == p[1].start);
	assert_int_equal(q.amp_na, 150000);
	assert_int_equal(q.cmd_seq, 42);
	assert_int_equal(q.index, 1);

	uint8_t k[8];
	mg_short_cmd(k, MEAD_USB_SK_MAGIC, 9);
	static const uint8_t sk[8] = { 0x53, 0x4b, 0, 0, 9, 0, 0, 0 };
	assert_memory_equal(k, sk, 8);
	assert_int_equal(mg_cmd_length(k, 8, 16, &h), 8);
	mg_short_cmd(k, MEAD_USB_SX_MAGIC, 0);
	assert_int_equal(k[0], 0x53);
	assert_int_equal(k[1], 0x58);
	assert_int_equal(mg_cmd_length(k, 8, 16, &h), 8);
	k[1] = 0x5a;
	assert_int_equal(mg_cmd_length(k, 8, 16, &h), -EBADMSG);
	uint8_t zero[8] = { 0x53, 0x43, 0, 0 };
	assert_int_equal(mg_cmd_length(zero, 8, 16, &h), -E2BIG);
}

/* --- signal ----------------------------------------------------------------- */

static void test_splitmix_reference(void **unused)
{
	/* the reference generator's published outputs for seed 1234567 */
	static const uint64_t want[5] = {
		6457827717110365317ull, 3203168211198807973ull, 9817491932198370423ull,
		4593380528125082431ull, 16408922859458223821ull,
	};
	for (int i = 0; i < 5; i++)
		assert_true(mg_splitmix64_at(1234567, (uint64_t)i) == want[i]);
	assert_int_equal(mg_noise_raw(0), -131070);
	assert_int_equal(mg_noise_raw(UINT64_MAX), 131070);
}

static const uint16_t spiking[] = { 0, 15, 30, 45, 59 };

static void make_synth(struct mg_synth *s, uint64_t seed)
{
	char err[200];
	struct mg_synth_config c = {
		.channels = 60, .rate = 25000, .seed = seed, .nv_per_count = 195, .noise_nv = 10000,
		.spike_nv = 100000, .spike_every_us = 20000, .electrodes = spiking, .n_electrodes = 5,
	};
	assert_int_equal(mg_synth_init(s, &c, err, sizeof(err)), 0);
}

static int16_t at(const uint8_t *b, size_t i) { return (int16_t)mead_usb_get16(b + 2 * i); }

static void test_signal_deterministic(void **unused)
{
	struct mg_synth s;
	make_synth(&s, 7);
	enum { N = 2000 };
	uint8_t *whole = malloc((size_t)N * 60 * 2), *parts = malloc((size_t)N * 60 * 2);
	mg_synth_fill(&s, 10000, N, whole);
	/* any cut gives the same samples: packets may be dropped or resized */
	uint32_t cuts[] = { 1, 24, 25, 7, 400, 1543 };
	for (size_t k = 0; k < sizeof(cuts) / sizeof(cuts[0]); k++) {
		for (uint32_t off = 0; off < N; off += cuts[k]) {
			uint32_t n = off + cuts[k] > N ? N - off : cuts[k];
			mg_synth_fill(&s, 10000 + off, n, parts + (size_t)off * 120);
		}
		assert_memory_equal(whole, parts, (size_t)N * 120);
	}
	/* pinned: the same bytes on every libc and platform */
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < (size_t)N * 120; i++)
		h = (h ^ whole[i]) * 1099511628211ull;
	/* the value an independent implementation of the documented algorithm gives */
	assert_true(h == 0xd8577d8d861806ecull);
	struct mg_synth s2;
	make_synth(&s2, 8);
	mg_synth_fill(&s2, 10000, N, parts);
	assert_memory_not_equal(whole, parts, (size_t)N * 120);
	mg_synth_free(&s2);
	free(whole);
	free(parts);
	mg_synth_free(&s);
}

static void test_noise_statistics(void **unused)
{
	struct mg_synth s;
	char err[200];
	struct mg_synth_config c = { .channels = 8, .rate = 25000, .seed = 3, .nv_per_count = 195, .noise_nv = 10000 };
	assert_int_equal(mg_synth_init(&s, &c, err, sizeof(err)), 0);
	enum { N = 50000 };
	uint8_t *b = malloc((size_t)N * 8 * 2);
	mg_synth_fill(&s, 0, N, b);
	double sum[8] = { 0 }, sq[8] = { 0 }, cross = 0;
	int16_t lo = 0, hi = 0;
	for (size_t i = 0; i < N; i++) {
		for (int ch = 0; ch < 8; ch++) {
			double v = at(b, i * 8 + (size_t)ch);
			sum[ch] += v;
			sq[ch] += v * v;
			lo = v < lo ? (int16_t)v : lo;
			hi = v > hi ? (int16_t)v : hi;
		}
		cross += (double)at(b, i * 8) * at(b, i * 8 + 1);
	}
	const double want_sd = 10000.0 / 195.0;
	for (int ch = 0; ch < 8; ch++) {
		double mean = sum[ch] / N, sd = sqrt(sq[ch] / N - mean * mean);
		assert_true(fabs(mean) < 1.0);
		assert_true(fabs(sd / want_sd - 1.0) < 0.02);
	}
	/* channels independent; the sum of four uniforms never passes 3.47 sd,
	 * so a 5 sd threshold sees only planted spikes */
	assert_true(fabs(cross / N) / (want_sd * want_sd) < 0.03);
	assert_true(hi < 3.47 * want_sd && -lo < 3.47 * want_sd);
	free(b);
	mg_synth_free(&s);
}

static void test_spikes_where_planted(void **unused)
{
	struct mg_synth s;
	make_synth(&s, 11);
	const uint64_t first = 0, n = 25000;   /* one second */
	struct mg_spike spk[400];
	uint32_t ns = mg_synth_spikes(&s, first, first + n, spk, 400);
	/* every 500 samples, electrode i first at 250 + 100 i: 50, 50, 50, 49, 49 */
	assert_int_equal(ns, 248);
	for (uint32_t i = 0; i < 5; i++) {
		assert_int_equal(spk[i].sample, 250 + 100 * i);
		assert_int_equal(spk[i].electrode, spiking[i]);
	}
	uint32_t per[60] = { 0 };
	for (uint32_t i = 1; i < ns; i++)
		assert_true(spk[i].sample > spk[i - 1].sample);
	uint8_t *b = malloc((size_t)n * 120);
	mg_synth_fill(&s, first, (uint32_t)n, b);
	const double noise = 10000.0 / 195.0;
	for (uint32_t i = 0; i < ns; i++) {
		per[spk[i].electrode]++;
		uint64_t t = spk[i].sample;
		int16_t v = at(b, (size_t)t * 60 + spk[i].electrode);
		assert_true(v < -5 * noise);
		/* nothing on a silent channel */
		assert_true(at(b, (size_t)t * 60 + 1) > -3.5 * noise);
	}
	for (int e = 0; e < 5; e++)
		assert_int_equal(per[spiking[e]], e < 3 ? 50 : 49);

	/* without noise the trough is the strict minimum, 100 uV deep */
	struct mg_synth q;
	char err[200];
	struct mg_synth_config c = s.cfg;
	c.noise_nv = 0;
	assert_int_equal(mg_synth_init(&q, &c, err, sizeof(err)), 0);
	mg_synth_fill(&q, first, (uint32_t)n, b);
	for (uint32_t i = 0; i < ns; i++) {
		uint64_t t = spk[i].sample;
		int16_t v = at(b, (size_t)t * 60 + spk[i].electrode);
		assert_int_equal(v, -513);
		for (uint64_t k = t - 20; k < t + 40; k++)
			if (k != t)
				assert_true(at(b, (size_t)k * 60 + spk[i].electrode) > v);
	}
	mg_synth_free(&q);
	/* half-open ranges: nothing counted twice across packets */
	uint32_t total = 0;
	for (uint64_t f = 0; f < n; f += 25)
		total += mg_synth_spikes(&s, f, f + 25, spk, 400);
	assert_int_equal(total, ns);
	free(b);
	mg_synth_free(&s);
}

static void test_synth_refuses(void **unused)
{
	struct mg_synth s;
	char err[200];
	uint16_t bad[] = { 60 };
	struct mg_synth_config c = {
		.channels = 60, .rate = 25000, .nv_per_count = 195, .noise_nv = 10000, .spike_nv = 100000,
		.spike_every_us = 20000, .electrodes = bad, .n_electrodes = 1,
	};
	assert_int_equal(mg_synth_init(&s, &c, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "spike electrode 60"));
	uint16_t twice[] = { 3, 3 };
	c.electrodes = twice;
	c.n_electrodes = 2;
	assert_int_equal(mg_synth_init(&s, &c, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "twice"));
	c.n_electrodes = 1;
	c.spike_every_us = 1000;
	assert_int_equal(mg_synth_init(&s, &c, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "closer"));
	c.spike_every_us = 20000;
	c.spike_nv = 7000000;
	assert_int_equal(mg_synth_init(&s, &c, err, sizeof(err)), -ERANGE);
}

/* --- stimulator ------------------------------------------------------------- */

static const struct mg_stim_limits lim = {
	.channels = 60, .rate = 25000, .max_na = 150000, .max_phase_us = 1000, .max_interphase_us = 1000,
	.max_lead = 3600ull * 25000,
};

static struct mg_pulse pulse(uint64_t start, uint16_t el, uint32_t seq, uint16_t idx)
{
	/* 2 x 200 + 50 us = 450 us = 11.25 samples: busy 12 */
	return (struct mg_pulse){ .start = start, .electrode = el, .amp_na = -20000, .phase_us = 200,
				  .interphase_us = 50, .cmd_seq = seq, .index = idx };
}

static void test_busy_rounding(void **unused)
{
	assert_int_equal(mg_stim_busy(&lim, 200, 50), 12);
	assert_int_equal(mg_stim_busy(&lim, 20, 0), 1);
	assert_int_equal(mg_stim_busy(&lim, 1, 0), 1);
	assert_int_equal(mg_stim_busy(&lim, 1000, 1000), 75);
	assert_int_equal(mg_stim_busy(&lim, 40, 0), 2);
	assert_int_equal(mg_stim_busy(&lim, 41, 0), 3);
}

static void test_in_time_and_late(void **unused)
{
	struct mg_stim s;
	assert_int_equal(mg_stim_init(&s, &lim, 8), 0);
	uint64_t start;
	struct mg_pulse a = pulse(1000, 3, 1, 0), b = pulse(100, 4, 1, 1);
	assert_int_equal(mg_stim_offer(&s, &a, 500, &start), MEAD_USB_ST_DELIVERED);
	assert_int_equal(start, 1000);
	/* its sample passed before it arrived: starts at the arrival */
	assert_int_equal(mg_stim_offer(&s, &b, 500, &start), MEAD_USB_ST_LATE);
	assert_int_equal(start, 500);
	/* exactly now is in time */
	struct mg_pulse c = pulse(700, 5, 1, 2);
	assert_int_equal(mg_stim_offer(&s, &c, 700, &start), MEAD_USB_ST_DELIVERED);

	struct mg_record r[8];
	assert_int_equal(mg_stim_advance(&s, 500, r, 8), 0);
	assert_int_equal(mg_stim_advance(&s, 501, r, 8), 1);
	assert_int_equal(r[0].status, MEAD_USB_ST_LATE);
	assert_int_equal(r[0].started, 500);
	assert_int_equal(r[0].requested, 100);
	assert_int_equal(r[0].index, 1);
	assert_true(mg_stim_active(&s, 511));
	assert_false(mg_stim_active(&s, 512));
	assert_int_equal(mg_stim_advance(&s, 1025, r, 8), 2);
	assert_int_equal(r[0].started, 700);
	assert_int_equal(r[1].started, 1000);
	assert_int_equal(r[1].status, MEAD_USB_ST_DELIVERED);
	assert_int_equal(r[1].requested, 1000);
	/* started and finished ones leave the queue */
	assert_int_equal(mg_stim_advance(&s, 2000, r, 8), 0);
	assert_int_equal(s.n, 0);
	/* arriving behind what was already reported counts from there */
	struct mg_pulse d = pulse(1500, 1, 2, 0);
	assert_int_equal(mg_stim_offer(&s, &d, 1800, &start), MEAD_USB_ST_LATE);
	assert_int_equal(start, 2000);
	mg_stim_free(&s);
}

static void test_overlap(void **unused)
{
	struct mg_stim s;
	assert_int_equal(mg_stim_init(&s, &lim, 8), 0);
	uint64_t start;
	struct mg_pulse a = pulse(1000, 3, 1, 0);
	assert_int_equal(mg_stim_offer(&s, &a, 0, &start), MEAD_USB_ST_DELIVERED);
	/* one stimulator: another electrode overlapping is refused too */
	struct mg_pulse b = pulse(1011, 9, 1, 1);
	assert_int_equal(mg_stim_offer(&s, &b, 0, &start), MEAD_USB_ST_OVERLAP);
	struct mg_pulse c = pulse(989, 9, 1, 2);
	assert_int_equal(mg_stim_offer(&s, &c, 0, &start), MEAD_USB_ST_OVERLAP);
	/* back to back is fine on both sides */
	struct mg_pulse d = pulse(1012, 9, 1, 3), e = pulse(988, 9, 1, 4);
	assert_int_equal(mg_stim_offer(&s, &d, 0, &start), MEAD_USB_ST_DELIVERED);
	assert_int_equal(mg_stim_offer(&s, &e, 0, &start), MEAD_USB_ST_DELIVERED);
	/* a late pulse overlapping the one playing now */
	struct mg_record r[8];
	assert_int_equal(mg_stim_advance(&s, 1005, r, 8), 2);
	struct mg_pulse f = pulse(10, 2, 2, 0);
	assert_int_equal(mg_stim_offer(&s, &f, 1005, &start), MEAD_USB_ST_OVERLAP);
	mg_stim_free(&s);
}

static void test_range(void **unused)
{
	struct mg_stim s;
	assert_int_equal(mg_stim_init(&s, &lim, 8), 0);
	uint64_t start;
	struct mg_pulse p = pulse(1000, 60, 1, 0);
	assert_int_equal(mg_stim_offer(&s, &p, 0, &start), MEAD_USB_ST_RANGE);
	p = pulse(1000, 59, 1, 0);
	p.amp_na = 150001;
	assert_int_equal(mg_stim_offer(&s, &p, 0, &start), MEAD_USB_ST_RANGE);
	p.amp_na = -150001;
	assert_int_equal(mg_stim_offer(&s, &p, 0, &start), MEAD_USB_ST_RANGE);
	p.amp_na = INT32_MIN;
	assert_int_equal(mg_stim_offer(&s, &p, 0, &start), MEAD_USB_ST_RANGE);
	p.amp_na = 0;
	assert_int_equal(mg_stim_offer(&s, &p, 0, &start), MEAD_USB_ST_RANGE);
	p = pulse(1000, 59, 1, 0);
	p.phase_us = 0;
	assert_int_equal(mg_stim_offer(&s, &p, 0, &start), MEAD_USB_ST_RANGE);
	p.phase_us = 1001;
	assert_int_equal(mg_stim_offer(&s, &p, 0, &start), MEAD_USB_ST_RANGE);
	p = pulse(1000, 59, 1, 0);
	p.interphase_us = 1001;
	assert_int_equal(mg_stim_offer(&s, &p, 0, &start), MEAD_USB_ST_RANGE);
	p = pulse(1000, 59, 1, 0);
	p.flags = 1;
	assert_int_equal(mg_stim_offer(&s, &p, 0, &start), MEAD_USB_ST_RANGE);
	p = pulse(UINT64_MAX - 3, 59, 1, 0);
	assert_int_equal(mg_stim_offer(&s, &p, 0, &start), MEAD_USB_ST_RANGE);
	/* range is judged before overlap */
	p = pulse(1000, 59, 1, 0);
	p.amp_na = 150000;
	p.phase_us = 1000;
	assert_int_equal(mg_stim_offer(&s, &p, 0, &start), MEAD_USB_ST_DELIVERED);
	p.electrode = 70;
	assert_int_equal(mg_stim_offer(&s, &p, 0, &start), MEAD_USB_ST_RANGE);
	mg_stim_free(&s);
}

static void test_queue_full(void **unused)
{
	struct mg_stim s;
	assert_int_equal(mg_stim_init(&s, &lim, 3), 0);
	uint64_t start;
	for (uint16_t i = 0; i < 3; i++) {
		struct mg_pulse p = pulse(1000 + 100u * i, 1, 1, i);
		assert_int_equal(mg_stim_offer(&s, &p, 0, &start), MEAD_USB_ST_DELIVERED);
	}
	struct mg_pulse p = pulse(2000, 1, 1, 3);
	assert_int_equal(mg_stim_offer(&s, &p, 0, &start), MEAD_USB_ST_QUEUE_FULL);
	/* overlap is judged before a full queue */
	p = pulse(1001, 1, 1, 4);
	assert_int_equal(mg_stim_offer(&s, &p, 0, &start), MEAD_USB_ST_OVERLAP);
	/* room again once the first has played and been reported */
	struct mg_record r[4];
	assert_int_equal(mg_stim_advance(&s, 1050, r, 4), 1);
	p = pulse(2000, 1, 1, 5);
	assert_int_equal(mg_stim_offer(&s, &p, 1050, &start), MEAD_USB_ST_DELIVERED);
	mg_stim_free(&s);
}

static void test_cancel(void **unused)
{
	struct mg_stim s;
	assert_int_equal(mg_stim_init(&s, &lim, 8), 0);
	uint64_t start;
	struct mg_pulse a = pulse(1000, 1, 4, 0), b = pulse(1005 + 1, 2, 4, 1), c = pulse(3000, 3, 4, 2);
	b.start = 1012;
	assert_int_equal(mg_stim_offer(&s, &a, 0, &start), MEAD_USB_ST_DELIVERED);
	assert_int_equal(mg_stim_offer(&s, &b, 0, &start), MEAD_USB_ST_DELIVERED);
	assert_int_equal(mg_stim_offer(&s, &c, 0, &start), MEAD_USB_ST_DELIVERED);
	struct mg_record r[8];
	assert_int_equal(mg_stim_advance(&s, 1001, r, 8), 1);
	/* at 1015: a played, b plays (not yet reported), c waits */
	bool cut;
	assert_int_equal(mg_stim_cancel(&s, 1015, r, 8, &cut), 2);
	assert_true(cut);
	assert_int_equal(r[0].index, 1);
	assert_int_equal(r[0].status, MEAD_USB_ST_DELIVERED);
	assert_int_equal(r[0].started, 1012);
	assert_int_equal(r[1].index, 2);
	assert_int_equal(r[1].status, MEAD_USB_ST_DROPPED);
	assert_int_equal(r[1].started, 0);
	assert_int_equal(r[1].requested, 3000);
	assert_int_equal(s.n, 0);
	assert_false(mg_stim_active(&s, 1016));
	/* after a cancel nothing is reported again */
	assert_int_equal(mg_stim_advance(&s, 5000, r, 8), 0);
	mg_stim_reset(&s);
	assert_int_equal(s.done_upto, 0);
	mg_stim_free(&s);
}

static void test_advance_in_pieces(void **unused)
{
	struct mg_stim s;
	assert_int_equal(mg_stim_init(&s, &lim, 8), 0);
	uint64_t start;
	for (uint16_t i = 0; i < 5; i++) {
		struct mg_pulse p = pulse(100u + 20u * i, 1, 1, i);
		assert_int_equal(mg_stim_offer(&s, &p, 0, &start), MEAD_USB_ST_DELIVERED);
	}
	struct mg_record r[2];
	/* room for two records at a time: the rest wait, in order */
	assert_int_equal(mg_stim_advance(&s, 1000, r, 2), 2);
	assert_int_equal(r[1].index, 1);
	assert_int_equal(mg_stim_advance(&s, 1000, r, 2), 2);
	assert_int_equal(r[0].index, 2);
	assert_int_equal(mg_stim_advance(&s, 1000, r, 2), 1);
	assert_int_equal(r[0].index, 4);
	assert_int_equal(s.n, 0);
	mg_stim_free(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_muldiv),
		cmocka_unit_test(test_clock_nominal_and_drift),
		cmocka_unit_test(test_info_layout),
		cmocka_unit_test(test_sp_header),
		cmocka_unit_test(test_sr_layout),
		cmocka_unit_test(test_commands),
		cmocka_unit_test(test_splitmix_reference),
		cmocka_unit_test(test_signal_deterministic),
		cmocka_unit_test(test_noise_statistics),
		cmocka_unit_test(test_spikes_where_planted),
		cmocka_unit_test(test_synth_refuses),
		cmocka_unit_test(test_busy_rounding),
		cmocka_unit_test(test_in_time_and_late),
		cmocka_unit_test(test_overlap),
		cmocka_unit_test(test_range),
		cmocka_unit_test(test_queue_full),
		cmocka_unit_test(test_cancel),
		cmocka_unit_test(test_advance_in_pieces),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
