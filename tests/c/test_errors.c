/* Bad input gets a status and a message, never a crash: NULL everywhere, invalid UTF-8, params
   out of range, missing, empty, garbage and truncated model files, prompts longer than the
   context. */
#include "check.h"
#include <unistd.h>

static char tmpdir[256];

static const char *write_file(const char *name, const void *data, size_t n) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (n) CHECK(fwrite(data, 1, n, f) == n);
    fclose(f);
    return path;
}

/* The first n bytes of the real model. */
static const char *truncated_model(const char *name, size_t n) {
    FILE *in = fopen(model_path(), "rb");
    CHECK(in != NULL);
    char *buf = (char *)malloc(n);
    CHECK(buf != NULL);
    CHECK(fread(buf, 1, n, in) == n);
    fclose(in);
    const char *p = write_file(name, buf, n);
    free(buf);
    return p;
}

static void expect_load_error(const char *path, minerva_status want, const char *needle) {
    minerva_engine *e = (minerva_engine *)0x1; /* must stay untouched on failure */
    CHECK_STATUS(minerva_engine_new(path, NULL, &e), want);
    CHECK(e == (minerva_engine *)0x1);
    const char *msg = minerva_last_error();
    CHECK(msg != NULL && msg[0] != 0);
    if (needle && !strstr(msg, needle)) {
        fprintf(stderr, "message '%s' lacks '%s'\n", msg, needle);
        exit(1);
    }
    printf("# %s -> %s: %s\n", path, minerva_status_str(want), msg);
}

static void test_bad_model_files(void) {
    expect_load_error("/nonexistent/model.gguf", MINERVA_ERR_IO, "/nonexistent/model.gguf");
    expect_load_error(tmpdir, MINERVA_ERR_IO, "not a regular file");
    expect_load_error(write_file("empty.gguf", "", 0), MINERVA_ERR_MODEL, NULL);
    char garbage[4096];
    for (size_t i = 0; i < sizeof garbage; i++) garbage[i] = (char)(i * 7919 + 13);
    expect_load_error(write_file("garbage.gguf", garbage, sizeof garbage), MINERVA_ERR_MODEL, NULL);
    /* The GGUF magic followed by garbage: huge counts must not crash the reader. */
    memcpy(garbage, "GGUF\x03\0\0\0", 8);
    expect_load_error(write_file("magic.gguf", garbage, sizeof garbage), MINERVA_ERR_MODEL, NULL);
    /* Truncated in the metadata, in the tensor table, and in the tensor data. */
    /* Truncated in the tensor data (any model), and in the metadata (the default model's
       262,144-token vocabulary fills its first megabytes). */
    FILE *f = fopen(model_path(), "rb");
    CHECK(f != NULL && fseek(f, 0, SEEK_END) == 0);
    long size = ftell(f);
    fclose(f);
    CHECK(size > 1000);
    expect_load_error(truncated_model("trunc-data.gguf", (size_t)size * 4 / 5), MINERVA_ERR_MODEL,
                      "truncated");
    if (default_model())
        expect_load_error(truncated_model("trunc-meta.gguf", 100000), MINERVA_ERR_MODEL, NULL);
    PASS("missing, empty, garbage and truncated model files");
}

/* The real model's header with one metadata value changed: llama.cpp would abort or misbehave on
   these; minerva refuses them, naming the value. */
static void expect_patched(const char *key, uint32_t value, const char *needle) {
    size_t n = 8u << 20; /* the metadata (with the 262,144-token vocabulary) is in the first 8 MB */
    FILE *in = fopen(model_path(), "rb");
    CHECK(in != NULL);
    char *buf = (char *)malloc(n);
    CHECK(buf != NULL && fread(buf, 1, n, in) == n);
    fclose(in);
    size_t klen = strlen(key);
    char *at = NULL;
    for (size_t i = 0; i + klen + 8 < n && !at; i++)
        if (memcmp(buf + i, key, klen) == 0 && (unsigned char)buf[i + klen] == 4 /* UINT32 */)
            at = buf + i + klen + 4;
    CHECK(at != NULL);
    memcpy(at, &value, 4);
    expect_load_error(write_file("patched.gguf", buf, n), MINERVA_ERR_MODEL, needle);
    free(buf);
}

static void test_bad_metadata(void) {
    SKIP_UNLESS_DEFAULT_MODEL("metadata values llama.cpp trusts are checked first");
    expect_patched("gemma3.block_count", 0, "block_count");
    expect_patched("gemma3.block_count", 1000, "block_count");
    expect_patched("gemma3.attention.head_count", 0, "head_count");
    expect_patched("gemma3.attention.head_count_kv", 3, "head_count_kv");
    expect_patched("gemma3.embedding_length", 0, "embedding_length");
    expect_patched("gemma3.context_length", 0, "context_length");
    expect_patched("tokenizer.ggml.bos_token_id", 300000, "bos_token_id");
    PASS("metadata values llama.cpp trusts are checked first (block_count 0 and 1000, ...)");
}

static void test_null_everywhere(minerva_engine *e) {
    minerva_engine *out = NULL;
    CHECK_STATUS(minerva_engine_new(NULL, NULL, &out), MINERVA_ERR_INVALID_ARGUMENT);
    CHECK(strstr(minerva_last_error(), "model_path") != NULL);
    CHECK_STATUS(minerva_engine_new(model_path(), NULL, NULL), MINERVA_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(minerva_engine_get_info(NULL, NULL), MINERVA_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(minerva_engine_get_info(e, NULL), MINERVA_ERR_INVALID_ARGUMENT);
    minerva_engine_free(NULL);
    minerva_engine_params_init(NULL, sizeof(minerva_engine_params));
    minerva_generate_params_init(NULL, sizeof(minerva_generate_params));

    minerva_stream *s = NULL;
    CHECK_STATUS(minerva_stream_new(NULL, "hi", NULL, NULL, NULL, &s), MINERVA_ERR_INVALID_ARGUMENT);
    CHECK(strstr(minerva_last_error(), "engine") != NULL);
    CHECK_STATUS(minerva_stream_new(e, NULL, NULL, NULL, NULL, &s), MINERVA_ERR_INVALID_ARGUMENT);
    CHECK(strstr(minerva_last_error(), "prompt") != NULL);
    CHECK_STATUS(minerva_stream_new(e, "hi", NULL, NULL, NULL, NULL), MINERVA_ERR_INVALID_ARGUMENT);
    CHECK(s == NULL);

    char buf[16];
    size_t n = 0;
    bool fin = false;
    CHECK_STATUS(minerva_stream_read(NULL, buf, sizeof buf, &n, &fin, 0), MINERVA_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(minerva_stream_wait(NULL, 0), MINERVA_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(minerva_stream_get_stats(NULL, NULL), MINERVA_ERR_INVALID_ARGUMENT);
    minerva_stream_cancel(NULL);
    minerva_stream_free(NULL);
    CHECK(strcmp(minerva_stream_error(NULL), "") == 0);
    CHECK_STATUS(minerva_generate(NULL, "x", NULL, NULL, NULL, NULL), MINERVA_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(minerva_generate(e, NULL, NULL, NULL, NULL, NULL), MINERVA_ERR_INVALID_ARGUMENT);
    minerva_set_log_callback(NULL, NULL, MINERVA_LOG_WARN);

    /* A live stream with NULL out parameters. */
    minerva_generate_params g = greedy(2);
    CHECK_STATUS(minerva_stream_new(e, "hi", &g, NULL, NULL, &s), MINERVA_OK);
    CHECK_STATUS(minerva_stream_read(s, NULL, 16, &n, &fin, 0), MINERVA_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(minerva_stream_read(s, buf, sizeof buf, NULL, &fin, 0), MINERVA_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(minerva_stream_read(s, buf, sizeof buf, &n, NULL, 0), MINERVA_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(minerva_stream_read(s, buf, 3, &n, &fin, 0), MINERVA_ERR_INVALID_ARGUMENT);
    CHECK(strstr(minerva_last_error(), "cap") != NULL);
    CHECK_STATUS(minerva_stream_get_stats(s, NULL), MINERVA_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(minerva_stream_wait(s, -1), MINERVA_OK);
    minerva_stream_free(s);
    PASS("NULL everywhere");
}

static void test_invalid_utf8(minerva_engine *e) {
    minerva_stream *s = NULL;
    CHECK_STATUS(minerva_stream_new(e, "caf\xc3 latte", NULL, NULL, NULL, &s),
                 MINERVA_ERR_INVALID_ARGUMENT);
    CHECK(strstr(minerva_last_error(), "UTF-8") != NULL);
    CHECK(s == NULL);
    const char *stops[] = {"ok", "\xff\xfe"};
    minerva_generate_params g = greedy(4);
    g.stop = stops;
    g.stop_count = 2;
    CHECK_STATUS(minerva_stream_new(e, "hello", &g, NULL, NULL, &s), MINERVA_ERR_INVALID_ARGUMENT);
    CHECK(strstr(minerva_last_error(), "stop[1]") != NULL);
    CHECK_STATUS(minerva_engine_new("/tmp/\xff.gguf", NULL, (minerva_engine **)&s),
                 MINERVA_ERR_INVALID_ARGUMENT);
    PASS("invalid UTF-8 in prompt, stop strings and path");
}

static void expect_bad_gen(minerva_engine *e, minerva_generate_params g, const char *field) {
    minerva_stream *s = NULL;
    CHECK_STATUS(minerva_stream_new(e, "hello", &g, NULL, NULL, &s), MINERVA_ERR_INVALID_ARGUMENT);
    CHECK(s == NULL);
    if (!strstr(minerva_last_error(), field)) {
        fprintf(stderr, "message '%s' does not name '%s'\n", minerva_last_error(), field);
        exit(1);
    }
}

static void expect_bad_engine(minerva_engine_params p, const char *field) {
    minerva_engine *e = NULL;
    CHECK_STATUS(minerva_engine_new(model_path(), &p, &e), MINERVA_ERR_INVALID_ARGUMENT);
    CHECK(e == NULL);
    if (!strstr(minerva_last_error(), field)) {
        fprintf(stderr, "message '%s' does not name '%s'\n", minerva_last_error(), field);
        exit(1);
    }
}

static void test_bad_params(minerva_engine *e) {
    minerva_generate_params g = greedy(4);
    g.temperature = -1.0f; expect_bad_gen(e, g, "temperature");
    g = greedy(4); g.temperature = 0.0f / 0.0f; expect_bad_gen(e, g, "temperature");
    g = greedy(4); g.top_k = -3; expect_bad_gen(e, g, "top_k");
    g = greedy(4); g.top_p = 0.0f; expect_bad_gen(e, g, "top_p");
    g = greedy(4); g.top_p = 1.5f; expect_bad_gen(e, g, "top_p");
    g = greedy(4); g.min_p = -0.1f; expect_bad_gen(e, g, "min_p");
    g = greedy(4); g.repeat_penalty = 0.0f; expect_bad_gen(e, g, "repeat_penalty");
    g = greedy(4); g.stop = NULL; g.stop_count = 3; expect_bad_gen(e, g, "stop");
    const char *empty_stop[] = {""};
    g = greedy(4); g.stop = empty_stop; g.stop_count = 1; expect_bad_gen(e, g, "stop[0]");
    const char *null_stop[] = {"a", NULL};
    g = greedy(4); g.stop = null_stop; g.stop_count = 2; expect_bad_gen(e, g, "stop[1]");

    minerva_engine_params p;
    minerva_engine_params_init(&p, sizeof p);
    minerva_engine_params q = p; q.max_streams = 0; expect_bad_engine(q, "max_streams");
    q = p; q.max_streams = 100000; expect_bad_engine(q, "max_streams");
    q = p; q.context_tokens = 0; expect_bad_engine(q, "context_tokens");
    q = p; q.context_tokens = 0xFFFFFFFFu; expect_bad_engine(q, "context_tokens");
    q = p; q.batch_tokens = 0; expect_bad_engine(q, "batch_tokens");
    q = p; q.threads = 1u << 30; expect_bad_engine(q, "threads");
    q = p; q.struct_size = 4; expect_bad_engine(q, "struct_size");
    PASS("parameters out of range are refused, naming the field");
}

static void test_kv_cache_too_large(void) {
    /* 2^20 tokens x 256 streams: refused before llama.cpp tries to allocate it. */
    minerva_engine_params p;
    minerva_engine_params_init(&p, sizeof p);
    p.context_tokens = 1u << 20;
    p.max_streams = 256;
    minerva_engine *e = NULL;
    CHECK_STATUS(minerva_engine_new(model_path(), &p, &e), MINERVA_ERR_OUT_OF_MEMORY);
    CHECK(e == NULL);
    CHECK(strstr(minerva_last_error(), "KV cache") != NULL);
    printf("# %s\n", minerva_last_error());
    PASS("a KV cache larger than memory is refused");
}

static void test_prompt_longer_than_context(void) {
    minerva_engine *e = open_engine(1, 64);
    char prompt[4096] = {0};
    for (int i = 0; i < 100; i++) strcat(prompt, "word ");
    minerva_stream *s = NULL;
    /* 100 words in 64 tokens: the engine thread finds it out when it tokenizes the prompt; the
       stream ends with CONTEXT_FULL before generating anything, its finish callback once. */
    text_buf early = {0};
    minerva_generate_params ge = greedy(8);
    ge.on_finish = tb_on_finish;
    CHECK_STATUS(minerva_stream_new(e, prompt, &ge, tb_on_token, &early, &s), MINERVA_OK);
    CHECK_STATUS(minerva_stream_wait(s, -1), MINERVA_ERR_CONTEXT_FULL);
    CHECK(strstr(minerva_stream_error(s), "context_tokens") != NULL);
    CHECK(early.finish_calls == 1 && early.calls == 0 &&
          early.finish_reason == MINERVA_FINISH_ERROR);
    minerva_stream_free(s);
    tb_free(&early);
    s = NULL;
    CHECK_STATUS(minerva_generate(e, prompt, NULL, NULL, NULL, NULL), MINERVA_ERR_CONTEXT_FULL);
    /* What its length alone proves too long is refused at once, by minerva_stream_new. */
    char *huge = (char *)malloc(64 * 1024 + 1);
    CHECK(huge != NULL);
    memset(huge, 'x', 64 * 1024);
    huge[64 * 1024] = 0;
    CHECK_STATUS(minerva_stream_new(e, huge, NULL, NULL, NULL, &s), MINERVA_ERR_CONTEXT_FULL);
    CHECK(s == NULL);
    CHECK(strstr(minerva_last_error(), "context_tokens") != NULL);
    free(huge);

    /* A stream that fills its context while generating: the text so far stands. */
    text_buf b = {0};
    minerva_generate_params g = greedy(0);
    g.ignore_eos = true;
    g.on_finish = tb_on_finish;
    CHECK_STATUS(minerva_stream_new(e, "Once upon a time", &g, tb_on_token, &b, &s), MINERVA_OK);
    CHECK_STATUS(minerva_stream_wait(s, -1), MINERVA_ERR_CONTEXT_FULL);
    CHECK(strstr(minerva_stream_error(s), "context") != NULL);
    minerva_stream_stats st = {0};
    CHECK_STATUS(minerva_stream_get_stats(s, &st), MINERVA_OK);
    CHECK(st.finish_reason == MINERVA_FINISH_ERROR);
    CHECK(st.prompt_tokens + st.generated_tokens == 65);
    CHECK(b.len > 0);
    CHECK(b.finish_calls == 1 && b.finish_status == MINERVA_ERR_CONTEXT_FULL);
    minerva_stream_free(s);
    /* The engine goes on serving. */
    g = greedy(8);
    CHECK_STATUS(minerva_generate(e, "Hello", &g, NULL, NULL, NULL), MINERVA_OK);
    minerva_engine_free(e);
    tb_free(&b);
    PASS("prompt longer than the context; context filled while generating");
}

static void test_empty_prompt(minerva_engine *e) {
    /* The empty prompt still gets BOS for this model: it generates. */
    minerva_generate_params g = greedy(3);
    g.ignore_eos = true;
    minerva_stream_stats st = {0};
    CHECK_STATUS(minerva_generate(e, "", &g, NULL, NULL, &st), MINERVA_OK);
    CHECK(st.prompt_tokens == 1 && st.generated_tokens == 3);
    PASS("empty prompt");
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/minerva-test-%d", (int)getpid());
    char cmd[300];
    snprintf(cmd, sizeof cmd, "mkdir -p %s", tmpdir);
    CHECK(system(cmd) == 0);
    test_bad_model_files();
    test_bad_metadata();
    minerva_engine *e = open_engine(2, 256);
    test_null_everywhere(e);
    test_invalid_utf8(e);
    test_bad_params(e);
    test_empty_prompt(e);
    minerva_engine_free(e);
    test_kv_cache_too_large();
    test_prompt_longer_than_context();
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    CHECK(system(cmd) == 0);
    printf("%d passed, 0 failed\n", tests_passed);
    return 0;
}
