/* Noise schedules of the two sampler paths (upstream RF:224, M:676-679, RF:225). Schedules only produce numbers;
 * the solvers in unipc.c / dmd.c consume them. */
#ifndef LYRA_SAMPLE_SCHEDULES_H
#define LYRA_SAMPLE_SCHEDULES_H

#include <stdint.h>

#include "lyra2.h"

#define LYRA_FLOW_MAX_STEPS 1000
#define LYRA_DMD_STEPS 4

/* The UniPC flow-matching grid of set_timesteps(num_steps, shift) (upstream T2V:157-159, M:650, UNI:117-139):
 *   u_i = linspace(σ_max, 0, N+1)[i] (float64), σ_i = shift·u_i / (1 + (shift−1)·u_i) (float64),
 *   timesteps[i] = int64(trunc(1000·σ_i)), sigmas = float32([σ_0 … σ_{N−1}, 0]).
 * timesteps: [num_steps] int64 (the network's timestep, one per step)
 * sigmas:    [num_steps + 1] float32 (the solver's noise levels, last = 0)
 * sigmas64:  [num_steps] float64 before the float32 cast, or NULL
 * num_steps in [1, LYRA_FLOW_MAX_STEPS]; shift finite and > 0. Fails with LYRA_ERR_ARG otherwise, and
 * when the first two timesteps coincide: upstream's step-index lookup then starts at index 1 (spec
 * upstream T2V:157-159, M:650, UNI:117-139) and runs off the end of its sigma table, so there is no upstream behaviour
 * to match. */
lyra_status lyra_flow_schedule(int num_steps, double shift, int64_t *timesteps, float *sigmas,
                               double *sigmas64);

/* The fixed DMD schedule (upstream M:710-728, SF:11-49, SF:40-43): entries 0, 250, 500, 750 of
 * σ = fl32(fl32(5·s) / fl32(1 + fl32(4·s))), t = fl32(σ·1000), s = 1, 0.75, 0.5, 0.25.
 * timesteps: [LYRA_DMD_STEPS] float32 = [1000, 937.5, 833.3333, 625] (passed to the network as floats)
 * sigmas:    [LYRA_DMD_STEPS] float32 = [1, 0.9375, 0.8333333, 0.625] */
void lyra_dmd_schedule(float *timesteps, float *sigmas);

#endif
