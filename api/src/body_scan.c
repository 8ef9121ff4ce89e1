/* The fast path for bodies that carry large tensors.
 *
 * jansson builds a node for every number of a nested or flat tensor (~0.2 s for a million)
 * and copies a base64 string byte by byte before the api decodes it. Instead, a pre-pass
 * walks the raw body once and takes out the tensor values it can read on its own:
 *   - an array of numbers (nested up to 4 levels, rectangular, every number finite in float32)
 *     under a member named "input", "kernel", "target", "weight", "data" or "bias": read
 *     straight into floats by cv__scan_f32;
 *   - a string under a member named "b64" made of plain ASCII (no escapes): kept as a pointer
 *     into the body and decoded later straight into the tensor.
 * Each such value becomes a placeholder ([] or "") in a copy of the body, "the rest", and is
 * remembered as a slot under its JSON pointer. jansson then parses the rest, which is small,
 * and the field tables run on it as usual; the tensor readers in tensor_json.c look for a
 * slot at their pointer before they look at the (placeholder) value.
 *
 * Only members reached through objects from the top are taken (their pointer is then exact),
 * and only values that the jansson path would accept as they are, with the same numbers: so
 * the rest is valid JSON exactly when the body is, and every slot that a tensor reader
 * consumes gives what the jansson path would have. A value the pre-pass cannot read (ragged,
 * a string element, escapes, a number jansson refuses) stays in the rest for jansson. When
 * anything does not fit - the rest is not valid JSON, or a slot was not consumed by a reader
 * that knows slots (so a placeholder may have been judged as itself) - the caller parses the
 * original body the plain way, so errors are those of the jansson path, byte for byte. */
#include <stdlib.h>
#include <string.h>

#include "api_impl.h"

size_t cv__fast_min_body = 4096;
_Atomic unsigned long cv__fast_stood, cv__fast_fallbacks;

/* Members whose arrays are tensors (or a bias). */
static const char *const tensor_keys[] = {"input", "kernel", "target", "weight", "data", "bias"};

enum key_kind { KEY_OTHER, KEY_TENSOR, KEY_B64 };

/* Objects deeper than this are skipped without looking for tensors: "/init/weight/data" is
 * three levels down. */
#define TRACK_DEPTH 4

struct scanner {
    const char *end;
    int64_t max_elements;
    struct cv__scan *sc;
    bool oom;
};

static inline const char *skip_ws(const char *p, const char *end) {
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
        p++;
    return p;
}

/* p at '"': returns the end of the string (after its closing quote), or NULL. */
static const char *skip_string(const char *p, const char *end) {
    p++;
    while (p < end) {
        const char *q = memchr(p, '"', (size_t)(end - p));
        if (q == NULL)
            return NULL;
        /* The quote is escaped when an odd number of backslashes stands before it. */
        size_t n = 0;
        while (q - n > p && q[-1 - (ptrdiff_t)n] == '\\')
            n++;
        if (n % 2 == 0)
            return q + 1;
        p = q + 1;
    }
    return NULL;
}

/* Skips one value of any kind without judging it (jansson judges the rest); NULL when the
 * text cannot be a value. */
static const char *skip_value(const char *p, const char *end) {
    int depth = 0;
    do {
        p = skip_ws(p, end);
        if (p >= end)
            return NULL;
        char c = *p;
        if (c == '"') {
            if ((p = skip_string(p, end)) == NULL)
                return NULL;
        } else if (c == '[' || c == '{') {
            depth++;
            p++;
        } else if (c == ']' || c == '}') {
            if (depth == 0)
                return NULL;
            depth--;
            p++;
        } else if (c == ',' || c == ':') {
            if (depth == 0)
                return NULL;
            p++;
        } else {
            const char *q = p;
            while (p < end && ((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') ||
                               (*p >= 'A' && *p <= 'Z') || *p == '-' || *p == '+' || *p == '.'))
                p++;
            if (p == q)
                return NULL;
        }
    } while (depth > 0);
    return p;
}

static struct cv__slot *slot_new(struct scanner *s) {
    struct cv__scan *sc = s->sc;
    if (sc->n == sc->cap) {
        size_t cap = sc->cap ? sc->cap * 2 : 8;
        struct cv__slot *v = realloc(sc->slots, cap * sizeof *v);
        if (v == NULL) {
            s->oom = true;
            return NULL;
        }
        sc->slots = v;
        sc->cap = cap;
    }
    struct cv__slot *sl = &sc->slots[sc->n];
    memset(sl, 0, sizeof *sl);
    return sl;
}

/* p at '[': reads a rectangular array of numbers into a new slot (not yet counted in sc->n).
 * Returns the end of the array, or NULL (nothing kept) when it is anything else. */
static const char *scan_array(struct scanner *s, const char *p, struct cv__slot *sl) {
    const char *end = s->end;
    int64_t dims[4] = {0, 0, 0, 0}, count[4] = {0, 0, 0, 0};
    int rank = 0, level = 0;
    int64_t numel = 0;
    size_t cap = 0;
    float *data = NULL;
    bool over = false; /* more elements than the limit: only the shape is kept */
    p = skip_ws(p + 1, end);
    if (p < end && *p == ']')
        goto fail; /* empty */
    for (;;) {
        p = skip_ws(p, end);
        if (p >= end)
            goto fail;
        if (*p == '[') {
            if (level == 3 || (rank != 0 && level + 1 >= rank))
                goto fail; /* deeper than 4, or than the first element */
            count[++level] = 0;
            p = skip_ws(p + 1, end);
            if (p < end && *p == ']')
                goto fail;
            continue;
        }
        if (rank == 0)
            rank = level + 1;
        else if (level + 1 != rank)
            goto fail; /* a number where the first element had an array */
        float f;
        if ((p = cv__scan_f32(p, end, &f)) == NULL)
            goto fail;
        if (!over && numel >= s->max_elements) {
            over = true;
            free(data);
            data = NULL;
        }
        if (!over) {
            if ((size_t)numel == cap) {
                cap = cap ? cap * 2 : 256;
                float *d = realloc(data, cap * sizeof *d);
                if (d == NULL) {
                    s->oom = true;
                    goto fail;
                }
                data = d;
            }
            data[numel] = f;
        }
        numel++;
        count[level]++;
        /* After a value: a comma, or the ends of as many arrays as close here. */
        for (;;) {
            p = skip_ws(p, end);
            if (p >= end)
                goto fail;
            if (*p == ',') {
                p++;
                break;
            }
            if (*p != ']')
                goto fail;
            p++;
            if (dims[level] == 0)
                dims[level] = count[level];
            else if (dims[level] != count[level])
                goto fail; /* ragged */
            if (level == 0) {
                sl->data = data;
                sl->over = over;
                sl->rank = rank;
                memcpy(sl->dims, dims, sizeof dims);
                return p;
            }
            count[--level]++;
        }
    }
fail:
    free(data);
    return NULL;
}

/* p at '"': a base64 string that reads the same raw as jansson would decode it (printable
 * ASCII, no escapes). Returns its end, or NULL. */
static const char *scan_b64(const char *p, const char *end, struct cv__slot *sl) {
    const char *text = p + 1;
    const char *close = memchr(text, '"', (size_t)(end - text));
    if (close == NULL)
        return NULL;
    /* One pass with no early exit, which compilers vectorise. */
    unsigned bad = 0;
    for (const unsigned char *c = (const unsigned char *)text; c < (const unsigned char *)close;
         c++)
        bad |= (unsigned)(*c < 0x20) | (unsigned)(*c >= 0x80) | (unsigned)(*c == '\\');
    if (bad)
        return NULL;
    sl->b64 = true;
    sl->text = text;
    sl->text_len = (size_t)(close - text);
    return close + 1;
}

static bool is_tensor_key(const char *key) {
    for (size_t i = 0; i < sizeof tensor_keys / sizeof tensor_keys[0]; i++)
        if (strcmp(key, tensor_keys[i]) == 0)
            return true;
    return false;
}

static const char *scan_value(struct scanner *s, const char *p, const char *ptr, enum key_kind kind,
                              int depth);

/* p at '{' of an object at ptr: scans its members. */
static const char *scan_object(struct scanner *s, const char *p, const char *ptr, int depth) {
    const char *end = s->end;
    p = skip_ws(p + 1, end);
    if (p < end && *p == '}')
        return p + 1;
    for (;;) {
        p = skip_ws(p, end);
        if (p >= end || *p != '"')
            return NULL;
        const char *k0 = p + 1;
        if ((p = skip_string(p, end)) == NULL)
            return NULL;
        size_t klen = (size_t)(p - 1 - k0);
        p = skip_ws(p, end);
        if (p >= end || *p != ':')
            return NULL;
        p++;
        /* Only keys spelled without escapes are followed: their pointer is their text. */
        char key[32], child[CV__PTR_MAX];
        const char *child_ptr = NULL;
        enum key_kind kind = KEY_OTHER;
        if (klen < sizeof key && memchr(k0, '\\', klen) == NULL && memchr(k0, 0, klen) == NULL) {
            memcpy(key, k0, klen);
            key[klen] = '\0';
            cv__ptr_key(child, ptr, key);
            if (strlen(child) < CV__PTR_MAX - 1) /* never truncated: pointers stay unique */
                child_ptr = child;
            kind = strcmp(key, "b64") == 0 ? KEY_B64 : is_tensor_key(key) ? KEY_TENSOR : KEY_OTHER;
        }
        if ((p = scan_value(s, p, child_ptr, kind, depth)) == NULL)
            return NULL;
        p = skip_ws(p, end);
        if (p >= end)
            return NULL;
        if (*p == '}')
            return p + 1;
        if (*p != ',')
            return NULL;
        p++;
    }
}

/* Scans the value at p found at ptr (NULL: not followed) under a member of the given kind. */
static const char *scan_value(struct scanner *s, const char *p, const char *ptr, enum key_kind kind,
                              int depth) {
    const char *end = s->end;
    p = skip_ws(p, end);
    if (p >= end)
        return NULL;
    if (ptr != NULL && ((kind == KEY_TENSOR && *p == '[') || (kind == KEY_B64 && *p == '"'))) {
        struct cv__slot *sl = slot_new(s);
        if (sl == NULL)
            return NULL;
        const char *q = *p == '[' ? scan_array(s, p, sl) : scan_b64(p, end, sl);
        if (s->oom)
            return NULL;
        if (q != NULL) {
            memcpy(sl->ptr, ptr, strlen(ptr) + 1);
            sl->start = (size_t)(p - s->sc->body);
            sl->end = (size_t)(q - s->sc->body);
            s->sc->n++;
            return q;
        }
    }
    if (ptr != NULL && *p == '{' && depth < TRACK_DEPTH)
        return scan_object(s, p, ptr, depth + 1);
    return skip_value(p, end);
}

void cv__scan_free(struct cv__scan *sc) {
    if (sc == NULL)
        return;
    for (size_t i = 0; i < sc->n; i++)
        free(sc->slots[i].data);
    free(sc->slots);
    free(sc->rest);
    memset(sc, 0, sizeof *sc);
}

bool cv__scan_body(const char *body, size_t len, int64_t max_elements, struct cv__scan *sc) {
    memset(sc, 0, sizeof *sc);
    sc->body = body;
    struct scanner s = {.end = body + len, .max_elements = max_elements, .sc = sc};
    const char *p = skip_ws(body, body + len);
    if (p >= body + len || *p != '{' || scan_object(&s, p, "", 0) == NULL || sc->n == 0) {
        cv__scan_free(sc);
        return false;
    }
    /* The rest: the body with each slot's text replaced by its placeholder. */
    size_t rest_len = len;
    for (size_t i = 0; i < sc->n; i++)
        rest_len -= sc->slots[i].end - sc->slots[i].start - 2;
    if ((sc->rest = malloc(rest_len + 1)) == NULL) {
        cv__scan_free(sc);
        return false;
    }
    size_t at = 0, o = 0;
    for (size_t i = 0; i < sc->n; i++) {
        const struct cv__slot *sl = &sc->slots[i];
        memcpy(sc->rest + o, body + at, sl->start - at);
        o += sl->start - at;
        memcpy(sc->rest + o, sl->b64 ? "\"\"" : "[]", 2);
        o += 2;
        at = sl->end;
    }
    memcpy(sc->rest + o, body + at, len - at);
    o += len - at;
    sc->rest[o] = '\0';
    sc->rest_len = o;
    return true;
}

struct cv__slot *cv__scan_find(const struct cv__parse *p, const char *ptr, bool b64) {
    if (p->scan == NULL)
        return NULL;
    for (size_t i = 0; i < p->scan->n; i++) {
        struct cv__slot *sl = &p->scan->slots[i];
        if (!sl->used && sl->b64 == b64 && strcmp(sl->ptr, ptr) == 0)
            return sl;
    }
    return NULL;
}

bool cv__scan_all_used(const struct cv__scan *sc) {
    for (size_t i = 0; i < sc->n; i++)
        if (!sc->slots[i].used)
            return false;
    return true;
}

int cv__body_parse_fast(struct cv__parse *p, const char *body, size_t len,
                        const struct cv__field *tab, size_t n, void *spec, size_t spec_size,
                        void (*spec_free)(void *spec)) {
    struct cv__scan sc;
    if (body == NULL || len < cv__fast_min_body ||
        !cv__scan_body(body, len, p->lim->max_elements, &sc))
        return cv__body_parse(p, body, len, tab, n, spec);
    void *saved = malloc(spec_size);
    json_t *root = NULL;
    if (saved != NULL)
        root = json_loadb(sc.rest, sc.rest_len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, NULL);
    if (json_is_object(root)) {
        memcpy(saved, spec, spec_size);
        p->scan = &sc;
        cv__fields_parse(p, tab, n, root, "", spec);
        p->scan = NULL;
        if (cv__scan_all_used(&sc)) {
            atomic_fetch_add_explicit(&cv__fast_stood, 1, memory_order_relaxed);
            json_decref(root);
            free(saved);
            cv__scan_free(&sc);
            return p->status;
        }
        /* A placeholder may have been judged as itself: start again the plain way. */
        spec_free(spec);
        memcpy(spec, saved, spec_size);
        p->status = CV_OK;
        p->failures = 0;
        memset(p->err, 0, sizeof *p->err);
    }
    /* Or the rest is no JSON object: the plain way words that error. */
    atomic_fetch_add_explicit(&cv__fast_fallbacks, 1, memory_order_relaxed);
    json_decref(root);
    free(saved);
    cv__scan_free(&sc);
    return cv__body_parse(p, body, len, tab, n, spec);
}

int cv__body_load_skim(struct cv__parse *p, const char *body, size_t len, json_t **root) {
    struct cv__scan sc;
    *root = NULL;
    if (body == NULL || len < cv__fast_min_body ||
        !cv__scan_body(body, len, p->lim->max_elements, &sc))
        return cv__body_load(p, body, len, root);
    json_t *r = json_loadb(sc.rest, sc.rest_len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, NULL);
    cv__scan_free(&sc);
    if (!json_is_object(r)) {
        json_decref(r);
        return cv__body_load(p, body, len, root); /* the plain way words the error */
    }
    *root = r;
    return CV_OK;
}
