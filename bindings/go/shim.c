// See shim.h. Compiled by cgo with the package (CGO_CFLAGS gives the folder of minerva.h).
#include "shim.h"
#include <string.h>
#include "_cgo_export.h"

static __thread uintptr_t mv_current;

uintptr_t mv_current_handle(void) { return mv_current; }

static char *mv_dup_error(void) {
    const char *m = minerva_last_error();
    size_t n = strlen(m);
    char *c = malloc(n + 1);
    if (c) memcpy(c, m, n + 1);
    return c;
}

#define MV_RETURN(call)                                \
    do {                                               \
        minerva_status st_ = (call);                   \
        if (st_ != MINERVA_OK) *err = mv_dup_error();  \
        return st_;                                    \
    } while (0)

static minerva_control mv_on_token(void *ud, const char *text, size_t len) {
    uintptr_t prev = mv_current;
    mv_current = (uintptr_t)ud;
    minerva_control c = minervaGoToken((uintptr_t)ud, (char *)text, len);
    mv_current = prev;
    return c;
}

static void mv_on_finish(void *ud, minerva_status status, minerva_finish_reason reason) {
    uintptr_t prev = mv_current;
    mv_current = (uintptr_t)ud;
    minervaGoFinish((uintptr_t)ud, status, reason);
    mv_current = prev;
}

static minerva_control mv_on_progress(void *ud, float progress) {
    uintptr_t prev = mv_current;
    mv_current = (uintptr_t)ud;
    minerva_control c = minervaGoProgress((uintptr_t)ud, progress);
    mv_current = prev;
    return c;
}

static void mv_on_log(void *ud, minerva_log_level level, const char *message) {
    uintptr_t prev = mv_current;
    mv_current = (uintptr_t)ud;
    minervaGoLog((uintptr_t)ud, level, (char *)message);
    mv_current = prev;
}

minerva_status mv_engine_new(const char *path, const minerva_engine_params *params,
                             uintptr_t progress, minerva_engine **out, char **err) {
    minerva_engine_params p = *params;
    if (progress) {
        p.progress = mv_on_progress;
        p.progress_user_data = (void *)progress;
    }
    MV_RETURN(minerva_engine_new(path, &p, out));
}

minerva_status mv_engine_get_info(const minerva_engine *engine, minerva_engine_info *out, char **err) {
    MV_RETURN(minerva_engine_get_info(engine, out));
}

minerva_status mv_stream_new(minerva_engine *engine, const char *prompt,
                             const minerva_generate_params *params, uintptr_t handle,
                             minerva_stream **out, char **err) {
    minerva_generate_params p = *params;
    p.on_finish = handle ? mv_on_finish : NULL;
    MV_RETURN(minerva_stream_new(engine, prompt, &p, handle ? mv_on_token : NULL,
                                 (void *)handle, out));
}

minerva_status mv_chat_stream_new(minerva_engine *engine, const minerva_chat_message *messages,
                                  size_t count, const minerva_chat_params *chat,
                                  const minerva_generate_params *params, uintptr_t handle,
                                  minerva_stream **out, char **err) {
    minerva_generate_params p = *params;
    p.on_finish = handle ? mv_on_finish : NULL;
    MV_RETURN(minerva_chat_stream_new(engine, messages, count, chat, &p,
                                      handle ? mv_on_token : NULL, (void *)handle, out));
}

minerva_status mv_stream_read(minerva_stream *stream, char *buf, size_t cap, size_t *out_len,
                              bool *finished, int32_t timeout_ms, char **err) {
    MV_RETURN(minerva_stream_read(stream, buf, cap, out_len, finished, timeout_ms));
}

minerva_status mv_stream_wait(minerva_stream *stream, int32_t timeout_ms, char **err) {
    minerva_status st = minerva_stream_wait(stream, timeout_ms);
    if (st != MINERVA_OK && st != MINERVA_ERR_TIMEOUT) *err = mv_dup_error();
    return st;
}

minerva_status mv_stream_get_stats(const minerva_stream *stream, minerva_stream_stats *out, char **err) {
    MV_RETURN(minerva_stream_get_stats(stream, out));
}

minerva_status mv_stream_tool_calls(const minerva_stream *stream, char *buf, size_t cap,
                                    size_t *out_len, char **err) {
    MV_RETURN(minerva_stream_tool_calls(stream, buf, cap, out_len));
}

minerva_status mv_stream_reasoning(const minerva_stream *stream, char *buf, size_t cap,
                                   size_t *out_len, char **err) {
    MV_RETURN(minerva_stream_reasoning(stream, buf, cap, out_len));
}

minerva_status mv_tokenize(minerva_engine *engine, const char *text, bool add_special,
                           bool parse_special, minerva_token *tokens, size_t cap,
                           size_t *out_count, char **err) {
    MV_RETURN(minerva_tokenize(engine, text, add_special, parse_special, tokens, cap, out_count));
}

minerva_status mv_detokenize(minerva_engine *engine, const minerva_token *tokens, size_t count,
                             bool render_special, char *buf, size_t cap, size_t *out_len,
                             char **err) {
    MV_RETURN(minerva_detokenize(engine, tokens, count, render_special, buf, cap, out_len));
}

minerva_status mv_chat_format(minerva_engine *engine, const minerva_chat_message *messages,
                              size_t count, const minerva_chat_params *chat, char *buf,
                              size_t cap, size_t *out_len, char **err) {
    MV_RETURN(minerva_chat_format(engine, messages, count, chat, buf, cap, out_len));
}

minerva_status mv_embed(minerva_engine *engine, const char *const *texts, size_t count,
                        const minerva_embed_params *params, float *out, size_t cap,
                        size_t *out_len, char **err) {
    MV_RETURN(minerva_embed(engine, texts, count, params, out, cap, out_len));
}

minerva_status mv_cache_prefill(minerva_engine *engine, const char *prompt, bool pin, char **err) {
    MV_RETURN(minerva_cache_prefill(engine, prompt, pin));
}

minerva_status mv_cache_save(minerva_engine *engine, void *buf, size_t cap, size_t *out_len,
                             char **err) {
    MV_RETURN(minerva_cache_save(engine, buf, cap, out_len));
}

minerva_status mv_cache_load(minerva_engine *engine, const void *buf, size_t len, char **err) {
    MV_RETURN(minerva_cache_load(engine, buf, len));
}

minerva_status mv_cache_save_file(minerva_engine *engine, const char *path, char **err) {
    MV_RETURN(minerva_cache_save_file(engine, path));
}

minerva_status mv_cache_load_file(minerva_engine *engine, const char *path, char **err) {
    MV_RETURN(minerva_cache_load_file(engine, path));
}

void mv_set_log_callback(uintptr_t handle, minerva_log_level min_level) {
    minerva_set_log_callback(handle ? mv_on_log : NULL, (void *)handle, min_level);
}
