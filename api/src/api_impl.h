/* Private to the api layer: the pieces its files share. Nothing here is seen by the server.
 *
 * - struct cv__buf: a growable text buffer with the JSON writers (escaped strings, shortest
 *   float32 numbers). Replies are written with it rather than built as jansson trees, because a
 *   1M-element tensor as a tree costs ~40 MB and jansson cannot print integral reals as "19".
 * - struct cv__parse: the state of one request parse (limits, the caller's error, the status
 *   to return). Errors are collected, not thrown: the first sets the status, code and detail;
 *   later ones only add their pointer, up to CV_API_MAX_FIELD_ERRORS.
 * - struct cv__field: a row of a field table. cv__fields_parse walks a JSON object with one,
 *   rejecting unknown keys, so every object the API accepts is described by data, not code. */
#ifndef CONVD_API_IMPL_H
#define CONVD_API_IMPL_H

#include <jansson.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "convd/api.h"

/* ---- text buffer and JSON writers (buf.c) ------------------------------------------------ */

struct cv__buf {
    char *data;
    size_t len, cap;
    bool failed; /* an allocation failed: later writes are dropped, cv__buf_finish gives NULL */
};

/* Makes room for extra more bytes (plus the final NUL). */
void cv__buf_reserve(struct cv__buf *b, size_t extra);
void cv__buf_put(struct cv__buf *b, const char *s, size_t n);
void cv__buf_puts(struct cv__buf *b, const char *s);
void cv__buf_putc(struct cv__buf *b, char c);
/* A JSON string: quoted and escaped; invalid UTF-8 becomes U+FFFD, so the text stays JSON. */
void cv__buf_put_str(struct cv__buf *b, const char *s);
/* A JSON string as cv__buf_put_str, or null when s is NULL. */
void cv__buf_put_str_or_null(struct cv__buf *b, const char *s);
void cv__buf_put_i64(struct cv__buf *b, int64_t v);
void cv__buf_put_u64(struct cv__buf *b, uint64_t v);
/* Shortest text that reads back as the same float32 (cv__fmt_f32); null when not finite. */
void cv__buf_put_f32(struct cv__buf *b, float v);
/* Shortest text that reads back as the same double; null when not finite. */
void cv__buf_put_f64(struct cv__buf *b, double v);
/* A duration in milliseconds, to the microsecond ("0.02", "1523.125"); null when not finite. */
void cv__buf_put_ms(struct cv__buf *b, double ms);
/* Returns the NUL-terminated text (the caller free()s it) and its length in *len when len is
 * not NULL; NULL when an allocation failed (the buffer is then freed). */
char *cv__buf_finish(struct cv__buf *b, size_t *len);

/* Longest text cv__fmt_f32 and cv__fmt_f64 write, with the NUL. */
#define CV__NUM_MAX 32

/* Writes v into out as the shortest decimal (at most 9 significant digits) that strtof reads
 * back as v, the closest to v of those (numbers.c, Ryu); integral values within +-2^53 as
 * integers ("19"), -0 as "0"; like %g otherwise: fixed from 1e-4 up ("0.00125"), else
 * scientific with exponents without '+' or leading zeros ("1e-7", "1e20"). Non-finite values
 * give "null". Returns the length (at most 17 characters). */
size_t cv__fmt_f32(char out[CV__NUM_MAX], float v);
/* Like cv__fmt_f32 for a double (15 to 17 significant digits, checked with strtod). */
size_t cv__fmt_f64(char out[CV__NUM_MAX], double v);
/* Writes v in decimal digits (at most 20; no sign, no NUL) into out and returns their count. */
size_t cv__fmt_u64(char *out, uint64_t v);

/* ---- errors (error.c) -------------------------------------------------------------------- */

void cv__error_vset(struct cv_api_error *err, int status, const char *code, const char *pointer,
                    const char *fmt, va_list ap);
void cv__error_vadd(struct cv_api_error *err, const char *pointer, const char *fmt, va_list ap);

/* Cuts a string that snprintf truncated to fill cap back to its last whole UTF-8 character, so
 * a detail never ends in half a character. Leaves shorter strings alone. */
void cv__utf8_trim(char *s, size_t cap);

/* ---- request parsing (fields.c) ---------------------------------------------------------- */

/* Bodies this layer reads are small objects around tensors; pointers are built in fixed buffers
 * of the size the error struct keeps (longer ones are truncated, never overflowed). */
#define CV__PTR_MAX sizeof(((struct cv_api_field_error *)0)->pointer)

struct cv__scan;

struct cv__parse {
    const struct cv_api_limits *lim;
    struct cv_api_error *err;
    int status;            /* CV_OK until the first failure, then what the parse returns */
    int failures;          /* failures so far: a step failed when this grew across it */
    struct cv__scan *scan; /* the fast path's slots (body_scan.c); NULL on the jansson path */
};

/* Records a failure: the first one sets err's status, code and detail ("pointer: detail"),
 * later ones only add a field error at pointer (which may be NULL for the first). Field
 * details are written to stand beside their pointer: "must be an integer". The parse then
 * returns CV_ETOOBIG for 413, CV_ENOMEM for 503, CV_EINVAL for anything else. */
void cv__fail(struct cv__parse *p, int status, const char *code, const char *pointer,
              const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* A failed allocation: 503 "out_of_memory". */
void cv__fail_nomem(struct cv__parse *p);

/* True once the error list is full: long walks (tensor elements) stop there. */
bool cv__errors_full(const struct cv__parse *p);

/* Child pointer: parent + "/" + key with '~' and '/' escaped as RFC 6901 says. */
void cv__ptr_key(char out[CV__PTR_MAX], const char *parent, const char *key);
/* Child pointer: parent + "/" + index. */
void cv__ptr_index(char out[CV__PTR_MAX], const char *parent, size_t index);

/* "a string", "an array", ... for messages. */
const char *cv__json_type_name(const json_t *v);

struct cv__field;
/* Parses v (never NULL or JSON null) found at ptr into the destination the row names. */
typedef void (*cv__field_fn)(struct cv__parse *p, const struct cv__field *f, json_t *v,
                             const char *ptr, void *dst);

enum cv__field_flag {
    CV__FIELD_REQUIRED = 1 << 0,
    CV__FIELD_LO_OPEN = 1 << 1, /* the lower bound itself is out of range: lr > 0 */
    CV__FIELD_HI_OPEN = 1 << 2, /* the upper bound itself is out of range: momentum < 1 */
};

struct cv__field {
    const char *name;
    cv__field_fn parse;
    size_t offset; /* of the destination in the spec struct cv__fields_parse is given */
    double lo, hi; /* bounds of a number or int, or the ranks allowed for a tensor */
    unsigned flags;
};

/* Loads body into *root, an object the caller json_decref()s. Returns p->status: 400
 * "invalid_json" (with line, column, position), "duplicate_key" or "not_an_object" on failure. */
int cv__body_load(struct cv__parse *p, const char *body, size_t len, json_t **root);

/* The "kind" row of the /corr2d and /train tables (job_json.c): accepts the string naming the
 * table's own job kind (f->lo: a enum cv_api_job_kind), so the same body serves POST /jobs. */
void cv__field_kind(struct cv__parse *p, const struct cv__field *f, json_t *v, const char *ptr,
                    void *dst);

/* Loads a request body and parses its members by the table into spec (cv__fields_parse).
 * Returns p->status: a body that is not JSON fails with 400 "invalid_json" (line, column and
 * position, and jansson's text in the detail) or "duplicate_key", one that is not an object
 * with 400 "not_an_object". */
int cv__body_parse(struct cv__parse *p, const char *body, size_t len, const struct cv__field *tab,
                   size_t n, void *spec);

/* Parses the members of obj (found at ptr, "" for the body) into spec by the table: unknown
 * keys fail with 422 "unknown_field", missing required ones with 422 "missing_field". A member
 * that is JSON null counts as absent. Fields are parsed in table order. */
void cv__fields_parse(struct cv__parse *p, const struct cv__field *tab, size_t n, json_t *obj,
                      const char *ptr, void *spec);

/* Generic rows. Destinations: int64_t (int), int64_t[2] (pair: an int or [a,b]), float (f32),
 * double (f64), bool, json_t * (borrowed raw value). Out of [lo,hi] fails with 422
 * "invalid_field", like a wrong type. */
void cv__field_int(struct cv__parse *p, const struct cv__field *f, json_t *v, const char *ptr,
                   void *dst);
void cv__field_pair(struct cv__parse *p, const struct cv__field *f, json_t *v, const char *ptr,
                    void *dst);
void cv__field_f32(struct cv__parse *p, const struct cv__field *f, json_t *v, const char *ptr,
                   void *dst);
void cv__field_f64(struct cv__parse *p, const struct cv__field *f, json_t *v, const char *ptr,
                   void *dst);
void cv__field_bool(struct cv__parse *p, const struct cv__field *f, json_t *v, const char *ptr,
                    void *dst);
void cv__field_raw(struct cv__parse *p, const struct cv__field *f, json_t *v, const char *ptr,
                   void *dst);

/* ---- tensors (tensor_json.c) ------------------------------------------------------------- */

/* The largest magnitude a JSON number may have: halfway between FLT_MAX and 2^128. Anything
 * below rounds to a finite float32 (so "3.4028235e38", how FLT_MAX prints, reads back). */
#define CV__F32_LIMIT 0x1.ffffffp+127

/* A tensor as it came in: its rank and dimensions as written, and the data mapped onto the
 * compute layer's 4-D tensor with leading 1s ((H,W) -> (1,1,H,W)). */
struct cv__tensor_json {
    struct cv_tensor t; /* owned; empty when absent or on failure */
    int rank;           /* 0 when absent */
    int64_t dims[4];    /* dims[0..rank) as written */
    enum cv_tensor_form form;
};

/* Parses a tensor in any of the three forms found at ptr, of rank min_rank..max_rank (<= 4).
 * Sizes are checked against p->lim->max_elements (413) before anything is allocated. On
 * failure p is failed and *out left empty. */
void cv__tensor_parse(struct cv__parse *p, json_t *v, const char *ptr, int min_rank, int max_rank,
                      struct cv__tensor_json *out);
void cv__tensor_json_free(struct cv__tensor_json *t);

/* Field row for a tensor: f->lo and f->hi are the ranks allowed; dst is a cv__tensor_json. */
void cv__field_tensor(struct cv__parse *p, const struct cv__field *f, json_t *v, const char *ptr,
                      void *dst);

/* Writes "[2,3]" for dims[0..rank) into out (a message fragment). */
void cv__shape_str(char *out, size_t cap, const int64_t *dims, int rank);

/* Checks count elements against the limit: fails p with 413 "too_large" at ptr and returns
 * false when over. what names the thing in the detail ("the output"). */
bool cv__check_numel(struct cv__parse *p, int64_t count, const char *ptr, const char *what);

/* Checked product of dims[0..rank); INT64_MAX when it overflows. */
int64_t cv__dims_numel(const int64_t *dims, int rank);

/* Writes t as JSON in the given form and rank: the last rank dimensions of (n, c, h, w), the
 * leading ones being 1. */
void cv__tensor_write(struct cv__buf *b, const struct cv_tensor *t, int rank,
                      enum cv_tensor_form form);

/* "output_format" as written; when not given, replies use the form of the request's input. */
struct cv__out_form {
    bool given;
    enum cv_tensor_form form;
};

/* Field row for "output_format": dst is a struct cv__out_form. */
void cv__field_out_form(struct cv__parse *p, const struct cv__field *f, json_t *v, const char *ptr,
                        void *dst);

/* The form replies use: the one asked for, else the input's. */
enum cv_tensor_form cv__out_form_pick(const struct cv__out_form *o, enum cv_tensor_form input_form);

/* A bias as written: a number, or an array of numbers (one per output channel). */
struct cv__bias_json {
    bool present;
    bool is_array;
    float scalar;
    float *values; /* owned, n entries, when is_array */
    int64_t n;
};

void cv__field_bias(struct cv__parse *p, const struct cv__field *f, json_t *v, const char *ptr,
                    void *dst);
void cv__bias_json_free(struct cv__bias_json *b);

/* Expands a bias to cout floats (malloc'd into *out): a number is repeated, an array must have
 * cout entries (else 422 "shape_mismatch" at ptr). */
void cv__bias_expand(struct cv__parse *p, const struct cv__bias_json *b, int64_t cout,
                     const char *ptr, float **out);

/* ---- geometry, shared by /corr2d and /train (geom_json.c) -------------------------------- */

struct cv__geom_json {
    int64_t pad[2]; /* rows, columns */
    bool same;      /* "same": resolved once the kernel size is known */
    int64_t stride[2];
    int64_t dil[2];
};

/* No padding, stride 1, dilation 1. */
struct cv__geom_json cv__geom_json_default(void);

/* Row for "padding" (an int, [rows, columns], "valid" or "same"); dst is the whole
 * struct cv__geom_json, since "same" is not a number. */
void cv__field_padding(struct cv__parse *p, const struct cv__field *f, json_t *v, const char *ptr,
                       void *dst);

/* The rows for "padding", "stride" and "dilation" of a spec struct type whose member is a
 * struct cv__geom_json. Bounds stop at INT32_MAX so that no size computation overflows. */
#define CV__GEOM_FIELDS(type, member)                                                              \
    {"padding", cv__field_padding, offsetof(type, member), 0, INT32_MAX, 0},                       \
        {"stride", cv__field_pair, offsetof(type, member.stride), 1, INT32_MAX, 0}, {              \
        "dilation", cv__field_pair, offsetof(type, member.dil), 1, INT32_MAX, 0                    \
    }

/* Resolves the geometry for a kh x kw kernel on an h x w input and computes the output size.
 * Fails p with 422 at "/padding" ("same" with a stride) or at kernel_ptr (a kernel larger than
 * the padded input; top-level detail "kernel is larger than the padded input"). */
void cv__geom_resolve(struct cv__parse *p, const struct cv__geom_json *gj, int64_t h, int64_t w,
                      int64_t kh, int64_t kw, const char *kernel_ptr, struct cv_conv2d_geom *g,
                      int64_t *out_h, int64_t *out_w);

/* ---- the fast path for large tensors (numbers.c, body_scan.c) ---------------------------- */

/* Reads the JSON number token at p (before end) to the float32 the jansson path makes of it:
 * (float) of jansson's value (strtoll for integers, strtod for reals). Returns the end of the
 * token - the caller checks what follows - or NULL when the text is no JSON number, when
 * jansson would refuse it (integer or real overflow), when no character follows it before
 * end, or when it is outside the float32 range (CV__F32_LIMIT). */
const char *cv__scan_f32(const char *p, const char *end, float *out);

/* Ryu's tables (which 0: the inverse powers of 5, 1: the powers of 5) for the unit test. */
const uint64_t *cv__ryu_table(int which, size_t *n);

/* A tensor value taken out of the body by the pre-pass, under its JSON pointer. */
struct cv__slot {
    char ptr[CV__PTR_MAX];
    bool b64;          /* a "b64" string (text) or an array of numbers (rank, dims, data) */
    bool used;         /* consumed by a tensor reader */
    const char *text;  /* b64: the string's characters in the body (no escapes) */
    size_t text_len;   /* b64: their count */
    int rank;          /* array: nesting depth, 1..4 */
    int64_t dims[4];   /* array: the sizes, rectangular */
    bool over;         /* array: more elements than max_elements; data is NULL */
    float *data;       /* array: the numbers, row-major (malloc'd) */
    size_t start, end; /* where the value's text was in the body */
};

struct cv__scan {
    const char *body;
    struct cv__slot *slots;
    size_t n, cap;
    char *rest; /* the body with [] or "" in place of each slot's value, NUL-terminated */
    size_t rest_len;
};

/* Bodies shorter than this take the jansson path alone (the tests set it to 0 or SIZE_MAX). */
extern size_t cv__fast_min_body;

/* Parses where the fast path stood, and where it started again the plain way. */
extern _Atomic unsigned long cv__fast_stood, cv__fast_fallbacks;

/* The pre-pass: true when it took at least one value out of body (then free sc with
 * cv__scan_free); false (nothing to free) when there is none or the body does not start as
 * an object the pre-pass can follow. */
bool cv__scan_body(const char *body, size_t len, int64_t max_elements, struct cv__scan *sc);
void cv__scan_free(struct cv__scan *sc);

/* The slot of the given kind at ptr not yet used, or NULL (always NULL on the jansson path).
 * A reader that consumes it sets used. */
struct cv__slot *cv__scan_find(const struct cv__parse *p, const char *ptr, bool b64);

/* True when every slot was consumed. */
bool cv__scan_all_used(const struct cv__scan *sc);

/* cv__body_parse with the fast path: when the body is large enough and the pre-pass takes
 * tensors out of it, the field table runs on the rest with the slots; when that cannot stand
 * for the jansson path (see body_scan.c), spec_free(spec) is called, the first spec_size bytes
 * of spec are put back as they were on entry and the body is parsed by cv__body_parse. Either
 * way the outcome - values, status, error and pointers - is the jansson path's. */
int cv__body_parse_fast(struct cv__parse *p, const char *body, size_t len,
                        const struct cv__field *tab, size_t n, void *spec, size_t spec_size,
                        void (*spec_free)(void *spec));

/* cv__body_load for callers that read only the small members of a body (POST /jobs's "kind"):
 * the same status and errors, but the tree is that of the rest, with [] or "" in place of
 * the tensor values the pre-pass took out, so a large body costs no jansson tree. */
int cv__body_load_skim(struct cv__parse *p, const char *body, size_t len, json_t **root);

/* ---- named kernels (kernels.c) ----------------------------------------------------------- */

/* True when v names a kernel: a string, or an object with a "name". */
bool cv__kernel_is_named(const json_t *v);

/* Builds the named kernel v at ptr as a 2-D nested tensor; 422 at ptr for an unknown name
 * (listing the valid ones) or bad parameters. */
void cv__kernel_named_parse(struct cv__parse *p, json_t *v, const char *ptr,
                            struct cv__tensor_json *out);

/* ---- job metadata and user kernels (meta_json.c, kernels_user.c) ------------------------ */

/* Rows for "name" and "labels" of a submission; dst is a struct cv_api_job_meta whose strings
 * they allocate (the spec's owner frees them with cv_api_job_meta_free). */
void cv__field_name(struct cv__parse *p, const struct cv__field *f, json_t *v, const char *ptr,
                    void *dst);
void cv__field_labels(struct cv__parse *p, const struct cv__field *f, json_t *v, const char *ptr,
                      void *dst);

/* True when name is one of the built-in kernels (kernels.c). */
bool cv__kernel_is_builtin(const char *name);

/* Asks the installed resolver for a saved kernel: true with *out filled (owned, nested form)
 * when there is one, false when there is none or no resolver. */
bool cv__kernel_user_lookup(struct cv__parse *p, const char *name, const char *ptr,
                            struct cv__tensor_json *out);

#endif
