/* Frame-safe release (issue 10, first part): minerva_stream_release never waits and the finish
   callback still runs exactly once, last; minerva_stream_free of a stream with no callbacks
   returns without waiting for the engine. Semantics only, no timings. */
#include "check.h"
#include <unistd.h>

typedef struct {
    volatile int tokens, finishes, token_after_finish;
    volatile minerva_status status;
} counts;

static minerva_control count_token(void *ud, const char *text, size_t len) {
    (void)text;
    (void)len;
    counts *c = (counts *)ud;
    if (c->finishes) c->token_after_finish = 1;
    c->tokens++;
    usleep(2000); /* a slow callback: the engine is busy when the release comes */
    return MINERVA_CONTINUE;
}

static void count_finish(void *ud, minerva_status st, minerva_finish_reason r) {
    (void)r;
    counts *c = (counts *)ud;
    c->status = st;
    __atomic_add_fetch(&c->finishes, 1, __ATOMIC_SEQ_CST);
}

static void wait_for(volatile int *v, int at_least) {
    for (int i = 0; i < 20000 && __atomic_load_n(v, __ATOMIC_SEQ_CST) < at_least; i++) usleep(1000);
    CHECK(__atomic_load_n(v, __ATOMIC_SEQ_CST) >= at_least);
}

static void test_release_running_and_queued(minerva_engine *e) {
    counts running = {0, 0, 0, 99}, queued = {0, 0, 0, 99};
    minerva_generate_params g = greedy(0);
    g.ignore_eos = true;
    g.on_finish = count_finish;
    minerva_stream *a = NULL, *b = NULL;
    CHECK_STATUS(minerva_stream_new(e, "Once upon a time", &g, count_token, &running, &a),
                 MINERVA_OK);
    /* max_streams is 1: this one waits in the queue. */
    CHECK_STATUS(minerva_stream_new(e, "Far away", &g, count_token, &queued, &b), MINERVA_OK);
    wait_for(&running.tokens, 3);
    minerva_stream_release(a); /* returns at once; the finish callback comes later */
    minerva_stream_release(b);
    minerva_stream_release(NULL);
    wait_for(&running.finishes, 1);
    wait_for(&queued.finishes, 1);
    usleep(50000);
    CHECK(running.finishes == 1 && queued.finishes == 1);
    CHECK(running.status == MINERVA_ERR_CANCELLED && queued.status == MINERVA_ERR_CANCELLED);
    CHECK(!running.token_after_finish && queued.tokens == 0);
    PASS("release: never waits; the finish callback runs once, last; a queued stream never runs");
}

static void test_free_without_callbacks(minerva_engine *e) {
    minerva_generate_params g = greedy(0);
    g.ignore_eos = true;
    for (int i = 0; i < 20; i++) {
        minerva_stream *s = NULL;
        CHECK_STATUS(minerva_stream_new(e, "The lighthouse keeper said", &g, NULL, NULL, &s),
                     MINERVA_OK);
        if (i % 2) {
            char buf[64];
            size_t n;
            bool done;
            CHECK_STATUS(minerva_stream_read(s, buf, sizeof buf, &n, &done, 100), MINERVA_OK);
        }
        minerva_stream_free(s); /* pull mode, no on_finish: no user code, no wait needed */
    }
    /* The engine dropped their work and serves the next stream. */
    minerva_generate_params g8 = greedy(8);
    minerva_stream_stats st;
    st.struct_size = sizeof st;
    CHECK_STATUS(minerva_generate(e, "Hello", &g8, NULL, NULL, &st), MINERVA_OK);
    CHECK(st.generated_tokens == 8);
    PASS("free of pull-mode streams without callbacks; the engine goes on");
}

typedef struct {
    volatile int finishes;
    pthread_t finished_on;
} on_thread;

static void note_thread(void *ud, minerva_status st, minerva_finish_reason r) {
    (void)st;
    on_thread *t = (on_thread *)ud;
    CHECK(r == MINERVA_FINISH_CANCELLED);
    t->finished_on = pthread_self();
    __atomic_add_fetch(&t->finishes, 1, __ATOMIC_SEQ_CST);
}

static minerva_control never(void *ud, const char *text, size_t len) {
    (void)ud;
    (void)text;
    (void)len;
    CHECK(!"a freed queued stream ran");
    return MINERVA_STOP;
}

/* minerva_stream_free of a stream still queued (max_streams 1, another one running): it never
   runs, its finish callback runs once, on the freeing thread, before free returns. */
static void test_free_queued(minerva_engine *e) {
    counts running = {0, 0, 0, 99};
    minerva_generate_params g = greedy(0);
    g.ignore_eos = true;
    g.on_finish = count_finish;
    minerva_stream *a = NULL;
    CHECK_STATUS(minerva_stream_new(e, "Once upon a time", &g, count_token, &running, &a),
                 MINERVA_OK);
    wait_for(&running.tokens, 2);
    for (int i = 0; i < 10; i++) {
        on_thread t = {0, 0};
        minerva_generate_params q = greedy(16);
        q.on_finish = note_thread;
        minerva_stream *b = NULL;
        CHECK_STATUS(minerva_stream_new(e, "Far away", &q, never, &t, &b), MINERVA_OK);
        minerva_stream_free(b);
        CHECK(t.finishes == 1 && pthread_equal(t.finished_on, pthread_self()));
    }
    CHECK(running.finishes == 0); /* the running stream went on */
    minerva_stream_free(a);
    CHECK(running.finishes == 1 && running.status == MINERVA_ERR_CANCELLED);
    PASS("free of a queued stream: it never runs, its finish callback once, before free returns");
}

int main(void) {
    minerva_engine *e = open_engine(1, 256);
    test_release_running_and_queued(e);
    test_free_without_callbacks(e);
    test_free_queued(e);
    minerva_engine_free(e);
    printf("%d passed, 0 failed\n", tests_passed);
    return 0;
}
