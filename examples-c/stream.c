/* stream: a prompt from the command line, streamed to stdout through a token callback.
 *
 *   stream [--model PATH] [--max-tokens N] [--temp T] [--seed S] [--threads N] PROMPT...
 */
#include "common.h"
#include <minerva.h>
#include <string.h>

static minerva_control on_token(void *user_data, const char *text, size_t len) {
    (void)user_data;
    fwrite(text, 1, len, stdout); /* runs on the engine thread */
    fflush(stdout);
    return MINERVA_CONTINUE;
}

int main(int argc, char **argv) {
    const char *model = NULL;
    char prompt[8192] = {0};
    minerva_engine_params ep;
    minerva_engine_params_init(&ep, sizeof ep);
    minerva_generate_params gp;
    minerva_generate_params_init(&gp, sizeof gp);
    gp.max_tokens = 128;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--model") && i + 1 < argc) model = argv[++i];
        else if (!strcmp(argv[i], "--max-tokens") && i + 1 < argc) gp.max_tokens = (uint32_t)atoi(argv[++i]);
        else if (!strcmp(argv[i], "--temp") && i + 1 < argc) gp.temperature = (float)atof(argv[++i]);
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc) gp.seed = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) ep.threads = (uint32_t)atoi(argv[++i]);
        else {
            if (prompt[0]) strncat(prompt, " ", sizeof prompt - strlen(prompt) - 1);
            strncat(prompt, argv[i], sizeof prompt - strlen(prompt) - 1);
        }
    }
    if (!prompt[0]) {
        fprintf(stderr, "usage: %s [--model PATH] [--max-tokens N] [--temp T] [--seed S] "
                        "[--threads N] PROMPT...\n", argv[0]);
        return 2;
    }
    ep.max_streams = 1;
    minerva_engine *engine = NULL;
    minerva_status st = minerva_engine_new(example_model(model), &ep, &engine);
    if (st != MINERVA_OK) {
        fprintf(stderr, "cannot create the engine (%s): %s\n", minerva_status_str(st),
                minerva_last_error());
        return 1;
    }
    minerva_engine_info info;
    info.struct_size = sizeof info;
    minerva_engine_get_info(engine, &info);
    fprintf(stderr, "[%s on %s, %u threads%s%s]\n", info.model_description, info.device_name,
            info.threads, info.fallback_reason[0] ? "; CPU because: " : "", info.fallback_reason);

    fputs(prompt, stdout);
    minerva_stream_stats stats;
    stats.struct_size = sizeof stats;
    st = minerva_generate(engine, prompt, &gp, on_token, NULL, &stats);
    printf("\n");
    fflush(stdout); /* the text ends before the stats line on stderr begins */
    if (st != MINERVA_OK) fprintf(stderr, "generation failed: %s\n", minerva_last_error());
    fprintf(stderr, "[%u prompt tokens, %u generated; first token after %.1f ms; %.1f tokens/s]\n",
            stats.prompt_tokens, stats.generated_tokens, stats.time_to_first_token_ms,
            stats.tokens_per_second);
    minerva_engine_free(engine);
    return st == MINERVA_OK ? 0 : 1;
}
