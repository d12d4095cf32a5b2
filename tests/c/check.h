/* A small test harness for minerva's C tests: CHECK aborts the program with the line that
   failed; each test prints "ok - name". The model comes from $MINERVA_MODEL. */
#ifndef MINERVA_TEST_CHECK_H
#define MINERVA_TEST_CHECK_H

#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE /* usleep, clock_gettime under -std=c11 */
#endif

#include "minerva.h"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n  last error: %s\n", __FILE__, \
                    __LINE__, #cond, minerva_last_error());                          \
            exit(1);                                                                 \
        }                                                                            \
    } while (0)

#define CHECK_STATUS(expr, want)                                                        \
    do {                                                                                \
        minerva_status st_ = (expr);                                                    \
        if (st_ != (want)) {                                                            \
            fprintf(stderr, "%s:%d: %s returned %u (%s), wanted %u (%s)\n  last error: %s\n", \
                    __FILE__, __LINE__, #expr, st_, minerva_status_str(st_), (want),    \
                    minerva_status_str(want), minerva_last_error());                    \
            exit(1);                                                                    \
        }                                                                               \
    } while (0)

static int tests_passed = 0;
#define PASS(name)                     \
    do {                               \
        printf("ok - %s\n", name);     \
        fflush(stdout);                \
        tests_passed++;                \
    } while (0)

static const char *model_path(void) {
    const char *p = getenv("MINERVA_MODEL");
    if (!p || !*p) {
        fprintf(stderr, "set MINERVA_MODEL to a GGUF file (scripts/fetch-model.sh prints one)\n");
        exit(2);
    }
    return p;
}

/* Whether the model is the default one (Gemma 3 270M Q4_K_M): the harness sets
   MINERVA_DEFAULT_MODEL=1 when the file's sha256 is the default's. Assertions that hold for that
   model only (its layers, vocabulary, file size, exact text) run only then. */
static inline int default_model(void) {
    const char *v = getenv("MINERVA_DEFAULT_MODEL");
    return v && strcmp(v, "1") == 0;
}

/* Prints that a model-specific case is skipped on another model. */
#define SKIP_UNLESS_DEFAULT_MODEL(name)                                   \
    do {                                                                  \
        if (!default_model()) {                                           \
            printf("ok - %s # SKIP not the default model\n", name);       \
            return;                                                       \
        }                                                                 \
    } while (0)

static inline minerva_engine *open_engine(uint32_t max_streams, uint32_t context_tokens) {
    minerva_engine_params p;
    minerva_engine_params_init(&p, sizeof p);
    p.max_streams = max_streams;
    p.context_tokens = context_tokens;
    minerva_engine *e = NULL;
    CHECK_STATUS(minerva_engine_new(model_path(), &p, &e), MINERVA_OK);
    CHECK(e != NULL);
    return e;
}

static inline minerva_generate_params greedy(uint32_t max_tokens) {
    minerva_generate_params g;
    minerva_generate_params_init(&g, sizeof g);
    g.temperature = 0.0f;
    g.max_tokens = max_tokens;
    g.seed = 1234;
    return g;
}

/* A growable text buffer that token callbacks append to. */
typedef struct {
    char *data;
    size_t len, cap;
    int calls;
    int stop_after;          /* return MINERVA_STOP after this many calls (0: never) */
    int finish_calls;        /* on_finish calls seen */
    minerva_status finish_status;
    minerva_finish_reason finish_reason;
    int token_after_finish;  /* a token callback came after on_finish */
} text_buf;

static inline void tb_append(text_buf *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->data = (char *)realloc(b->data, b->cap);
        CHECK(b->data != NULL);
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = 0;
}

static inline void tb_free(text_buf *b) {
    free(b->data);
    memset(b, 0, sizeof *b);
}

static inline minerva_control tb_on_token(void *ud, const char *text, size_t len) {
    text_buf *b = (text_buf *)ud;
    if (b->finish_calls) b->token_after_finish = 1;
    CHECK(text != NULL && len > 0 && text[len] == '\0' && strlen(text) == len);
    tb_append(b, text, len);
    b->calls++;
    if (b->stop_after && b->calls >= b->stop_after) return MINERVA_STOP;
    return MINERVA_CONTINUE;
}

static inline void tb_on_finish(void *ud, minerva_status status, minerva_finish_reason reason) {
    text_buf *b = (text_buf *)ud;
    b->finish_calls++;
    b->finish_status = status;
    b->finish_reason = reason;
}

/* Pulls a stream's text until it is finished. */
static inline void pull_all(minerva_stream *s, text_buf *b) {
    char buf[64];
    for (;;) {
        size_t n = 12345;
        bool finished = false;
        CHECK_STATUS(minerva_stream_read(s, buf, sizeof buf, &n, &finished, 20000), MINERVA_OK);
        CHECK(n <= sizeof buf);
        if (n) tb_append(b, buf, n);
        if (finished) break;
    }
}

/* True when s is valid UTF-8. */
static inline int utf8_valid(const char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        size_t k = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (!k || i + k > n) return 0;
        for (size_t j = 1; j < k; j++)
            if (((unsigned char)s[i + j] >> 6) != 2) return 0;
        i += k;
    }
    return 1;
}

#endif
