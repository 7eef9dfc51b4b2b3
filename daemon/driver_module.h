/* SPDX-License-Identifier: MIT */
/*
 * Finding, loading and configuring driver modules.  Search order for
 * mead-driver-<name>.so: driver.path from the configuration, each directory
 * of $MEAD_DRIVER_PATH (and its <name>/ subdirectory, which is how a build
 * tree lays them out), the installed driver directory, then the build tree
 * this binary came from.
 */
#pragma once

#include <stddef.h>

#include "mead/driver.h"
#include "lib/cfg/cfg.h"

struct mead_driver_module;

/* main thread.  -ENOENT (not found, err lists where it looked), -ENOEXEC (not
 * a driver / wrong ABI), -EINVAL (an option is wrong: err is
 * "FILE:LINE:COL: driver.options.KEY: ..."). */
int mead_driver_module_load(const char *name, const char *extra_dir, const struct mead_cfg_map *options,
			    struct mead_driver_module **ret, char *err, size_t err_len);
void mead_driver_module_free(struct mead_driver_module *m);

const struct mead_driver_ops *mead_driver_module_ops(const struct mead_driver_module *m);
const char *mead_driver_module_path(const struct mead_driver_module *m);
/* The ABI the module speaks (MEAD_DRIVER_ABI_MIN..MEAD_DRIVER_ABI_VERSION): what
 * its open() must be told in cfg.abi_version. */
uint32_t mead_driver_module_abi(const struct mead_driver_module *m);
/* Validated options, defaults applied, in the driver's table order. */
const struct mead_driver_param *mead_driver_module_params(const struct mead_driver_module *m, size_t *ret_n);

/* Validate one option value against its spec; 0 or -EINVAL with why. */
int mead_driver_param_check(const struct mead_param_spec *spec, const char *value, char *why, size_t why_len);
