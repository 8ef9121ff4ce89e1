/* Standard base64 (RFC 4648 section 4, with '=' padding), used for the "b64" tensor form.
 * Pure functions on caller-owned buffers: nothing here allocates. */
#ifndef CONVD_BASE64_H
#define CONVD_BASE64_H

#include <stddef.h>
#include <stdint.h>

/* Number of characters cv_base64_encode writes for n bytes, not counting the final NUL. */
size_t cv_base64_encoded_len(size_t n);

/* Encodes src[0..n) into dst, which must hold cv_base64_encoded_len(n) + 1 chars; dst is
 * NUL-terminated. */
void cv_base64_encode(const uint8_t *src, size_t n, char *dst);

/* Upper bound of the bytes that len characters of base64 decode to. */
size_t cv_base64_decoded_max(size_t len);

/* Decodes src[0..len) into dst (capacity cap bytes) and sets *out_len. The input must be
 * canonical padded base64 (length a multiple of 4, '=' only at the end, no whitespace).
 * Returns CV_OK, CV_EINVAL for a bad character, length or padding (then *bad_at, when not
 * NULL, is the offset of the first offending character), or CV_ETOOBIG when cap is too small. */
int cv_base64_decode(const char *src, size_t len, uint8_t *dst, size_t cap, size_t *out_len,
                     size_t *bad_at);

#endif
