/* The vectorised sums of the table: plain sums (the bias gradient) and the squared error of
 * loss.c. Included by the ISA units after corr2d_vec.h. */
#ifndef CV__KERN_ISA
#error "corr2d_sum.h is included by corr2d_<isa>.c only"
#endif

/* ---- sums --------------------------------------------------------------------------------- */

/* Blocks of 4096 floats are summed in VL float lanes (1024..256 terms each) and added in
 * double. */
static double sum(const float *p, int64_t n) {
    double total = 0.0;
    for (int64_t b0 = 0; b0 < n; b0 += 4096) {
        const int64_t bn = min64(4096, n - b0);
        const float *q = p + b0;
        vf s0 = v_zero(), s1 = v_zero();
        int64_t j = 0;
        for (; j + 2 * VL <= bn; j += 2 * VL) {
            s0 += v_load(q + j);
            s1 += v_load(q + j + VL);
        }
        for (; j + VL <= bn; j += VL)
            s0 += v_load(q + j);
        if (j < bn)
            s1 += v_load_n(q + j, (int)(bn - j));
        total += (double)v_hsum(s0 + s1);
    }
    return total;
}

/* Squared errors of [0, n) summed in double, and their gradient into g when g != NULL:
 * scale * (2 * (yh - y)) when mean, else 2 * (yh - y), in float (what PyTorch computes). The
 * difference is formed in float and its square is exact in double, so the only rounding is in
 * the double additions (eight lanes, added in a fixed order). */
typedef float sq_vf __attribute__((vector_size(32)));
typedef double sq_vd __attribute__((vector_size(64)));

static double sqerr(const float *yh, const float *y, float *g, float scale, bool mean, int64_t n) {
    sq_vd acc0 = {0.0}, acc1 = {0.0};
    int64_t q = 0;
    for (; q + 16 <= n; q += 16) {
        sq_vf a0, a1, b0, b1;
        memcpy(&a0, yh + q, sizeof a0);
        memcpy(&a1, yh + q + 8, sizeof a1);
        memcpy(&b0, y + q, sizeof b0);
        memcpy(&b1, y + q + 8, sizeof b1);
        const sq_vf d0 = a0 - b0, d1 = a1 - b1;
        const sq_vd e0 = __builtin_convertvector(d0, sq_vd);
        const sq_vd e1 = __builtin_convertvector(d1, sq_vd);
        acc0 += e0 * e0;
        acc1 += e1 * e1;
        if (g != NULL) {
            const sq_vf g0 = mean ? scale * (2.0f * d0) : 2.0f * d0;
            const sq_vf g1 = mean ? scale * (2.0f * d1) : 2.0f * d1;
            memcpy(g + q, &g0, sizeof g0);
            memcpy(g + q + 8, &g1, sizeof g1);
        }
    }
    const sq_vd acc = acc0 + acc1;
    double total =
        ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; q < n; q++) {
        const float d = yh[q] - y[q];
        total += (double)d * (double)d;
        if (g != NULL)
            g[q] = mean ? scale * (2.0f * d) : 2.0f * d;
    }
    return total;
}
