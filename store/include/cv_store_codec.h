/* The binary codec of the store's blobs (requests, checkpoints, named kernels): a small,
 * versioned record of tagged fields, little-endian, so that tensors are stored as float32 and
 * never as JSON text.
 *
 * Format (version 1):
 *   header:  "CVR" 0x01 (magic + version), u32 field count
 *   field:   u32 tag, u8 type, u64 payload length, payload
 *   types:   I64 (8 bytes), F64 (8 bytes, IEEE binary64), BYTES (any),
 *            F32S (4 x i64 dims n,c,h,w then n*c*h*w float32),
 *            F64S (u64 count then count binary64)
 * A reader skips fields whose tag it does not know (forward compatible within a version) and
 * refuses another version.
 *
 * Safety: blobs come from disk or a database that an attacker may have written. The decoder
 * checks every length against the bytes actually present BEFORE it allocates anything, and
 * every count against its payload length, with overflow-checked arithmetic; so a forged header
 * can never make it allocate more than the blob's own size (plus a small constant per field).
 * Getters that copy (tensors, arrays) allocate exactly the validated payload size. */
#ifndef CV_STORE_CODEC_H
#define CV_STORE_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "convd/tensor.h"

#define CV_STORE_CODEC_VERSION 1

/* Hard limits of the decoder: fields per record, and bytes per blob (256 MiB). */
#define CV_STORE_CODEC_MAX_FIELDS 4096
#define CV_STORE_CODEC_MAX_BYTES  ((size_t)256 << 20)

enum cv_store_codec_type {
    CV_STORE_CODEC_TYPE_I64 = 1,
    CV_STORE_CODEC_TYPE_F64 = 2,
    CV_STORE_CODEC_TYPE_BYTES = 3,
    CV_STORE_CODEC_TYPE_F32S = 4,
    CV_STORE_CODEC_TYPE_F64S = 5,
};

/* A record being built or decoded. Opaque. */
struct cv_store_rec;

/* Makes an empty record for writing. Returns CV_STORE_OK or CV_STORE_NOMEM; free with
 * cv_store_rec_free. */
int cv_store_rec_new(struct cv_store_rec **out);

/* Releases a record; NULL-safe. */
void cv_store_rec_free(struct cv_store_rec *r);

/* Appends fields (data is copied). Return CV_STORE_OK, CV_STORE_NOMEM, or CV_STORE_INVALID
 * (a decoded record, or a tensor with a dimension < 1). */
int cv_store_rec_put_i64(struct cv_store_rec *r, uint32_t tag, int64_t v);
int cv_store_rec_put_f64(struct cv_store_rec *r, uint32_t tag, double v);
int cv_store_rec_put_bytes(struct cv_store_rec *r, uint32_t tag, const void *p, size_t n);
int cv_store_rec_put_tensor(struct cv_store_rec *r, uint32_t tag, const struct cv_tensor *t);
int cv_store_rec_put_f32s(struct cv_store_rec *r, uint32_t tag, const float *v, int64_t n);
int cv_store_rec_put_f64s(struct cv_store_rec *r, uint32_t tag, const double *v, int64_t n);

/* The encoded bytes of a record being written (borrowed from r, valid until the next put or
 * free). */
const unsigned char *cv_store_rec_bytes(const struct cv_store_rec *r, size_t *len);

/* Decodes blob[0..len) (borrowed; copied into the record) after validating the whole layout.
 * Returns CV_STORE_OK with *out set, CV_STORE_CORRUPT for anything malformed (bad magic, other
 * version, a length past the end, a count that does not match its payload, too many fields),
 * or CV_STORE_NOMEM. */
int cv_store_rec_decode(const void *blob, size_t len, struct cv_store_rec **out);

/* Getters of a decoded record; the first field with the tag counts. Return CV_STORE_OK,
 * CV_STORE_NOT_FOUND (no such tag), CV_STORE_CORRUPT (the tag has another type), or
 * CV_STORE_NOMEM. */
int cv_store_rec_get_i64(const struct cv_store_rec *r, uint32_t tag, int64_t *v);
int cv_store_rec_get_f64(const struct cv_store_rec *r, uint32_t tag, double *v);
/* *p borrows from r; *n its length. */
int cv_store_rec_get_bytes(const struct cv_store_rec *r, uint32_t tag, const void **p, size_t *n);
/* *t is a new tensor (cv_tensor_free it). */
int cv_store_rec_get_tensor(const struct cv_store_rec *r, uint32_t tag, struct cv_tensor *t);
/* *v is malloc'd (free it), NULL when *n is 0. The f32s form is a tensor of shape (1,1,1,n). */
int cv_store_rec_get_f32s(const struct cv_store_rec *r, uint32_t tag, float **v, int64_t *n);
int cv_store_rec_get_f64s(const struct cv_store_rec *r, uint32_t tag, double **v, int64_t *n);

#endif
