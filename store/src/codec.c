/* The blob codec (cv_store_codec.h). Writing appends to a growing buffer; decoding copies the
 * blob once, then walks it with every length checked against what is left BEFORE anything is
 * allocated, so a forged length can at most make the decoder refuse the blob. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cv_store.h"
#include "cv_store_codec.h"

/* One field of a decoded record: where its payload is inside buf. */
struct field {
    uint32_t tag;
    uint8_t type;
    size_t off, len;
};

struct cv_store_rec {
    unsigned char *buf; /* encoded bytes (writing) or a copy of the blob (decoded) */
    size_t len, cap;
    uint32_t count;       /* fields written */
    bool decoded;         /* true: read-only, fields[] valid */
    struct field *fields; /* decoded fields, count entries */
};

static const unsigned char magic[4] = {'C', 'V', 'R', CV_STORE_CODEC_VERSION};
#define HEADER_LEN     8u  /* magic + u32 count */
#define FIELD_HEAD_LEN 13u /* u32 tag, u8 type, u64 length */

/* ---- little-endian helpers (explicit bytes: the format is LE on any host) ---------------- */

static void put_u32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void put_u64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get_u32(const unsigned char *p) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v |= (uint32_t)p[i] << (8 * i);
    return v;
}

static uint64_t get_u64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static void put_f32(unsigned char *p, float f) {
    uint32_t v;
    memcpy(&v, &f, 4);
    put_u32(p, v);
}

static float get_f32(const unsigned char *p) {
    uint32_t v = get_u32(p);
    float f;
    memcpy(&f, &v, 4);
    return f;
}

static void put_f64(unsigned char *p, double d) {
    uint64_t v;
    memcpy(&v, &d, 8);
    put_u64(p, v);
}

static double get_f64(const unsigned char *p) {
    uint64_t v = get_u64(p);
    double d;
    memcpy(&d, &v, 8);
    return d;
}

/* ---- writing ------------------------------------------------------------------------------- */

int cv_store_rec_new(struct cv_store_rec **out) {
    *out = NULL;
    struct cv_store_rec *r = calloc(1, sizeof *r);
    if (r == NULL)
        return CV_STORE_NOMEM;
    r->cap = 256;
    r->buf = malloc(r->cap);
    if (r->buf == NULL) {
        free(r);
        return CV_STORE_NOMEM;
    }
    memcpy(r->buf, magic, 4);
    put_u32(r->buf + 4, 0);
    r->len = HEADER_LEN;
    *out = r;
    return CV_STORE_OK;
}

void cv_store_rec_free(struct cv_store_rec *r) {
    if (r == NULL)
        return;
    free(r->buf);
    free(r->fields);
    free(r);
}

/* Reserves a field of payload length n and returns where its payload goes, or NULL. */
static unsigned char *field_begin(struct cv_store_rec *r, uint32_t tag, uint8_t type, size_t n,
                                  int *st) {
    *st = CV_STORE_INVALID;
    if (r->decoded || r->count >= CV_STORE_CODEC_MAX_FIELDS)
        return NULL;
    if (n > CV_STORE_CODEC_MAX_BYTES || r->len + FIELD_HEAD_LEN + n > CV_STORE_CODEC_MAX_BYTES)
        return NULL;
    size_t need = r->len + FIELD_HEAD_LEN + n;
    if (need > r->cap) {
        size_t cap = r->cap;
        while (cap < need)
            cap *= 2;
        unsigned char *b = realloc(r->buf, cap);
        if (b == NULL) {
            *st = CV_STORE_NOMEM;
            return NULL;
        }
        r->buf = b;
        r->cap = cap;
    }
    unsigned char *p = r->buf + r->len;
    put_u32(p, tag);
    p[4] = type;
    put_u64(p + 5, n);
    r->len = need;
    r->count++;
    put_u32(r->buf + 4, r->count);
    *st = CV_STORE_OK;
    return p + FIELD_HEAD_LEN;
}

int cv_store_rec_put_i64(struct cv_store_rec *r, uint32_t tag, int64_t v) {
    int st;
    unsigned char *p = field_begin(r, tag, CV_STORE_CODEC_TYPE_I64, 8, &st);
    if (p != NULL)
        put_u64(p, (uint64_t)v);
    return st;
}

int cv_store_rec_put_f64(struct cv_store_rec *r, uint32_t tag, double v) {
    int st;
    unsigned char *p = field_begin(r, tag, CV_STORE_CODEC_TYPE_F64, 8, &st);
    if (p != NULL)
        put_f64(p, v);
    return st;
}

int cv_store_rec_put_bytes(struct cv_store_rec *r, uint32_t tag, const void *src, size_t n) {
    int st;
    unsigned char *p = field_begin(r, tag, CV_STORE_CODEC_TYPE_BYTES, n, &st);
    if (p != NULL && n > 0)
        memcpy(p, src, n);
    return st;
}

static int put_f32_dims(struct cv_store_rec *r, uint32_t tag, const int64_t dims[4],
                        const float *v) {
    uint64_t count = 1;
    for (int i = 0; i < 4; i++) {
        if (dims[i] < 1 || (uint64_t)dims[i] > CV_STORE_CODEC_MAX_BYTES)
            return CV_STORE_INVALID;
        count *= (uint64_t)dims[i];
        if (count > CV_STORE_CODEC_MAX_BYTES / 4)
            return CV_STORE_INVALID;
    }
    int st;
    unsigned char *p = field_begin(r, tag, CV_STORE_CODEC_TYPE_F32S, 32 + 4 * (size_t)count, &st);
    if (p == NULL)
        return st;
    for (int i = 0; i < 4; i++)
        put_u64(p + 8 * i, (uint64_t)dims[i]);
    for (uint64_t i = 0; i < count; i++)
        put_f32(p + 32 + 4 * i, v[i]);
    return CV_STORE_OK;
}

int cv_store_rec_put_tensor(struct cv_store_rec *r, uint32_t tag, const struct cv_tensor *t) {
    if (t == NULL || t->data == NULL)
        return CV_STORE_INVALID;
    const int64_t dims[4] = {t->n, t->c, t->h, t->w};
    return put_f32_dims(r, tag, dims, t->data);
}

int cv_store_rec_put_f32s(struct cv_store_rec *r, uint32_t tag, const float *v, int64_t n) {
    if (n < 1 || v == NULL)
        return CV_STORE_INVALID;
    const int64_t dims[4] = {1, 1, 1, n};
    return put_f32_dims(r, tag, dims, v);
}

int cv_store_rec_put_f64s(struct cv_store_rec *r, uint32_t tag, const double *v, int64_t n) {
    if (n < 0 || (n > 0 && v == NULL) || (uint64_t)n > (CV_STORE_CODEC_MAX_BYTES - 8) / 8)
        return CV_STORE_INVALID;
    int st;
    unsigned char *p = field_begin(r, tag, CV_STORE_CODEC_TYPE_F64S, 8 + 8 * (size_t)n, &st);
    if (p == NULL)
        return st;
    put_u64(p, (uint64_t)n);
    for (int64_t i = 0; i < n; i++)
        put_f64(p + 8 + 8 * i, v[i]);
    return CV_STORE_OK;
}

const unsigned char *cv_store_rec_bytes(const struct cv_store_rec *r, size_t *len) {
    *len = r->len;
    return r->buf;
}

/* ---- decoding ------------------------------------------------------------------------------ */

/* Checks a field's payload against its type. Every length here is one already known to lie
 * inside the blob. */
static bool payload_ok(uint8_t type, const unsigned char *p, size_t n) {
    switch (type) {
    case CV_STORE_CODEC_TYPE_I64:
    case CV_STORE_CODEC_TYPE_F64:
        return n == 8;
    case CV_STORE_CODEC_TYPE_BYTES:
        return true;
    case CV_STORE_CODEC_TYPE_F32S: {
        if (n < 32)
            return false;
        uint64_t count = 1;
        for (int i = 0; i < 4; i++) {
            uint64_t d = get_u64(p + 8 * i);
            if (d < 1 || d > n)
                return false;
            count *= d; /* each factor <= n <= 256 MiB and the product is checked below */
            if (count > (n - 32) / 4)
                return false;
        }
        return count * 4 == n - 32;
    }
    case CV_STORE_CODEC_TYPE_F64S: {
        if (n < 8)
            return false;
        uint64_t count = get_u64(p);
        return count <= (n - 8) / 8 && count * 8 == n - 8;
    }
    default:
        return true; /* an unknown type of a later minor revision: skipped by getters */
    }
}

int cv_store_rec_decode(const void *blob, size_t len, struct cv_store_rec **out) {
    *out = NULL;
    const unsigned char *b = blob;
    if (b == NULL || len < HEADER_LEN || len > CV_STORE_CODEC_MAX_BYTES)
        return CV_STORE_CORRUPT;
    if (memcmp(b, magic, 3) != 0 || b[3] != CV_STORE_CODEC_VERSION)
        return CV_STORE_CORRUPT;
    uint32_t count = get_u32(b + 4);
    /* Each field needs at least its head: a count the bytes cannot hold is refused before the
     * field table is allocated. */
    if (count > CV_STORE_CODEC_MAX_FIELDS || count > (len - HEADER_LEN) / FIELD_HEAD_LEN)
        return CV_STORE_CORRUPT;
    size_t off = HEADER_LEN;
    for (uint32_t i = 0; i < count; i++) { /* pass 1: validate only, no allocation */
        if (len - off < FIELD_HEAD_LEN)
            return CV_STORE_CORRUPT;
        uint64_t n = get_u64(b + off + 5);
        off += FIELD_HEAD_LEN;
        if (n > len - off || !payload_ok(b[off - 9], b + off, (size_t)n))
            return CV_STORE_CORRUPT;
        off += (size_t)n;
    }
    if (off != len)
        return CV_STORE_CORRUPT;
    struct cv_store_rec *r = calloc(1, sizeof *r);
    if (r == NULL)
        return CV_STORE_NOMEM;
    r->buf = malloc(len);
    r->fields = calloc(count ? count : 1, sizeof *r->fields);
    if (r->buf == NULL || r->fields == NULL) {
        cv_store_rec_free(r);
        return CV_STORE_NOMEM;
    }
    memcpy(r->buf, b, len);
    r->len = r->cap = len;
    r->count = count;
    r->decoded = true;
    off = HEADER_LEN;
    for (uint32_t i = 0; i < count; i++) {
        r->fields[i].tag = get_u32(r->buf + off);
        r->fields[i].type = r->buf[off + 4];
        r->fields[i].len = (size_t)get_u64(r->buf + off + 5);
        r->fields[i].off = off + FIELD_HEAD_LEN;
        off += FIELD_HEAD_LEN + r->fields[i].len;
    }
    *out = r;
    return CV_STORE_OK;
}

static int find(const struct cv_store_rec *r, uint32_t tag, uint8_t type, const struct field **f) {
    if (!r->decoded)
        return CV_STORE_INVALID;
    for (uint32_t i = 0; i < r->count; i++) {
        if (r->fields[i].tag == tag) {
            if (r->fields[i].type != type)
                return CV_STORE_CORRUPT;
            *f = &r->fields[i];
            return CV_STORE_OK;
        }
    }
    return CV_STORE_NOT_FOUND;
}

int cv_store_rec_get_i64(const struct cv_store_rec *r, uint32_t tag, int64_t *v) {
    const struct field *f;
    int st = find(r, tag, CV_STORE_CODEC_TYPE_I64, &f);
    if (st == CV_STORE_OK)
        *v = (int64_t)get_u64(r->buf + f->off);
    return st;
}

int cv_store_rec_get_f64(const struct cv_store_rec *r, uint32_t tag, double *v) {
    const struct field *f;
    int st = find(r, tag, CV_STORE_CODEC_TYPE_F64, &f);
    if (st == CV_STORE_OK)
        *v = get_f64(r->buf + f->off);
    return st;
}

int cv_store_rec_get_bytes(const struct cv_store_rec *r, uint32_t tag, const void **p, size_t *n) {
    const struct field *f;
    int st = find(r, tag, CV_STORE_CODEC_TYPE_BYTES, &f);
    if (st == CV_STORE_OK) {
        *p = r->buf + f->off;
        *n = f->len;
    }
    return st;
}

int cv_store_rec_get_tensor(const struct cv_store_rec *r, uint32_t tag, struct cv_tensor *t) {
    memset(t, 0, sizeof *t);
    const struct field *f;
    int st = find(r, tag, CV_STORE_CODEC_TYPE_F32S, &f);
    if (st != CV_STORE_OK)
        return st;
    const unsigned char *p = r->buf + f->off;
    int64_t d[4];
    for (int i = 0; i < 4; i++)
        d[i] = (int64_t)get_u64(p + 8 * i);
    /* The dims were validated against the payload at decode: this allocates f->len - 32. */
    if (cv_tensor_init(t, d[0], d[1], d[2], d[3]) != 0)
        return CV_STORE_NOMEM;
    int64_t count = d[0] * d[1] * d[2] * d[3];
    for (int64_t i = 0; i < count; i++)
        t->data[i] = get_f32(p + 32 + 4 * i);
    return CV_STORE_OK;
}

int cv_store_rec_get_f32s(const struct cv_store_rec *r, uint32_t tag, float **v, int64_t *n) {
    *v = NULL;
    *n = 0;
    const struct field *f;
    int st = find(r, tag, CV_STORE_CODEC_TYPE_F32S, &f);
    if (st != CV_STORE_OK)
        return st;
    size_t count = (f->len - 32) / 4;
    float *a = malloc(count * sizeof *a);
    if (a == NULL)
        return CV_STORE_NOMEM;
    for (size_t i = 0; i < count; i++)
        a[i] = get_f32(r->buf + f->off + 32 + 4 * i);
    *v = a;
    *n = (int64_t)count;
    return CV_STORE_OK;
}

int cv_store_rec_get_f64s(const struct cv_store_rec *r, uint32_t tag, double **v, int64_t *n) {
    *v = NULL;
    *n = 0;
    const struct field *f;
    int st = find(r, tag, CV_STORE_CODEC_TYPE_F64S, &f);
    if (st != CV_STORE_OK)
        return st;
    size_t count = (f->len - 8) / 8;
    if (count == 0)
        return CV_STORE_OK;
    double *a = malloc(count * sizeof *a);
    if (a == NULL)
        return CV_STORE_NOMEM;
    for (size_t i = 0; i < count; i++)
        a[i] = get_f64(r->buf + f->off + 8 + 8 * i);
    *v = a;
    *n = (int64_t)count;
    return CV_STORE_OK;
}
