/* pull: the loop a game runs once a frame. The text is pulled with minerva_stream_read and a
 * timeout of 0, so the frame never waits for the model; no callback is involved.
 *
 *   pull [--model PATH] [--max-tokens N] PROMPT...
 */
#include "common.h"
#include <minerva.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    const char *model = NULL;
    char prompt[4096] = {0};
    uint32_t max_tokens = 96;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--model") && i + 1 < argc) model = argv[++i];
        else if (!strcmp(argv[i], "--max-tokens") && i + 1 < argc) max_tokens = (uint32_t)atoi(argv[++i]);
        else {
            if (prompt[0]) strncat(prompt, " ", sizeof prompt - strlen(prompt) - 1);
            strncat(prompt, argv[i], sizeof prompt - strlen(prompt) - 1);
        }
    }
    if (!prompt[0]) strcpy(prompt, "The old lighthouse keeper looked at the storm and said");

    minerva_engine *engine = NULL;
    if (minerva_engine_new(example_model(model), NULL, &engine) != MINERVA_OK) {
        fprintf(stderr, "cannot create the engine: %s\n", minerva_last_error());
        return 1;
    }
    minerva_generate_params gp;
    minerva_generate_params_init(&gp, sizeof gp);
    gp.max_tokens = max_tokens;
    minerva_stream *stream = NULL;
    if (minerva_stream_new(engine, prompt, &gp, NULL, NULL, &stream) != MINERVA_OK) {
        fprintf(stderr, "cannot start the stream: %s\n", minerva_last_error());
        minerva_engine_free(engine);
        return 1;
    }
    printf("%s", prompt);
    int frames = 0, frames_with_text = 0;
    double start = seconds_now(), worst = 0;
    for (bool finished = false; !finished; frames++) {
        double frame_start = seconds_now();
        /* --- once a frame: take whatever text is ready, never wait --- */
        char buf[256];
        size_t n = 0;
        minerva_stream_read(stream, buf, sizeof buf, &n, &finished, 0);
        if (n) {
            fwrite(buf, 1, n, stdout);
            fflush(stdout);
            frames_with_text++;
        }
        double spent = seconds_now() - frame_start;
        if (spent > worst) worst = spent;
        /* --- the rest of the frame: game logic, rendering --- */
        usleep(16000); /* about 60 frames a second */
    }
    minerva_status st = minerva_stream_wait(stream, -1);
    minerva_stream_stats stats;
    stats.struct_size = sizeof stats;
    minerva_stream_get_stats(stream, &stats);
    printf("\n");
    fprintf(stderr, "[%d frames in %.2f s, %d with text; the longest read took %.3f ms; %u tokens, "
                    "%.1f tokens/s; %s]\n",
            frames, seconds_now() - start, frames_with_text, worst * 1e3, stats.generated_tokens,
            stats.tokens_per_second, minerva_status_str(st));
    minerva_stream_free(stream);
    minerva_engine_free(engine);
    return st == MINERVA_OK ? 0 : 1;
}
