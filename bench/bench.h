/* SPDX-License-Identifier: MIT */
/* The benchmarks mead-bench runs (each is its own argv main). */
#pragma once

int mead_bench_loop(int argc, char **argv);
int mead_bench_twin(int argc, char **argv);
int mead_bench_stream(int argc, char **argv);
int mead_bench_closed_loop(int argc, char **argv);
int mead_bench_soak(int argc, char **argv);
