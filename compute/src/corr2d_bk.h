/* Direct kernel gradient (bk, see corr2d_impl.h): dK and dbias for every kernel size, padding,
 * dilation and row stride, reduced in float vectors over short row pieces and in double above.
 * Included by the ISA units after corr2d_direct.h (it shares its pad_row).
 *
 * mk_bk keeps NO output channels x G kernel taps of dK in registers, reduced over a row piece;
 * it is instantiated for constant block sizes through a switch like the corr micro-kernels. */
#ifndef CV__KERN_ISA
#error "corr2d_bk.h is included by corr2d_<isa>.c only"
#endif

/* The most output channels a bk unit takes (a multiple of every BK_NO). */
#define BK_UNIT_CO 32

/* The largest tap group any variant uses (one output channel). */
#define BK_G_MAX 16

/* ---- bk: micro-kernel --------------------------------------------------------------------- */

/* Sums, over np rows p of a piece and tw columns j, dy[o][p][j] * xrow(p, g)[j] for NO output
 * channels and G taps, and adds them to acc[o * t_stride + g]. Row p of tap g is
 * rowp[p * sh + tq[g]] + tb[g]. */
struct mk_bk_args {
    int64_t np, tw;
    const float *dy; /* output channel o0, first row and column of the piece */
    int64_t dy_rs, dy_os;
    const float *const *rowp;
    int64_t sh;
    const int64_t *tq, *tb;
    double *acc;
    int64_t t_stride;
    double *bacc; /* with SB: sums of dy per output channel, added to bacc[o] */
};

/* SB (sum bias): also sum dy itself, which the pass loads anyway, for the bias gradient. */
ALWAYS_INLINE void mk_bk(const int NO, const int G, const bool SB, const struct mk_bk_args *m) {
    vf s[BK_NO][BK_G_MAX], sb[BK_NO];
#pragma GCC unroll 16
    for (int o = 0; o < NO; o++) {
        sb[o] = v_zero();
#pragma GCC unroll 16
        for (int g = 0; g < G; g++)
            s[o][g] = v_zero();
    }
    const int64_t full = m->tw / VL * VL;
    const int tail = (int)(m->tw - full);
    for (int64_t p = 0; p < m->np; p++) {
        const float *d = m->dy + p * m->dy_rs;
        const float *xp[BK_G_MAX];
#pragma GCC unroll 16
        for (int g = 0; g < G; g++)
            xp[g] = m->rowp[p * m->sh + m->tq[g]] + m->tb[g];
        for (int64_t j = 0; j < full; j += VL) {
            vf dv[BK_NO];
#pragma GCC unroll 16
            for (int o = 0; o < NO; o++) {
                dv[o] = v_load(d + o * m->dy_os + j);
                if (SB)
                    sb[o] += dv[o];
            }
#pragma GCC unroll 16
            for (int g = 0; g < G; g++) {
                const vf xv = v_load(xp[g] + j);
#pragma GCC unroll 16
                for (int o = 0; o < NO; o++)
                    s[o][g] = v_fma(dv[o], xv, s[o][g]);
            }
        }
        if (tail > 0) {
            vf dv[BK_NO];
#pragma GCC unroll 16
            for (int o = 0; o < NO; o++) {
                dv[o] = v_load_n(d + o * m->dy_os + full, tail);
                if (SB)
                    sb[o] += dv[o];
            }
#pragma GCC unroll 16
            for (int g = 0; g < G; g++) {
                const vf xv = v_load_n(xp[g] + full, tail);
#pragma GCC unroll 16
                for (int o = 0; o < NO; o++)
                    s[o][g] = v_fma(dv[o], xv, s[o][g]);
            }
        }
    }
#pragma GCC unroll 16
    for (int o = 0; o < NO; o++) {
#pragma GCC unroll 16
        for (int g = 0; g < G; g++)
            m->acc[o * m->t_stride + g] += (double)v_hsum(s[o][g]);
        if (SB)
            m->bacc[o] += (double)v_hsum(sb[o]);
    }
}

/* Taps per group for a block of no output channels: as many as fit the accumulators. */
static int64_t bk_group_max(int no) {
    const int64_t g = BK_ACC / no;
    return g < BK_G_MAX ? g : BK_G_MAX;
}

#define BK_CASE(no, g, m)                                                                          \
    case (no)*32 + (g):                                                                            \
        if ((no) <= BK_NO && (no) * (g) <= BK_ACC && (g) <= BK_G_MAX)                              \
            mk_bk(no, g, SB, m);                                                                   \
        break;
#define BK_CASES_G(no, m)                                                                          \
    BK_CASE(no, 1, m)                                                                              \
    BK_CASE(no, 2, m)                                                                              \
    BK_CASE(no, 3, m)                                                                              \
    BK_CASE(no, 4, m)                                                                              \
    BK_CASE(no, 5, m)                                                                              \
    BK_CASE(no, 6, m)                                                                              \
    BK_CASE(no, 7, m)                                                                              \
    BK_CASE(no, 8, m)                                                                              \
    BK_CASE(no, 9, m)                                                                              \
    BK_CASE(no, 10, m)                                                                             \
    BK_CASE(no, 11, m)                                                                             \
    BK_CASE(no, 12, m)                                                                             \
    BK_CASE(no, 13, m) BK_CASE(no, 14, m) BK_CASE(no, 15, m) BK_CASE(no, 16, m)

#define BK_SWITCH(no, g, m)                                                                        \
    switch ((no)*32 + (g)) {                                                                       \
        BK_CASES_G(1, m)                                                                           \
        BK_CASES_G(2, m)                                                                           \
        BK_CASES_G(3, m)                                                                           \
        BK_CASES_G(4, m)                                                                           \
    default:                                                                                       \
        break;                                                                                     \
    }

__attribute__((noinline)) static void call_bk(int no, int g, const struct mk_bk_args *m) {
    const bool SB = false;
    BK_SWITCH(no, g, m)
}

__attribute__((noinline)) static void call_bk_sb(int no, int g, const struct mk_bk_args *m) {
    const bool SB = true;
    BK_SWITCH(no, g, m)
}

/* ---- bk: driver --------------------------------------------------------------------------- */

/* How a bk op is cut: column tiles of tw, row pieces of at most pr rows (short enough that each
 * float lane sums a few hundred products), and slab rows of slab_w floats. */
struct bk_plan {
    int64_t tw, pr, slab_w, max_rows;
};

static int64_t bk_rows_needed(const struct cv__bk_op *op, int64_t pr) {
    return (pr - 1) * op->stride_h + (op->kh - 1) * op->dil_h + 1;
}

static bool bk_plan_make(const struct cv__bk_op *op, struct bk_plan *pl) {
    if (op->kh * op->kw > CV__BK_TAPS_MAX)
        return false;
    int64_t tw = min64(op->ow, 512);
    for (;;) {
        const int64_t slab_w = round_up(tw + (op->kw - 1) * op->dil_w, VL);
        int64_t pr = min64(64, max64(1, 4096 / tw));
        /* + 1 row: the zero row that stands for rows outside the input */
        while (pr > 1 && ((bk_rows_needed(op, pr) + 1) * slab_w > CV__SLAB_FLOATS ||
                          bk_rows_needed(op, pr) > CV__BK_ROWS_MAX))
            pr /= 2;
        if ((bk_rows_needed(op, pr) + 1) * slab_w <= CV__SLAB_FLOATS &&
            bk_rows_needed(op, pr) <= CV__BK_ROWS_MAX) {
            *pl = (struct bk_plan){tw, pr, slab_w, bk_rows_needed(op, pr)};
            return true;
        }
        if (tw <= VL)
            return false;
        tw = max64(VL, round_up(tw / 2, VL));
    }
}

static bool bk_fits(const struct cv__bk_op *op) {
    struct bk_plan pl;
    return bk_plan_make(op, &pl);
}

/* Output channels per bk unit: whole blocks of BK_NO, up to BK_UNIT_CO, while their double
 * sums stay within CV__BK_UNIT_DOUBLES. A unit's padded input rows are prepared once for all
 * of them. */
static int64_t bk_unit_channels(const struct cv__bk_op *op) {
    const int64_t blocks = CV__BK_UNIT_DOUBLES / (op->kh * op->kw) / BK_NO;
    return BK_NO * max64(1, min64(blocks, BK_UNIT_CO / BK_NO));
}

/* Input channels per bk unit. A unit with one input channel streams the dY of its output
 * channels over every row once per input channel, and with many channels that stream (the
 * whole of dY per channel, far beyond L2) is what limits the pass. Several input channels per
 * unit, taken inside each row piece, reuse the piece's dY rows from cache for all of them, so
 * dY is read from memory once per group. Groups are as large as the double sums allow, of
 * nearly equal size, but leave at least 16 units (when there are that many (group of output
 * channels, input channel) pairs) so the threads still get even blocks without row chunks. */
static int64_t bk_unit_inputs(const struct cv__bk_op *op) {
    const int64_t T = op->kh * op->kw, uc = bk_unit_channels(op);
    const int64_t ogroups = (op->co + uc - 1) / uc;
    const int64_t cmax = max64(1, CV__BK_UNIT_DOUBLES / (uc * T));
    const int64_t cg = min64(cmax, max64(1, ogroups * op->c / 16));
    const int64_t ngroups = (op->c + cg - 1) / cg;
    return (op->c + ngroups - 1) / ngroups;
}

static int64_t bk_units(const struct cv__bk_op *op) {
    const int64_t uc = bk_unit_channels(op), cg = bk_unit_inputs(op);
    return (op->co + uc - 1) / uc * ((op->c + cg - 1) / cg);
}

/* Points rowp[0 .. nq) at the nq input rows from xr0 of plane (input channel cc of image n),
 * columns [xc0, xc0 + width): in place when cols_direct, else zero-padded copies in the slab
 * (row q at slab + (q + 1) * slab_w); rows outside the input point at the zero row slab[0..),
 * which *zero_ready says is already cleared. */
static void bk_rows(const struct cv__bk_op *op, const struct bk_plan *pl, const float *plane,
                    int64_t xr0, int64_t nq, int64_t xc0, int64_t width, bool cols_direct,
                    int64_t lo, int64_t hi, float *slab, bool *zero_ready, const float **rowp) {
    for (int64_t q = 0; q < nq; q++) {
        const int64_t xr = xr0 + q;
        if (xr < 0 || xr >= op->h) {
            if (!*zero_ready) {
                memset(slab, 0, (size_t)pl->slab_w * sizeof(float));
                *zero_ready = true;
            }
            rowp[q] = slab;
        } else if (cols_direct) {
            rowp[q] = plane + xr * op->w + xc0;
        } else {
            float *d = slab + (q + 1) * pl->slab_w;
            pad_row(d, plane + xr * op->w + xc0 + lo, lo, hi, width);
            rowp[q] = d;
        }
    }
}

/* Output rows per piece of the flattened bk layout, or 0 when it does not apply. When each
 * output row is one column tile whose width is not a whole number of vectors (56, 28, ...),
 * the per-row loop wastes part of a vector on every row and pays its setup on a few vectors.
 * Instead, for each tap column b the piece's input rows are copied, shifted by b, into rows
 * exactly ow wide: then dY rows (contiguous, ow wide) and the copy of tap (a, b) line up as two
 * flat arrays of np * ow floats, and one long vector loop covers the whole piece. Needs
 * stride_h 1; the kw copies must fit the slab with at least 2 rows per piece. */
static int64_t bk_flat_rows(const struct cv__bk_op *op, const struct bk_plan *pl) {
    if (op->stride_h != 1 || pl->tw != op->ow || op->ow % VL == 0)
        return 0;
    const int64_t halo = (op->kh - 1) * op->dil_h;
    int64_t np = min64(op->oh, max64(1, 4096 / op->ow));
    while (np >= 2 && op->kw * (np + halo) * op->ow > CV__SLAB_FLOATS)
        np--;
    return np >= 2 ? np : 0;
}

/* Asks for the cache lines of input rows [xr0, xr0 + nq) of plane (those inside the input).
 * bk_item calls it for the next plane bk_flat_fill will copy, a channel's worth of compute
 * ahead: the rows come from L3 or memory, and each copy is too short for the hardware
 * prefetcher to catch up, so without it the copy waits on every line. */
static void bk_flat_prefetch(const struct cv__bk_op *op, const float *plane, int64_t xr0,
                             int64_t nq) {
    const int64_t r0 = max64(0, xr0), r1 = min64(op->h, xr0 + nq);
    if (r0 >= r1)
        return;
    const float *p = plane + r0 * op->w, *end = plane + r1 * op->w;
    for (; p < end; p += 16)
        __builtin_prefetch(p);
    __builtin_prefetch(end - 1);
}

/* Flattened layout (bk_flat_rows): copy b of input rows [xr0, xr0 + nq) of plane at
 * slab + b * cs, row q at q * ow, holding columns b*dil_w - pad_left + [0, ow), zero outside
 * the input. */
static void bk_flat_fill(const struct cv__bk_op *op, const float *plane, int64_t xr0, int64_t nq,
                         int64_t cs, float *slab) {
    for (int64_t b = 0; b < op->kw; b++) {
        const int64_t xc0 = b * op->dil_w - op->pad_left;
        const int64_t lo = min64(max64(0, -xc0), op->ow);
        const int64_t hi = max64(lo, min64(op->ow, op->w - xc0));
        for (int64_t q = 0; q < nq; q++) {
            float *d = slab + b * cs + q * op->ow;
            const int64_t xr = xr0 + q;
            if (xr < 0 || xr >= op->h)
                vec_copy(d, NULL, op->ow);
            else
                vec_pad_row(d, plane + xr * op->w + xc0 + lo, lo, hi, op->ow);
        }
    }
}

/* Item (chunk, unit): the chunk's rows of dK[o_lo .. o_hi, c_lo .. c_hi] for the unit's output
 * channels (in blocks of BK_NO) and input channels. Row pieces are the outer loop and input
 * channels the inner one, so a piece's dY rows stay in cache for every input channel; each sum
 * still adds its pieces in row order, whatever the grouping. */
static void bk_item(const struct cv__bk_op *op, const struct bk_plan *pl, int64_t item, float *slab,
                    const float **rowp) {
    const int64_t T = op->kh * op->kw, uc = bk_unit_channels(op), cg = bk_unit_inputs(op);
    const int64_t ncg = (op->c + cg - 1) / cg;
    const int64_t chunk = item % op->chunks, unit = item / op->chunks;
    const int64_t c_lo = unit % ncg * cg, c_hi = min64(op->c, c_lo + cg), nc = c_hi - c_lo;
    const int64_t o_lo = unit / ncg * uc, o_hi = min64(op->co, o_lo + uc);
    /* acc[((o - o_lo) * nc + (c - c_lo)) * T + t] */
    double acc[CV__BK_UNIT_DOUBLES], bacc[BK_UNIT_CO] = {0.0};
    for (int64_t q = 0; q < (o_hi - o_lo) * nc * T; q++)
        acc[q] = 0.0;
    /* The bias gradient rides along with the first tap group of input channel 0. */
    const bool want_bias = op->dbias != NULL && c_lo == 0;
    const int64_t rows = op->n * op->oh;
    const int64_t rlo = rows * chunk / op->chunks, rhi = rows * (chunk + 1) / op->chunks;
    const int64_t flat = bk_flat_rows(op, pl);
    /* Row and column of each tap in its piece's rows; flattened, one "row" per piece (tq 0)
     * and tap (a, b) reads copy b from row a*dil_h on. */
    const int64_t cs = (flat + (op->kh - 1) * op->dil_h) * op->ow;
    int64_t tq[CV__BK_TAPS_MAX], tb[CV__BK_TAPS_MAX];
    for (int64_t t = 0; t < T; t++) {
        tq[t] = flat > 0 ? 0 : t / op->kw * op->dil_h;
        tb[t] =
            flat > 0 ? t % op->kw * cs + t / op->kw * op->dil_h * op->ow : t % op->kw * op->dil_w;
    }
    if (flat > 0) {
        const float *base[1] = {slab};
        for (int64_t r = rlo; r < rhi;) {
            const int64_t n = r / op->oh, i = r % op->oh;
            const int64_t np = min64(flat, min64(op->oh - i, rhi - r));
            for (int64_t cc = c_lo; cc < c_hi; cc++) {
                bk_flat_fill(op, op->x + (n * op->c + cc) * op->h * op->w, i - op->pad_top,
                             np + (op->kh - 1) * op->dil_h, cs, slab);
                if (cc + 1 < c_hi) {
                    bk_flat_prefetch(op, op->x + (n * op->c + cc + 1) * op->h * op->w,
                                     i - op->pad_top, np + (op->kh - 1) * op->dil_h);
                } else if (r + np < rhi) { /* the next piece's first channel */
                    const int64_t n1 = (r + np) / op->oh, i1 = (r + np) % op->oh;
                    bk_flat_prefetch(op, op->x + (n1 * op->c + c_lo) * op->h * op->w,
                                     i1 - op->pad_top,
                                     min64(flat, op->oh - i1) + (op->kh - 1) * op->dil_h);
                }
                for (int64_t o0 = o_lo; o0 < o_hi; o0 += BK_NO) {
                    const int no = (int)min64(BK_NO, o_hi - o0);
                    const int64_t gmax = bk_group_max(no), ngroups = (T + gmax - 1) / gmax;
                    struct mk_bk_args m = {.np = 1,
                                           .tw = np * op->ow,
                                           .dy = op->dy + ((n * op->co + o0) * op->oh + i) * op->ow,
                                           .dy_rs = op->ow,
                                           .dy_os = op->oh * op->ow,
                                           .rowp = base,
                                           .sh = 0,
                                           .t_stride = nc * T,
                                           .bacc = bacc + (o0 - o_lo)};
                    for (int64_t gq = 0; gq < ngroups; gq++) {
                        const int64_t t0 = T * gq / ngroups, t1 = T * (gq + 1) / ngroups;
                        m.tq = tq + t0;
                        m.tb = tb + t0;
                        m.acc = acc + ((o0 - o_lo) * nc + (cc - c_lo)) * T + t0;
                        if (want_bias && cc == 0 && gq == 0)
                            call_bk_sb(no, (int)(t1 - t0), &m);
                        else
                            call_bk(no, (int)(t1 - t0), &m);
                    }
                }
            }
            r += np;
        }
    }
    bool zero_ready = false;
    for (int64_t j0 = 0; flat == 0 && j0 < op->ow; j0 += pl->tw) {
        const int64_t tw = min64(pl->tw, op->ow - j0);
        const int64_t xc0 = j0 - op->pad_left, width = tw + (op->kw - 1) * op->dil_w;
        const bool cols_direct = xc0 >= 0 && xc0 + width <= op->w;
        const int64_t lo = min64(max64(0, -xc0), width);
        const int64_t hi = max64(lo, min64(width, op->w - xc0));
        for (int64_t r = rlo; r < rhi;) {
            const int64_t n = r / op->oh, i = r % op->oh;
            const int64_t np = min64(pl->pr, min64(op->oh - i, rhi - r));
            const int64_t nq = bk_rows_needed(op, np);
            for (int64_t cc = c_lo; cc < c_hi; cc++) {
                const float *plane = op->x + (n * op->c + cc) * op->h * op->w;
                bk_rows(op, pl, plane, i * op->stride_h - op->pad_top, nq, xc0, width, cols_direct,
                        lo, hi, slab, &zero_ready, rowp);
                for (int64_t o0 = o_lo; o0 < o_hi; o0 += BK_NO) {
                    const int no = (int)min64(BK_NO, o_hi - o0);
                    /* Taps in groups of nearly equal size, as large as the accumulators allow. */
                    const int64_t gmax = bk_group_max(no), ngroups = (T + gmax - 1) / gmax;
                    struct mk_bk_args m = {.np = np,
                                           .tw = tw,
                                           .dy = op->dy +
                                                 ((n * op->co + o0) * op->oh + i) * op->ow + j0,
                                           .dy_rs = op->ow,
                                           .dy_os = op->oh * op->ow,
                                           .rowp = rowp,
                                           .sh = op->stride_h,
                                           .t_stride = nc * T,
                                           .bacc = bacc + (o0 - o_lo)};
                    for (int64_t gq = 0; gq < ngroups; gq++) {
                        const int64_t t0 = T * gq / ngroups, t1 = T * (gq + 1) / ngroups;
                        m.tq = tq + t0;
                        m.tb = tb + t0;
                        m.acc = acc + ((o0 - o_lo) * nc + (cc - c_lo)) * T + t0;
                        if (want_bias && cc == 0 && gq == 0)
                            call_bk_sb(no, (int)(t1 - t0), &m);
                        else
                            call_bk(no, (int)(t1 - t0), &m);
                    }
                }
            }
            r += np;
        }
    }
    /* One chunk: the sums are the result. Several: this chunk's slots of the partial sums. */
    const int64_t per_chunk = op->co * op->c * T + (op->dbias != NULL ? op->co : 0);
    double *part = op->chunks > 1 ? op->part + chunk * per_chunk : NULL;
    for (int64_t o = o_lo; o < o_hi; o++) {
        for (int64_t cc = c_lo; cc < c_hi; cc++) {
            const int64_t e0 = (o * op->c + cc) * T;
            const double *a = acc + ((o - o_lo) * nc + (cc - c_lo)) * T;
            for (int64_t t = 0; t < T; t++) {
                if (part == NULL)
                    op->dk[e0 + t] = (float)a[t];
                else
                    part[e0 + t] = a[t];
            }
        }
        if (want_bias && part == NULL)
            op->dbias[o] = (float)bacc[o - o_lo];
        else if (want_bias)
            part[op->co * op->c * T + o] = bacc[o - o_lo];
    }
}

static void bk_run(const struct cv__bk_op *op, int64_t lo, int64_t hi) {
    float slab[CV__SLAB_FLOATS] __attribute__((aligned(64)));
    const float *rowp[CV__BK_ROWS_MAX];
    struct bk_plan pl;
    if (!bk_plan_make(op, &pl))
        return; /* the caller checked bk_fits */
    for (int64_t item = lo; item < hi; item++)
        bk_item(op, &pl, item, slab, rowp);
}
