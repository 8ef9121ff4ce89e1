/* The /train stream events and the "stream": false reply. Non-finite numbers are written as
 * null: NaN is not JSON, and a diverged loss must still reach the client. */
#include <math.h>

#include "api_impl.h"

/* Losses are sums in double of float32 terms; they are written at float32 precision, as
 * PyTorch reports them ("4.63024235", not "4.6302423477172852"). Losses beyond the float32
 * range keep their double value. */
static void put_loss(struct cv__buf *b, double loss) {
    if (fabs(loss) < CV__F32_LIMIT)
        cv__buf_put_f32(b, (float)loss);
    else
        cv__buf_put_f64(b, loss);
}

/* null without a bias; a number when there is one output channel and the weight is written
 * without its Cout dimension; else an array of Cout numbers. */
static void put_bias(struct cv__buf *b, const struct cv_train_request *req) {
    if (req->bias == NULL) {
        cv__buf_puts(b, "null");
        return;
    }
    if (req->weight_rank < 4) {
        cv__buf_put_f32(b, req->bias[0]);
        return;
    }
    cv__buf_putc(b, '[');
    for (int64_t o = 0; o < req->weight.n; o++) {
        if (o > 0)
            cv__buf_putc(b, ',');
        cv__buf_put_f32(b, req->bias[o]);
    }
    cv__buf_putc(b, ']');
}

/* "weight":W,"bias":B, as the request's weight stands now. */
static void put_kernel(struct cv__buf *b, const struct cv_train_request *req) {
    cv__buf_puts(b, ",\"weight\":");
    cv__tensor_write(b, &req->weight, req->weight_rank, req->out_form);
    cv__buf_puts(b, ",\"bias\":");
    put_bias(b, req);
}

/* The members every training result ends with, "final_loss", "weight", "bias" and
 * "elapsed_ms", closing the object; returns the finished text (see cv__buf_finish). */
static char *finish_result(struct cv__buf *b, const struct cv_train_request *req,
                           const struct cv_train_result *res, double elapsed_ms, size_t *len) {
    cv__buf_puts(b, ",\"final_loss\":");
    put_loss(b, res->final_loss);
    put_kernel(b, req);
    cv__buf_puts(b, ",\"elapsed_ms\":");
    cv__buf_put_ms(b, elapsed_ms);
    cv__buf_putc(b, '}');
    return cv__buf_finish(b, len);
}

char *cv_api_event_start_dump(const struct cv_train_request *req, const char *job_id, size_t *len) {
    struct cv__buf b = {0};
    int64_t params = cv_tensor_numel(&req->weight) + (req->bias != NULL ? req->weight.n : 0);
    cv__buf_puts(&b, "{\"event\":\"start\",\"job\":");
    cv__buf_put_str_or_null(&b, job_id);
    cv__buf_puts(&b, ",\"steps\":");
    cv__buf_put_i64(&b, req->params.steps);
    cv__buf_puts(&b, ",\"parameters\":");
    cv__buf_put_i64(&b, params);
    cv__buf_puts(&b, ",\"seed\":");
    cv__buf_put_u64(&b, req->seed);
    cv__buf_putc(&b, '}');
    return cv__buf_finish(&b, len);
}

char *cv_api_event_step_dump(const struct cv_train_step *s, double elapsed_ms, size_t *len) {
    struct cv__buf b = {0};
    cv__buf_puts(&b, "{\"event\":\"step\",\"step\":");
    cv__buf_put_i64(&b, s->step);
    cv__buf_puts(&b, ",\"loss\":");
    put_loss(&b, s->loss);
    cv__buf_puts(&b, ",\"elapsed_ms\":");
    cv__buf_put_ms(&b, elapsed_ms);
    cv__buf_putc(&b, '}');
    return cv__buf_finish(&b, len);
}

char *cv_api_event_done_dump(const struct cv_train_request *req, const char *status,
                             const struct cv_train_result *res, double elapsed_ms, size_t *len) {
    struct cv__buf b = {0};
    cv__buf_puts(&b, "{\"event\":\"done\",\"status\":");
    cv__buf_put_str_or_null(&b, status);
    cv__buf_puts(&b, ",\"steps\":");
    cv__buf_put_i64(&b, res->steps_done);
    cv__buf_puts(&b, ",\"loss\":");
    put_loss(&b, res->last_loss);
    return finish_result(&b, req, res, elapsed_ms, len);
}

char *cv_api_event_error_dump(const char *code, const char *detail, size_t *len) {
    struct cv__buf b = {0};
    cv__buf_puts(&b, "{\"event\":\"error\",\"status\":\"failed\",\"code\":");
    cv__buf_put_str_or_null(&b, code);
    cv__buf_puts(&b, ",\"detail\":");
    cv__buf_put_str_or_null(&b, detail);
    cv__buf_putc(&b, '}');
    return cv__buf_finish(&b, len);
}

char *cv_api_train_reply_dump(const struct cv_train_request *req, const char *status,
                              const struct cv_train_result *res, const double *losses,
                              int32_t n_losses, double elapsed_ms, size_t *len) {
    struct cv__buf b = {0};
    cv__buf_puts(&b, "{\"status\":");
    cv__buf_put_str_or_null(&b, status);
    cv__buf_puts(&b, ",\"steps\":");
    cv__buf_put_i64(&b, res->steps_done);
    if (losses != NULL || n_losses == 0) {
        cv__buf_puts(&b, ",\"losses\":[");
        for (int32_t i = 0; i < n_losses; i++) {
            if (i > 0)
                cv__buf_putc(&b, ',');
            put_loss(&b, losses[i]);
        }
        cv__buf_putc(&b, ']');
    }
    return finish_result(&b, req, res, elapsed_ms, len);
}

char *cv_api_event_warning_dump(const char *code, int32_t step, double loss, double first_loss,
                                const char *detail, size_t *len) {
    struct cv__buf b = {0};
    cv__buf_puts(&b, "{\"event\":\"warning\",\"code\":");
    cv__buf_put_str(&b, code);
    cv__buf_puts(&b, ",\"step\":");
    cv__buf_put_i64(&b, step);
    cv__buf_puts(&b, ",\"loss\":");
    cv__buf_put_f32(&b, (float)loss);
    cv__buf_puts(&b, ",\"first_loss\":");
    cv__buf_put_f32(&b, (float)first_loss);
    cv__buf_puts(&b, ",\"detail\":");
    cv__buf_put_str(&b, detail);
    cv__buf_putc(&b, '}');
    return cv__buf_finish(&b, len);
}
