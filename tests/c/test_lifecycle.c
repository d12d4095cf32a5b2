/* Cancellation, teardown and calls made inside callbacks: a stream cancelled or freed at any
   moment, an engine freed while its streams run, callbacks that call back into minerva. */
#include "check.h"
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static char *long_prompt(int words) {
    char *p = (char *)malloc((size_t)words * 8 + 1);
    CHECK(p != NULL);
    p[0] = 0;
    static const char *w[] = {"apple ", "river ", "stone ", "cloud ", "green ", "house "};
    for (int i = 0; i < words; i++) strcat(p, w[i % 6]);
    return p;
}

static void test_cancel_during_prompt(void) {
    minerva_engine_params p;
    minerva_engine_params_init(&p, sizeof p);
    p.max_streams = 1;
    p.context_tokens = 2048;
    p.batch_tokens = 64;
    minerva_engine *e = NULL;
    CHECK_STATUS(minerva_engine_new(model_path(), &p, &e), MINERVA_OK);
    char *prompt = long_prompt(1500);
    text_buf b = {0};
    minerva_generate_params g = greedy(16);
    g.on_finish = tb_on_finish;
    minerva_stream *s = NULL;
    CHECK_STATUS(minerva_stream_new(e, prompt, &g, tb_on_token, &b, &s), MINERVA_OK);
    usleep(100 * 1000);
    double t0 = now_ms();
    minerva_stream_cancel(s);
    CHECK_STATUS(minerva_stream_wait(s, -1), MINERVA_ERR_CANCELLED);
    double latency = now_ms() - t0;
    minerva_stream_stats st = {0};
    CHECK_STATUS(minerva_stream_get_stats(s, &st), MINERVA_OK);
    CHECK(st.finish_reason == MINERVA_FINISH_CANCELLED);
    CHECK(st.generated_tokens == 0);
    CHECK(b.calls == 0 && b.finish_calls == 1 && b.finish_status == MINERVA_ERR_CANCELLED);
    printf("# cancel during a %u-token prompt took effect after %.1f ms\n", st.prompt_tokens, latency);
    minerva_stream_cancel(s); /* again: harmless */
    minerva_stream_free(s);
    /* The engine serves the next stream. */
    minerva_generate_params g2 = greedy(4);
    g2.ignore_eos = true;
    CHECK_STATUS(minerva_generate(e, "Hi", &g2, NULL, NULL, NULL), MINERVA_OK);
    minerva_engine_free(e);
    free(prompt);
    tb_free(&b);
    PASS("cancel during a long prompt");
}

static void test_cancel_during_generation(minerva_engine *e) {
    text_buf b = {0};
    minerva_generate_params g = greedy(0);
    g.ignore_eos = true;
    g.on_finish = tb_on_finish;
    minerva_stream *s = NULL;
    CHECK_STATUS(minerva_stream_new(e, "Count: 1, 2, 3,", &g, tb_on_token, &b, &s), MINERVA_OK);
    minerva_stream_stats st = {0};
    do {
        usleep(5000);
        CHECK_STATUS(minerva_stream_get_stats(s, &st), MINERVA_OK);
        CHECK(st.finish_reason == MINERVA_FINISH_RUNNING);
    } while (st.generated_tokens < 5);
    minerva_stream_cancel(s);
    CHECK_STATUS(minerva_stream_wait(s, -1), MINERVA_ERR_CANCELLED);
    CHECK_STATUS(minerva_stream_wait(s, 0), MINERVA_ERR_CANCELLED);
    CHECK(b.finish_calls == 1 && b.finish_reason == MINERVA_FINISH_CANCELLED);
    CHECK(b.token_after_finish == 0);
    CHECK(b.len > 0);
    minerva_stream_free(s);
    tb_free(&b);

    /* Pull mode: a cancelled stream still reports finished, with its text readable. */
    g.on_finish = NULL;
    CHECK_STATUS(minerva_stream_new(e, "Count: 1, 2, 3,", &g, NULL, NULL, &s), MINERVA_OK);
    char buf[32];
    size_t n = 0;
    bool fin = false;
    CHECK_STATUS(minerva_stream_read(s, buf, sizeof buf, &n, &fin, 10000), MINERVA_OK);
    CHECK(n > 0 && !fin);
    minerva_stream_cancel(s);
    for (int i = 0; i < 1000 && !fin; i++)
        CHECK_STATUS(minerva_stream_read(s, buf, sizeof buf, &n, &fin, 1000), MINERVA_OK);
    CHECK(fin);
    CHECK_STATUS(minerva_stream_wait(s, 0), MINERVA_ERR_CANCELLED);
    minerva_stream_free(s);

    /* Timeouts: a running stream makes wait and read time out. */
    CHECK_STATUS(minerva_stream_new(e, "Count: 1, 2, 3,", &g, NULL, NULL, &s), MINERVA_OK);
    CHECK_STATUS(minerva_stream_wait(s, 0), MINERVA_ERR_TIMEOUT);
    CHECK_STATUS(minerva_stream_wait(s, 20), MINERVA_ERR_TIMEOUT);
    minerva_stream_free(s); /* frees a running stream: cancels and waits */
    PASS("cancel during generation (callback and pull), wait timeouts, free while running");
}

/* A stream that frees itself from inside its own token callback. */
typedef struct {
    _Atomic(minerva_stream *) self;
    atomic_int tokens, finished, after_free;
    atomic_int finish_status;
    int freed;
} self_free;

static minerva_control self_free_token(void *ud, const char *text, size_t len) {
    (void)text;
    (void)len;
    self_free *sf = (self_free *)ud;
    if (sf->freed) atomic_fetch_add(&sf->after_free, 1);
    int n = atomic_fetch_add(&sf->tokens, 1) + 1;
    minerva_stream *s = atomic_load(&sf->self);
    if (n >= 3 && s && !sf->freed) {
        sf->freed = 1;
        minerva_stream_free(s);
    }
    return MINERVA_CONTINUE;
}

static void self_free_finish(void *ud, minerva_status st, minerva_finish_reason r) {
    (void)r;
    self_free *sf = (self_free *)ud;
    atomic_store(&sf->finish_status, (int)st);
    atomic_store(&sf->finished, 1);
}

static void test_free_inside_own_callback(minerva_engine *e) {
    self_free sf;
    memset(&sf, 0, sizeof sf);
    minerva_generate_params g = greedy(0);
    g.ignore_eos = true;
    g.on_finish = self_free_finish;
    minerva_stream *s = NULL;
    CHECK_STATUS(minerva_stream_new(e, "Once upon a time", &g, self_free_token, &sf, &s), MINERVA_OK);
    atomic_store(&sf.self, s);
    for (int i = 0; i < 2000 && !atomic_load(&sf.finished); i++) usleep(5000);
    CHECK(atomic_load(&sf.finished));
    CHECK(sf.freed);
    CHECK(atomic_load(&sf.after_free) == 0);
    CHECK(atomic_load(&sf.finish_status) == MINERVA_ERR_CANCELLED);
    PASS("a stream freed from inside its own callback");
}

/* Calls made from inside a token callback. */
typedef struct {
    minerva_engine *engine;
    _Atomic(minerva_stream *) self;
    int done;
    minerva_status generate, wait_timeout, wait_poll, read_timeout, read_poll, stats, new_stream;
    minerva_stream *child;
} inside;

static minerva_control inside_token(void *ud, const char *text, size_t len) {
    (void)text;
    (void)len;
    inside *in = (inside *)ud;
    minerva_stream *s = atomic_load(&in->self);
    if (in->done || !s) return MINERVA_CONTINUE;
    in->done = 1;
    in->generate = minerva_generate(in->engine, "x", NULL, NULL, NULL, NULL);
    in->wait_timeout = minerva_stream_wait(s, 100);
    in->wait_poll = minerva_stream_wait(s, 0);
    char buf[8];
    size_t n;
    bool fin;
    in->read_timeout = minerva_stream_read(s, buf, sizeof buf, &n, &fin, 10);
    in->read_poll = minerva_stream_read(s, buf, sizeof buf, &n, &fin, 0);
    minerva_stream_stats st = {0};
    in->stats = minerva_stream_get_stats(s, &st);
    minerva_generate_params g = greedy(3);
    g.ignore_eos = true;
    in->new_stream = minerva_stream_new(in->engine, "Child", &g, NULL, NULL, &in->child);
    minerva_engine_free(in->engine); /* its own engine: ignored */
    return MINERVA_CONTINUE;
}

static void test_calls_inside_callbacks(minerva_engine *e) {
    inside in;
    memset(&in, 0, sizeof in);
    in.engine = e;
    minerva_generate_params g = greedy(0);
    g.ignore_eos = true;
    minerva_stream *s = NULL;
    CHECK_STATUS(minerva_stream_new(e, "Hello there", &g, inside_token, &in, &s), MINERVA_OK);
    atomic_store(&in.self, s);
    for (int i = 0; i < 2000 && !in.done; i++) usleep(5000);
    minerva_stream_cancel(s);
    CHECK_STATUS(minerva_stream_wait(s, -1), MINERVA_ERR_CANCELLED);
    minerva_stream_free(s);
    CHECK(in.done);
    CHECK(in.generate == MINERVA_ERR_INVALID_ARGUMENT);
    CHECK(in.wait_timeout == MINERVA_ERR_INVALID_ARGUMENT);
    CHECK(in.wait_poll == MINERVA_ERR_TIMEOUT);
    CHECK(in.read_timeout == MINERVA_ERR_INVALID_ARGUMENT);
    CHECK(in.read_poll == MINERVA_OK);
    CHECK(in.stats == MINERVA_OK);
    CHECK(in.new_stream == MINERVA_OK && in.child != NULL);
    CHECK_STATUS(minerva_stream_wait(in.child, -1), MINERVA_OK);
    minerva_stream_free(in.child);
    /* The engine survived the minerva_engine_free from its own callback. */
    minerva_generate_params g2 = greedy(2);
    CHECK_STATUS(minerva_generate(e, "Hi", &g2, NULL, NULL, NULL), MINERVA_OK);
    PASS("calls inside callbacks: blocking ones refused, the rest work");
}

/* A finish callback that starts another stream while its engine is being freed: the start fails
   with MINERVA_ERR_CANCELLED and no callback of the refused stream ever runs. */
typedef struct {
    minerva_engine *engine;
    minerva_status chained;
    int chained_finishes;
    int finishes;
} chain;

static void chained_finish(void *ud, minerva_status st, minerva_finish_reason r) {
    (void)st;
    (void)r;
    ((chain *)ud)->chained_finishes++;
}

static void chain_finish(void *ud, minerva_status st, minerva_finish_reason r) {
    (void)st;
    (void)r;
    chain *c = (chain *)ud;
    c->finishes++;
    minerva_generate_params g = greedy(2);
    g.on_finish = chained_finish;
    minerva_stream *s = NULL;
    c->chained = minerva_stream_new(c->engine, "again", &g, NULL, c, &s);
    if (s) minerva_stream_free(s);
}

static void test_engine_freed_under_running_streams(void) {
    minerva_engine *e = open_engine(2, 512);
    minerva_generate_params g = greedy(0);
    g.ignore_eos = true;
    g.on_finish = tb_on_finish;
    text_buf b1 = {0}, b3 = {0};
    minerva_stream *s1 = NULL, *s2 = NULL, *s3 = NULL;
    CHECK_STATUS(minerva_stream_new(e, "Once upon a time", &g, tb_on_token, &b1, &s1), MINERVA_OK);
    minerva_generate_params gp = greedy(0);
    gp.ignore_eos = true;
    CHECK_STATUS(minerva_stream_new(e, "In the beginning", &gp, NULL, NULL, &s2), MINERVA_OK);
    /* A third stream waits in the queue (max_streams is 2). */
    CHECK_STATUS(minerva_stream_new(e, "Far away", &g, tb_on_token, &b3, &s3), MINERVA_OK);
    chain ch = {e, 0, 0, 0};
    minerva_generate_params gc = greedy(0);
    gc.ignore_eos = true;
    gc.on_finish = chain_finish;
    minerva_stream *s4 = NULL;
    CHECK_STATUS(minerva_stream_new(e, "Chained", &gc, NULL, &ch, &s4), MINERVA_OK);
    minerva_stream_stats st = {0};
    do {
        usleep(5000);
        CHECK_STATUS(minerva_stream_get_stats(s1, &st), MINERVA_OK);
    } while (st.generated_tokens < 3);
    minerva_engine_free(e);
    CHECK(ch.finishes == 1);
    CHECK(ch.chained == MINERVA_ERR_CANCELLED);
    CHECK(ch.chained_finishes == 0);
    minerva_stream_free(s4);
    /* Every callback has run by now: on_finish exactly once each. */
    CHECK(b1.finish_calls == 1 && b1.finish_status == MINERVA_ERR_CANCELLED);
    CHECK(b3.finish_calls == 1 && b3.finish_status == MINERVA_ERR_CANCELLED);
    CHECK(b3.calls == 0);
    CHECK_STATUS(minerva_stream_wait(s1, 0), MINERVA_ERR_CANCELLED);
    CHECK_STATUS(minerva_stream_wait(s2, -1), MINERVA_ERR_CANCELLED);
    CHECK_STATUS(minerva_stream_wait(s3, 100), MINERVA_ERR_CANCELLED);
    /* The pull stream's text is still readable, then it reports finished. */
    text_buf pulled = {0};
    pull_all(s2, &pulled);
    CHECK(pulled.len > 0);
    CHECK_STATUS(minerva_stream_get_stats(s2, &st), MINERVA_OK);
    CHECK(st.finish_reason == MINERVA_FINISH_CANCELLED);
    CHECK_STATUS(minerva_stream_get_stats(s3, &st), MINERVA_OK);
    CHECK(st.finish_reason == MINERVA_FINISH_CANCELLED && st.generated_tokens == 0);
    minerva_stream_cancel(s1);
    minerva_stream_free(s1);
    minerva_stream_free(s2);
    minerva_stream_free(s3);
    tb_free(&b1);
    tb_free(&b3);
    tb_free(&pulled);
    PASS("engine freed under running and queued streams; handles stay readable");
}

typedef struct {
    int calls;
    float last;
    int abort_at;
} progress_state;

static minerva_control on_progress(void *ud, float p) {
    progress_state *ps = (progress_state *)ud;
    ps->calls++;
    CHECK(p >= ps->last - 1e-6f && p <= 1.0f + 1e-6f);
    ps->last = p;
    return (ps->abort_at && ps->calls >= ps->abort_at) ? MINERVA_STOP : MINERVA_CONTINUE;
}

static void test_progress(void) {
    minerva_engine_params p;
    minerva_engine_params_init(&p, sizeof p);
    p.context_tokens = 128;
    p.max_streams = 1;
    progress_state ps = {0, 0, 1};
    p.progress = on_progress;
    p.progress_user_data = &ps;
    minerva_engine *e = NULL;
    CHECK_STATUS(minerva_engine_new(model_path(), &p, &e), MINERVA_ERR_CANCELLED);
    CHECK(e == NULL && ps.calls == 1);
    progress_state all = {0, 0, 0};
    p.progress_user_data = &all;
    CHECK_STATUS(minerva_engine_new(model_path(), &p, &e), MINERVA_OK);
    CHECK(all.calls >= 2 && all.last > 0.99f);
    minerva_engine_free(e);
    PASS("load progress callback; MINERVA_STOP aborts the load");
}

typedef struct {
    int lines, info, bad;
    pthread_mutex_t mu;
} log_state;

static void on_log(void *ud, minerva_log_level level, const char *msg) {
    log_state *ls = (log_state *)ud;
    pthread_mutex_lock(&ls->mu);
    ls->lines++;
    if (level == MINERVA_LOG_INFO) ls->info++;
    if (level > MINERVA_LOG_ERROR || !msg || strchr(msg, '\n')) ls->bad++;
    pthread_mutex_unlock(&ls->mu);
}

static void test_log_callback(void) {
    log_state ls;
    memset(&ls, 0, sizeof ls);
    pthread_mutex_init(&ls.mu, NULL);
    minerva_set_log_callback(on_log, &ls, MINERVA_LOG_INFO);
    minerva_engine *e = open_engine(1, 128);
    minerva_engine_free(e);
    minerva_set_log_callback(NULL, NULL, MINERVA_LOG_WARN);
    CHECK(ls.lines > 10 && ls.info > 10 && ls.bad == 0);
    int seen = ls.lines;
    /* Restored: nothing more reaches the callback. */
    e = open_engine(1, 128);
    minerva_engine_free(e);
    CHECK(ls.lines == seen);
    /* An out-of-range level is clamped to NONE: silence. */
    minerva_set_log_callback(on_log, &ls, 99);
    e = open_engine(1, 128);
    minerva_engine_free(e);
    CHECK(ls.lines == seen);
    minerva_set_log_callback(NULL, NULL, MINERVA_LOG_WARN);
    printf("# log callback received %d whole lines\n", seen);
    PASS("log callback gets whole lines; NULL restores stderr");
}

int main(void) {
    test_cancel_during_prompt();
    minerva_engine *e = open_engine(2, 512);
    test_cancel_during_generation(e);
    test_free_inside_own_callback(e);
    test_calls_inside_callbacks(e);
    minerva_engine_free(e);
    test_engine_freed_under_running_streams();
    test_progress();
    test_log_callback();
    printf("%d passed, 0 failed\n", tests_passed);
    return 0;
}
