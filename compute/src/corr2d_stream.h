/* Streaming corr kernel for memory-bound single-channel layers (see corr2d_impl.h): one input
 * channel, few output channels, no padding, stride and dilation 1, small kernels, and outputs
 * far larger than the caches (1x4096x4096 3x3, 1x2048x2048 1x2). Included by the ISA units
 * after corr2d_vec.h.
 *
 * Such a call moves its bytes once and computes little, so what counts is how the bytes move:
 *  - outputs go out with non-temporal (streaming) stores, which skip the read-for-ownership of
 *    each output line and leave the caches to the input: 2 memory passes per output float (read
 *    the input, write the output) instead of 3;
 *  - work items are the 4 KiB pages of the output (by address), so each thread writes whole
 *    pages and threads never share a cache line; an item may start or end inside a row;
 *  - each output float is written once, with the bias folded into the first multiply-add (no
 *    second pass).
 * The kh input rows an output row reads stay in L1/L2 from one row to the next. Vectors whose
 * address is not aligned (a row's first and last few floats) take ordinary partial stores. */
#ifndef CV__KERN_ISA
#error "corr2d_stream.h is included by corr2d_<isa>.c only"
#endif

#define ST_PAGE_FLOATS 1024                /* 4 KiB */
#define ST_MIN_BYTES   ((int64_t)16 << 20) /* outputs smaller than this may stay in cache */
#define ST_TAPS_MAX    16

ALWAYS_INLINE void v_stream(float *p, vf v) {
#if CV__KERN_ISA == CV__AVX512
    _mm512_stream_ps(p, v);
#elif CV__KERN_ISA == CV__AVX2
    _mm256_stream_ps(p, v);
#else
    v_store(p, v);
#endif
}

static bool st_fits(const struct cv__corr_op *op) {
    return op->sc == 1 && op->dc <= 4 && op->stride_h == 1 && op->dil_h == 1 && op->dil_w == 1 &&
           op->w_bs == 1 && op->kh * op->kw <= ST_TAPS_MAX && op->off_h >= 0 && op->off_w >= 0 &&
           op->dst_h - 1 + op->kh - 1 + op->off_h < op->src_h &&
           op->dst_w - 1 + op->kw - 1 + op->off_w < op->src_w &&
           op->n * op->dc * op->dst_h * op->dst_w * (int64_t)sizeof(float) >= ST_MIN_BYTES;
}

/* Work items: the output's 4 KiB pages (by address; the first and last may be partial). */
static int64_t st_items(const struct cv__corr_op *op) {
    const uintptr_t a0 = (uintptr_t)op->dst / 4096;
    const uintptr_t a1 =
        ((uintptr_t)(op->dst + op->n * op->dc * op->dst_h * op->dst_w) + 4095) / 4096;
    return (int64_t)(a1 - a0);
}

/* Output columns [j0, j1) of row i of plane (n, o); the taps in k (kh x kw), bias b. */
static void st_row(const struct cv__corr_op *op, const float *plane, const float *k, float b,
                   float *drow, int64_t i, int64_t j0, int64_t j1) {
    const int64_t kh = op->kh, kw = op->kw;
    const float *s0 = plane + (i + op->off_h) * op->src_w + op->off_w;
    const vf bv = v_set1(b);
    int64_t j = j0;
    /* Head: up to the first aligned vector. */
    const int64_t mis = (int64_t)(((uintptr_t)(drow + j) / sizeof(float)) % VL);
    if (mis != 0 && j < j1) {
        const int n = (int)min64(VL - mis, j1 - j);
        vf acc = bv;
        for (int64_t a = 0; a < kh; a++)
            for (int64_t bb = 0; bb < kw; bb++)
                acc = v_fma(v_set1(k[a * kw + bb]), v_load_n(s0 + a * op->src_w + j + bb, n), acc);
        v_store_n(drow + j, acc, n);
        j += n;
    }
    /* Body: aligned vectors, 4 at a time, streamed. Loads stay inside the source: column
     * j + VL - 1 + kw - 1 + off_w < src_w for every output column j + VL - 1 < dst_w. */
    for (; j + 4 * VL <= j1; j += 4 * VL) {
        vf acc0 = bv, acc1 = bv, acc2 = bv, acc3 = bv;
        for (int64_t a = 0; a < kh; a++) {
            const float *s = s0 + a * op->src_w + j;
            for (int64_t bb = 0; bb < kw; bb++) {
                const vf kv = v_set1(k[a * kw + bb]);
                acc0 = v_fma(kv, v_load(s + bb), acc0);
                acc1 = v_fma(kv, v_load(s + bb + VL), acc1);
                acc2 = v_fma(kv, v_load(s + bb + 2 * VL), acc2);
                acc3 = v_fma(kv, v_load(s + bb + 3 * VL), acc3);
            }
        }
        v_stream(drow + j, acc0);
        v_stream(drow + j + VL, acc1);
        v_stream(drow + j + 2 * VL, acc2);
        v_stream(drow + j + 3 * VL, acc3);
    }
    for (; j + VL <= j1; j += VL) {
        vf acc = bv;
        for (int64_t a = 0; a < kh; a++)
            for (int64_t bb = 0; bb < kw; bb++)
                acc = v_fma(v_set1(k[a * kw + bb]), v_load(s0 + a * op->src_w + j + bb), acc);
        v_stream(drow + j, acc);
    }
    /* Tail: ordinary partial store. */
    if (j < j1) {
        const int n = (int)(j1 - j);
        vf acc = bv;
        for (int64_t a = 0; a < kh; a++)
            for (int64_t bb = 0; bb < kw; bb++)
                acc = v_fma(v_set1(k[a * kw + bb]), v_load_n(s0 + a * op->src_w + j + bb, n), acc);
        v_store_n(drow + j, acc, n);
    }
}

/* Computes pages [lo, hi) of the output (st_items). */
static void st_run(const struct cv__corr_op *op, int64_t lo, int64_t hi) {
    const int64_t total = op->n * op->dc * op->dst_h * op->dst_w;
    const int64_t base = (int64_t)((uintptr_t)op->dst / 4096 * 4096 - (uintptr_t)op->dst) /
                         (int64_t)sizeof(float); /* float index of page 0's start (<= 0) */
    int64_t q = max64(0, base + lo * ST_PAGE_FLOATS);
    const int64_t q_end = min64(total, base + hi * ST_PAGE_FLOATS);
    while (q < q_end) {
        const int64_t j = q % op->dst_w, row = q / op->dst_w;
        const int64_t i = row % op->dst_h, plane = row / op->dst_h;
        const int64_t o = plane % op->dc, n = plane / op->dc;
        const int64_t j1 = min64(op->dst_w, j + (q_end - q));
        float k[ST_TAPS_MAX];
        for (int64_t a = 0; a < op->kh; a++)
            for (int64_t b = 0; b < op->kw; b++)
                k[a * op->kw + b] = op->w[o * op->w_os + a * op->w_as + b];
        st_row(op, op->src + n * op->src_h * op->src_w, k, op->bias != NULL ? op->bias[o] : 0.0f,
               op->dst + row * op->dst_w, i, j, j1);
        q += j1 - j;
    }
#if CV__KERN_ISA == CV__AVX512 || CV__KERN_ISA == CV__AVX2
    _mm_sfence(); /* the streamed lines are visible before the caller's barrier */
#endif
}
