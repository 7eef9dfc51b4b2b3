/* SPDX-License-Identifier: MIT */
/* The experiments mead-experiment runs (each is its own argv main). */
#pragma once

int mead_experiment_ruaro(int argc, char **argv);
int mead_experiment_mnist(int argc, char **argv);
int mead_experiment_sweep(int argc, char **argv);

/* A program of the project: $env when set, else the build tree's
 * build_rel when it is there, else the installed path. */
const char *mead_experiment_program(const char *env, const char *build_rel, const char *installed);
/* Mean, sample sd (0 for one value), min and max of the values that are not
 * NaN; all NaN when there are none. */
void mead_experiment_stats(const double *v, int n, double *mean, double *sd, double *lo, double *hi);
