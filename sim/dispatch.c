/* SPDX-License-Identifier: MIT */
/*
 * Run-time choice of the kernel set.  The SIMD sets are compiled in only
 * where the compiler could build them (MEAD_SIM_HAVE_*, from
 * sim/meson.build) and used only where the CPU runs them, so one binary
 * runs on any x86-64 and uses the widest set the machine has.  The choice
 * cannot change results (kernel.h); the environment switches exist so that
 * tests can compare the sets on one machine.
 */
#include "sim/kernel.h"

#include <stdlib.h>

const struct sim_kernels *sim_kernels_pick(void)
{
	const struct sim_kernels *k = &sim_kernels_generic;
#ifdef MEAD_SIM_HAVE_AVX2
	if (getenv("MEAD_SIM_NO_AVX2") || !__builtin_cpu_supports("avx2"))
		return k;
	k = &sim_kernels_avx2;
#ifdef MEAD_SIM_HAVE_AVX512
	if (!getenv("MEAD_SIM_NO_AVX512") && __builtin_cpu_supports("avx512f"))
		k = &sim_kernels_avx512;
#endif
#endif
	return k;
}
