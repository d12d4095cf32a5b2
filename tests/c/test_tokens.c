/* minerva_tokenize and minerva_detokenize: the caller-buffer rules, round trips on multilingual
   text and emoji, the same tokens a stream reports, bad input. */
#include "check.h"

static minerva_token *tokenize(minerva_engine *e, const char *text, bool add, bool parse,
                               size_t *n) {
    CHECK_STATUS(minerva_tokenize(e, text, add, parse, NULL, 0, n),
                 *text || add ? MINERVA_ERR_BUFFER_TOO_SMALL : MINERVA_OK);
    minerva_token *t = (minerva_token *)malloc((*n + 1) * sizeof *t);
    CHECK(t != NULL);
    size_t again = 0;
    CHECK_STATUS(minerva_tokenize(e, text, add, parse, t, *n, &again), MINERVA_OK);
    CHECK(again == *n);
    return t;
}

static char *detokenize(minerva_engine *e, const minerva_token *t, size_t n, bool special) {
    size_t len = 12345;
    minerva_status st = minerva_detokenize(e, t, n, special, NULL, 0, &len);
    CHECK(st == (len ? MINERVA_ERR_BUFFER_TOO_SMALL : MINERVA_OK));
    char *s = (char *)malloc(len + 1);
    CHECK(s != NULL);
    size_t again = 0;
    CHECK_STATUS(minerva_detokenize(e, t, n, special, s, len + 1, &again), MINERVA_OK);
    CHECK(again == len && s[len] == 0);
    return s;
}

static void test_round_trips(minerva_engine *e) {
    const char *texts[] = {
        "Hello, world!",
        "Grüße aus Köln: ÄÖÜ ß",
        "日本語のテキストと中文文本",
        "Привет, мир! Ελληνικά. עברית. العربية",
        "emoji: 😀🎉👩‍👩‍👧 and flags 🇫🇷🇯🇵",
        "  leading and trailing spaces  \n\ttabs\n",
        "x",
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        size_t n = 0;
        minerva_token *t = tokenize(e, texts[i], false, false, &n);
        CHECK(n > 0);
        char *back = detokenize(e, t, n, false);
        if (strcmp(back, texts[i]) != 0) {
            fprintf(stderr, "round trip of '%s' gave '%s'\n", texts[i], back);
            exit(1);
        }
        free(back);
        free(t);
    }
    PASS("tokenize then detokenize gives the text back (7 scripts, emoji, white space)");
}

static void test_same_tokens_as_a_stream(minerva_engine *e) {
    const char *prompts[] = {"The capital of France is",
                             "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n",
                             "émoji 😀 <bos> text"};
    for (size_t i = 0; i < 3; i++) {
        size_t n = 0;
        minerva_token *t = tokenize(e, prompts[i], true, true, &n);
        minerva_generate_params g = greedy(1);
        minerva_stream_stats st;
        st.struct_size = sizeof st;
        CHECK_STATUS(minerva_generate(e, prompts[i], &g, NULL, NULL, &st), MINERVA_OK);
        CHECK(st.prompt_tokens == n);
        /* Special tokens render with render_special only. */
        char *shown = detokenize(e, t, n, true);
        char *hidden = detokenize(e, t, n, false);
        CHECK(strlen(shown) >= strlen(hidden));
        if (strstr(prompts[i], "<start_of_turn>") && default_model()) {
            CHECK(strstr(shown, "<start_of_turn>") != NULL);
            CHECK(strstr(hidden, "<start_of_turn>") == NULL);
        }
        free(shown);
        free(hidden);
        free(t);
    }
    /* parse_special false spells the markup out: more tokens. */
    size_t with = 0, without = 0;
    free(tokenize(e, "<start_of_turn>user", false, true, &with));
    free(tokenize(e, "<start_of_turn>user", false, false, &without));
    CHECK(without > with);
    PASS("tokenize with both flags gives a stream's prompt_tokens; special tokens rendered on request");
}

static void test_buffer_rules(minerva_engine *e) {
    size_t n = 0;
    minerva_token *t = tokenize(e, "one two three four five", true, true, &n);
    CHECK(n >= 5);
    minerva_token small[2] = {-7, -7};
    size_t got = 0;
    CHECK_STATUS(minerva_tokenize(e, "one two three four five", true, true, small, 2, &got),
                 MINERVA_ERR_BUFFER_TOO_SMALL);
    CHECK(got == n && small[0] == -7 && small[1] == -7); /* the count, and nothing written */
    CHECK(strstr(minerva_last_error(), "needed") != NULL);
    /* Text: exactly len bytes fit without the NUL; len + 1 with it. */
    char *text = detokenize(e, t, n, false);
    size_t len = strlen(text);
    char *buf = (char *)malloc(len + 1);
    CHECK(buf != NULL);
    memset(buf, 'Z', len + 1);
    CHECK_STATUS(minerva_detokenize(e, t, n, false, buf, len, &got), MINERVA_OK);
    CHECK(got == len && memcmp(buf, text, len) == 0 && buf[len] == 'Z');
    CHECK_STATUS(minerva_detokenize(e, t, n, false, buf, len - 1, &got),
                 MINERVA_ERR_BUFFER_TOO_SMALL);
    CHECK(got == len);
    /* Nothing to tokenize, nothing to detokenize. */
    CHECK_STATUS(minerva_tokenize(e, "", false, false, NULL, 0, &got), MINERVA_OK);
    CHECK(got == 0);
    CHECK_STATUS(minerva_detokenize(e, NULL, 0, false, NULL, 0, &got), MINERVA_OK);
    CHECK(got == 0);
    free(buf);
    free(text);
    free(t);
    PASS("buffer rules: size queries, too small, exact fit, empty");
}

static void test_bad_input(minerva_engine *e) {
    size_t n = 99;
    minerva_token t[4];
    CHECK_STATUS(minerva_tokenize(NULL, "x", true, true, t, 4, &n), MINERVA_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(minerva_tokenize(e, NULL, true, true, t, 4, &n), MINERVA_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(minerva_tokenize(e, "x", true, true, t, 4, NULL), MINERVA_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(minerva_tokenize(e, "x", true, true, NULL, 4, &n), MINERVA_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(minerva_tokenize(e, "bad \xff\xfe utf-8", true, true, t, 4, &n),
                 MINERVA_ERR_INVALID_ARGUMENT);
    CHECK(strstr(minerva_last_error(), "UTF-8") != NULL);
    CHECK(n == 99);
    char buf[64];
    minerva_token ids[3] = {1, -1, 2};
    CHECK_STATUS(minerva_detokenize(e, ids, 3, false, buf, sizeof buf, &n),
                 MINERVA_ERR_INVALID_ARGUMENT);
    CHECK(strstr(minerva_last_error(), "tokens[1]") != NULL);
    minerva_engine_info info;
    info.struct_size = sizeof info;
    CHECK_STATUS(minerva_engine_get_info(e, &info), MINERVA_OK);
    ids[1] = (minerva_token)info.vocab_size;
    CHECK_STATUS(minerva_detokenize(e, ids, 3, false, buf, sizeof buf, &n),
                 MINERVA_ERR_INVALID_ARGUMENT);
    ids[1] = INT32_MAX;
    CHECK_STATUS(minerva_detokenize(e, ids, 3, false, buf, sizeof buf, &n),
                 MINERVA_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(minerva_detokenize(e, NULL, 3, false, buf, sizeof buf, &n),
                 MINERVA_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(minerva_detokenize(e, ids, 1, false, NULL, 8, &n), MINERVA_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(minerva_detokenize(e, ids, 1, false, buf, sizeof buf, NULL),
                 MINERVA_ERR_INVALID_ARGUMENT);
    CHECK(n == 99);
    PASS("bad input: NULLs, non-UTF-8, ids outside the vocabulary");
}

/* Both are allowed inside a callback (they do not wait for the engine thread). */
typedef struct {
    minerva_engine *e;
    minerva_status tok, detok;
} in_cb;

static minerva_control tokenize_inside(void *ud, const char *text, size_t len) {
    (void)len;
    in_cb *c = (in_cb *)ud;
    minerva_token t[64];
    size_t n = 0, m = 0;
    c->tok = minerva_tokenize(c->e, text, false, true, t, 64, &n);
    char buf[256];
    c->detok = minerva_detokenize(c->e, t, n, true, buf, sizeof buf, &m);
    return MINERVA_STOP;
}

static void test_inside_callbacks(minerva_engine *e) {
    in_cb c = {e, 99, 99};
    minerva_generate_params g = greedy(4);
    CHECK_STATUS(minerva_generate(e, "Once upon", &g, tokenize_inside, &c, NULL), MINERVA_OK);
    CHECK(c.tok == MINERVA_OK && c.detok == MINERVA_OK);
    PASS("tokenize and detokenize from inside a token callback");
}

int main(void) {
    minerva_engine *e = open_engine(1, 256);
    test_round_trips(e);
    test_same_tokens_as_a_stream(e);
    test_buffer_rules(e);
    test_bad_input(e);
    test_inside_callbacks(e);
    minerva_engine_free(e);
    printf("%d passed, 0 failed\n", tests_passed);
    return 0;
}
