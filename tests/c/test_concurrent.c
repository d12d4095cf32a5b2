/* Many streams at once: eight threads each start a stream on one engine (half pull, half
   callback), more streams than max_streams so that some wait in the queue. */
#include "check.h"
#include <ctype.h>

#define THREADS 8

typedef struct {
    minerva_engine *engine;
    int index;
    text_buf text;
    minerva_stream_stats stats;
} worker;

static const char *PROMPTS[THREADS] = {
    "The capital of France is",  "My favourite food is",       "The sun rises in the",
    "Water boils at",            "The best way to learn is",   "Dogs are known for",
    "In the year 1969,",         "A good night's sleep helps",
};

static void *run_worker(void *arg) {
    worker *w = (worker *)arg;
    minerva_generate_params g = greedy(24);
    g.ignore_eos = true;
    g.on_finish = tb_on_finish;
    minerva_stream *s = NULL;
    int pull = w->index % 2;
    CHECK_STATUS(minerva_stream_new(w->engine, PROMPTS[w->index], &g, pull ? NULL : tb_on_token,
                                    &w->text, &s),
                 MINERVA_OK);
    if (pull) pull_all(s, &w->text);
    CHECK_STATUS(minerva_stream_wait(s, -1), MINERVA_OK);
    w->stats.struct_size = sizeof w->stats;
    CHECK_STATUS(minerva_stream_get_stats(s, &w->stats), MINERVA_OK);
    minerva_stream_free(s);
    return NULL;
}

static int letters(const char *s) {
    int n = 0;
    for (; s && *s; s++) n += isalpha((unsigned char)*s) != 0;
    return n;
}

static void run_round(uint32_t max_streams) {
    minerva_engine *e = open_engine(max_streams, 256);
    pthread_t th[THREADS];
    worker w[THREADS];
    memset(w, 0, sizeof w);
    for (int i = 0; i < THREADS; i++) {
        w[i].engine = e;
        w[i].index = i;
        CHECK(pthread_create(&th[i], NULL, run_worker, &w[i]) == 0);
    }
    for (int i = 0; i < THREADS; i++) CHECK(pthread_join(th[i], NULL) == 0);
    double total_tps = 0;
    for (int i = 0; i < THREADS; i++) {
        CHECK(w[i].stats.generated_tokens == 24);
        CHECK(w[i].stats.finish_reason == MINERVA_FINISH_LENGTH);
        CHECK(w[i].text.len > 0 && utf8_valid(w[i].text.data, w[i].text.len));
        CHECK(letters(w[i].text.data) >= 10);
        if (w[i].index % 2 == 0) CHECK(w[i].text.finish_calls == 1);
        total_tps += w[i].stats.tokens_per_second;
        if (max_streams == THREADS) {
            char line[80];
            snprintf(line, sizeof line, "%s", w[i].text.data);
            for (char *c = line; *c; c++)
                if (*c == '\n') *c = ' ';
            printf("# [%d] %s%s\n", i, PROMPTS[i], line);
        }
        tb_free(&w[i].text);
    }
    printf("# max_streams %u: per-stream generation %.1f tokens/s on average\n", max_streams,
           total_tps / THREADS);
    minerva_engine_free(e);
}

int main(void) {
    run_round(THREADS);
    PASS("eight streams from eight threads, decoded together");
    run_round(3);
    PASS("eight streams on max_streams 3: the rest wait in the queue");
    printf("%d passed, 0 failed\n", tests_passed);
    return 0;
}
