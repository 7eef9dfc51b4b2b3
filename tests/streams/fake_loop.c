/* SPDX-License-Identifier: MIT */
/*
 * Stand-ins for the loop and protocol entry points control.c and status.c
 * call, so their tests run without a real-time loop: commands are kept in
 * an array the tests inspect.
 */
#include "tests/streams/fake_loop.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "protocol/protocol.h"

struct fake_loop fake_loop_state;

struct mead_loop {
	int unused;
};

static struct mead_loop the_loop;

struct mead_loop *fake_loop_get(void)
{
	return &the_loop;
}

void fake_loop_reset(void)
{
	memset(&fake_loop_state, 0, sizeof(fake_loop_state));
	fake_loop_state.params.period_ns = 1000000;
	atomic_store(&fake_loop_state.stats.protocol_active, -1);
}

int mead_loop_submit(struct mead_loop *loop, const struct mead_command *cmd)
{
	if (fake_loop_state.full)
		return -ENOBUFS;
	if (fake_loop_state.n_cmds >= FAKE_LOOP_MAX_CMDS)
		return -ENOBUFS;
	if (cmd->type == MEAD_CMD_STIM_TRAIN && fake_loop_state.trains_busy)
		return -EBUSY;
	fake_loop_state.cmds[fake_loop_state.n_cmds++] = *cmd;
	return 0;
}

struct mead_protocol *mead_loop_reclaim(struct mead_loop *loop)
{
	struct mead_protocol *p = fake_loop_state.reclaim;
	fake_loop_state.reclaim = NULL;
	return p;
}

const struct mead_loop_stats *mead_loop_stats(const struct mead_loop *loop)
{
	return &fake_loop_state.stats;
}

const struct mead_loop_params *mead_loop_params(const struct mead_loop *loop)
{
	return &fake_loop_state.params;
}

double mead_loop_latency_percentile(const struct mead_loop_stats *s, double p)
{
	uint64_t total = 0, seen = 0;
	for (size_t i = 0; i < MEAD_LAT_BUCKETS; i++)
		total += atomic_load(&s->lat_hist[i]);
	if (!total)
		return -1;
	for (size_t i = 0; i < MEAD_LAT_BUCKETS; i++) {
		seen += atomic_load(&s->lat_hist[i]);
		if ((double)seen >= p / 100.0 * (double)total)
			return (double)i;
	}
	return MEAD_LAT_BUCKETS - 1;
}

int mead_protocol_describe(const struct mead_protocol *p, char *buf, size_t len)
{
	int n = snprintf(buf, len, "{\"protocol\": \"fake\", \"state\": \"finished\"}");
	return n < 0 ? -EIO : (size_t)n >= len ? -ENOBUFS : n;
}

void mead_protocol_free(struct mead_protocol *p)
{
	if (p)
		fake_loop_state.protocols_freed++;
}
