/* Padding, stride and dilation, shared by /corr2d and /train, and the output size they give. */
#include <stdio.h>
#include <string.h>

#include "api_impl.h"

struct cv__geom_json cv__geom_json_default(void) {
    return (struct cv__geom_json){.pad = {0, 0}, .same = false, .stride = {1, 1}, .dil = {1, 1}};
}

void cv__field_padding(struct cv__parse *p, const struct cv__field *f, json_t *v, const char *ptr,
                       void *dst) {
    struct cv__geom_json *gj = dst;
    const char *s = json_string_value(v); /* NULL when not a string */
    if (json_is_integer(v) || json_is_array(v))
        cv__field_pair(p, f, v, ptr, gj->pad);
    else if (s != NULL && strcmp(s, "valid") == 0)
        gj->pad[0] = gj->pad[1] = 0;
    else if (s != NULL && strcmp(s, "same") == 0)
        gj->same = true;
    else
        cv__fail(p, 422, "invalid_field", ptr,
                 "must be an integer, [rows, columns], \"valid\" or \"same\"");
}

void cv__geom_resolve(struct cv__parse *p, const struct cv__geom_json *gj, int64_t h, int64_t w,
                      int64_t kh, int64_t kw, const char *kernel_ptr, struct cv_conv2d_geom *g,
                      int64_t *out_h, int64_t *out_w) {
    *g = cv_conv2d_geom_default();
    g->stride_h = gj->stride[0];
    g->stride_w = gj->stride[1];
    g->dil_h = gj->dil[0];
    g->dil_w = gj->dil[1];
    if (gj->same) {
        if (g->stride_h != 1 || g->stride_w != 1) {
            cv__fail(p, 422, "invalid_field", "/padding", "\"same\" padding needs stride 1");
            return;
        }
        /* As PyTorch: an odd total puts the extra zero at the bottom and the right. */
        int64_t th = g->dil_h * (kh - 1), tw = g->dil_w * (kw - 1);
        g->pad_top = th / 2;
        g->pad_bottom = th - th / 2;
        g->pad_left = tw / 2;
        g->pad_right = tw - tw / 2;
    } else {
        g->pad_top = g->pad_bottom = gj->pad[0];
        g->pad_left = g->pad_right = gj->pad[1];
        /* Padding as large as the (dilated) kernel only adds output rows and columns that see
         * nothing but zeros: no use (PyTorch computes them as bias alone), and it lets a
         * 45-byte body ask for a reply of millions of elements. Refused. */
        const int64_t sh = g->dil_h * (kh - 1) + 1, sw = g->dil_w * (kw - 1) + 1;
        if (gj->pad[0] >= sh || gj->pad[1] >= sw) {
            cv__fail(p, 422, "invalid_field", "/padding",
                     "padding [%lld, %lld] must be smaller than the %lldx%lld%s kernel in each "
                     "direction: larger padding only adds outputs made of zeros",
                     (long long)gj->pad[0], (long long)gj->pad[1], (long long)sh, (long long)sw,
                     sh != kh || sw != kw ? " (dilated)" : "");
            return;
        }
    }
    int rc = cv_corr2d_out_shape(h, w, kh, kw, g, out_h, out_w);
    if (rc == CV_OK)
        return;
    if (rc != CV_ESHAPE) {
        cv__fail(p, 422, "invalid_field", kernel_ptr, "the geometry is invalid: %s",
                 cv_status_str(rc));
        return;
    }
    bool first = p->status == CV_OK;
    int64_t ph = h + g->pad_top + g->pad_bottom, pw = w + g->pad_left + g->pad_right;
    int64_t dkh = g->dil_h * (kh - 1) + 1, dkw = g->dil_w * (kw - 1) + 1;
    char dilated[64] = "", padded[64] = "";
    if (dkh != kh || dkw != kw)
        snprintf(dilated, sizeof dilated, " (%lldx%lld dilated)", (long long)dkh, (long long)dkw);
    if (ph != h || pw != w)
        snprintf(padded, sizeof padded, " padded to %lldx%lld", (long long)ph, (long long)pw);
    cv__fail(p, 422, "shape_mismatch", kernel_ptr, "%lldx%lld kernel%s on a %lldx%lld input%s",
             (long long)kh, (long long)kw, dilated, (long long)h, (long long)w, padded);
    if (first)
        snprintf(p->err->detail, sizeof p->err->detail, "kernel is larger than the padded input");
}
