/* SPDX-License-Identifier: MIT */
#pragma once

#include "daemon/loop.h"

#define FAKE_LOOP_MAX_CMDS 64

struct fake_loop {
	struct mead_loop_stats stats;
	struct mead_loop_params params;
	struct mead_command cmds[FAKE_LOOP_MAX_CMDS];
	unsigned n_cmds;
	bool full;                        /* submit answers -ENOBUFS */
	bool trains_busy;                 /* submit answers -EBUSY to a train */
	struct mead_protocol *reclaim;    /* handed back by the next reclaim */
	unsigned protocols_freed;
};

extern struct fake_loop fake_loop_state;
struct mead_loop *fake_loop_get(void);
void fake_loop_reset(void);
