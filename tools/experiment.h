/* SPDX-License-Identifier: MIT */
/* The experiments mead-experiment runs (each is its own argv main). */
#pragma once

int mead_experiment_ruaro(int argc, char **argv);
int mead_experiment_mnist(int argc, char **argv);
