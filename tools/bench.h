/* SPDX-License-Identifier: MIT */
#pragma once

int mead_bench_loop(int argc, char **argv);
int mead_bench_twin(int argc, char **argv);
int mead_bench_stream(int argc, char **argv);
int mead_bench_closed_loop(int argc, char **argv);
int mead_bench_soak(int argc, char **argv);

int mead_experiment_ruaro(int argc, char **argv);
int mead_experiment_mnist(int argc, char **argv);
