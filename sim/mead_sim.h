/* SPDX-License-Identifier: MIT */
/*
 * libmeadsim: the simulated MEA culture of docs/digital-twin.md.
 *
 * Units inside the model are the reference's normalised ones: membrane
 * 0 = -90 mV, 1 = -50 mV (1 unit = 40 mV); length 1 = 3 mm; one step = dt.
 * Parameters are given in the published units (mV, mm, ms) and converted.
 *
 * No threads, no I/O except mead_sim_save()/mead_sim_load(); nothing on the
 * stepping path (input, step, reset, normalise, learning, snapshots) allocates.
 * Errors are negative errno values.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MEAD_SIM_WEIGHTS_MAGIC   "MEADSIMW"
#define MEAD_SIM_WEIGHTS_VERSION 1u

/* How neurons are laid over the culture.  UNIFORM is the reference's
 * (independent positions: some electrode cells get none, others eight);
 * EVEN plates the same count over every electrode cell (a patterned
 * culture), the remainder over cells drawn at random, each neuron uniform
 * within its cell. */
enum mead_sim_placement {
	MEAD_SIM_PLACE_UNIFORM = 0,
	MEAD_SIM_PLACE_EVEN = 1,
};

struct mead_sim_params {
	uint32_t neurons;          /* 240 and 10140 in the presets */
	uint64_t seed;

	double dt_ms;              /* 1 */
	double tau_m_ms;           /* 50 */
	double v_rest_mv;          /* -70 (bio), -90 (tsk) */
	double v_reset_mv;         /* -70 */
	double v_threshold_mv;     /* -50 */
	bool has_lower_bound;      /* bio: true, tsk: false */
	double v_lower_bound_mv;   /* -90 */
	double refractory_ms;      /* 5 */

	double tau_stdp_ms;        /* 20 (tau+ = tau-) */
	double a_plus;             /* 1e-2 */
	double a_minus;            /* 1e-4 */
	bool stdp;                 /* learning on at start */

	double input_strength;     /* 1 */
	double exc_strength;       /* 1 (bio), 3 (tsk) */
	double inh_strength;       /* 10 (bio), 300 (tsk) */
	double sigma_e_mm;         /* 1.2 */
	double sigma_i_mm;         /* 0.15 */
	double electrode_reach_mm; /* 0.3 */
	double prune_threshold;    /* 1e-3, on |w| before normalisation */

	double width_mm;           /* 5 */
	double height_mm;          /* 3 */
	double mm_per_unit;        /* 3: the reference's length unit */
	enum mead_sim_placement placement; /* UNIFORM */
	uint32_t electrode_rows;   /* 6 */
	uint32_t electrode_cols;   /* 10 */
};

enum mead_sim_pathway {
	MEAD_SIM_INPUT = 0,        /* electrode -> neuron */
	MEAD_SIM_EXC   = 1,        /* neuron -> neuron, w >= 0 */
	MEAD_SIM_INH   = 2,        /* neuron -> (relay) -> neuron, w <= 0 */
};

struct mead_sim;

/* Fills *ret with a preset ("bio-240", "bio-10140", "tsk-240", "tsk-10140",
 * or "bio"/"tsk" keeping ret->neurons).  -EINVAL for an unknown name. */
int mead_sim_params_preset(const char *name, struct mead_sim_params *ret);

int mead_sim_new(const struct mead_sim_params *params, struct mead_sim **ret_sim);
void mead_sim_free(struct mead_sim *sim);

/* One input spike of electrode e in the next step (duplicates merge).
 * -ERANGE for an electrode out of range. */
int mead_sim_input(struct mead_sim *sim, uint32_t electrode);

/* Advances one step.  *ret_spikes points at the indices (ascending) of the
 * neurons that spiked in it; valid until the next call. */
void mead_sim_step(struct mead_sim *sim, const uint32_t **ret_spikes, uint32_t *ret_n);

/* Membranes to rest, traces, refractory counters, pending input to zero. */
void mead_sim_reset_state(struct mead_sim *sim);
/* Synaptic scaling: sum |w| per postsynaptic neuron to each pathway's strength. */
void mead_sim_normalise(struct mead_sim *sim);
void mead_sim_set_learning(struct mead_sim *sim, bool on);
bool mead_sim_learning(const struct mead_sim *sim);

uint64_t mead_sim_time(const struct mead_sim *sim);       /* steps done */
uint32_t mead_sim_neurons(const struct mead_sim *sim);
uint32_t mead_sim_electrodes(const struct mead_sim *sim);
uint64_t mead_sim_synapses(const struct mead_sim *sim);   /* non-pruned, all pathways */
uint64_t mead_sim_pathway_synapses(const struct mead_sim *sim, enum mead_sim_pathway p);
const struct mead_sim_params *mead_sim_get_params(const struct mead_sim *sim);

/* The electrode cell neuron i lies in (e = row * cols + col). */
uint32_t mead_sim_neuron_electrode(const struct mead_sim *sim, uint32_t neuron);
/* Position in mm from the top-left corner. */
void mead_sim_neuron_position(const struct mead_sim *sim, uint32_t neuron, double *x_mm, double *y_mm);
uint32_t mead_sim_electrode_neurons(const struct mead_sim *sim, uint32_t electrode);

/* State of neuron i in normalised units (v) and its trace. */
int mead_sim_neuron_state(const struct mead_sim *sim, uint32_t neuron, float *ret_v, float *ret_trace,
			  uint32_t *ret_refractory);
int mead_sim_set_potential(struct mead_sim *sim, uint32_t neuron, float v);

/* Weight of a synapse, as the model would use it now (signed: inhibitory
 * weights are <= 0).  -ENOENT for a pruned synapse, -ERANGE out of range.
 * For MEAD_SIM_INPUT pre is the electrode. */
int mead_sim_weight(struct mead_sim *sim, enum mead_sim_pathway p, uint32_t pre, uint32_t post, float *ret_w);
/* Sets a non-pruned weight (tests, hand-made networks); sign as above.
 * Applies all pending potentiation first. */
int mead_sim_set_weight(struct mead_sim *sim, enum mead_sim_pathway p, uint32_t pre, uint32_t post, float w);

/* Learned weights to/from a file (format in docs/twin.md).  Load checks
 * magic, version, shape, seed and checksum: -EBADMSG (not a weights file,
 * truncated or corrupt), -EPROTONOSUPPORT (other version), -ESTALE (another
 * network: neurons, seed, or pruning pattern differ), or the errno of I/O. */
int mead_sim_save(struct mead_sim *sim, const char *path);
int mead_sim_load(struct mead_sim *sim, const char *path);

/* Weight snapshots, for picking the best checkpoint during training.
 * mead_sim_snapshots_alloc() (once, may allocate slots x
 * mead_sim_snapshot_bytes()) reserves the slots; save/restore then only
 * copy.  -EOPNOTSUPP when no slots were reserved, -ERANGE for a slot out of
 * range, -ENOENT restoring a slot never saved. */
size_t mead_sim_snapshot_bytes(const struct mead_sim *sim);
int mead_sim_snapshots_alloc(struct mead_sim *sim, uint32_t slots);
int mead_sim_snapshot_save(struct mead_sim *sim, uint32_t slot);
int mead_sim_snapshot_restore(struct mead_sim *sim, uint32_t slot);

#ifdef __cplusplus
}
#endif
