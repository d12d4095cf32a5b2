/* tools: a game character decides what to do through a tool call.
 *
 *   tools [--model PATH] [--say "what the player says"]
 *
 * The guard of a town gate is offered three of the game's own functions (walk somewhere, draw a
 * weapon, open the gate). With MINERVA_TOOL_CHOICE_REQUIRED the reply is always calls of those
 * tools with arguments valid against their schemas, so the game can act on it without guessing.
 * The frame loop pulls the stream without ever blocking; once the stream has ended the game reads
 * the calls, acts, and gives the results back as "tool" turns so the guard can say a line about it.
 */
#include "common.h"
#include <minerva.h>
#include <string.h>
#include <unistd.h>

static const char *TOOLS =
    "[{\"type\": \"function\", \"function\": {\"name\": \"walk_to\","
    "  \"description\": \"Walk to a place in town.\","
    "  \"parameters\": {\"type\": \"object\", \"properties\": {"
    "    \"place\": {\"type\": \"string\", \"enum\": [\"gate\", \"tavern\", \"barracks\"]}},"
    "    \"required\": [\"place\"]}}},"
    " {\"type\": \"function\", \"function\": {\"name\": \"draw_weapon\","
    "  \"description\": \"Draw a weapon against someone.\","
    "  \"parameters\": {\"type\": \"object\", \"properties\": {"
    "    \"weapon\": {\"type\": \"string\", \"enum\": [\"sword\", \"spear\"]},"
    "    \"target\": {\"type\": \"string\", \"enum\": [\"player\", \"thief\"]}},"
    "    \"required\": [\"weapon\", \"target\"]}}},"
    " {\"type\": \"function\", \"function\": {\"name\": \"open_gate\","
    "  \"description\": \"Open the town gate for someone.\","
    "  \"parameters\": {\"type\": \"object\", \"properties\": {"
    "    \"for_whom\": {\"type\": \"string\"}}, \"required\": [\"for_whom\"]}}}]";

/* Runs a stream as a game would: one non-blocking read per frame. Prints the text it gets. */
static minerva_status run_frames(minerva_stream *s, const char *who) {
    char buf[256];
    bool finished = false;
    int frames = 0;
    while (!finished) {
        size_t n = 0;
        minerva_stream_read(s, buf, sizeof buf, &n, &finished, 0); /* never waits */
        if (n) printf("%s%.*s", frames++ ? "" : who, (int)n, buf);
        if (!finished) usleep(16000); /* the rest of the frame: render, physics, ... */
    }
    if (frames) printf("\n");
    return minerva_stream_wait(s, 0); /* it has ended: returns at once */
}

int main(int argc, char **argv) {
    const char *model = NULL, *say = "A thief just ran past you toward the tavern! Stop him!";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--model") && i + 1 < argc) model = argv[++i];
        else if (!strcmp(argv[i], "--say") && i + 1 < argc) say = argv[++i];
        else {
            fprintf(stderr, "usage: tools [--model PATH] [--say TEXT]\n");
            return 2;
        }
    }
    minerva_engine *engine = NULL;
    if (minerva_engine_new(example_model(model), NULL, &engine) != MINERVA_OK) {
        fprintf(stderr, "engine: %s\n", minerva_last_error());
        return 1;
    }
    minerva_chat_message turns[4] = {
        {"system", "You are Bram, the guard of the town gate. You act with the tools.", NULL,
         NULL},
        {"user", say, NULL, NULL},
        {0},
        {0},
    };
    minerva_chat_params chat;
    minerva_chat_params_init(&chat, sizeof chat);
    chat.tools_json = TOOLS;
    chat.tool_choice = MINERVA_TOOL_CHOICE_REQUIRED;
    minerva_generate_params gen;
    minerva_generate_params_init(&gen, sizeof gen);
    gen.max_tokens = 256; /* up to 4 calls: room for all of them */
    gen.temperature = 0.3f;
    gen.seed = 7;

    printf("Player: %s\n", say);
    minerva_stream *s = NULL;
    if (minerva_chat_stream_new(engine, turns, 2, &chat, &gen, NULL, NULL, &s) != MINERVA_OK) {
        fprintf(stderr, "chat: %s\n", minerva_last_error());
        return 1;
    }
    if (run_frames(s, "") != MINERVA_OK) fprintf(stderr, "stream: %s\n", minerva_stream_error(s));

    /* The calls, as JSON: [{"id": "call_k3x9q0a2b", "name": "walk_to", "arguments": {...}}, ...]. */
    size_t len = 0;
    minerva_stream_tool_calls(s, NULL, 0, &len); /* the size, then the text */
    char *calls = malloc(len + 1);
    if (!calls || minerva_stream_tool_calls(s, calls, len + 1, &len) != MINERVA_OK) return 1;
    minerva_stream_free(s);
    printf("Bram decides: %s\n", calls);

    /* The game acts on each call (a real game parses the JSON with its own library) and reports
       what happened; here the first call stands for all. */
    const char *what = strstr(calls, "\"name\":\"walk_to\"")       ? "Bram walks off."
                       : strstr(calls, "\"name\":\"draw_weapon\"") ? "Bram draws his weapon."
                       : strstr(calls, "\"name\":\"open_gate\"")   ? "The gate creaks open."
                                                                   : "Nothing happens.";
    printf("Game: %s\n", what);
    /* The tool turn answers the first call by its id. */
    char id[64] = "";
    const char *at = strstr(calls, "\"id\":\"");
    if (at) {
        at += strlen("\"id\":\"");
        size_t n = strcspn(at, "\"");
        if (n < sizeof id) memcpy(id, at, n), id[n] = '\0';
    }
    turns[2] = (minerva_chat_message){"assistant", NULL, calls, NULL};
    turns[3] = (minerva_chat_message){"tool", "{\"done\": true}", NULL, id};

    /* Next turn: the guard speaks about it (AUTO: text, or more calls). */
    chat.tool_choice = MINERVA_TOOL_CHOICE_AUTO;
    gen.max_tokens = 40;
    if (minerva_chat_stream_new(engine, turns, 4, &chat, &gen, NULL, NULL, &s) != MINERVA_OK) {
        fprintf(stderr, "chat: %s\n", minerva_last_error());
        return 1;
    }
    run_frames(s, "Bram: ");
    minerva_stream_stats st;
    st.struct_size = sizeof st;
    minerva_stream_get_stats(s, &st);
    char more[512];
    if (minerva_stream_tool_calls(s, more, sizeof more, &len) == MINERVA_OK && len > 2)
        printf("Bram calls again: %s\n", more);
    printf("(%u tokens, %.0f ms to the first)\n", st.generated_tokens, st.time_to_first_token_ms);
    minerva_stream_free(s);
    free(calls);
    minerva_engine_free(engine);
    return 0;
}
