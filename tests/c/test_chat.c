/* Chat through the C API: the model's own template (a copy of the model with a template added, in
   $MINERVA_CHAT_MODEL), templates given by text and by name, the ChatML fallback, the buffer
   rules, tool calls with MINERVA_TOOL_CHOICE_REQUIRED, calls from inside callbacks, bad input. */
#include "check.h"

static const char *chat_model_path(void) {
    const char *p = getenv("MINERVA_CHAT_MODEL");
    if (!p || !*p) {
        fprintf(stderr, "set MINERVA_CHAT_MODEL (tests/c_api.rs makes it)\n");
        exit(2);
    }
    return p;
}

static minerva_chat_message msg(const char *role, const char *content) {
    minerva_chat_message m;
    memset(&m, 0, sizeof m);
    m.role = role;
    m.content = content;
    return m;
}

/* Formats into a buffer of exactly the size asked for; the caller frees it. */
static char *format(minerva_engine *e, const minerva_chat_message *m, size_t n,
                    const minerva_chat_params *c) {
    size_t len = 0;
    CHECK_STATUS(minerva_chat_format(e, m, n, c, NULL, 0, &len), MINERVA_ERR_BUFFER_TOO_SMALL);
    char *buf = (char *)malloc(len + 1);
    CHECK(buf != NULL);
    size_t again = 0;
    CHECK_STATUS(minerva_chat_format(e, m, n, c, buf, len + 1, &again), MINERVA_OK);
    CHECK(again == len && buf[len] == 0 && strlen(buf) == len);
    return buf;
}

static void test_own_template(void) {
    minerva_engine_params p;
    minerva_engine_params_init(&p, sizeof p);
    p.max_streams = 2;
    p.context_tokens = 1024;
    minerva_engine *e = NULL;
    CHECK_STATUS(minerva_engine_new(chat_model_path(), &p, &e), MINERVA_OK);
    minerva_engine_info info;
    info.struct_size = sizeof info;
    CHECK_STATUS(minerva_engine_get_info(e, &info), MINERVA_OK);
    CHECK(info.has_chat_template);
    minerva_chat_message m[2] = {msg("system", "You are Mira."), msg("user", "Hi!")};
    char *text = format(e, m, 2, NULL);
    CHECK(strcmp(text, "<start_of_turn>user\nYou are Mira.\n\nHi!<end_of_turn>\n"
                       "<start_of_turn>model\n") == 0);
    /* Exact fit without the NUL is OK; one byte less is too small. */
    size_t len = strlen(text), got = 0;
    char *buf = (char *)malloc(len);
    CHECK(buf != NULL);
    CHECK_STATUS(minerva_chat_format(e, m, 2, NULL, buf, len, &got), MINERVA_OK);
    CHECK(got == len && memcmp(buf, text, len) == 0);
    CHECK_STATUS(minerva_chat_format(e, m, 2, NULL, buf, len - 1, &got),
                 MINERVA_ERR_BUFFER_TOO_SMALL);
    CHECK(got == len);
    free(buf);

    /* A chat stream: the prompt is the rendered text plus BOS, the turn's end is EOS and never
       delivered. */
    size_t n_tokens = 0;
    CHECK_STATUS(minerva_tokenize(e, text, true, true, NULL, 0, &n_tokens),
                 MINERVA_ERR_BUFFER_TOO_SMALL);
    minerva_generate_params g = greedy(48);
    text_buf out = {0};
    minerva_stream *s = NULL;
    CHECK_STATUS(minerva_chat_stream_new(e, m, 2, NULL, &g, tb_on_token, &out, &s), MINERVA_OK);
    CHECK_STATUS(minerva_stream_wait(s, -1), MINERVA_OK);
    minerva_stream_stats st;
    st.struct_size = sizeof st;
    CHECK_STATUS(minerva_stream_get_stats(s, &st), MINERVA_OK);
    CHECK(st.prompt_tokens == n_tokens);
    CHECK(!out.data || !strstr(out.data, "<end_of_turn>"));
    char calls[8];
    CHECK_STATUS(minerva_stream_tool_calls(s, calls, sizeof calls, &got), MINERVA_OK);
    CHECK(strcmp(calls, "[]") == 0 && got == 2);
    minerva_stream_free(s);
    tb_free(&out);
    free(text);
    minerva_engine_free(e);
    PASS("the model's own template: exact text, buffer rules, a chat stream on it");
}

static void test_given_templates(minerva_engine *e) {
    minerva_chat_message m[1] = {msg("user", "Hi")};
    char *text = format(e, m, 1, NULL); /* no template in the model: ChatML */
    CHECK(strcmp(text, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n") == 0);
    free(text);
    minerva_chat_params c;
    minerva_chat_params_init(&c, sizeof c);
    CHECK(c.add_generation_prompt && c.tool_choice == MINERVA_TOOL_CHOICE_AUTO);
    c.chat_template = "{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}"
                      "{% if add_generation_prompt %}[assistant] {% endif %}";
    text = format(e, m, 1, &c);
    CHECK(strcmp(text, "[user] Hi\n[assistant] ") == 0);
    free(text);
    c.add_generation_prompt = false;
    text = format(e, m, 1, &c);
    CHECK(strcmp(text, "[user] Hi\n") == 0);
    free(text);
    c.add_generation_prompt = true;
    c.chat_template = "gemma";
    text = format(e, m, 1, &c);
    CHECK(strcmp(text, "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n") == 0);
    free(text);
    PASS("templates: ChatML fallback, a Jinja text, a built-in name, add_generation_prompt");
}

typedef struct {
    minerva_engine *e;
    int formatted;
    minerva_status wait_status;
} in_callback;

static minerva_control format_in_callback(void *ud, const char *text, size_t len) {
    (void)text;
    (void)len;
    in_callback *c = (in_callback *)ud;
    if (c->formatted) return MINERVA_STOP;
    minerva_chat_message m[1] = {msg("user", "nested")};
    size_t n = 0;
    char buf[256];
    if (minerva_chat_format(c->e, m, 1, NULL, buf, sizeof buf, &n) == MINERVA_OK &&
        strstr(buf, "nested"))
        c->formatted = 1;
    return MINERVA_STOP;
}

static void test_from_a_callback(minerva_engine *e) {
    in_callback c = {e, 0, MINERVA_OK};
    minerva_generate_params g = greedy(4);
    CHECK_STATUS(minerva_generate(e, "Once upon a time", &g, format_in_callback, &c, NULL),
                 MINERVA_OK);
    CHECK(c.formatted);
    PASS("minerva_chat_format works from inside a token callback");
}

static const char *TOOLS =
    "[{\"type\": \"function\", \"function\": {\"name\": \"move_to\", \"description\": \"Walk.\","
    " \"parameters\": {\"type\": \"object\", \"properties\": {\"place\": {\"type\": \"string\","
    " \"enum\": [\"inn\", \"forge\"]}}, \"required\": [\"place\"]}}}]";

static void test_required_tool_calls(minerva_engine *e) {
    minerva_chat_message m[1] = {msg("user", "Go to the inn.")};
    minerva_chat_params c;
    minerva_chat_params_init(&c, sizeof c);
    c.tools_json = TOOLS;
    c.tool_choice = MINERVA_TOOL_CHOICE_REQUIRED;
    minerva_generate_params g = greedy(160);
    g.on_finish = tb_on_finish;
    text_buf out = {0};
    minerva_stream *s = NULL;
    CHECK_STATUS(minerva_chat_stream_new(e, m, 1, &c, &g, tb_on_token, &out, &s), MINERVA_OK);
    size_t len = 0;
    /* Not yet: the calls are known once the stream has ended. */
    minerva_status early = minerva_stream_tool_calls(s, NULL, 0, &len);
    CHECK(early == MINERVA_ERR_INVALID_ARGUMENT || early == MINERVA_ERR_BUFFER_TOO_SMALL);
    CHECK_STATUS(minerva_stream_wait(s, -1), MINERVA_OK);
    CHECK(out.finish_calls == 1 && out.finish_reason == MINERVA_FINISH_EOS);
    CHECK(out.len == 0); /* REQUIRED: no text, only calls */
    CHECK_STATUS(minerva_stream_tool_calls(s, NULL, 0, &len), MINERVA_ERR_BUFFER_TOO_SMALL);
    char *calls = (char *)malloc(len + 1);
    CHECK(calls != NULL);
    CHECK_STATUS(minerva_stream_tool_calls(s, calls, len + 1, &len), MINERVA_OK);
    printf("# calls: %s\n", calls);
    /* ids: "call_" and 9 letters and digits */
    const char *id = strstr(calls, "\"id\":\"call_");
    CHECK(calls[0] == '[' && id && strlen(id) > 20 && id[20] == '"' &&
          strstr(calls, "\"name\":\"move_to\""));
    CHECK(strstr(calls, "\"place\":\"inn\"") || strstr(calls, "\"place\":\"forge\""));
    minerva_stream_free(s);
    free(calls);
    tb_free(&out);
    PASS("REQUIRED tool calls: no text, calls of the tool with valid arguments");
}

static void test_bad_input(minerva_engine *e) {
    minerva_chat_message m[2] = {msg("user", "Hi"), msg("assistant", "Yo")};
    size_t n = 77;
    char buf[128];
    CHECK_STATUS(minerva_chat_format(NULL, m, 1, NULL, buf, sizeof buf, &n),
                 MINERVA_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(minerva_chat_format(e, NULL, 1, NULL, buf, sizeof buf, &n),
                 MINERVA_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(minerva_chat_format(e, m, 0, NULL, buf, sizeof buf, &n),
                 MINERVA_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(minerva_chat_format(e, m, 1, NULL, buf, sizeof buf, NULL),
                 MINERVA_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(minerva_chat_format(e, m, 1, NULL, NULL, 5, &n), MINERVA_ERR_INVALID_ARGUMENT);
    CHECK(n == 77);
    minerva_chat_message bad = msg("narrator", "x");
    CHECK_STATUS(minerva_chat_format(e, &bad, 1, NULL, buf, sizeof buf, &n),
                 MINERVA_ERR_INVALID_ARGUMENT);
    CHECK(strstr(minerva_last_error(), "narrator"));
    bad = msg(NULL, "x");
    CHECK_STATUS(minerva_chat_format(e, &bad, 1, NULL, buf, sizeof buf, &n),
                 MINERVA_ERR_INVALID_ARGUMENT);
    bad = msg("user", NULL);
    CHECK_STATUS(minerva_chat_format(e, &bad, 1, NULL, buf, sizeof buf, &n),
                 MINERVA_ERR_INVALID_ARGUMENT);
    bad = msg("user", "bad \xc3\x28 utf-8");
    CHECK_STATUS(minerva_chat_format(e, &bad, 1, NULL, buf, sizeof buf, &n),
                 MINERVA_ERR_INVALID_ARGUMENT);
    CHECK(strstr(minerva_last_error(), "messages[0].content is not valid UTF-8"));

    minerva_chat_params c;
    minerva_chat_params_init(&c, sizeof c);
    c.tool_choice = 7;
    CHECK_STATUS(minerva_chat_format(e, m, 1, &c, buf, sizeof buf, &n),
                 MINERVA_ERR_INVALID_ARGUMENT);
    c.tool_choice = MINERVA_TOOL_CHOICE_AUTO;
    c.tools_json = "[{\"type\": \"function\", \"function\": {\"name\": ";
    CHECK_STATUS(minerva_chat_format(e, m, 1, &c, buf, sizeof buf, &n),
                 MINERVA_ERR_INVALID_ARGUMENT);
    CHECK(strstr(minerva_last_error(), "tools_json"));
    c.tools_json = NULL;
    c.chat_template = "no-such-template";
    CHECK_STATUS(minerva_chat_format(e, m, 1, &c, buf, sizeof buf, &n),
                 MINERVA_ERR_INVALID_ARGUMENT);
    c.chat_template = "{{ raise_exception('roles must alternate, says the template') }}";
    CHECK_STATUS(minerva_chat_format(e, m, 1, &c, buf, sizeof buf, &n),
                 MINERVA_ERR_INVALID_ARGUMENT);
    CHECK(strstr(minerva_last_error(), "roles must alternate, says the template"));
    c.chat_template = "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}"
                      "{% endfor %}";
    CHECK_STATUS(minerva_chat_format(e, m, 1, &c, buf, sizeof buf, &n),
                 MINERVA_ERR_INVALID_ARGUMENT);
    CHECK(strstr(minerva_last_error(), "units of work"));
    c.chat_template = "{% for m in messages %}";
    CHECK_STATUS(minerva_chat_format(e, m, 1, &c, buf, sizeof buf, &n),
                 MINERVA_ERR_INVALID_ARGUMENT);
    c.chat_template = NULL;
    c.struct_size = 3;
    CHECK_STATUS(minerva_chat_format(e, m, 1, &c, buf, sizeof buf, &n),
                 MINERVA_ERR_INVALID_ARGUMENT);
    CHECK(n == 77);

    /* REQUIRED with a grammar of its own, and a stream that failed to start. */
    minerva_chat_params_init(&c, sizeof c);
    c.tools_json = TOOLS;
    c.tool_choice = MINERVA_TOOL_CHOICE_REQUIRED;
    minerva_generate_params g = greedy(8);
    g.grammar = "root ::= \"x\"";
    minerva_stream *s = (minerva_stream *)&n;
    CHECK_STATUS(minerva_chat_stream_new(e, m, 1, &c, &g, NULL, NULL, &s),
                 MINERVA_ERR_INVALID_ARGUMENT);
    CHECK(s == (minerva_stream *)&n);
    CHECK_STATUS(minerva_chat_stream_new(e, m, 1, &c, NULL, NULL, NULL, NULL),
                 MINERVA_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(minerva_stream_tool_calls(NULL, buf, sizeof buf, &n),
                 MINERVA_ERR_INVALID_ARGUMENT);
    PASS("bad input: NULLs, roles, content, UTF-8, tool_choice, tools_json, templates that "
         "fail, loop or do not parse, struct_size");
}

/* A file's whole text (NUL-terminated); the caller frees it. */
static char *read_file(const char *path) {
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = (char *)malloc((size_t)n + 1);
    CHECK(text != NULL && fread(text, 1, (size_t)n, f) == (size_t)n);
    text[n] = 0;
    fclose(f);
    return text;
}

/* 0.3: reasoning kept apart (DeepSeek R1's template opens <think> in its generation prompt; the
   model is made to write a reply with a grammar literal), the switches, their bad values. */
static void test_reasoning_and_switches(minerva_engine *e) {
    char *tmpl = read_file("tests/templates/real/deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja");
    minerva_chat_message m[2] = {msg("user", "Weather?"), msg("assistant", "It is")};
    minerva_chat_params c;
    minerva_chat_params_init(&c, sizeof c);
    CHECK(c.reasoning == MINERVA_REASONING_AUTO && !c.continue_final_message &&
          c.max_tool_calls == 0 && c.template_kwargs_json == NULL);
    c.chat_template = tmpl;
    c.template_kwargs_json = "{\"enable_thinking\": true}";
    minerva_generate_params g;
    minerva_generate_params_init(&g, sizeof g);
    g.max_tokens = 64;
    g.temperature = 0;
    g.grammar = "root ::= \"Sun or rain.\\n</think>\\n\\nIt is sunny.\"";
    minerva_stream *s = NULL;
    CHECK_STATUS(minerva_chat_stream_new(e, m, 1, &c, &g, NULL, NULL, &s), MINERVA_OK);
    CHECK_STATUS(minerva_stream_wait(s, -1), MINERVA_OK);
    char text[64] = {0};
    size_t len = 0;
    bool finished = false;
    CHECK_STATUS(minerva_stream_read(s, text, sizeof text - 1, &len, &finished, -1), MINERVA_OK);
    char reasoning[64];
    size_t rlen = 0;
    CHECK_STATUS(minerva_stream_reasoning(s, NULL, 0, &rlen), MINERVA_ERR_BUFFER_TOO_SMALL);
    CHECK_STATUS(minerva_stream_reasoning(s, reasoning, sizeof reasoning, &rlen), MINERVA_OK);
    printf("# text %s | reasoning %s\n", text, reasoning);
    CHECK(strstr(text, "It is sunny.") && !strstr(text, "think") && !strstr(text, "Sun or rain"));
    CHECK(strstr(reasoning, "Sun or rain.") && !strstr(reasoning, "think"));
    minerva_stream_free(s);

    /* Bad switches: the field named. */
    c.template_kwargs_json = "[1]";
    minerva_stream *bad = NULL;
    CHECK_STATUS(minerva_chat_stream_new(e, m, 1, &c, &g, NULL, NULL, &bad), MINERVA_ERR_INVALID_ARGUMENT);
    CHECK(strstr(minerva_last_error(), "template_kwargs_json") && bad == NULL);
    c.template_kwargs_json = NULL;
    c.reasoning = 7;
    CHECK_STATUS(minerva_chat_stream_new(e, m, 1, &c, &g, NULL, NULL, &bad), MINERVA_ERR_INVALID_ARGUMENT);
    CHECK(strstr(minerva_last_error(), "reasoning"));
    c.reasoning = MINERVA_REASONING_NONE;
    c.continue_final_message = true;
    CHECK_STATUS(minerva_chat_stream_new(e, m, 1, &c, &g, NULL, NULL, &bad), MINERVA_ERR_INVALID_ARGUMENT);
    CHECK(strstr(minerva_last_error(), "continue_final_message"));
    /* Continued: the assistant's turn is left open. */
    char *open = format(e, m, 2, &c);
    size_t n = strlen(open);
    CHECK(n > 5 && strcmp(open + n - 5, "It is") == 0);
    free(open);
    free(tmpl);
    PASS("reasoning kept apart and readable, template switches, continue_final_message, bad values");
}

int main(void) {
    test_own_template();
    minerva_engine *e = open_engine(2, 1024);
    test_given_templates(e);
    test_from_a_callback(e);
    test_required_tool_calls(e);
    test_reasoning_and_switches(e);
    test_bad_input(e);
    minerva_engine_free(e);
    printf("%d passed, 0 failed\n", tests_passed);
    return 0;
}
