/* Structured output in C: grammars constrain the text, bad grammars and schemas are refused at
   minerva_stream_new with words naming the problem, logit_bias and the penalties, and programs
   built against the 0.1 header (a smaller params struct) keep working. The JSON outputs of
   schemas are parsed with a real JSON parser in tests/structured.rs. */
#include "check.h"
#include <stddef.h>

static void gen(minerva_engine *e, const char *prompt, minerva_generate_params *g, text_buf *b,
                minerva_stream_stats *st) {
    st->struct_size = sizeof *st;
    CHECK_STATUS(minerva_generate(e, prompt, g, tb_on_token, b, st), MINERVA_OK);
}

static void test_grammar_constrains(minerva_engine *e) {
    minerva_generate_params g = greedy(16);
    g.grammar = "root ::= \"yes\" | \"no\"";
    text_buf b = {0};
    minerva_stream_stats st;
    gen(e, "Is the sky blue? Answer:", &g, &b, &st);
    CHECK(b.data && (strcmp(b.data, "yes") == 0 || strcmp(b.data, "no") == 0));
    CHECK(st.finish_reason == MINERVA_FINISH_EOS); /* the grammar was complete */
    printf("# yes/no grammar gave '%s'\n", b.data);
    tb_free(&b);
    /* ignore_eos does not run past a complete grammar. */
    g.ignore_eos = true;
    gen(e, "Is the sky blue? Answer:", &g, &b, &st);
    CHECK(st.finish_reason == MINERVA_FINISH_EOS && b.data && strlen(b.data) <= 3);
    tb_free(&b);
    /* Sampling too, with a seed. */
    g = greedy(40);
    g.temperature = 1.2f;
    g.seed = 7;
    g.grammar = "root ::= \"[\" [0-9]+ (\",\" [0-9]+)* \"]\"";
    gen(e, "Some numbers:", &g, &b, &st);
    CHECK(b.data && b.data[0] == '[');
    size_t n = strlen(b.data);
    for (size_t i = 1; i < n; i++)
        CHECK((b.data[i] >= '0' && b.data[i] <= '9') || b.data[i] == ',' ||
              (b.data[i] == ']' && i == n - 1) || st.finish_reason == MINERVA_FINISH_LENGTH);
    printf("# number-list grammar gave '%s'\n", b.data);
    tb_free(&b);
    PASS("a grammar constrains greedy and sampled text; a complete grammar ends the stream");
}

static void expect_refused(minerva_engine *e, minerva_generate_params g, const char *needle) {
    minerva_stream *s = (minerva_stream *)0x1;
    CHECK_STATUS(minerva_stream_new(e, "x", &g, NULL, NULL, &s), MINERVA_ERR_INVALID_ARGUMENT);
    CHECK(s == (minerva_stream *)0x1);
    if (!strstr(minerva_last_error(), needle)) {
        fprintf(stderr, "message '%s' lacks '%s'\n", minerva_last_error(), needle);
        exit(1);
    }
    printf("# refused: %s\n", minerva_last_error());
}

static void test_bad_input(minerva_engine *e) {
    minerva_generate_params g = greedy(4);
    g.grammar = "root ::= \"unclosed";
    expect_refused(e, g, "grammar");
    g.grammar = "notroot ::= \"x\"";
    expect_refused(e, g, "grammar");
    g.grammar = "  ";
    expect_refused(e, g, "grammar is empty");
    char deep[2000];
    strcpy(deep, "root ::= ");
    for (int i = 0; i < 300; i++) strcat(deep, "(");
    g.grammar = deep;
    expect_refused(e, g, "deep");
    g = greedy(4);
    char deep_schema[700] = {0};
    for (int i = 0; i < 300; i++) strcat(deep_schema, "[");
    g.json_schema = deep_schema;
    expect_refused(e, g, "deep");
    g.json_schema = "{\"type\": \"object\", ";
    expect_refused(e, g, "json_schema");
    g.json_schema = "{\"type\": \"string\"}";
    g.grammar = "root ::= \"x\"";
    expect_refused(e, g, "both");
    g = greedy(4);
    g.grammar = "root ::= \"\xff\"";
    expect_refused(e, g, "UTF-8");
    minerva_logit_bias bias[2] = {{5, 1.0f}, {-3, 1.0f}};
    g = greedy(4);
    g.logit_bias = bias;
    g.logit_bias_count = 2;
    expect_refused(e, g, "logit_bias[1].token");
    bias[1].token = 2000000000;
    expect_refused(e, g, "logit_bias[1].token");
    bias[1].token = 6;
    bias[1].bias = 0.0f / 0.0f;
    expect_refused(e, g, "logit_bias[1].bias");
    g.logit_bias = NULL;
    expect_refused(e, g, "logit_bias is NULL");
    g = greedy(4);
    g.presence_penalty = 1.0f / 0.0f;
    expect_refused(e, g, "presence_penalty");
    g = greedy(4);
    g.frequency_penalty = 0.0f / 0.0f;
    expect_refused(e, g, "frequency_penalty");
    PASS("bad grammars, schemas, biases and penalties are refused, named");
}

static void test_logit_bias_and_penalties(minerva_engine *e) {
    /* Ban the first token greedy decoding picks: the text changes. */
    minerva_generate_params g = greedy(1);
    text_buf first = {0};
    minerva_stream_stats st;
    gen(e, "The capital of France is", &g, &first, &st);
    minerva_token t[8];
    size_t n = 0;
    CHECK_STATUS(minerva_tokenize(e, first.data, false, false, t, 8, &n), MINERVA_OK);
    CHECK(n >= 1);
    minerva_logit_bias ban = {t[0], -1.0f / 0.0f};
    g.logit_bias = &ban;
    g.logit_bias_count = 1;
    text_buf other = {0};
    gen(e, "The capital of France is", &g, &other, &st);
    CHECK(other.data && strcmp(other.data, first.data) != 0);
    printf("# banned '%s', got '%s'\n", first.data, other.data);
    /* Penalties run (their effect on text is the model's). */
    g = greedy(16);
    g.presence_penalty = 1.5f;
    g.frequency_penalty = 0.5f;
    text_buf pen = {0};
    gen(e, "one one one one one", &g, &pen, &st);
    CHECK(st.generated_tokens > 0);
    tb_free(&first);
    tb_free(&other);
    tb_free(&pen);
    PASS("logit_bias bans a token; presence and frequency penalties run");
}

static void test_01_struct_size(minerva_engine *e) {
    /* A program built against 0.1 knows the struct only up to on_finish: the rest is garbage in
       its memory and must be ignored (defaults used). */
    minerva_generate_params g = greedy(3);
    g.ignore_eos = true;
    memset((char *)&g + offsetof(minerva_generate_params, grammar), 0xA5,
           sizeof g - offsetof(minerva_generate_params, grammar));
    g.struct_size = (uint32_t)offsetof(minerva_generate_params, grammar);
    minerva_stream_stats st;
    st.struct_size = sizeof st;
    CHECK_STATUS(minerva_generate(e, "Hello", &g, NULL, NULL, &st), MINERVA_OK);
    CHECK(st.generated_tokens == 3);
    g.struct_size -= 4;
    minerva_stream *s = NULL;
    CHECK_STATUS(minerva_stream_new(e, "x", &g, NULL, NULL, &s), MINERVA_ERR_INVALID_ARGUMENT);
    PASS("a 0.1-sized params struct works; smaller is refused");
}

int main(void) {
    minerva_engine *e = open_engine(2, 256);
    test_grammar_constrains(e);
    test_bad_input(e);
    test_logit_bias_and_penalties(e);
    test_01_struct_size(e);
    minerva_engine_free(e);
    printf("%d passed, 0 failed\n", tests_passed);
    return 0;
}
