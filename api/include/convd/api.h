/* convd's JSON layer: request bodies -> compute types and job specs, results and events ->
 * JSON text, errors -> RFC 9457 problem+json. The contract is API.md; this is the only layer
 * that knows jansson (linked PRIVATE), and it knows nothing of HTTP libraries or threads.
 *
 * Conventions:
 * - Parsers return CV_OK, or a negative status with *err filled (HTTP status, stable code, a JSON
 *   pointer per bad field). On failure the out-struct is left empty: the caller frees nothing.
 * - Dump functions return a malloc'd NUL-terminated string (caller free()s) and its length in
 *   *len when len is not NULL; NULL only when memory runs out.
 * - Tensors in replies use the form of the request's input unless "output_format" says
 *   otherwise. Numbers are written in the shortest form that reads back as the same float32;
 *   integral values are written without a fraction ("19", not "19.0"). */
#ifndef CONVD_API_H
#define CONVD_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "convd/corr2d.h"
#include "convd/status.h"
#include "convd/tensor.h"
#include "convd/train.h"

/* ---- start-up ---------------------------------------------------------------------------- */

/* Call once at start-up, before threads use this layer: seeds jansson's hash function
 * (json_object_seed), as jansson asks before threads share it. */
void cv_api_init(void);

/* ---- errors ------------------------------------------------------------------------------ */

#define CV_API_MAX_FIELD_ERRORS 8

struct cv_api_field_error {
    char pointer[128]; /* RFC 6901 JSON pointer into the request body, e.g. "/input/2/1" */
    char detail[200];
};

/* Caller-owned, like jansson's json_error_t: filling it never allocates. The parsers' codes:
 * 400 invalid_json, duplicate_key, not_an_object; 413 too_large; 422 missing_field,
 * unknown_field, invalid_field (wrong type, range or tensor content), shape_mismatch (fields
 * that do not fit together: kernel vs input, target vs output, bias length); 503
 * out_of_memory. */
struct cv_api_error {
    int status;    /* HTTP status: 400, 401, 404, 405, 413, 415, 422, 500, 503 */
    char code[32]; /* stable machine code: "invalid_json", "invalid_field", "too_large", ... */
    char detail[256];
    int n_errors; /* entries used in errors[] */
    struct cv_api_field_error errors[CV_API_MAX_FIELD_ERRORS];
    int line, column, position; /* where a JSON syntax error is; 0 when not a syntax error */
};

/* Resets *err and sets status, code and detail (printf-style). When pointer is not NULL it also
 * records one field error at pointer with the same detail. Truncates long text; never fails. */
void cv_api_error_set(struct cv_api_error *err, int status, const char *code, const char *pointer,
                      const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Appends one field error (pointer, printf-style detail); ignored when the list is full. */
void cv_api_error_add(struct cv_api_error *err, const char *pointer, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The HTTP reason phrase of a status ("Bad Request", "Unprocessable Content", ...); never NULL. */
const char *cv_api_status_title(int status);

/* problem+json text of *err: {"type":"about:blank","title","status","detail","code",
 * "errors":[{"pointer","detail"}], and "line","column","position" for syntax errors,
 * "instance" when instance is not NULL}. */
char *cv_api_problem_dump(const struct cv_api_error *err, const char *instance, size_t *len);

/* ---- tensors ----------------------------------------------------------------------------- */

enum cv_tensor_form {
    CV_TENSOR_FORM_NESTED = 0, /* [[0,1,2],[3,4,5]] */
    CV_TENSOR_FORM_FLAT = 1,   /* {"shape":[2,3],"data":[0,1,2,3,4,5]} */
    CV_TENSOR_FORM_B64 = 2,    /* {"shape":[2,3],"dtype":"float32","b64":"..."} */
};

/* Limits a request must respect (the daemon's --max-elements and --max-steps). */
struct cv_api_limits {
    int64_t max_elements; /* per tensor, inputs and outputs alike; over it -> 413 */
    int32_t max_steps;    /* /train "steps" above it -> 422 */
};

/* ---- job metadata: "name" and "labels" of a submission (POST /jobs, /train) ------------- */

struct cv_api_job_meta {
    char *name;        /* owned; NULL when none: 1..64 printable characters */
    char *labels_json; /* owned; NULL when none: a compact JSON object of string values with
                          sorted keys, at most 16 */
};

/* Releases the strings and leaves *m empty; NULL-safe. */
void cv_api_job_meta_free(struct cv_api_job_meta *m);

/* True when the labels (JSON text as in cv_api_job_meta, or NULL) have key = value, where the
 * selector is "key=value" (GET /jobs?label=key=value). */
bool cv_api_labels_match(const char *labels_json, const char *selector);

/* True when a selector is well formed: "key=value" with a valid key and a non-empty value. */
bool cv_api_label_selector_ok(const char *selector);

/* ---- POST /corr2d ------------------------------------------------------------------------ */

struct cv_corr2d_request {
    struct cv_tensor x;         /* (N, C, H, W), owned */
    struct cv_tensor k;         /* (Cout, C, kh, kw), owned (a 2-D kernel on a C-channel input
                                   is expanded to a per-channel, block-diagonal (C, C, kh, kw)) */
    float *bias;                /* Cout entries, owned; NULL when the request has no bias */
    struct cv_conv2d_geom geom; /* padding ("same" resolved), stride, dilation */
    struct cv_tensor y;         /* (N, Cout, H', W'), owned, zero-filled by parse; the caller
                                   fills it with cv_corr2d_forward before the reply */
    int out_rank;               /* rank of "output" in the reply: 2, 3 or 4 */
    enum cv_tensor_form out_form;
    struct cv_api_job_meta meta; /* POST /jobs: "name" and "labels", owned */
};

/* Parses a /corr2d body into *req (which need not be initialised): JSON syntax (400), an
 * object at the top (400), every field of API.md with its default and checks (422, with a
 * pointer per bad field), tensor sizes against lim (413). Returns CV_OK or a negative status
 * with *err filled; on failure *req is empty. Free a parsed request with
 * cv_api_corr2d_request_free. */
int cv_api_corr2d_parse(const char *body, size_t len, const struct cv_api_limits *lim,
                        struct cv_corr2d_request *req, struct cv_api_error *err);

/* Releases everything a request owns and leaves it empty; NULL-safe. */
void cv_api_corr2d_request_free(struct cv_corr2d_request *req);

/* The 200 reply {"output": T} for a request whose y has been computed. */
char *cv_api_corr2d_reply_dump(const struct cv_corr2d_request *req, size_t *len);

/* ---- POST /train ------------------------------------------------------------------------- */

struct cv_train_request {
    struct cv_tensor x;            /* (N, C, H, W), owned */
    struct cv_tensor y;            /* target, (N, Cout, H', W'), owned */
    struct cv_tensor weight;       /* (Cout, C, kh, kw), owned: the start (init.weight, or
                                      drawn from seed); the training updates it in place */
    float *bias;                   /* Cout entries, owned, the start (init.bias or drawn);
                                      NULL when "bias" is false */
    struct cv_train_params params; /* everything but n_threads, which the server sets */
    uint64_t seed;                 /* the seed used (drawn at random when absent) */
    int32_t report_every;          /* >= 1 */
    bool stream;                   /* false: one JSON reply at the end */
    int weight_rank;               /* rank of "weight" in replies: 2, 3 or 4 */
    enum cv_tensor_form out_form;  /* form of "weight" in replies */
    struct cv_api_job_meta meta;   /* "name" and "labels", owned */
};

/* Parses a /train body into *req, like cv_api_corr2d_parse (400/413/422 with pointers),
 * including the initial weight and bias. Free with cv_api_train_request_free. */
int cv_api_train_parse(const char *body, size_t len, const struct cv_api_limits *lim,
                       struct cv_train_request *req, struct cv_api_error *err);

/* Releases everything a request owns and leaves it empty; NULL-safe. */
void cv_api_train_request_free(struct cv_train_request *req);

/* Stream events, one JSON object each with no trailing newline (the server frames them as
 * NDJSON lines or SSE events). */

/* {"event":"start","job":job_id,"steps":N,"parameters":P,"seed":S} */
char *cv_api_event_start_dump(const struct cv_train_request *req, const char *job_id, size_t *len);

/* {"event":"step","step":k,"loss":L,"elapsed_ms":t} */
char *cv_api_event_step_dump(const struct cv_train_step *s, double elapsed_ms, size_t *len);

/* {"event":"done","status":status,"steps":done,"loss":last,"final_loss":F,"weight":W,
 *  "bias":B|null,"elapsed_ms":t}, with the weight and bias as they stand in req.
 * status is "succeeded" or "cancelled". A non-finite loss is written as null. */
char *cv_api_event_done_dump(const struct cv_train_request *req, const char *status,
                             const struct cv_train_result *res, double elapsed_ms, size_t *len);

/* {"event":"warning","code":code,"step":k,"loss":L,"first_loss":F,"detail":detail}: the
 * training goes on (loss_rising: the loss grew more than 1000x over its first value). */
char *cv_api_event_warning_dump(const char *code, int32_t step, double loss, double first_loss,
                                const char *detail, size_t *len);

/* {"event":"error","status":"failed","code":code,"detail":detail} */
char *cv_api_event_error_dump(const char *code, const char *detail, size_t *len);

/* The "stream": false reply: {"status":status,"steps":done,"losses":[...],"final_loss":F,
 * "weight":W,"bias":B|null,"elapsed_ms":t}; losses has n_losses entries (borrowed). When
 * losses is NULL and n_losses > 0, the "losses" member is left out (GET /jobs/{id} without
 * ?include=losses). */
char *cv_api_train_reply_dump(const struct cv_train_request *req, const char *status,
                              const struct cv_train_result *res, const double *losses,
                              int32_t n_losses, double elapsed_ms, size_t *len);

/* The settings of a job as a JSON object, for its resource's "params": kernel_size,
 * in_channels, out_channels, input_shape, padding [top,bottom,left,right], stride, dilation,
 * bias, and for a training loss, optimizer, lr (momentum / beta1, beta2, eps), steps, seed,
 * report_every, stop_loss. */
char *cv_api_train_params_dump(const struct cv_train_request *req, size_t *len);
char *cv_api_corr2d_params_dump(const struct cv_corr2d_request *req, size_t *len);

/* ---- jobs: POST /jobs, GET /jobs, GET /jobs/{id} ------------------------------------------ */

enum cv_api_job_kind {
    CV_API_JOB_KIND_CORR2D = 0,
    CV_API_JOB_KIND_TRAIN = 1,
};

/* Name of a job kind: "corr2d" or "train". */
const char *cv_api_job_kind_name(enum cv_api_job_kind kind);

/* Reads the "kind" member of a POST /jobs body into *kind. Returns CV_OK, or a negative status
 * with *err filled: 400 for a body that is not a JSON object (as the full parsers report it),
 * 422 missing_field or invalid_field at "/kind". The body is then parsed in full by
 * cv_api_corr2d_parse or cv_api_train_parse, which accept a "kind" naming their own kind. */
int cv_api_job_kind_peek(const char *body, size_t len, enum cv_api_job_kind *kind,
                         struct cv_api_error *err);

/* What a job resource shows. Strings are borrowed; NULL strings and NaN numbers are written as
 * null. result_json is already-rendered JSON (the /corr2d reply or the "stream": false reply). */
struct cv_api_job_view {
    const char *id, *kind, *status;
    const char *created_at, *started_at, *finished_at; /* RFC 3339 UTC */
    int32_t step, steps;                               /* progress */
    double loss;                                       /* last reported loss */
    double elapsed_ms;
    double steps_per_s;      /* step rate of a training; NaN when unknown (written as null) */
    const char *name;        /* NULL when none */
    const char *labels_json; /* JSON object text, NULL when none (written as {}) */
    const char *params_json; /* JSON object text, NULL when none */
    const char *result_json;
    bool omit_losses;                      /* the result is written without its "losses" member */
    const char *error_code, *error_detail; /* "error": {"code","detail"} when code is set */
    int32_t attempt;                       /* runs so far: 1 for the first, 2 after a resume */
};

/* One job resource: {"id","kind","name","labels","params","status","attempt","created_at",
 * "started_at","finished_at","progress":{"step","steps"},"loss","elapsed_ms","steps_per_s",
 * "links":{"self","events"},"result","error"};
 * "result" is left out when with_result is false (job lists). */
char *cv_api_job_dump(const struct cv_api_job_view *v, bool with_result, size_t *len);

/* {"jobs":[resource without result, ...]} for n views (in the order given). */
char *cv_api_job_list_dump(const struct cv_api_job_view *v, size_t n, size_t *len);

/* ---- GET /openapi.json ------------------------------------------------------------------- */

/* The OpenAPI 3.1 description of the HTTP API (api/openapi.json, built into the binary);
 * static text, never NULL; its length in *len when len is not NULL. */
const char *cv_api_openapi_json(size_t *len);

/* ---- GET /kernels ------------------------------------------------------------------------ */

/* {"kernels":[{"name":"edge","kernel":[[1,-1]],"description":"..."}, ...,
 *  {"name":"box","parameters":{"size":"odd int, default 3"},"example":...}]} */
char *cv_api_kernels_dump(size_t *len);

/* One built-in kernel as GET /kernels lists it; *found is false (and NULL returned) when name
 * is not built in. */
char *cv_api_builtin_kernel_dump(const char *name, size_t *len, bool *found);

/* Looks up a saved kernel by name for "kernel": NAME and "init": NAME: returns true with *out
 * set to a copy the caller owns (free with cv_tensor_free) and *rank to the rank it was saved
 * with (2..4); false when there is none. Called on connection threads: must be thread-safe. */
typedef bool (*cv_api_kernel_resolver)(void *user, const char *name, struct cv_tensor *out,
                                       int *rank);

/* Installs the resolver (at start-up, before serving); NULL removes it. */
void cv_api_kernels_set_resolver(cv_api_kernel_resolver fn, void *user);

/* True when name can name a saved kernel: 1..64 of A-Z a-z 0-9 _ - . */
bool cv_api_kernel_name_ok(const char *name);

/* A POST /kernels body: {"name", "from_job": id} or {"name", "weight": tensor}. */
struct cv_api_kernel_save {
    char name[65];
    char from_job[64];       /* "" when the weight is given */
    struct cv_tensor weight; /* owned; empty when from_job is given */
    int rank;                /* of the weight as written */
};

/* Parses a POST /kernels body: 400 as the other parsers, 422 for a bad name or not exactly one
 * of from_job and weight, 409 name_taken for a built-in name. Free with
 * cv_api_kernel_save_free. */
int cv_api_kernel_save_parse(const char *body, size_t len, const struct cv_api_limits *lim,
                             struct cv_api_kernel_save *out, struct cv_api_error *err);
void cv_api_kernel_save_free(struct cv_api_kernel_save *k);

/* The learned "weight" of a stored training result (JSON text of len bytes) into *out (caller
 * frees with cv_tensor_free) with the rank it was written with. CV_EINVAL when it has none. */
int cv_api_result_weight(const char *result_json, size_t len, const struct cv_api_limits *lim,
                         struct cv_tensor *out, int *rank);

/* A saved kernel as the replies show it (everything borrowed). */
struct cv_api_user_kernel {
    const char *name;
    const struct cv_tensor *weight;
    int rank;
    const char *source;     /* job id it came from, or NULL */
    const char *created_at; /* RFC 3339 */
};

/* {"name","builtin":false,"source","created_at","shape","kernel"} */
char *cv_api_user_kernel_dump(const struct cv_api_user_kernel *k, size_t *len);

/* GET /kernels: the built-in ones (with "builtin": true), then the n saved ones. */
char *cv_api_kernels_dump_with(const struct cv_api_user_kernel *user, size_t n, size_t *len);

#endif
