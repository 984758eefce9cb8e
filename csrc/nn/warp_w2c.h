/* The world -> camera step of the warp, shared by the projection (cpu_warp_source.c) and the batch depth
 * maximum (cpu_warp_splat.c) so both round the same way (and by the CUDA kernels of op warp_forward). */
#ifndef LYRA_NN_WARP_W2C_H
#define LYRA_NN_WARP_W2C_H

/* cam[0..2] = rows 0..2 of w2c (4, 4 row-major) times (X[0], X[1], X[2], 1), in float32, summed in
 * upstream's order (x, y, z terms, then the translation); the golden warp tests pin this order. */
static inline void lyra_warp_w2c_apply(const float *w2c, const float *X, float cam[3]) {
    for (int r = 0; r < 3; r++) {
        float s = 0.0f;
        s += w2c[4 * r + 0] * X[0];
        s += w2c[4 * r + 1] * X[1];
        s += w2c[4 * r + 2] * X[2];
        s += w2c[4 * r + 3]; /* · 1 */
        cam[r] = s;
    }
}

#endif
