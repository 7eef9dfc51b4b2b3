/* SPDX-License-Identifier: MIT */
/*
 * mead-twin-dump PRESET SEED INPUTS OUT
 *
 * Builds the twin network (PRESET, e.g. bio-240 or tsk-240, with SEED),
 * writes it out, runs the input trains of INPUTS through it and writes the
 * raster and the final weights: what tools/bindsnet_check.py needs to run
 * the reference implementation on the very same network and compare, spike
 * for spike.  Each sample runs as the reference presents one: learning set
 * from the sample's flag, for each step its input spikes then one step;
 * after the sample the state is reset and the weights normalised.
 *
 * All integers and floats little-endian; "neurons" N and "electrodes" E are
 * the network's.
 *
 * INPUTS:   u32 samples S, u32 steps T, then per sample:
 *           u8 learn (0 or 1), T x E u8 (1 = the electrode spikes in that
 *           step, 0 = not), step-major.  Nothing after the last sample.
 * OUT.net:  u32 N, u32 E, N x (f32 x_mm, f32 y_mm), then the weights of the
 *           input (E x N), excitatory (N x N) and inhibitory (N x N)
 *           pathways, f32, presynaptic-major (row = pre, column = post),
 *           signed as the model uses them; NaN = pruned.
 * OUT.spk:  S x T x N u8, 1 where the neuron spiked in that step.
 * OUT.wfin: the three weight matrices as in OUT.net, after the last sample.
 */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim/mead_sim.h"

static const char *prog = "mead-twin-dump";

static int fail(const char *what, int err)
{
	if (err)
		fprintf(stderr, "%s: %s: %s\n", prog, what, strerror(err));
	else
		fprintf(stderr, "%s: %s\n", prog, what);
	return 1;
}

/* Byte order fixed by hand so the files read the same on any host. */
static bool put_u32(FILE *f, uint32_t v)
{
	unsigned char b[4] = { v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff, v >> 24 };
	return fwrite(b, 1, 4, f) == 4;
}

static bool put_f32(FILE *f, float x)
{
	uint32_t v;
	memcpy(&v, &x, 4);
	return put_u32(f, v);
}

static bool get_u32(FILE *f, uint32_t *v)
{
	unsigned char b[4];
	if (fread(b, 1, 4, f) != 4)
		return false;
	*v = b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
	return true;
}

static FILE *open_out(const char *prefix, const char *ext, char *path, size_t size)
{
	if ((size_t)snprintf(path, size, "%s%s", prefix, ext) >= size) {
		errno = ENAMETOOLONG;
		return NULL;
	}
	return fopen(path, "wb");
}

/* fclose() is where buffered write errors (a full disk) finally show. */
static int close_out(FILE *f, const char *path)
{
	bool bad = ferror(f);
	if (fclose(f) != 0 || bad)
		return fail(path, errno ? errno : EIO);
	return 0;
}

static int write_weights(struct mead_sim *s, FILE *f, const char *path)
{
	const uint32_t n = mead_sim_neurons(s), ne = mead_sim_electrodes(s);
	static const enum mead_sim_pathway pws[] = { MEAD_SIM_INPUT, MEAD_SIM_EXC, MEAD_SIM_INH };

	for (size_t p = 0; p < sizeof(pws) / sizeof(pws[0]); p++) {
		uint32_t npre = pws[p] == MEAD_SIM_INPUT ? ne : n;
		for (uint32_t a = 0; a < npre; a++)
			for (uint32_t b = 0; b < n; b++) {
				float w;
				int r = mead_sim_weight(s, pws[p], a, b, &w);
				if (r == -ENOENT)
					w = NAN;
				else if (r < 0)
					return fail("reading a weight", -r);
				if (!put_f32(f, w))
					return fail(path, errno ? errno : EIO);
			}
	}
	return 0;
}

static int write_net(struct mead_sim *s, const char *prefix)
{
	char path[4096];
	FILE *f = open_out(prefix, ".net", path, sizeof(path));
	if (!f)
		return fail(path, errno);
	const uint32_t n = mead_sim_neurons(s);
	bool ok = put_u32(f, n) && put_u32(f, mead_sim_electrodes(s));
	for (uint32_t i = 0; ok && i < n; i++) {
		double x, y;
		mead_sim_neuron_position(s, i, &x, &y);
		ok = put_f32(f, (float)x) && put_f32(f, (float)y);
	}
	if (!ok) {
		fclose(f);
		return fail(path, errno ? errno : EIO);
	}
	if (write_weights(s, f, path)) {
		fclose(f);
		return 1;
	}
	return close_out(f, path);
}

static int write_wfin(struct mead_sim *s, const char *prefix)
{
	char path[4096];
	FILE *f = open_out(prefix, ".wfin", path, sizeof(path));
	if (!f)
		return fail(path, errno);
	if (write_weights(s, f, path)) {
		fclose(f);
		return 1;
	}
	return close_out(f, path);
}

/* Streams the samples through the twin, one raster row out per step. */
static int run_inputs(struct mead_sim *s, FILE *in, const char *in_path, const char *prefix)
{
	const uint32_t n = mead_sim_neurons(s), ne = mead_sim_electrodes(s);
	uint32_t ns, nt;
	if (!get_u32(in, &ns) || !get_u32(in, &nt))
		return fail("inputs: truncated header", 0);

	char path[4096];
	FILE *o = open_out(prefix, ".spk", path, sizeof(path));
	if (!o)
		return fail(path, errno);
	unsigned char *buf = malloc(ne), *row = malloc(n);
	int rc = 0;
	if (!buf || !row) {
		rc = fail("out of memory", ENOMEM);
		goto out;
	}
	for (uint32_t k = 0; k < ns && !rc; k++) {
		unsigned char learn;
		if (fread(&learn, 1, 1, in) != 1 || learn > 1) {
			rc = fail("inputs: truncated, or a learn flag not 0 or 1", 0);
			break;
		}
		mead_sim_set_learning(s, learn);
		for (uint32_t t = 0; t < nt; t++) {
			if (fread(buf, 1, ne, in) != ne) {
				rc = fail("inputs: truncated (fewer samples or steps than the header says, "
					  "or another electrode count)", 0);
				break;
			}
			for (uint32_t e = 0; e < ne; e++) {
				if (buf[e] > 1) {
					rc = fail("inputs: a spike value not 0 or 1", 0);
					break;
				}
				int r = buf[e] ? mead_sim_input(s, e) : 0;
				if (r < 0) {
					rc = fail("mead_sim_input", -r);
					break;
				}
			}
			if (rc)
				break;
			const uint32_t *sp;
			uint32_t cnt;
			mead_sim_step(s, &sp, &cnt);
			memset(row, 0, n);
			for (uint32_t j = 0; j < cnt; j++)
				row[sp[j]] = 1;
			if (fwrite(row, 1, n, o) != n) {
				rc = fail(path, errno ? errno : EIO);
				break;
			}
		}
		mead_sim_reset_state(s);
		mead_sim_normalise(s);
	}
	/* Trailing bytes mean the file was made for another shape. */
	if (!rc && fgetc(in) != EOF)
		rc = fail("inputs: data after the last sample (another electrode count?)", 0);
	if (!rc && ferror(in))
		rc = fail(in_path, errno ? errno : EIO);
out:
	free(buf);
	free(row);
	if (rc) {
		fclose(o);
		return rc;
	}
	return close_out(o, path);
}

static void usage(FILE *f)
{
	fprintf(f, "usage: %s PRESET SEED INPUTS OUT\n"
		   "  writes OUT.net (network), OUT.spk (raster), OUT.wfin (final weights);\n"
		   "  formats in tools/twin_dump.c\n", prog);
}

int main(int argc, char **argv)
{
	if (argc == 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
		usage(stdout);
		return 0;
	}
	if (argc != 5) {
		usage(stderr);
		return 2;
	}

	struct mead_sim_params p;
	int r = mead_sim_params_preset(argv[1], &p);
	if (r < 0)
		return fail("PRESET: unknown (bio-240, tsk-240, bio-10140, tsk-10140)", 0);
	char *end;
	errno = 0;
	unsigned long long seed = strtoull(argv[2], &end, 10);
	if (errno || end == argv[2] || *end || argv[2][0] == '-')
		return fail("SEED: not a non-negative integer", 0);
	p.seed = seed;

	struct mead_sim *s = NULL;
	r = mead_sim_new(&p, &s);
	if (r < 0)
		return fail("mead_sim_new", -r);

	FILE *in = fopen(argv[3], "rb");
	if (!in) {
		int err = errno;
		mead_sim_free(s);
		return fail(argv[3], err);
	}
	int rc = write_net(s, argv[4]);
	if (!rc)
		rc = run_inputs(s, in, argv[3], argv[4]);
	if (!rc)
		rc = write_wfin(s, argv[4]);
	fclose(in);
	mead_sim_free(s);
	return rc;
}
