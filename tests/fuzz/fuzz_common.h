/* Shared by the libFuzzer targets of tests/fuzz: the limits every target parses under. They are
 * small so that no input can make a target allocate more than a few MB (the CI replay runs
 * under -rss_limit_mb), yet large enough for every form and field to be reached. */
#ifndef CV_FUZZ_COMMON_H
#define CV_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include <convd/api.h>

/* 4096 elements per tensor, 50 training steps: the parsers' checks against the limits are
 * exercised without large allocations. */
static inline struct cv_api_limits cv_fuzz_limits(void) {
    struct cv_api_limits l = {.max_elements = 4096, .max_steps = 50};
    return l;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
