/* Schedules (see schedules.h). Arithmetic is written one rounding per operation in the order upstream
 * evaluates it (numpy float64 for UniPC, torch CPU float32 for DMD). */
#include "sample/schedules.h"

#include <math.h>

lyra_status lyra_flow_schedule(int num_steps, double shift, int64_t *timesteps, float *sigmas,
                               double *sigmas64) {
    if (num_steps < 1 || num_steps > LYRA_FLOW_MAX_STEPS)
        return lyra_error(LYRA_ERR_ARG, "num_steps must be in [1, %d], got %d", LYRA_FLOW_MAX_STEPS,
                          num_steps);
    if (!isfinite(shift) || !(shift > 0.0))
        return lyra_error(LYRA_ERR_ARG, "shift must be finite and > 0, got %g", shift);
    /* σ_max is the float32 training sigma 1 − 1/1000 read back as a double (0x3feff7cee0000000);
     * σ_min = 0 (upstream T2V:157-159, M:650, UNI:117-139). */
    const double sigma_max = (double)(float)(1.0 - 1.0 / 1000.0);
    const double sigma_min = 0.0;
    /* numpy.linspace: step = (stop − start)/(num − 1), value_i = i·step + start. */
    const double delta = (sigma_min - sigma_max) / (double)num_steps;
    for (int i = 0; i < num_steps; i++) {
        double u = (double)i * delta + sigma_max;
        double s = (shift * u) / (1.0 + (shift - 1.0) * u);
        double t = s * 1000.0;
        timesteps[i] = (int64_t)t; /* numpy astype(int64) truncates toward zero */
        sigmas[i] = (float)s;
        if (sigmas64) sigmas64[i] = s;
    }
    sigmas[num_steps] = 0.0f;
    if (num_steps >= 2 && timesteps[0] == timesteps[1])
        return lyra_error(LYRA_ERR_ARG,
                          "num_steps=%d with shift=%g gives equal first timesteps (%lld); upstream's "
                          "scheduler cannot run this grid (upstream T2V:157-159, M:650, UNI:117-139)",
                          num_steps, shift, (long long)timesteps[0]);
    return LYRA_OK;
}

void lyra_dmd_schedule(float *timesteps, float *sigmas) {
    /* torch.linspace(1, 0, 1001) at indices 0, 250, 500, 750 gives s = 1, 0.75, 0.5, 0.25 on the
     * scalar path; the vector path's 0.49999994 at index 500 shifts to the same σ (upstream M:710-728, SF:11-49,
     * SF:40-43). */
    static const float s_raw[LYRA_DMD_STEPS] = {1.0f, 0.75f, 0.5f, 0.25f};
    for (int k = 0; k < LYRA_DMD_STEPS; k++) {
        float num = 5.0f * s_raw[k];
        float den = 1.0f + 4.0f * s_raw[k];
        float sigma = num / den;
        sigmas[k] = sigma;
        timesteps[k] = sigma * 1000.0f;
    }
}
