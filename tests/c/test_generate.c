/* Generation on the real model: determinism, callback vs pull, max_tokens, stop strings,
   MINERVA_STOP, on_finish, stats, engine info. */
#include "check.h"

static const char *PROMPT = "The three primary colors are";

static void generate_greedy(minerva_engine *e, text_buf *b, uint32_t max_tokens) {
    minerva_generate_params g = greedy(max_tokens);
    g.ignore_eos = true;
    g.on_finish = tb_on_finish;
    minerva_stream_stats st;
    st.struct_size = sizeof st;
    CHECK_STATUS(minerva_generate(e, PROMPT, &g, tb_on_token, b, &st), MINERVA_OK);
    CHECK(b->finish_calls == 1);
    CHECK(b->finish_status == MINERVA_OK);
    CHECK(b->finish_reason == MINERVA_FINISH_LENGTH);
    CHECK(b->token_after_finish == 0);
    CHECK(st.generated_tokens == max_tokens);
    CHECK(st.finish_reason == MINERVA_FINISH_LENGTH);
    CHECK(st.prompt_tokens > 3);
    CHECK(st.time_to_first_token_ms > 0);
    CHECK(st.tokens_per_second > 0);
}

static void test_info_and_version(minerva_engine *e) {
    CHECK(minerva_abi_version() == MINERVA_ABI_VERSION);
    CHECK(strcmp(minerva_version(), "0.1.0") == 0);
    CHECK(strcmp(minerva_status_str(MINERVA_ERR_CONTEXT_FULL), "context full") == 0);
    CHECK(strcmp(minerva_status_str(12345), "unknown") == 0);
    minerva_engine_info info;
    memset(&info, 0xAB, sizeof info);
    info.struct_size = sizeof info;
    CHECK_STATUS(minerva_engine_get_info(e, &info), MINERVA_OK);
    CHECK(info.struct_size == sizeof info);
    CHECK(info.device_kind == MINERVA_DEVICE_CPU);
    CHECK(info.device_name[0] != 0);
    CHECK(info.total_layers > 0);
    CHECK(info.gpu_layers == 0);
    CHECK(info.context_tokens == 512 && info.max_streams == 2);
    CHECK(info.threads >= 1);
    CHECK(info.vocab_size > 0 && info.parameter_count > 0 && info.file_bytes > 0);
    CHECK(info.model_description[0] != 0);
    if (default_model()) {
        CHECK(info.total_layers == 18);
        CHECK(info.vocab_size == 262144);
        CHECK(info.parameter_count > 200000000ull && info.parameter_count < 300000000ull);
        CHECK(info.file_bytes == 253113024ull);
        CHECK(!info.has_chat_template); /* this GGUF carries no tokenizer.chat_template */
        CHECK(strstr(info.model_description, "gemma3") != NULL);
    }
    printf("# device: %s; fallback: %s; model: %s\n", info.device_name, info.fallback_reason,
           info.model_description);
    /* struct_size 0 means the first published layout; a small struct_size limits the write. */
    minerva_engine_info small;
    memset(&small, 0xCD, sizeof small);
    small.struct_size = 8;
    CHECK_STATUS(minerva_engine_get_info(e, &small), MINERVA_OK);
    CHECK(small.device_kind == MINERVA_DEVICE_CPU);
    CHECK((unsigned char)small.device_name[0] == 0xCD); /* not written */
    PASS("engine info, version, status strings");
}

static void test_greedy_is_deterministic(minerva_engine *e) {
    text_buf a = {0}, b = {0};
    generate_greedy(e, &a, 24);
    generate_greedy(e, &b, 24);
    CHECK(a.len > 0);
    CHECK(strcmp(a.data, b.data) == 0);
    CHECK(utf8_valid(a.data, a.len));
    printf("# greedy: %s\n", a.data);
    tb_free(&a);
    tb_free(&b);
    PASS("greedy output identical twice");
}

static void test_seeded_sampling_is_deterministic(minerva_engine *e) {
    text_buf a = {0}, b = {0}, c = {0};
    minerva_generate_params g;
    minerva_generate_params_init(&g, sizeof g);
    g.max_tokens = 24;
    g.ignore_eos = true;
    g.temperature = 1.0f;
    g.seed = 7;
    CHECK_STATUS(minerva_generate(e, PROMPT, &g, tb_on_token, &a, NULL), MINERVA_OK);
    CHECK_STATUS(minerva_generate(e, PROMPT, &g, tb_on_token, &b, NULL), MINERVA_OK);
    CHECK(strcmp(a.data, b.data) == 0);
    g.seed = MINERVA_SEED_RANDOM;
    CHECK_STATUS(minerva_generate(e, PROMPT, &g, tb_on_token, &c, NULL), MINERVA_OK);
    CHECK(c.len > 0);
    tb_free(&a);
    tb_free(&b);
    tb_free(&c);
    PASS("same seed gives the same sampled text");
}

static void test_pull_equals_callback(minerva_engine *e) {
    text_buf cb = {0}, pulled = {0};
    generate_greedy(e, &cb, 20);
    minerva_generate_params g = greedy(20);
    g.ignore_eos = true;
    minerva_stream *s = NULL;
    CHECK_STATUS(minerva_stream_new(e, PROMPT, &g, NULL, NULL, &s), MINERVA_OK);
    pull_all(s, &pulled);
    CHECK_STATUS(minerva_stream_wait(s, -1), MINERVA_OK);
    /* Reading after the end: no text, finished. */
    char buf[8];
    size_t n = 99;
    bool fin = false;
    CHECK_STATUS(minerva_stream_read(s, buf, sizeof buf, &n, &fin, 0), MINERVA_OK);
    CHECK(n == 0 && fin);
    minerva_stream_stats st = {0};
    CHECK_STATUS(minerva_stream_get_stats(s, &st), MINERVA_OK);
    CHECK(st.generated_tokens == 20);
    CHECK(strcmp(minerva_stream_error(s), "") == 0);
    minerva_stream_free(s);
    CHECK(strcmp(cb.data, pulled.data) == 0);
    tb_free(&cb);
    tb_free(&pulled);
    PASS("callback and pull mode give the same text");
}

static void test_small_reads_keep_characters_whole(minerva_engine *e) {
    /* A prompt that makes the model write non-ASCII text, read 4 bytes at a time. */
    minerva_generate_params g = greedy(40);
    g.ignore_eos = true;
    minerva_stream *s = NULL;
    CHECK_STATUS(minerva_stream_new(e, "Translate to Japanese: good morning, my friend. Japanese:", &g,
                                    NULL, NULL, &s),
                 MINERVA_OK);
    text_buf all = {0};
    char buf[4];
    for (;;) {
        size_t n = 0;
        bool fin = false;
        CHECK_STATUS(minerva_stream_read(s, buf, sizeof buf, &n, &fin, 20000), MINERVA_OK);
        CHECK(utf8_valid(buf, n));
        tb_append(&all, buf, n);
        if (fin) break;
    }
    CHECK(utf8_valid(all.data, all.len));
    printf("# 4-byte reads: %s\n", all.data);
    minerva_stream_free(s);
    tb_free(&all);
    PASS("4-byte reads deliver whole UTF-8 characters");
}

static void test_max_tokens_exact(minerva_engine *e) {
    for (uint32_t n = 1; n <= 9; n += 4) {
        minerva_generate_params g = greedy(n);
        g.ignore_eos = true;
        minerva_stream_stats st;
        st.struct_size = sizeof st;
        CHECK_STATUS(minerva_generate(e, "Hello", &g, NULL, NULL, &st), MINERVA_OK);
        CHECK(st.generated_tokens == n);
        CHECK(st.finish_reason == MINERVA_FINISH_LENGTH);
    }
    PASS("max_tokens exact with ignore_eos");
}

static void test_stop_string(minerva_engine *e) {
    /* Find what greedy decoding writes, then stop on a piece of it. */
    text_buf full = {0}, cut = {0};
    generate_greedy(e, &full, 24);
    CHECK(full.len > 12);
    /* A stop string of about 6 bytes from the text, at a place where it first occurs, after the
       start, on character boundaries. */
    char stop[16] = {0};
    const char *first = NULL;
    for (size_t at = full.len / 3; at + 6 < full.len && !first; at++) {
        if (((unsigned char)full.data[at] & 0xC0) == 0x80) continue;
        size_t sl = 6;
        while (((unsigned char)full.data[at + sl] & 0xC0) == 0x80) sl++;
        memcpy(stop, full.data + at, sl);
        stop[sl] = 0;
        const char *f = strstr(full.data, stop);
        if (f == full.data + at) first = f;
    }
    CHECK(first != NULL);
    size_t want_len = (size_t)(first - full.data);

    const char *stops[2] = {"this string never appears", stop};
    minerva_generate_params g = greedy(24);
    g.ignore_eos = true;
    g.stop = stops;
    g.stop_count = 2;
    g.on_finish = tb_on_finish;
    minerva_stream_stats st = {0};
    CHECK_STATUS(minerva_generate(e, PROMPT, &g, tb_on_token, &cut, &st), MINERVA_OK);
    CHECK(st.finish_reason == MINERVA_FINISH_STOP);
    CHECK(cut.finish_reason == MINERVA_FINISH_STOP);
    CHECK(cut.len == want_len);
    CHECK(want_len == 0 || memcmp(cut.data, full.data, want_len) == 0);
    CHECK(cut.data == NULL || strstr(cut.data, stop) == NULL);
    printf("# stop \"%s\": delivered \"%s\"\n", stop, cut.data ? cut.data : "");
    tb_free(&full);
    tb_free(&cut);
    PASS("a stop string ends the stream and is never delivered");
}

static void test_callback_stop(minerva_engine *e) {
    text_buf b = {0};
    b.stop_after = 3;
    minerva_generate_params g = greedy(50);
    g.ignore_eos = true;
    g.on_finish = tb_on_finish;
    minerva_stream_stats st = {0};
    CHECK_STATUS(minerva_generate(e, PROMPT, &g, tb_on_token, &b, &st), MINERVA_OK);
    CHECK(b.calls == 3);
    CHECK(b.finish_calls == 1 && b.finish_reason == MINERVA_FINISH_STOP);
    CHECK(b.finish_status == MINERVA_OK);
    CHECK(st.finish_reason == MINERVA_FINISH_STOP);
    CHECK(st.generated_tokens >= 3 && st.generated_tokens < 50);
    tb_free(&b);
    PASS("MINERVA_STOP from the token callback ends the stream");
}

static void test_eos(minerva_engine *e) {
    /* The default model (a base model) ends a one-line JSON document with its EOS token. */
    SKIP_UNLESS_DEFAULT_MODEL("end-of-generation ends the stream");
    text_buf b = {0};
    minerva_generate_params g = greedy(64);
    g.on_finish = tb_on_finish;
    minerva_stream_stats st = {0};
    CHECK_STATUS(minerva_generate(e, "{\"name\": \"Bob\", \"age\": 30}", &g, tb_on_token, &b, &st),
                 MINERVA_OK);
    CHECK(st.finish_reason == MINERVA_FINISH_EOS);
    CHECK(b.finish_reason == MINERVA_FINISH_EOS && b.finish_calls == 1);
    CHECK(st.generated_tokens < 64);
    tb_free(&b);
    PASS("end-of-generation ends the stream");
}

static void test_special_tokens_in_prompt(minerva_engine *e) {
    /* Chat markup is recognized as special tokens (one token each), not spelled out; BOS added. */
    SKIP_UNLESS_DEFAULT_MODEL("special tokens in the prompt are recognized, BOS added");
    const char *chat = "<start_of_turn>user\nSay yes<end_of_turn>\n<start_of_turn>model\n";
    minerva_generate_params g = greedy(1);
    minerva_stream_stats st = {0};
    CHECK_STATUS(minerva_generate(e, chat, &g, NULL, NULL, &st), MINERVA_OK);
    /* BOS, <start_of_turn>, user, \n, Say, yes, <end_of_turn>, \n, <start_of_turn>, model, \n */
    CHECK(st.prompt_tokens == 11);
    PASS("special tokens in the prompt are recognized, BOS added");
}

static void test_struct_size_compat(minerva_engine *e) {
    /* An older caller with a smaller params struct is refused with a message naming struct_size;
       a newer caller with a larger one is read up to what the library knows. */
    minerva_generate_params g = greedy(4);
    g.struct_size = 8;
    minerva_stream *s = NULL;
    CHECK_STATUS(minerva_stream_new(e, "x", &g, NULL, NULL, &s), MINERVA_ERR_INVALID_ARGUMENT);
    CHECK(s == NULL);
    CHECK(strstr(minerva_last_error(), "struct_size") != NULL);
    struct { minerva_generate_params p; char future[64]; } big;
    memset(&big, 0x7F, sizeof big);
    minerva_generate_params_init(&big.p, sizeof big);
    CHECK(big.p.struct_size == sizeof big);
    CHECK(big.p.max_tokens == 256);
    big.p.max_tokens = 2;
    big.p.ignore_eos = true;
    minerva_stream_stats st = {0};
    CHECK_STATUS(minerva_generate(e, "x", &big.p, NULL, NULL, &st), MINERVA_OK);
    CHECK(st.generated_tokens == 2);
    PASS("struct_size: smaller refused, larger accepted");
}

static void test_prompt_cache(minerva_engine *e) {
    /* A conversation: the second prompt begins with the first prompt and its reply. */
    const char *first = "In a quiet village by the sea, the fishermen woke before dawn and";
    text_buf a = {0}, b = {0}, c = {0};
    minerva_generate_params g = greedy(12);
    g.ignore_eos = true;
    minerva_stream_stats st1 = {0}, st2 = {0}, st3 = {0};
    CHECK_STATUS(minerva_generate(e, first, &g, tb_on_token, &a, &st1), MINERVA_OK);
    CHECK(st1.cached_prompt_tokens <= 1); /* at most BOS, which every prompt shares */
    char second[1024];
    snprintf(second, sizeof second, "%s%s. Then the women", first, a.data);
    CHECK_STATUS(minerva_generate(e, second, &g, tb_on_token, &b, &st2), MINERVA_OK);
    /* The first prompt and most of its reply were reused, not computed again. */
    CHECK(st2.cached_prompt_tokens >= st1.prompt_tokens);
    CHECK(st2.cached_prompt_tokens < st2.prompt_tokens);
    printf("# second turn: %u of %u prompt tokens from the cache\n", st2.cached_prompt_tokens,
           st2.prompt_tokens);
    /* The same prompt without the cache: everything computed, and the same greedy text (the
       reused cells hold exactly the prompt's tokens at the same positions). */
    g.cache_prompt = false;
    CHECK_STATUS(minerva_generate(e, second, &g, tb_on_token, &c, &st3), MINERVA_OK);
    CHECK(st3.cached_prompt_tokens == 0);
    CHECK(st3.prompt_tokens == st2.prompt_tokens);
    CHECK(strcmp(b.data, c.data) == 0);
    tb_free(&a);
    tb_free(&b);
    tb_free(&c);
    PASS("prompt cache: a conversation's next turn reuses its cells; cache_prompt = false computes all");
}

int main(void) {
    minerva_engine *e = open_engine(2, 512);
    test_info_and_version(e);
    test_greedy_is_deterministic(e);
    test_seeded_sampling_is_deterministic(e);
    test_pull_equals_callback(e);
    test_small_reads_keep_characters_whole(e);
    test_max_tokens_exact(e);
    test_stop_string(e);
    test_callback_stop(e);
    test_eos(e);
    test_special_tokens_in_prompt(e);
    test_struct_size_compat(e);
    test_prompt_cache(e);
    minerva_engine_free(e);
    printf("%d passed, 0 failed\n", tests_passed);
    return 0;
}
