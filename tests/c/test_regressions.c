/* Regression tests for the defects an adversarial test of 0.1 found (issue 7): each ran into a
   deadlock, a use-after-free, an abort or a stall before it was fixed. The harness runs this
   program under ASan/UBSan with a time limit, so a deadlock or a stall fails it too. */
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#include "check.h"
#include <sched.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* 1. A log callback frees an idle engine that is not its own. The engine's shutdown logs (a
      DEBUG line from llama_free) while the callback waits for it: that must not deadlock. */
static minerva_engine *victim = NULL;
static int victim_freed = 0;
static int lines_after_free = 0;

static void free_victim_on_log(void *ud, minerva_log_level level, const char *msg) {
    (void)ud;
    (void)level;
    (void)msg;
    if (victim_freed) lines_after_free++;
    if (victim) {
        minerva_engine *v = victim;
        victim = NULL;
        minerva_engine_free(v); /* waits for v's thread, which logs */
        victim_freed = 1;
    }
}

static void test_engine_free_from_log_callback(void) {
    minerva_engine *idle = open_engine(1, 64);
    victim = idle;
    minerva_set_log_callback(free_victim_on_log, NULL, MINERVA_LOG_DEBUG);
    /* Any line now triggers the free: creating another engine logs plenty. */
    minerva_engine *other = open_engine(1, 64);
    minerva_set_log_callback(NULL, NULL, MINERVA_LOG_WARN);
    CHECK(victim_freed == 1 && victim == NULL);
    CHECK(lines_after_free > 0); /* delivery went on after the callback that waited */
    minerva_engine_free(other);
    PASS("minerva_engine_free from a log callback, of an engine that logs, does not deadlock");
}

/* 2. After minerva_set_log_callback returns, the old callback is never entered again, so its
      user_data may be freed at once (ASan reports any use of it). Lines come from engines being
      created on another thread all the while. */
typedef struct {
    int lines;
    int magic;
} log_counter;

static void counting_log(void *ud, minerva_log_level level, const char *msg) {
    (void)level;
    (void)msg;
    log_counter *c = (log_counter *)ud;
    CHECK(c->magic == 0x10C);
    c->lines++;
}

static volatile int churn_stop = 0;

static void *churn_engines(void *arg) {
    (void)arg;
    while (!churn_stop) {
        minerva_engine *e = open_engine(1, 64);
        minerva_engine_free(e);
    }
    return NULL;
}

static void test_replaced_log_callback_never_runs(void) {
    pthread_t t;
    CHECK(pthread_create(&t, NULL, churn_engines, NULL) == 0);
    int swaps = 0, total = 0;
    double until = now_ms() + 4000;
    while (now_ms() < until || total < 100) {
        log_counter *c = (log_counter *)calloc(1, sizeof *c);
        CHECK(c != NULL);
        c->magic = 0x10C;
        minerva_set_log_callback(counting_log, c, MINERVA_LOG_DEBUG);
        usleep(1000 * (swaps % 7));
        minerva_set_log_callback(NULL, NULL, MINERVA_LOG_WARN);
        total += c->lines;
        c->magic = 0; /* a late call of the old callback now fails its CHECK ... */
        free(c);      /* ... or is a heap-use-after-free for ASan */
        swaps++;
        if (now_ms() > until + 30000) break;
    }
    churn_stop = 1;
    CHECK(pthread_join(t, NULL) == 0);
    printf("# %d callback swaps under load, %d lines delivered\n", swaps, total);
    CHECK(total > 0);
    PASS("a replaced log callback is never entered again");
}

/* 3. repeat_last_n drives an allocation: UINT32_MAX is refused, the top of its range runs. */
static void test_repeat_last_n_range(minerva_engine *e) {
    minerva_generate_params g = greedy(4);
    g.repeat_penalty = 1.1f;
    g.repeat_last_n = UINT32_MAX;
    minerva_stream *s = (minerva_stream *)0x1;
    CHECK_STATUS(minerva_stream_new(e, "Hello", &g, NULL, NULL, &s), MINERVA_ERR_INVALID_ARGUMENT);
    CHECK(s == (minerva_stream *)0x1);
    CHECK(strstr(minerva_last_error(), "repeat_last_n") != NULL);
    g.repeat_last_n = 1u << 20; /* the largest accepted: the window is the stream's context */
    CHECK_STATUS(minerva_generate(e, "Hello", &g, NULL, NULL, NULL), MINERVA_OK);
    g.temperature = 0.7f;
    CHECK_STATUS(minerva_generate(e, "Hello", &g, NULL, NULL, NULL), MINERVA_OK);
    PASS("repeat_last_n: out of range refused, the largest value runs");
}

/* 4. threads above the machine's CPUs are capped (with a warning line). */
typedef struct {
    int warned;
} thread_warn;

static void watch_threads_warning(void *ud, minerva_log_level level, const char *msg) {
    if (level == MINERVA_LOG_WARN && strstr(msg, "threads 64")) ((thread_warn *)ud)->warned++;
}

static void test_threads_capped(void) {
    thread_warn w = {0};
    minerva_set_log_callback(watch_threads_warning, &w, MINERVA_LOG_WARN);
    minerva_engine_params p;
    minerva_engine_params_init(&p, sizeof p);
    p.context_tokens = 64;
    p.max_streams = 1;
    p.threads = 64;
    minerva_engine *e = NULL;
    CHECK_STATUS(minerva_engine_new(model_path(), &p, &e), MINERVA_OK);
    minerva_set_log_callback(NULL, NULL, MINERVA_LOG_WARN);
    minerva_engine_info info;
    info.struct_size = sizeof info;
    CHECK_STATUS(minerva_engine_get_info(e, &info), MINERVA_OK);
    cpu_set_t set;
    CHECK(sched_getaffinity(0, sizeof set, &set) == 0);
    uint32_t cpus = (uint32_t)CPU_COUNT(&set);
    printf("# threads 64 asked, %u used on %u CPUs\n", info.threads, cpus);
    CHECK(info.threads >= 1 && info.threads <= cpus);
    CHECK(w.warned == 1 || cpus >= 64);
    minerva_generate_params g = greedy(4);
    CHECK_STATUS(minerva_generate(e, "The sky is", &g, NULL, NULL, NULL), MINERVA_OK);
    minerva_engine_free(e);
    PASS("threads above the CPU count are capped");
}

/* 5. A prompt that cannot fit is refused without tokenizing megabytes of special tokens. */
static char *repeat(const char *unit, size_t bytes) {
    size_t n = strlen(unit);
    char *s = (char *)malloc(bytes + 1);
    CHECK(s != NULL);
    size_t i = 0;
    for (; i + n <= bytes; i += n) memcpy(s + i, unit, n);
    s[i] = 0;
    return s;
}

typedef struct {
    minerva_engine *engine;
    const char *prompt;
    minerva_status got;
} nested_start;

static minerva_control start_inside(void *ud, const char *text, size_t len) {
    (void)text;
    (void)len;
    nested_start *n = (nested_start *)ud;
    minerva_stream *s = NULL;
    n->got = minerva_stream_new(n->engine, n->prompt, NULL, NULL, NULL, &s);
    if (s) minerva_stream_free(s);
    return MINERVA_STOP;
}

static void test_huge_prompts_refused_at_once(minerva_engine *e) {
    const char *units[] = {"<start_of_turn>", "<end_of_turn>\n", "hello world "};
    for (int i = 0; i < 3; i++) {
        for (size_t mib = 1; mib <= 8; mib *= 8) {
            char *p = repeat(units[i], mib << 20);
            minerva_stream *s = NULL;
            double t0 = now_ms();
            CHECK_STATUS(minerva_stream_new(e, p, NULL, NULL, NULL, &s), MINERVA_ERR_CONTEXT_FULL);
            printf("# %zu MiB of '%s' refused in %.1f ms: %s\n", mib, units[i], now_ms() - t0,
                   minerva_last_error());
            free(p);
        }
    }
    /* The same from inside a token callback, on the engine thread. */
    nested_start n = {e, NULL, MINERVA_OK};
    char *p = repeat("<start_of_turn>", 1 << 20);
    n.prompt = p;
    minerva_generate_params g = greedy(2);
    CHECK_STATUS(minerva_generate(e, "Once", &g, start_inside, &n, NULL), MINERVA_OK);
    CHECK(n.got == MINERVA_ERR_CONTEXT_FULL);
    free(p);
    PASS("prompts far beyond the context are refused at once");
}

/* 6. Seeds that differ only in their high bits, or that folded to the same 32 bits, give
      different text; one seed gives the same text twice. */
static void sample_text(minerva_engine *e, uint64_t seed, text_buf *b) {
    minerva_generate_params g;
    minerva_generate_params_init(&g, sizeof g);
    g.max_tokens = 24;
    g.temperature = 1.5f;
    g.top_k = 0;
    g.top_p = 1.0f;
    g.min_p = 0.0f;
    g.seed = seed;
    g.ignore_eos = true;
    g.cache_prompt = false;
    CHECK_STATUS(minerva_generate(e, "My favourite word is", &g, tb_on_token, b, NULL), MINERVA_OK);
}

static void test_seeds_use_all_64_bits(minerva_engine *e) {
    const uint64_t pairs[][2] = {
        {1, 1ull << 32}, {0x5EED, 0xFFFFFFFFull}, {0, 0x100000001ull}, {42, 42ull | (1ull << 63)}};
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        text_buf a = {0}, b = {0}, a2 = {0};
        sample_text(e, pairs[i][0], &a);
        sample_text(e, pairs[i][1], &b);
        sample_text(e, pairs[i][0], &a2);
        CHECK(a.len > 0 && b.len > 0);
        CHECK(strcmp(a.data, a2.data) == 0);
        if (strcmp(a.data, b.data) == 0) {
            fprintf(stderr, "seeds %#llx and %#llx gave the same text: %s\n",
                    (unsigned long long)pairs[i][0], (unsigned long long)pairs[i][1], a.data);
            exit(1);
        }
        tb_free(&a);
        tb_free(&b);
        tb_free(&a2);
    }
    PASS("distinct 64-bit seeds give distinct text");
}

/* Found while checking for the same class of fault: two engines whose token callbacks free each
   other at the same moment. Each free used to wait for the other engine's thread, which was
   waiting in its own free: a deadlock. A free from inside a callback now does not wait. */
typedef struct {
    minerva_engine *other;
    volatile int *mine, *theirs;
    int freed;
} cross_free;

static minerva_control free_the_other(void *ud, const char *text, size_t len) {
    (void)text;
    (void)len;
    cross_free *c = (cross_free *)ud;
    if (c->freed) return MINERVA_CONTINUE;
    __atomic_store_n(c->mine, 1, __ATOMIC_SEQ_CST);
    double until = now_ms() + 5000; /* both callbacks running at once, as far as possible */
    while (!__atomic_load_n(c->theirs, __ATOMIC_SEQ_CST) && now_ms() < until) usleep(100);
    minerva_engine_free(c->other);
    c->freed = 1;
    return MINERVA_CONTINUE;
}

static void test_engines_free_each_other_from_callbacks(void) {
    minerva_engine *a = open_engine(1, 64), *b = open_engine(1, 64);
    volatile int in_a = 0, in_b = 0;
    cross_free ca = {b, &in_a, &in_b, 0}, cb = {a, &in_b, &in_a, 0};
    minerva_generate_params g = greedy(0);
    g.ignore_eos = true;
    minerva_stream *sa = NULL, *sb = NULL;
    CHECK_STATUS(minerva_stream_new(a, "One", &g, free_the_other, &ca, &sa), MINERVA_OK);
    CHECK_STATUS(minerva_stream_new(b, "Two", &g, free_the_other, &cb, &sb), MINERVA_OK);
    CHECK_STATUS(minerva_stream_wait(sa, -1), MINERVA_ERR_CANCELLED);
    CHECK_STATUS(minerva_stream_wait(sb, -1), MINERVA_ERR_CANCELLED);
    CHECK(ca.freed && cb.freed);
    minerva_stream_free(sa);
    minerva_stream_free(sb);
    PASS("two engines whose callbacks free each other do not deadlock");
}

/* Found in review: a log callback runs on an engine's thread when that thread logs (here: its
   teardown, llama_free's DEBUG lines). A wait there could wait for the thread itself, so it is
   refused as in token callbacks. */
static pthread_t main_thread;
static minerva_stream *probe = NULL;
static int on_engine_thread = 0, refused_there = 0;

static void probe_on_log(void *ud, minerva_log_level level, const char *msg) {
    (void)ud;
    (void)level;
    (void)msg;
    if (pthread_equal(pthread_self(), main_thread)) return;
    on_engine_thread++;
    if (minerva_stream_wait(probe, 50) == MINERVA_ERR_INVALID_ARGUMENT) refused_there++;
}

static void test_waits_refused_in_log_callbacks_on_engine_threads(void) {
    main_thread = pthread_self();
    minerva_engine *e = open_engine(1, 64);
    minerva_generate_params g = greedy(2);
    CHECK_STATUS(minerva_stream_new(e, "Hi", &g, NULL, NULL, &probe), MINERVA_OK);
    minerva_set_log_callback(probe_on_log, NULL, MINERVA_LOG_DEBUG);
    minerva_engine_free(e); /* its thread logs while it tears down */
    minerva_set_log_callback(NULL, NULL, MINERVA_LOG_WARN);
    printf("# %d log lines delivered on the engine thread, waits refused: %d\n", on_engine_thread,
           refused_there);
    CHECK(on_engine_thread > 0 && refused_there == on_engine_thread);
    minerva_stream_free(probe);
    PASS("a log callback on an engine thread cannot wait for it");
}

int main(void) {
    test_waits_refused_in_log_callbacks_on_engine_threads();
    test_engines_free_each_other_from_callbacks();
    test_engine_free_from_log_callback();
    test_replaced_log_callback_never_runs();
    minerva_engine *e = open_engine(2, 256);
    test_repeat_last_n_range(e);
    test_huge_prompts_refused_at_once(e);
    test_seeds_use_all_64_bits(e);
    minerva_engine_free(e);
    test_threads_capped();
    printf("%d passed, 0 failed\n", tests_passed);
    return 0;
}
