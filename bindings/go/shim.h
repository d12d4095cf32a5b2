// The C side of the Go binding: helpers that read minerva_last_error() in the same C call that
// failed (a goroutine may move to another thread between two cgo calls, and the message is per
// thread), and the C callbacks that forward to the exported Go functions of callbacks.go. A Go
// value never reaches C: user_data carries a runtime/cgo.Handle, an integer.
#ifndef MINERVA_GO_SHIM_H
#define MINERVA_GO_SHIM_H

#include <stdint.h>
#include <stdlib.h>
#include <minerva.h>

// Each returns the call's status; on failure *err gets a malloc'd copy of its message (free it).
minerva_status mv_engine_new(const char *path, const minerva_engine_params *params,
                             uintptr_t progress, minerva_engine **out, char **err);
minerva_status mv_engine_get_info(const minerva_engine *engine, minerva_engine_info *out, char **err);
// handle 0: pull mode (no callbacks); otherwise callback mode with the binding's token and
// finish callbacks, handle as user_data.
minerva_status mv_stream_new(minerva_engine *engine, const char *prompt,
                             const minerva_generate_params *params, uintptr_t handle,
                             minerva_stream **out, char **err);
minerva_status mv_chat_stream_new(minerva_engine *engine, const minerva_chat_message *messages,
                                  size_t count, const minerva_chat_params *chat,
                                  const minerva_generate_params *params, uintptr_t handle,
                                  minerva_stream **out, char **err);
minerva_status mv_stream_read(minerva_stream *stream, char *buf, size_t cap, size_t *out_len,
                              bool *finished, int32_t timeout_ms, char **err);
// No message for MINERVA_ERR_TIMEOUT (the binding polls in slices).
minerva_status mv_stream_wait(minerva_stream *stream, int32_t timeout_ms, char **err);
minerva_status mv_stream_get_stats(const minerva_stream *stream, minerva_stream_stats *out, char **err);
minerva_status mv_stream_tool_calls(const minerva_stream *stream, char *buf, size_t cap,
                                    size_t *out_len, char **err);
minerva_status mv_stream_reasoning(const minerva_stream *stream, char *buf, size_t cap,
                                   size_t *out_len, char **err);
minerva_status mv_tokenize(minerva_engine *engine, const char *text, bool add_special,
                           bool parse_special, minerva_token *tokens, size_t cap,
                           size_t *out_count, char **err);
minerva_status mv_detokenize(minerva_engine *engine, const minerva_token *tokens, size_t count,
                             bool render_special, char *buf, size_t cap, size_t *out_len,
                             char **err);
minerva_status mv_chat_format(minerva_engine *engine, const minerva_chat_message *messages,
                              size_t count, const minerva_chat_params *chat, char *buf,
                              size_t cap, size_t *out_len, char **err);
minerva_status mv_embed(minerva_engine *engine, const char *const *texts, size_t count,
                        const minerva_embed_params *params, float *out, size_t cap,
                        size_t *out_len, char **err);
minerva_status mv_cache_prefill(minerva_engine *engine, const char *prompt, bool pin, char **err);
minerva_status mv_cache_save(minerva_engine *engine, void *buf, size_t cap, size_t *out_len,
                             char **err);
minerva_status mv_cache_load(minerva_engine *engine, const void *buf, size_t len, char **err);
minerva_status mv_cache_save_file(minerva_engine *engine, const char *path, char **err);
minerva_status mv_cache_load_file(minerva_engine *engine, const char *path, char **err);
// handle 0: back to minerva's default (stderr).
void mv_set_log_callback(uintptr_t handle, minerva_log_level min_level);
// The handle of the binding callback running on this thread (0: none), so that Go code can tell
// that it runs inside a callback, and whose.
uintptr_t mv_current_handle(void);

#endif
