/* minerva_embed through the C API: the buffer rules, normalized vectors, the same vector alone
   and in company, a call from inside a callback refused, bad input. */
#include "check.h"
#include <math.h>

static float *embed(minerva_engine *e, const char **texts, size_t n, size_t *len) {
    CHECK_STATUS(minerva_embed(e, texts, n, NULL, NULL, 0, len), MINERVA_ERR_BUFFER_TOO_SMALL);
    float *v = (float *)malloc(*len * sizeof *v);
    CHECK(v != NULL);
    size_t again = 0;
    CHECK_STATUS(minerva_embed(e, texts, n, NULL, v, *len, &again), MINERVA_OK);
    CHECK(again == *len);
    return v;
}

static double cosine(const float *a, const float *b, size_t n) {
    double dot = 0, na = 0, nb = 0;
    for (size_t i = 0; i < n; i++) {
        dot += (double)a[i] * b[i];
        na += (double)a[i] * a[i];
        nb += (double)b[i] * b[i];
    }
    return dot / sqrt(na * nb);
}

static void test_vectors(minerva_engine *e) {
    minerva_engine_info info;
    info.struct_size = sizeof info;
    CHECK_STATUS(minerva_engine_get_info(e, &info), MINERVA_OK);
    size_t dims = info.embedding_dims;
    CHECK(dims > 0);
    const char *texts[3] = {"The guard opens the gate.", "Ein Hund bellt. 🐕", "x"};
    size_t len = 0;
    float *v = embed(e, texts, 3, &len);
    CHECK(len == 3 * dims);
    for (size_t t = 0; t < 3; t++) {
        double n = 0;
        for (size_t i = 0; i < dims; i++) n += (double)v[t * dims + i] * v[t * dims + i];
        CHECK(fabs(sqrt(n) - 1.0) < 1e-4);
    }
    size_t one = 0;
    float *alone = embed(e, texts + 1, 1, &one);
    CHECK(one == dims);
    CHECK(cosine(alone, v + dims, dims) > 0.9995);
    /* Unnormalized MEAN: the same direction, another length. */
    minerva_embed_params p;
    minerva_embed_params_init(&p, sizeof p);
    CHECK(p.normalize && p.pooling == MINERVA_POOLING_DEFAULT);
    p.normalize = false;
    p.pooling = MINERVA_POOLING_MEAN;
    CHECK_STATUS(minerva_embed(e, texts + 1, 1, &p, alone, dims, &one), MINERVA_OK);
    CHECK(cosine(alone, v + dims, dims) > 0.9995);
    free(alone);
    free(v);
    PASS("vectors: size query, normalized, the same alone and in company, pooling params");
}

static minerva_status in_cb_status = MINERVA_OK;

static minerva_control embed_in_callback(void *ud, const char *text, size_t len) {
    (void)text;
    (void)len;
    minerva_engine *e = (minerva_engine *)ud;
    const char *t[1] = {"hi"};
    float out[4096];
    size_t n = 0;
    in_cb_status = minerva_embed(e, t, 1, NULL, out, 4096, &n);
    return MINERVA_STOP;
}

static void test_bad_input(minerva_engine *e) {
    const char *t[2] = {"fine", NULL};
    float out[8];
    size_t n = 55;
    CHECK_STATUS(minerva_embed(NULL, t, 1, NULL, out, 8, &n), MINERVA_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(minerva_embed(e, NULL, 1, NULL, out, 8, &n), MINERVA_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(minerva_embed(e, t, 1, NULL, out, 8, NULL), MINERVA_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(minerva_embed(e, t, 1, NULL, NULL, 8, &n), MINERVA_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(minerva_embed(e, t, 2, NULL, NULL, 0, &n), MINERVA_ERR_INVALID_ARGUMENT);
    CHECK(strstr(minerva_last_error(), "texts[1]"));
    t[1] = "bad \xff utf-8";
    CHECK_STATUS(minerva_embed(e, t, 2, NULL, NULL, 0, &n), MINERVA_ERR_INVALID_ARGUMENT);
    CHECK(n == 55);
    minerva_embed_params p;
    minerva_embed_params_init(&p, sizeof p);
    p.pooling = 9;
    CHECK_STATUS(minerva_embed(e, t, 1, &p, NULL, 0, &n), MINERVA_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(minerva_embed(e, t, 0, NULL, NULL, 0, &n), MINERVA_OK);
    CHECK(n == 0);
    /* Longer than context_tokens (256 here). */
    char *big = (char *)malloc(8001);
    CHECK(big != NULL);
    for (int i = 0; i < 8000; i++) big[i] = (i % 5 == 4) ? ' ' : 'a' + i % 7;
    big[8000] = 0;
    const char *bt[2] = {"ok", big};
    float *space = (float *)malloc(4096 * 2 * sizeof(float));
    CHECK_STATUS(minerva_embed(e, bt, 2, NULL, space, 4096 * 2, &n), MINERVA_ERR_CONTEXT_FULL);
    CHECK(strstr(minerva_last_error(), "texts[1]"));
    free(space);
    free(big);
    /* From inside a callback: it would wait for the engine thread. */
    minerva_generate_params g = greedy(4);
    CHECK_STATUS(minerva_generate(e, "Hello", &g, embed_in_callback, e, NULL), MINERVA_OK);
    CHECK(in_cb_status == MINERVA_ERR_INVALID_ARGUMENT);
    PASS("bad input: NULLs, UTF-8, pooling, too long, from inside a callback");
}

int main(void) {
    minerva_engine *e = open_engine(2, 256);
    test_vectors(e);
    test_bad_input(e);
    minerva_engine_free(e);
    printf("%d passed, 0 failed\n", tests_passed);
    return 0;
}
