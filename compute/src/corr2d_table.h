/* The table of one compiled variant of the kernels: included last by each ISA unit. */
#ifndef CV__KERN_ISA
#error "corr2d_table.h is included by corr2d_<isa>.c only"
#endif

/* ---- the table ---------------------------------------------------------------------------- */

#define CV__CAT2(a, b) a##b
#define CV__CAT(a, b)  CV__CAT2(a, b)

const struct cv__isa CV__CAT(cv__isa_, CV__KERN_NAME) = {
    .name = CV__KERN_NAME_STR,
    .vl = VL,
    .corr_plan = corr_plan,
    .corr_items = corr_items,
    .corr_run = corr_run,
    .wino_items = wino_items,
    .wino_run = wino_run,
    .st_fits = st_fits,
    .st_items = st_items,
    .st_run = st_run,
    .w4_fits = w4_fits,
    .w4_u_floats = w4_u_floats,
    .w4_v_floats = w4_v_floats,
    .w4_groups = w4_groups,
    .w4_kernel = w4_kernel,
    .w4_items = w4_items,
    .w4_run = w4_run,
    .rw_fits = rw_fits,
    .rw_items = rw_items,
    .rw_run = rw_run,
    .wk4_fits = wk4_fits,
    .wk4_slots = wk4_slots,
    .wk4_items = wk4_items,
    .wk4_scratch_floats = wk4_scratch_floats,
    .wk4_run = wk4_run,
    .wk_fits = wk_fits,
    .wk_units = wk_units,
    .wk_run = wk_run,
    .bk_fits = bk_fits,
    .bk_units = bk_units,
    .bk_run = bk_run,
    .sum = sum,
    .sqerr = sqerr,
};
