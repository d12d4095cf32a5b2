/* npc: several characters generating at once on one engine, pulled once a frame, each line
 * tagged with its speaker. The streams are decoded together in shared batches.
 *
 *   npc [--model PATH] [--npcs N] [--max-tokens N] [--threads N] [--quiet]
 *
 * At the end it prints the aggregate generation speed of all characters together.
 */
#include "common.h"
#include <minerva.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    const char *name;
    const char *prompt;
    minerva_stream *stream;
    char line[512];
    size_t len;
    bool finished;
} npc;

static const char *NAMES[] = {"Blacksmith", "Innkeeper", "Guard",    "Merchant", "Bard",
                              "Farmer",     "Priest",    "Thief",    "Wizard",   "Captain",
                              "Healer",     "Hunter",    "Scholar",  "Miner",    "Baker",
                              "Sailor"};
static const char *PROMPTS[] = {
    "The blacksmith wiped his brow and told the traveler:",
    "The innkeeper poured another ale and whispered:",
    "The guard at the city gate raised his hand and said:",
    "The merchant spread out her silks and announced:",
    "The bard tuned his lute and began the tale:",
    "The farmer leaned on his fence and complained:",
    "The priest lit a candle and said softly:",
    "The thief grinned in the shadows and muttered:",
    "The wizard closed his book and warned:",
    "The ship's captain looked at the sky and shouted:",
    "The healer mixed the herbs and explained:",
    "The hunter knelt by the tracks and said:",
    "The scholar adjusted her glasses and observed:",
    "The miner came up from the dark tunnel and said:",
    "The baker pulled bread from the oven and laughed:",
    "The sailor coiled the rope and sang:",
};

static void flush_line(npc *c, bool quiet) {
    if (c->len && !quiet) printf("[%s] %.*s\n", c->name, (int)c->len, c->line);
    c->len = 0;
}

int main(int argc, char **argv) {
    const char *model = NULL;
    int count = 4;
    uint32_t max_tokens = 64, threads = 0;
    bool quiet = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--model") && i + 1 < argc) model = argv[++i];
        else if (!strcmp(argv[i], "--npcs") && i + 1 < argc) count = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--max-tokens") && i + 1 < argc) max_tokens = (uint32_t)atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = (uint32_t)atoi(argv[++i]);
        else if (!strcmp(argv[i], "--quiet")) quiet = true;
    }
    if (count < 1 || count > 16) {
        fprintf(stderr, "--npcs must be 1..16\n");
        return 2;
    }
    minerva_engine_params ep;
    minerva_engine_params_init(&ep, sizeof ep);
    ep.max_streams = (uint32_t)count; /* all characters decoded together */
    ep.context_tokens = 256;
    ep.threads = threads;
    minerva_engine *engine = NULL;
    if (minerva_engine_new(example_model(model), &ep, &engine) != MINERVA_OK) {
        fprintf(stderr, "cannot create the engine: %s\n", minerva_last_error());
        return 1;
    }
    minerva_generate_params gp;
    minerva_generate_params_init(&gp, sizeof gp);
    gp.max_tokens = max_tokens;
    gp.ignore_eos = true; /* the same work for every character, for the figures below */
    gp.seed = 42;

    npc npcs[16];
    memset(npcs, 0, sizeof npcs);
    double start = seconds_now();
    for (int i = 0; i < count; i++) {
        npcs[i].name = NAMES[i];
        npcs[i].prompt = PROMPTS[i];
        if (minerva_stream_new(engine, PROMPTS[i], &gp, NULL, NULL, &npcs[i].stream) != MINERVA_OK) {
            fprintf(stderr, "cannot start %s: %s\n", NAMES[i], minerva_last_error());
            return 1;
        }
    }
    int done = 0;
    while (done < count) {
        /* Once a frame: pull every character's text without waiting. */
        for (int i = 0; i < count; i++) {
            npc *c = &npcs[i];
            if (c->finished) continue;
            char buf[128];
            size_t n = 0;
            minerva_stream_read(c->stream, buf, sizeof buf, &n, &c->finished, 0);
            for (size_t k = 0; k < n; k++) {
                if (buf[k] == '\n' || c->len + 1 >= sizeof c->line) flush_line(c, quiet);
                if (buf[k] != '\n') c->line[c->len++] = buf[k];
            }
            if (c->finished) {
                flush_line(c, quiet);
                done++;
            }
        }
        usleep(2000);
    }
    double elapsed = seconds_now() - start;
    unsigned total = 0;
    double ttft_max = 0;
    for (int i = 0; i < count; i++) {
        minerva_stream_stats st;
        st.struct_size = sizeof st;
        minerva_stream_get_stats(npcs[i].stream, &st);
        total += st.generated_tokens;
        if (st.time_to_first_token_ms > ttft_max) ttft_max = st.time_to_first_token_ms;
        minerva_stream_free(npcs[i].stream);
    }
    printf("%d characters, %u tokens in %.2f s: %.1f tokens/s in all (first tokens within %.0f ms)\n",
           count, total, elapsed, total / elapsed, ttft_max);
    minerva_engine_free(engine);
    return 0;
}
