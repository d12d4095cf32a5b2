/* Game state through the C API: prefill and pin, save into a buffer and a file, load into another
   engine with the frame loop running, the buffer rules, bad input. */
#include "check.h"
#include <math.h>
#include <unistd.h>

static const char *PERSONA =
    "You are Ilse, the ferrywoman of the northern lake.\n"
    "Ilse knows every current, every drowned village under the water, and every traveller who "
    "ever crossed without paying.\n";

static const char *ASK =
    "You are Ilse, the ferrywoman of the northern lake.\n"
    "Ilse knows every current, every drowned village under the water, and every traveller who "
    "ever crossed without paying.\n"
    "Traveller: How much for the crossing?\nIlse:";

/* A greedy line with the prompt cache on; its text and cached prompt tokens. */
static char *line(minerva_engine *e, uint32_t *cached) {
    minerva_generate_params g = greedy(12);
    g.cache_prompt = true;
    minerva_stream *s = NULL;
    CHECK_STATUS(minerva_stream_new(e, ASK, &g, NULL, NULL, &s), MINERVA_OK);
    text_buf b = {0};
    char chunk[64];
    for (;;) {
        size_t n = 0;
        bool finished = false;
        CHECK_STATUS(minerva_stream_read(s, chunk, sizeof chunk, &n, &finished, -1), MINERVA_OK);
        tb_append(&b, chunk, n);
        if (finished) break;
    }
    minerva_stream_stats st;
    st.struct_size = sizeof st;
    CHECK_STATUS(minerva_stream_get_stats(s, &st), MINERVA_OK);
    *cached = st.cached_prompt_tokens;
    minerva_stream_free(s);
    return b.data;
}

static void test_round_trip(void) {
    minerva_engine *a = open_engine(2, 512);
    CHECK_STATUS(minerva_cache_prefill(a, PERSONA, true), MINERVA_OK);
    minerva_engine_info info;
    info.struct_size = sizeof info;
    CHECK_STATUS(minerva_engine_get_info(a, &info), MINERVA_OK);
    CHECK(info.pinned_tokens > 20 && info.pinned_bytes > 0);
    size_t need = 0;
    CHECK_STATUS(minerva_cache_save(a, NULL, 0, &need), MINERVA_ERR_BUFFER_TOO_SMALL);
    CHECK(need > 100);
    size_t cap = need * 2, len = 0;
    unsigned char *buf = (unsigned char *)malloc(cap);
    CHECK(buf != NULL);
    CHECK_STATUS(minerva_cache_save(a, buf, 10, &len), MINERVA_ERR_BUFFER_TOO_SMALL);
    CHECK_STATUS(minerva_cache_save(a, buf, cap, &len), MINERVA_OK);
    CHECK(len == need);
    uint32_t cached = 0;
    char *in_place = line(a, &cached);
    CHECK(cached + 2 >= info.pinned_tokens);

    /* Another engine: loaded with a stream running, the same line from the cache. */
    minerva_engine *b = open_engine(2, 512);
    minerva_generate_params g = greedy(32);
    minerva_stream *running = NULL;
    CHECK_STATUS(minerva_stream_new(b, "Meanwhile:", &g, NULL, NULL, &running), MINERVA_OK);
    CHECK_STATUS(minerva_cache_load(b, buf, len), MINERVA_OK);
    CHECK_STATUS(minerva_stream_wait(running, -1), MINERVA_OK);
    minerva_stream_free(running);
    char *loaded = line(b, &cached);
    CHECK(cached + 2 >= info.pinned_tokens);
    CHECK(strcmp(in_place, loaded) == 0);

    /* Through a file. */
    char path[256];
    snprintf(path, sizeof path, "/tmp/minerva-test-cache-%d.bin", (int)getpid());
    CHECK_STATUS(minerva_cache_save_file(a, path), MINERVA_OK);
    minerva_engine *c = open_engine(1, 512);
    /* One stream of 512: no room to pin beside it. */
    CHECK_STATUS(minerva_cache_load_file(c, path), MINERVA_ERR_CONTEXT_FULL);
    CHECK(strstr(minerva_last_error(), "pinned"));
    CHECK_STATUS(minerva_cache_load_file(b, path), MINERVA_OK);
    remove(path);
    free(in_place);
    free(loaded);

    /* Bad input. */
    CHECK_STATUS(minerva_cache_load(c, buf, len / 2), MINERVA_ERR_INVALID_ARGUMENT);
    buf[len / 2] ^= 1;
    CHECK_STATUS(minerva_cache_load(c, buf, len), MINERVA_ERR_INVALID_ARGUMENT);
    CHECK(strstr(minerva_last_error(), "checksum"));
    CHECK_STATUS(minerva_cache_load(c, NULL, 5), MINERVA_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(minerva_cache_load(c, "junk", 4), MINERVA_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(minerva_cache_load(NULL, buf, len), MINERVA_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(minerva_cache_save(c, NULL, 4, &len), MINERVA_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(minerva_cache_save(c, buf, cap, NULL), MINERVA_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(minerva_cache_load_file(c, "/nonexistent/dir/x.bin"), MINERVA_ERR_IO);
    CHECK_STATUS(minerva_cache_load_file(c, NULL), MINERVA_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(minerva_cache_save_file(c, "/nonexistent/dir/x.bin"), MINERVA_ERR_IO);
    CHECK_STATUS(minerva_cache_prefill(c, NULL, false), MINERVA_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(minerva_cache_prefill(c, "\xff\xfe", false), MINERVA_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(minerva_cache_prefill(c, "", true), MINERVA_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(minerva_cache_prefill(NULL, "x", true), MINERVA_ERR_INVALID_ARGUMENT);
    /* One stream of 512: no room to pin beside it. */
    CHECK_STATUS(minerva_cache_prefill(c, PERSONA, true), MINERVA_ERR_CONTEXT_FULL);
    free(buf);
    minerva_engine_free(a);
    minerva_engine_free(b);
    minerva_engine_free(c);
    PASS("prefill, pin, save, load across engines and through a file; buffer rules; bad input");
}

static minerva_status in_cb = MINERVA_OK;

static minerva_control prefill_in_callback(void *ud, const char *text, size_t len) {
    (void)text;
    (void)len;
    in_cb = minerva_cache_prefill((minerva_engine *)ud, "x", false);
    return MINERVA_STOP;
}

static void test_in_callback(void) {
    minerva_engine *e = open_engine(1, 256);
    minerva_generate_params g = greedy(4);
    CHECK_STATUS(minerva_generate(e, "Hello", &g, prefill_in_callback, e, NULL), MINERVA_OK);
    CHECK(in_cb == MINERVA_ERR_INVALID_ARGUMENT);
    minerva_engine_free(e);
    PASS("a prefill from inside a callback is refused");
}

/* A greedy line of an engine with adapters, with the given scales (NULL: the engine's). */
static char *lora_line(minerva_engine *e, const float *scales) {
    minerva_generate_params g = greedy(16);
    g.lora_scales = scales;
    text_buf b = {0};
    CHECK_STATUS(minerva_generate(e, "The old lighthouse keeper said", &g, tb_on_token, &b, NULL),
                 MINERVA_OK);
    return b.data;
}

static void test_lora(void) {
    const char *dir = getenv("MINERVA_LORA_DIR");
    CHECK(dir != NULL);
    char voice[512], wrong[512];
    snprintf(voice, sizeof voice, "%s/voice.gguf", dir);
    snprintf(wrong, sizeof wrong, "%s/wrong-shape.gguf", dir);
    minerva_engine_params p;
    minerva_engine_params_init(&p, sizeof p);
    CHECK(p.loras == NULL && p.lora_count == 0);
    p.max_streams = 2;
    p.context_tokens = 256;
    minerva_lora l = {voice, 1.0f};
    p.loras = &l;
    p.lora_count = 1;
    minerva_engine *e = NULL;
    CHECK_STATUS(minerva_engine_new(model_path(), &p, &e), MINERVA_OK);
    float off = 0.0f;
    char *with = lora_line(e, NULL);
    char *without = lora_line(e, &off);
    CHECK(strcmp(with, without) != 0);
    minerva_engine_free(e);
    free(with);
    free(without);
    /* Refused: a wrong shape (MODEL, naming the file), NULL entries, a scale that is no number. */
    l.path = wrong;
    CHECK_STATUS(minerva_engine_new(model_path(), &p, &e), MINERVA_ERR_MODEL);
    CHECK(strstr(minerva_last_error(), "wrong-shape.gguf"));
    l.path = NULL;
    CHECK_STATUS(minerva_engine_new(model_path(), &p, &e), MINERVA_ERR_INVALID_ARGUMENT);
    p.loras = NULL;
    CHECK_STATUS(minerva_engine_new(model_path(), &p, &e), MINERVA_ERR_INVALID_ARGUMENT);
    l.path = voice;
    l.scale = INFINITY;
    p.loras = &l;
    CHECK_STATUS(minerva_engine_new(model_path(), &p, &e), MINERVA_ERR_INVALID_ARGUMENT);
    PASS("LoRA: an adapter changes the text, scale 0 per stream turns it off; bad adapters refused");
}

int main(void) {
    test_round_trip();
    test_in_callback();
    test_lora();
    printf("%d passed, 0 failed\n", tests_passed);
    return 0;
}
