/* POST /train on the textbook's edge-learning run, whose numbers come from PyTorch:
 * nn.Conv2d(1,1,(1,2),bias=False) with weight 0.5, loss ((conv(X)-Y)**2).sum(),
 * w -= 0.012*grad, 20 steps (torch 1.13, float32). The daemon must reproduce the whole
 * trajectory, not just converge. */
#include <stdlib.h>
#include <string.h>

#include "http_suite.h"

#define REL 1e-4 /* float32 sums in another order differ in the last bits, not in the 4th digit */

/* The loss of each step's forward pass, before its update (what the textbook prints). */
static const double torch_losses[20] = {
    34.5,      9.0266867, 4.9725084, 3.9029040, 3.3097467, 2.8433437, 2.4477000,
    2.1077926, 1.8151801, 1.5632015, 1.3462038, 1.1593292, 0.9983957, 0.8598023,
    0.7404479, 0.6376619, 0.5491442, 0.4729141, 0.4072661, 0.3507310,
};
static const double torch_final_loss = 0.30204397; /* after the 20th update */
static const double torch_weight = 0.77563274;     /* the kernel learned: [[w, -w]] */

/* The seed run's body for steps steps, with extra members (",\"stream\":false" ...) spliced in
 * before the end. */
static char *seed_body(int steps, const char *extra) {
    return cv_strdupf("{\"input\":%s,\"target\":%s,\"kernel_size\":[1,2],\"bias\":false,"
                      "\"lr\":0.012,\"steps\":%d,\"init\":{\"weight\":[[0.5,0.5]]}%s}",
                      cv_seed_x, cv_seed_y, steps, extra);
}

/* Streams the seed run with extra members and returns its events, checking the NDJSON framing:
 * 200, the media type, a clean end with no bytes after the last line end. */
static json_t *stream_seed(const char *extra) {
    char *body = seed_body(20, extra);
    struct cv_stream s = {0};
    json_t *events = cv_train_stream(body, &s, 0);
    cv_check_media_type(s.content_type, "application/x-ndjson");
    cv_stream_free(&s);
    free(body);
    return events;
}

static const char *event_name(json_t *e) {
    return json_string_value(json_object_get(e, "event"));
}

/* Checks the learned [[w0, w1]]: the edge detector's direction (w0 > 0 > w1) and PyTorch's
 * values. */
static void check_weight(json_t *w) {
    cv_check_nested(w, 2, (int[]){1, 2}, (double[]){torch_weight, -torch_weight},
                    REL * torch_weight);
    double w0 = json_number_value(json_array_get(json_array_get(w, 0), 0));
    double w1 = json_number_value(json_array_get(json_array_get(w, 0), 1));
    ck_assert_msg(w0 > 0 && w1 < 0, "learned kernel [[%g,%g]] is not an edge detector", w0, w1);
}

START_TEST(test_seed_stream) {
    json_t *ev = stream_seed("");
    ck_assert_int_eq(json_array_size(ev), 1 + 20 + 1);

    json_t *start = json_array_get(ev, 0);
    ck_assert_str_eq(event_name(start), "start");
    ck_assert_msg(json_string_length(json_object_get(start, "job")) > 0, "start has no job id");
    ck_assert_int_eq(json_integer_value(json_object_get(start, "steps")), 20);
    ck_assert_int_eq(json_integer_value(json_object_get(start, "parameters")), 2);
    ck_assert_msg(json_is_integer(json_object_get(start, "seed")), "start has no seed");

    double last_ms = 0;
    for (int k = 1; k <= 20; k++) {
        json_t *e = json_array_get(ev, (size_t)k);
        ck_assert_str_eq(event_name(e), "step");
        ck_assert_int_eq(json_integer_value(json_object_get(e, "step")), k);
        char what[32];
        snprintf(what, sizeof what, "loss of step %d", k);
        cv_check_rel(cv_num(e, "loss"), torch_losses[k - 1], REL, what);
        double ms = cv_num(e, "elapsed_ms");
        ck_assert_msg(ms >= last_ms, "elapsed_ms went back at step %d", k);
        last_ms = ms;
    }

    json_t *done = json_array_get(ev, 21);
    ck_assert_str_eq(event_name(done), "done");
    ck_assert_str_eq(json_string_value(json_object_get(done, "status")), "succeeded");
    ck_assert_int_eq(json_integer_value(json_object_get(done, "steps")), 20);
    cv_check_rel(cv_num(done, "loss"), torch_losses[19], REL, "done.loss");
    cv_check_rel(cv_num(done, "final_loss"), torch_final_loss, REL, "final_loss");
    check_weight(json_object_get(done, "weight"));
    ck_assert_msg(json_is_null(json_object_get(done, "bias")), "bias should be null");
    ck_assert_msg(cv_num(done, "elapsed_ms") >= last_ms, "done's elapsed_ms is before a step's");
    json_decref(ev);
}
END_TEST

START_TEST(test_seed_no_stream) {
    char *body = seed_body(20, ",\"stream\":false");
    json_t *j = cv_post_ok("/train", body);
    ck_assert_str_eq(json_string_value(json_object_get(j, "status")), "succeeded");
    ck_assert_int_eq(json_array_size(json_object_get(j, "losses")), 20);
    for (int k = 0; k < 20; k++)
        cv_check_rel(json_number_value(json_array_get(json_object_get(j, "losses"), (size_t)k)),
                     torch_losses[k], REL, "a loss");
    cv_check_rel(cv_num(j, "final_loss"), torch_final_loss, REL, "final_loss");
    check_weight(json_object_get(j, "weight"));
    ck_assert_msg(json_is_null(json_object_get(j, "bias")), "bias should be null");
    json_decref(j);
    free(body);
}
END_TEST

/* The step numbers a run reports, in order, with each loss checked against PyTorch. */
static int reported_steps(json_t *ev, int *steps, int cap) {
    int n = 0;
    for (size_t i = 0; i < json_array_size(ev); i++) {
        json_t *e = json_array_get(ev, i);
        if (strcmp(event_name(e), "step") != 0)
            continue;
        int k = (int)json_integer_value(json_object_get(e, "step"));
        ck_assert_msg(k >= 1 && k <= 20 && n < cap, "unexpected step %d", k);
        cv_check_rel(cv_num(e, "loss"), torch_losses[k - 1], REL, "a reported loss");
        steps[n++] = k;
    }
    return n;
}

START_TEST(test_report_every) {
    int steps[20];
    json_t *ev = stream_seed(",\"report_every\":5");
    ck_assert_int_eq(reported_steps(ev, steps, 20), 4);
    ck_assert_msg(steps[0] == 5 && steps[1] == 10 && steps[2] == 15 && steps[3] == 20,
                  "reported %d %d %d %d, expected 5 10 15 20", steps[0], steps[1], steps[2],
                  steps[3]);
    cv_last_event(ev, "done");
    json_decref(ev);

    /* 20 is no multiple of 3, and the last step is always sent. */
    ev = stream_seed(",\"report_every\":3");
    int n = reported_steps(ev, steps, 20);
    ck_assert_int_eq(n, 7);
    for (int i = 0; i < 6; i++)
        ck_assert_int_eq(steps[i], 3 * (i + 1));
    ck_assert_int_eq(steps[6], 20);
    json_decref(ev);
}
END_TEST

START_TEST(test_stop_loss) {
    /* Step 8's loss is 2.108 and step 9's is 1.815: the first at or below 2 is step 9. */
    int steps[20];
    json_t *ev = stream_seed(",\"stop_loss\":2.0");
    int n = reported_steps(ev, steps, 20);
    ck_assert_msg(n == 9 && steps[8] == 9, "reported %d steps, the last %d; expected 9", n,
                  n ? steps[n - 1] : 0);
    json_t *done = cv_last_event(ev, "done");
    ck_assert_str_eq(json_string_value(json_object_get(done, "status")), "succeeded");
    ck_assert_int_eq(json_integer_value(json_object_get(done, "steps")), 9);
    ck_assert_msg(cv_num(done, "final_loss") <= 2.0, "final_loss above stop_loss");
    json_decref(ev);
}
END_TEST

START_TEST(test_mse) {
    /* "mse" is the mean of the same squared errors: step 1 is 34.5 / 42 outputs. */
    char *body = seed_body(1, ",\"loss\":\"mse\",\"stream\":false");
    json_t *j = cv_post_ok("/train", body);
    ck_assert_int_eq(json_array_size(json_object_get(j, "losses")), 1);
    cv_check_rel(json_number_value(json_array_get(json_object_get(j, "losses"), 0)), 34.5 / 42, REL,
                 "mse loss");
    json_decref(j);
    free(body);
}
END_TEST

START_TEST(test_seed_reproducible) {
    /* A random start drawn from "seed" must be the same start every time. */
    char *body = cv_strdupf("{\"input\":%s,\"target\":%s,\"kernel_size\":[1,2],\"lr\":0.012,"
                            "\"steps\":5,\"seed\":42,\"stream\":false}",
                            cv_seed_x, cv_seed_y);
    json_t *a = cv_post_ok("/train", body);
    json_t *b = cv_post_ok("/train", body);
    ck_assert_msg(json_equal(json_object_get(a, "losses"), json_object_get(b, "losses")),
                  "two runs with seed 42 differ");
    ck_assert_msg(json_equal(json_object_get(a, "weight"), json_object_get(b, "weight")),
                  "two runs with seed 42 learned different kernels");
    ck_assert_msg(json_is_number(json_object_get(a, "bias")) ||
                      json_is_array(json_object_get(a, "bias")),
                  "bias defaults to true, so a bias must be learned");
    json_decref(a);
    json_decref(b);
    free(body);
}
END_TEST

TCase *cv_tcase_train(void) {
    TCase *tc = cv_tcase("train", true);
    tcase_add_test(tc, test_seed_stream);
    tcase_add_test(tc, test_seed_no_stream);
    tcase_add_test(tc, test_report_every);
    tcase_add_test(tc, test_stop_loss);
    tcase_add_test(tc, test_mse);
    tcase_add_test(tc, test_seed_reproducible);
    return tc;
}
