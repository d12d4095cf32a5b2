/* minerva_godot.c: a GDNative (NativeScript 1.0) library for Godot 3 that gives GDScript a
 * `MinervaEngine` class: one minerva engine, its streams named by integer ids, and a pull loop
 * that never waits (minerva_stream_read with timeout 0), for calling once a frame from _process.
 *
 *     var engine = preload("res://minerva/minerva_engine.gdns").new()
 *     if engine.open(OS.get_environment("MINERVA_MODEL"), {"threads": 1}) != 0:
 *         push_error(engine.last_error())
 *     var id = engine.start("The guard says:", {"max_tokens": 32, "temperature": 0.0, "stop": ["\n"]})
 *     func _process(_delta):
 *         label.text += engine.read(id)        # whatever text is ready; never waits
 *         if engine.is_finished(id):
 *             engine.free_stream(id)
 *
 * Threads. No minerva thread ever calls into Godot: streams run in pull mode (no token, finish or
 * log callback), so Godot code runs only on the threads GDScript calls this library from. One
 * MinervaEngine keeps a table of its streams without a lock: call it from one thread at a time
 * (the main thread, as the sample does). minerva itself may be called from any thread.
 *
 * Which calls may wait. open() loads the model and blocks (about a second for a small model: call
 * it on a loading screen); close() (and dropping the last reference) cancels the streams and waits
 * for the engine thread to stop. Everything else returns at once: start(), start_chat(), read(),
 * is_finished(), status(), stats(), error(), tool_calls(), reasoning(), cancel() and free_stream()
 * never wait for the model.
 *
 * Lifetimes. Stream ids are never reused: an id that was freed, or never given, is refused with
 * MINERVA_ERR_INVALID_ARGUMENT (and an error printed), never a crash. A MinervaEngine is a
 * Reference: when the last reference goes, its streams and its engine are freed.
 *
 * Errors. Methods that can fail return a minerva_status (0 is OK) or 0 for a stream id, and keep
 * the status and minerva's message for last_status() and last_error(). Wrong argument types are
 * refused the same way, with the message printed as a Godot error.
 */
#include "gdnative_abi.h"

#include <minerva.h>

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXPORT __attribute__((visibility("default")))

static const godot_gdnative_core_api_struct *api;
static const godot_gdnative_ext_nativescript_api_struct *nsapi;

/* ---- small helpers over the core API ---- */

static godot_variant v_nil(void) {
    godot_variant v;
    api->godot_variant_new_nil(&v);
    return v;
}

static godot_variant v_bool(bool b) {
    godot_variant v;
    api->godot_variant_new_bool(&v, b);
    return v;
}

static godot_variant v_int(int64_t i) {
    godot_variant v;
    api->godot_variant_new_int(&v, i);
    return v;
}

static godot_variant v_real(double r) {
    godot_variant v;
    api->godot_variant_new_real(&v, r);
    return v;
}

static godot_variant v_str_len(const char *s, size_t len) {
    godot_variant v;
    if (len > INT32_MAX) len = 0; /* never: reads are capped far below */
    godot_string gs = api->godot_string_chars_to_utf8_with_len(s, (godot_int)len);
    api->godot_variant_new_string(&v, &gs);
    api->godot_string_destroy(&gs);
    return v;
}

static godot_variant v_str(const char *s) { return v_str_len(s, strlen(s)); }

/* A malloc'd NUL-terminated UTF-8 copy of a String variant; NULL if out of memory. */
static char *utf8_of(const godot_variant *v) {
    godot_string gs = api->godot_variant_as_string(v);
    godot_char_string cs = api->godot_string_utf8(&gs);
    const char *data = api->godot_char_string_get_data(&cs);
    godot_int len = api->godot_char_string_length(&cs);
    char *out = malloc((size_t)(len > 0 ? len : 0) + 1);
    if (out) {
        if (len > 0) memcpy(out, data, (size_t)len);
        out[len > 0 ? len : 0] = 0;
    }
    api->godot_char_string_destroy(&cs);
    api->godot_string_destroy(&gs);
    return out;
}

static godot_variant_type type_of(const godot_variant *v) { return api->godot_variant_get_type(v); }

static void dict_put(godot_dictionary *d, const char *key, godot_variant value) {
    godot_variant k = v_str(key);
    api->godot_dictionary_set(d, &k, &value);
    api->godot_variant_destroy(&k);
    api->godot_variant_destroy(&value);
}

static godot_variant dict_to_variant(godot_dictionary *d) {
    godot_variant v;
    api->godot_variant_new_dictionary(&v, d);
    api->godot_dictionary_destroy(d);
    return v;
}

/* ---- the MinervaEngine instance ---- */

typedef struct {
    int64_t id;
    minerva_stream *stream;
    bool finished; /* read() has returned the last of its text */
} slot;

typedef struct {
    minerva_engine *engine;
    slot *slots;
    size_t count, cap;
    int64_t next_id;
    minerva_status last_status;
    char last_error[1024];
} instance;

/* Records a failure for last_status()/last_error(); `print` also shows it as a Godot error
 * (for calls GDScript got wrong: bad argument types, unknown ids). Returns `status`. */
static minerva_status fail(instance *self, minerva_status status, bool print, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(self->last_error, sizeof self->last_error, fmt, ap);
    va_end(ap);
    self->last_status = status;
    if (print) api->godot_print_error(self->last_error, "MinervaEngine", __FILE__, __LINE__);
    return status;
}

/* Records the failure of a minerva call, with minerva's own message. */
static minerva_status fail_minerva(instance *self, minerva_status status, const char *what) {
    /* minerva_last_error() first: it is valid only until the next minerva call on this thread,
     * and C leaves the order in which arguments are evaluated open. */
    const char *why = minerva_last_error();
    char copy[sizeof self->last_error];
    snprintf(copy, sizeof copy, "%s", why);
    return fail(self, status, false, "%s: %s (%s)", what, copy, minerva_status_str(status));
}

static void succeed(instance *self) {
    self->last_status = MINERVA_OK;
    self->last_error[0] = 0;
}

static slot *find(instance *self, int64_t id) {
    for (size_t i = 0; i < self->count; i++)
        if (self->slots[i].id == id) return &self->slots[i];
    return NULL;
}

/* The stream named by args[0], or NULL with the failure recorded and printed. */
static slot *stream_arg(instance *self, const char *method, int nargs, godot_variant **args) {
    if (nargs < 1 || type_of(args[0]) != GODOT_VARIANT_TYPE_INT) {
        fail(self, MINERVA_ERR_INVALID_ARGUMENT, true, "MinervaEngine.%s: expects a stream id (int)", method);
        return NULL;
    }
    int64_t id = api->godot_variant_as_int(args[0]);
    slot *s = find(self, id);
    if (!s)
        fail(self, MINERVA_ERR_INVALID_ARGUMENT, true,
             "MinervaEngine.%s: no stream %" PRId64 " (already freed, or not from this engine)", method, id);
    return s;
}

static void close_engine(instance *self) {
    /* Pull-mode streams without on_finish: minerva_stream_free returns at once. */
    for (size_t i = 0; i < self->count; i++) minerva_stream_free(self->slots[i].stream);
    free(self->slots);
    self->slots = NULL;
    self->count = self->cap = 0;
    minerva_engine_free(self->engine); /* waits for the engine thread to stop */
    self->engine = NULL;
}

static void *ctor(godot_object *obj, void *method_data) {
    (void)obj, (void)method_data;
    instance *self = calloc(1, sizeof *self);
    if (self) self->next_id = 1;
    return self;
}

static void dtor(godot_object *obj, void *method_data, void *user_data) {
    (void)obj, (void)method_data;
    instance *self = user_data;
    if (!self) return;
    close_engine(self);
    free(self);
}

/* ---- parameters from Dictionaries ---- */

typedef enum { K_U32, K_I32, K_F32, K_SEED, K_BOOL, K_STR, K_STRLIST } kind;
typedef struct {
    const char *name;
    kind kind;
    size_t offset;
} field;

#define F(type, name, k) {#name, k, offsetof(type, name)}
static const field ENGINE_FIELDS[] = {
    F(minerva_engine_params, gpu_layers, K_I32),     F(minerva_engine_params, context_tokens, K_U32),
    F(minerva_engine_params, max_streams, K_U32),    F(minerva_engine_params, threads, K_U32),
    F(minerva_engine_params, batch_tokens, K_U32),   F(minerva_engine_params, use_mmap, K_BOOL),
    F(minerva_engine_params, rpc_servers, K_STR),
};
static const field GENERATE_FIELDS[] = {
    F(minerva_generate_params, max_tokens, K_U32),        F(minerva_generate_params, temperature, K_F32),
    F(minerva_generate_params, top_k, K_I32),             F(minerva_generate_params, top_p, K_F32),
    F(minerva_generate_params, min_p, K_F32),             F(minerva_generate_params, repeat_penalty, K_F32),
    F(minerva_generate_params, repeat_last_n, K_U32),     F(minerva_generate_params, seed, K_SEED),
    F(minerva_generate_params, stop, K_STRLIST),          F(minerva_generate_params, ignore_eos, K_BOOL),
    F(minerva_generate_params, cache_prompt, K_BOOL),     F(minerva_generate_params, grammar, K_STR),
    F(minerva_generate_params, json_schema, K_STR),       F(minerva_generate_params, presence_penalty, K_F32),
    F(minerva_generate_params, frequency_penalty, K_F32),
};
static const field CHAT_FIELDS[] = {
    F(minerva_chat_params, chat_template, K_STR),
    F(minerva_chat_params, tools_json, K_STR),
    F(minerva_chat_params, tool_choice, K_U32),
    F(minerva_chat_params, add_generation_prompt, K_BOOL),
    F(minerva_chat_params, template_kwargs_json, K_STR),
    F(minerva_chat_params, reasoning, K_U32),
    F(minerva_chat_params, continue_final_message, K_BOOL),
    F(minerva_chat_params, max_tool_calls, K_U32),
};
#undef F

/* Strings handed to minerva during one call: freed together after it (minerva copies them). */
typedef struct {
    char **items;
    size_t count, cap;
} strings;

static char *keep(strings *k, char *s) {
    if (!s) return NULL;
    if (k->count == k->cap) {
        size_t cap = k->cap ? k->cap * 2 : 8;
        char **items = realloc(k->items, cap * sizeof *items);
        if (!items) {
            free(s);
            return NULL;
        }
        k->items = items;
        k->cap = cap;
    }
    return k->items[k->count++] = s;
}

static void release_strings(strings *k) {
    for (size_t i = 0; i < k->count; i++) free(k->items[i]);
    free(k->items);
    k->items = NULL;
    k->count = k->cap = 0;
}

static bool is_number(const godot_variant *v) {
    godot_variant_type t = type_of(v);
    return t == GODOT_VARIANT_TYPE_INT || t == GODOT_VARIANT_TYPE_REAL;
}

/* Sets one field from a variant; false with the failure recorded. */
static bool set_field(instance *self, const char *method, const field *f, void *target,
                      const godot_variant *value, strings *kept) {
    char *at = (char *)target + f->offset;
    godot_variant_type t = type_of(value);
    switch (f->kind) {
    case K_U32:
    case K_I32: {
        if (t != GODOT_VARIANT_TYPE_INT) break;
        int64_t i = api->godot_variant_as_int(value);
        int64_t lo = f->kind == K_U32 ? 0 : INT32_MIN, hi = f->kind == K_U32 ? UINT32_MAX : INT32_MAX;
        if (i < lo || i > hi) {
            fail(self, MINERVA_ERR_INVALID_ARGUMENT, true, "MinervaEngine.%s: %s = %" PRId64 " is out of range",
                 method, f->name, i);
            return false;
        }
        if (f->kind == K_U32) *(uint32_t *)at = (uint32_t)i;
        else *(int32_t *)at = (int32_t)i;
        return true;
    }
    case K_F32:
        if (!is_number(value)) break;
        *(float *)at = (float)api->godot_variant_as_real(value);
        return true;
    case K_SEED: /* Godot ints are 64-bit and signed: -1 is MINERVA_SEED_RANDOM (UINT64_MAX) */
        if (t != GODOT_VARIANT_TYPE_INT) break;
        *(uint64_t *)at = (uint64_t)api->godot_variant_as_int(value);
        return true;
    case K_BOOL:
        if (t != GODOT_VARIANT_TYPE_BOOL) break;
        *(bool *)at = api->godot_variant_as_bool(value);
        return true;
    case K_STR:
        if (t == GODOT_VARIANT_TYPE_NIL) {
            *(const char **)at = NULL;
            return true;
        }
        if (t != GODOT_VARIANT_TYPE_STRING) break;
        if (!(*(const char **)at = keep(kept, utf8_of(value)))) {
            fail(self, MINERVA_ERR_OUT_OF_MEMORY, true, "MinervaEngine.%s: out of memory", method);
            return false;
        }
        return true;
    case K_STRLIST: { /* only minerva_generate_params.stop: the count follows the pointer */
        if (t != GODOT_VARIANT_TYPE_ARRAY && t != GODOT_VARIANT_TYPE_POOL_STRING_ARRAY) break;
        godot_array arr = api->godot_variant_as_array(value);
        godot_int n = api->godot_array_size(&arr);
        bool ok = true;
        /* the list itself is kept (freed after the call) like its strings; keep() frees on failure */
        const char **list = n > 0 ? (const char **)keep(kept, calloc((size_t)n, sizeof *list)) : NULL;
        if (n > 0 && !list) ok = !fail(self, MINERVA_ERR_OUT_OF_MEMORY, true, "MinervaEngine.%s: out of memory", method);
        for (godot_int i = 0; ok && i < n; i++) {
            godot_variant item = api->godot_array_get(&arr, i);
            if (type_of(&item) != GODOT_VARIANT_TYPE_STRING)
                ok = !fail(self, MINERVA_ERR_INVALID_ARGUMENT, true,
                           "MinervaEngine.%s: stop[%d] must be a String", method, (int)i);
            else if (!(list[i] = keep(kept, utf8_of(&item))))
                ok = !fail(self, MINERVA_ERR_OUT_OF_MEMORY, true, "MinervaEngine.%s: out of memory", method);
            api->godot_variant_destroy(&item);
        }
        api->godot_array_destroy(&arr);
        if (!ok) return false;
        minerva_generate_params *p = target;
        p->stop = list;
        p->stop_count = (size_t)n;
        return true;
    }
    }
    static const char *const WANT[] = {"an int", "an int", "a number", "an int", "a bool", "a String or null",
                                       "an Array of Strings"};
    fail(self, MINERVA_ERR_INVALID_ARGUMENT, true, "MinervaEngine.%s: %s must be %s", method, f->name, WANT[f->kind]);
    return false;
}

/* Applies a Dictionary of settings, keys named as the C fields, to up to two structs. An unknown
 * key or a wrong type is refused (a typo should not pass silently). False with the failure
 * recorded. */
static bool apply_dict(instance *self, const char *method, const godot_variant *dict_v, const field *fa,
                       size_t na, void *ta, const field *fb, size_t nb, void *tb, strings *kept) {
    if (type_of(dict_v) == GODOT_VARIANT_TYPE_NIL) return true;
    if (type_of(dict_v) != GODOT_VARIANT_TYPE_DICTIONARY) {
        fail(self, MINERVA_ERR_INVALID_ARGUMENT, true, "MinervaEngine.%s: settings must be a Dictionary", method);
        return false;
    }
    godot_dictionary d = api->godot_variant_as_dictionary(dict_v);
    godot_array keys = api->godot_dictionary_keys(&d);
    bool ok = true;
    for (godot_int i = 0, n = api->godot_array_size(&keys); ok && i < n; i++) {
        godot_variant key = api->godot_array_get(&keys, i);
        char *name = type_of(&key) == GODOT_VARIANT_TYPE_STRING ? utf8_of(&key) : NULL;
        const field *f = NULL;
        void *target = NULL;
        for (size_t j = 0; name && !f && j < na; j++)
            if (!strcmp(fa[j].name, name)) f = &fa[j], target = ta;
        for (size_t j = 0; name && !f && j < nb; j++)
            if (!strcmp(fb[j].name, name)) f = &fb[j], target = tb;
        if (!f) {
            ok = !fail(self, MINERVA_ERR_INVALID_ARGUMENT, true, "MinervaEngine.%s: unknown setting \"%s\"", method,
                       name ? name : "(not a String)");
        } else {
            godot_variant value = api->godot_dictionary_get(&d, &key);
            ok = set_field(self, method, f, target, &value, kept);
            api->godot_variant_destroy(&value);
        }
        free(name);
        api->godot_variant_destroy(&key);
    }
    api->godot_array_destroy(&keys);
    api->godot_dictionary_destroy(&d);
    return ok;
}

/* ---- methods ---- */

#define METHOD(name) static godot_variant name(godot_object *obj, void *md, void *ud, int nargs, godot_variant **args)
#define SELF                                                                                                 \
    (void)obj, (void)md;                                                                                     \
    instance *self = ud;                                                                                     \
    if (!self) return v_nil()

static bool need_open(instance *self, const char *method) {
    if (self->engine) return true;
    fail(self, MINERVA_ERR_INVALID_ARGUMENT, true, "MinervaEngine.%s: the engine is not open", method);
    return false;
}

/* open(path: String, settings: Dictionary = {}) -> int status. Blocks while the model loads. */
METHOD(m_open) {
    SELF;
    if (self->engine)
        return v_int(fail(self, MINERVA_ERR_INVALID_ARGUMENT, true, "MinervaEngine.open: already open; close() first"));
    if (nargs < 1 || nargs > 2 || type_of(args[0]) != GODOT_VARIANT_TYPE_STRING)
        return v_int(fail(self, MINERVA_ERR_INVALID_ARGUMENT, true,
                          "MinervaEngine.open: expects (path: String, settings: Dictionary = {})"));
    minerva_engine_params p;
    minerva_engine_params_init(&p, sizeof p);
    strings kept = {0};
    bool ok = nargs < 2 || apply_dict(self, "open", args[1], ENGINE_FIELDS,
                                      sizeof ENGINE_FIELDS / sizeof *ENGINE_FIELDS, &p, NULL, 0, NULL, &kept);
    char *path = ok ? utf8_of(args[0]) : NULL;
    minerva_status st = self->last_status; /* apply_dict's failure, when !ok */
    if (ok && !path) st = fail(self, MINERVA_ERR_OUT_OF_MEMORY, true, "MinervaEngine.open: out of memory");
    else if (ok) {
        st = minerva_engine_new(path, &p, &self->engine);
        if (st != MINERVA_OK) fail_minerva(self, st, "MinervaEngine.open");
        else succeed(self);
    }
    free(path);
    release_strings(&kept);
    return v_int(st);
}

/* A method of one String argument that calls `call` with it: prefill, save_cache, load_cache. */
static godot_variant string_call(instance *self, const char *method, int nargs, godot_variant **args,
                                 bool pin, int which) {
    if (!need_open(self, method)) return v_int(self->last_status);
    if (nargs < 1 || nargs > 2 || type_of(args[0]) != GODOT_VARIANT_TYPE_STRING)
        return v_int(fail(self, MINERVA_ERR_INVALID_ARGUMENT, true, "MinervaEngine.%s: expects a String", method));
    char *text = utf8_of(args[0]);
    if (!text) return v_int(fail(self, MINERVA_ERR_OUT_OF_MEMORY, true, "MinervaEngine.%s: out of memory", method));
    minerva_status st = which == 0   ? minerva_cache_prefill(self->engine, text, pin)
                        : which == 1 ? minerva_cache_save_file(self->engine, text)
                                     : minerva_cache_load_file(self->engine, text);
    free(text);
    if (st != MINERVA_OK) fail_minerva(self, st, method);
    else succeed(self);
    return v_int(st);
}

/* prefill(prompt: String, pin: bool = false) -> int status. Computes the prompt's KV into the
   cache now (a persona at level load); blocks until it is there, while the engine's streams go on.
   Pinned prefixes are never evicted. */
METHOD(m_prefill) {
    SELF;
    bool pin = nargs == 2 && type_of(args[1]) == GODOT_VARIANT_TYPE_BOOL && api->godot_variant_as_bool(args[1]);
    if (nargs == 2 && type_of(args[1]) != GODOT_VARIANT_TYPE_BOOL)
        return v_int(fail(self, MINERVA_ERR_INVALID_ARGUMENT, true,
                          "MinervaEngine.prefill: expects (prompt: String, pin: bool = false)"));
    return string_call(self, "prefill", nargs, args, pin, 0);
}

/* save_cache(path: String) -> int status: every cached prefix into a file (with the save game;
   give a global path: ProjectSettings.globalize_path("user://...")). */
METHOD(m_save_cache) {
    SELF;
    return string_call(self, "save_cache", nargs > 1 ? 2 : nargs, args, false, 1);
}

/* load_cache(path: String) -> int status: what save_cache wrote, into an engine of the same model
   and settings. */
METHOD(m_load_cache) {
    SELF;
    return string_call(self, "load_cache", nargs > 1 ? 2 : nargs, args, false, 2);
}

/* close(): frees the streams and the engine (waits for the engine thread to stop). Idempotent. */
METHOD(m_close) {
    SELF;
    (void)nargs, (void)args;
    close_engine(self);
    succeed(self);
    return v_nil();
}

METHOD(m_is_open) {
    SELF;
    (void)nargs, (void)args;
    return v_bool(self->engine != NULL);
}

/* info() -> Dictionary: minerva_engine_info's fields ({} when not open). */
METHOD(m_info) {
    SELF;
    (void)nargs, (void)args;
    godot_dictionary d;
    api->godot_dictionary_new(&d);
    minerva_engine_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    if (need_open(self, "info")) {
        minerva_status st = minerva_engine_get_info(self->engine, &info);
        if (st != MINERVA_OK) fail_minerva(self, st, "MinervaEngine.info");
        else {
            succeed(self);
            dict_put(&d, "device_kind", v_int(info.device_kind));
            dict_put(&d, "device_name", v_str(info.device_name));
            dict_put(&d, "fallback_reason", v_str(info.fallback_reason));
            dict_put(&d, "gpu_layers", v_int(info.gpu_layers));
            dict_put(&d, "total_layers", v_int(info.total_layers));
            dict_put(&d, "context_tokens", v_int(info.context_tokens));
            dict_put(&d, "max_streams", v_int(info.max_streams));
            dict_put(&d, "threads", v_int(info.threads));
            dict_put(&d, "model_description", v_str(info.model_description));
            dict_put(&d, "parameter_count", v_int((int64_t)info.parameter_count));
            dict_put(&d, "file_bytes", v_int((int64_t)info.file_bytes));
            dict_put(&d, "vocab_size", v_int(info.vocab_size));
            dict_put(&d, "train_context_tokens", v_int(info.train_context_tokens));
            dict_put(&d, "has_chat_template", v_bool(info.has_chat_template));
            dict_put(&d, "embedding_dims", v_int(info.embedding_dims));
            dict_put(&d, "cpu_variant", v_str(info.cpu_variant));
            dict_put(&d, "devices", v_str(info.devices));
            dict_put(&d, "pinned_tokens", v_int((int64_t)info.pinned_tokens));
            dict_put(&d, "pinned_bytes", v_int((int64_t)info.pinned_bytes));
        }
    }
    return dict_to_variant(&d);
}

static int64_t add_stream(instance *self, minerva_stream *s, const char *method) {
    if (self->count == self->cap) {
        size_t cap = self->cap ? self->cap * 2 : 8;
        slot *slots = realloc(self->slots, cap * sizeof *slots);
        if (!slots) {
            minerva_stream_free(s);
            fail(self, MINERVA_ERR_OUT_OF_MEMORY, true, "MinervaEngine.%s: out of memory", method);
            return 0;
        }
        self->slots = slots;
        self->cap = cap;
    }
    int64_t id = self->next_id++;
    self->slots[self->count++] = (slot){id, s, false};
    succeed(self);
    return id;
}

/* start(prompt: String, settings: Dictionary = {}) -> int stream id (0 on failure). Never waits. */
METHOD(m_start) {
    SELF;
    if (!need_open(self, "start")) return v_int(0);
    if (nargs < 1 || nargs > 2 || type_of(args[0]) != GODOT_VARIANT_TYPE_STRING) {
        fail(self, MINERVA_ERR_INVALID_ARGUMENT, true,
             "MinervaEngine.start: expects (prompt: String, settings: Dictionary = {})");
        return v_int(0);
    }
    minerva_generate_params p;
    minerva_generate_params_init(&p, sizeof p);
    strings kept = {0};
    int64_t id = 0;
    if (nargs < 2 || apply_dict(self, "start", args[1], GENERATE_FIELDS,
                                sizeof GENERATE_FIELDS / sizeof *GENERATE_FIELDS, &p, NULL, 0, NULL, &kept)) {
        char *prompt = keep(&kept, utf8_of(args[0]));
        minerva_stream *s = NULL;
        minerva_status st = prompt ? minerva_stream_new(self->engine, prompt, &p, NULL, NULL, &s) : MINERVA_ERR_OUT_OF_MEMORY;
        if (st != MINERVA_OK) fail_minerva(self, st, "MinervaEngine.start");
        else id = add_stream(self, s, "start");
    }
    release_strings(&kept);
    return v_int(id);
}

/* start_chat(messages: Array, settings: Dictionary = {}) -> int stream id (0 on failure).
 * messages: [{"role": "user", "content": "..."}, ...] (also "tool_calls_json", "tool_call_id");
 * settings: the keys of start() and of minerva_chat_params (chat_template, tools_json,
 * tool_choice, add_generation_prompt, template_kwargs_json, reasoning, continue_final_message,
 * max_tool_calls). Never waits. */
METHOD(m_start_chat) {
    SELF;
    if (!need_open(self, "start_chat")) return v_int(0);
    if (nargs < 1 || nargs > 2 || type_of(args[0]) != GODOT_VARIANT_TYPE_ARRAY) {
        fail(self, MINERVA_ERR_INVALID_ARGUMENT, true,
             "MinervaEngine.start_chat: expects (messages: Array, settings: Dictionary = {})");
        return v_int(0);
    }
    minerva_generate_params p;
    minerva_generate_params_init(&p, sizeof p);
    minerva_chat_params c;
    minerva_chat_params_init(&c, sizeof c);
    strings kept = {0};
    int64_t id = 0;
    godot_array arr = api->godot_variant_as_array(args[0]);
    godot_int n = api->godot_array_size(&arr);
    minerva_chat_message *msgs = n > 0 ? calloc((size_t)n, sizeof *msgs) : NULL;
    bool ok = nargs < 2 || apply_dict(self, "start_chat", args[1], GENERATE_FIELDS,
                                      sizeof GENERATE_FIELDS / sizeof *GENERATE_FIELDS, &p, CHAT_FIELDS,
                                      sizeof CHAT_FIELDS / sizeof *CHAT_FIELDS, &c, &kept);
    if (ok && n > 0 && !msgs) ok = !fail(self, MINERVA_ERR_OUT_OF_MEMORY, true, "MinervaEngine.start_chat: out of memory");
    static const field MESSAGE_FIELDS[] = {
        {"role", K_STR, offsetof(minerva_chat_message, role)},
        {"content", K_STR, offsetof(minerva_chat_message, content)},
        {"tool_calls_json", K_STR, offsetof(minerva_chat_message, tool_calls_json)},
        {"tool_call_id", K_STR, offsetof(minerva_chat_message, tool_call_id)},
    };
    for (godot_int i = 0; ok && i < n; i++) {
        godot_variant m = api->godot_array_get(&arr, i);
        if (type_of(&m) != GODOT_VARIANT_TYPE_DICTIONARY)
            ok = !fail(self, MINERVA_ERR_INVALID_ARGUMENT, true,
                       "MinervaEngine.start_chat: messages[%d] must be a Dictionary", (int)i);
        else
            ok = apply_dict(self, "start_chat", &m, MESSAGE_FIELDS, 4, &msgs[i], NULL, 0, NULL, &kept);
        api->godot_variant_destroy(&m);
    }
    if (ok) {
        minerva_stream *s = NULL;
        minerva_status st = minerva_chat_stream_new(self->engine, msgs, (size_t)n, &c, &p, NULL, NULL, &s);
        if (st != MINERVA_OK) fail_minerva(self, st, "MinervaEngine.start_chat");
        else id = add_stream(self, s, "start_chat");
    }
    free(msgs);
    api->godot_array_destroy(&arr);
    release_strings(&kept);
    return v_int(id);
}

/* At most this much text per read(): a frame never copies an unbounded amount. */
#define READ_CAP (256 * 1024)

/* read(id: int) -> String: all the text that has arrived since the last read, "" if none.
 * Never waits (minerva_stream_read with timeout 0). */
METHOD(m_read) {
    SELF;
    slot *s = stream_arg(self, "read", nargs, args);
    if (!s) return v_str("");
    char stack[4096], *buf = stack;
    size_t len = 0, cap = sizeof stack;
    bool failed = false;
    while (!s->finished && len < READ_CAP) {
        if (cap - len < 1024) {
            size_t ncap = cap * 2;
            char *nbuf = buf == stack ? malloc(ncap) : realloc(buf, ncap);
            if (!nbuf) break; /* keep what we have; the rest stays buffered in minerva */
            if (buf == stack) memcpy(nbuf, stack, len);
            buf = nbuf;
            cap = ncap;
        }
        size_t n = 0;
        bool finished = false;
        minerva_status st = minerva_stream_read(s->stream, buf + len, cap - len, &n, &finished, 0);
        if (st != MINERVA_OK) {
            fail_minerva(self, st, "MinervaEngine.read");
            failed = true;
            break;
        }
        len += n;
        s->finished = finished;
        if (n == 0) break;
    }
    if (!failed) succeed(self);
    godot_variant v = v_str_len(buf, len);
    if (buf != stack) free(buf);
    return v;
}

/* is_finished(id: int) -> bool: the stream has ended and read() has returned all its text. */
METHOD(m_is_finished) {
    SELF;
    slot *s = stream_arg(self, "is_finished", nargs, args);
    if (!s) return v_bool(true);
    succeed(self);
    return v_bool(s->finished);
}

/* status(id: int) -> int: the stream's final status once it has ended (0: it ended by length,
 * stop string or end of generation), MINERVA_ERR_TIMEOUT (7) while it runs. Never waits. */
METHOD(m_status) {
    SELF;
    slot *s = stream_arg(self, "status", nargs, args);
    if (!s) return v_int(MINERVA_ERR_INVALID_ARGUMENT);
    succeed(self);
    return v_int(minerva_stream_wait(s->stream, 0));
}

/* error(id: int) -> String: the message of the error the stream ended with, "" if none. */
METHOD(m_error) {
    SELF;
    slot *s = stream_arg(self, "error", nargs, args);
    if (!s) return v_str("");
    succeed(self);
    return v_str(minerva_stream_error(s->stream));
}

/* stats(id: int) -> Dictionary: minerva_stream_stats' fields ({} for an unknown id). */
METHOD(m_stats) {
    SELF;
    godot_dictionary d;
    api->godot_dictionary_new(&d);
    slot *s = stream_arg(self, "stats", nargs, args);
    minerva_stream_stats st;
    memset(&st, 0, sizeof st);
    st.struct_size = sizeof st;
    if (s) {
        minerva_status rc = minerva_stream_get_stats(s->stream, &st);
        if (rc != MINERVA_OK) fail_minerva(self, rc, "MinervaEngine.stats");
        else {
            succeed(self);
            dict_put(&d, "prompt_tokens", v_int(st.prompt_tokens));
            dict_put(&d, "cached_prompt_tokens", v_int(st.cached_prompt_tokens));
            dict_put(&d, "generated_tokens", v_int(st.generated_tokens));
            dict_put(&d, "time_to_first_token_ms", v_real(st.time_to_first_token_ms));
            dict_put(&d, "prompt_tokens_per_second", v_real(st.prompt_tokens_per_second));
            dict_put(&d, "tokens_per_second", v_real(st.tokens_per_second));
            dict_put(&d, "finish_reason", v_int(st.finish_reason));
        }
    }
    return dict_to_variant(&d);
}

/* A stream's text read by a minerva_stream_* reader with the buffer rules of minerva_chat_format:
 * asked for its length, then read, again if it grew in between (reasoning grows while the stream
 * runs). "" with last_status() set on failure. */
typedef minerva_status (*text_reader)(const minerva_stream *, char *, size_t, size_t *);

static godot_variant read_whole(instance *self, slot *s, text_reader reader, const char *what) {
    size_t len = 0;
    minerva_status st = reader(s->stream, NULL, 0, &len);
    for (int tries = 0; st == MINERVA_ERR_BUFFER_TOO_SMALL && tries < 8; tries++) {
        char *buf = malloc(len + 1);
        if (!buf) {
            fail(self, MINERVA_ERR_OUT_OF_MEMORY, true, "%s: out of memory", what);
            return v_str("");
        }
        st = reader(s->stream, buf, len + 1, &len);
        if (st == MINERVA_OK) {
            godot_variant v = v_str_len(buf, len);
            free(buf);
            succeed(self);
            return v;
        }
        free(buf);
    }
    if (st == MINERVA_OK) { /* empty: a NULL buffer of 0 bytes holds it */
        succeed(self);
        return v_str("");
    }
    fail_minerva(self, st, what);
    return v_str("");
}

/* tool_calls(id: int) -> String: the JSON array of the reply's tool calls once the stream has
 * ended ("[]" if none); "" with last_status() set if it has not ended. */
METHOD(m_tool_calls) {
    SELF;
    slot *s = stream_arg(self, "tool_calls", nargs, args);
    if (!s) return v_str("");
    return read_whole(self, s, minerva_stream_tool_calls, "MinervaEngine.tool_calls");
}

/* reasoning(id: int) -> String: the reasoning of a chat stream's reply so far (what the
 * template's format marks as reasoning, kept out of read()'s text); "" if none. Readable while
 * the stream runs. */
METHOD(m_reasoning) {
    SELF;
    slot *s = stream_arg(self, "reasoning", nargs, args);
    if (!s) return v_str("");
    return read_whole(self, s, minerva_stream_reasoning, "MinervaEngine.reasoning");
}

/* cancel(id: int) -> bool: asks the stream to end (its text so far stays readable). */
METHOD(m_cancel) {
    SELF;
    slot *s = stream_arg(self, "cancel", nargs, args);
    if (!s) return v_bool(false);
    minerva_stream_cancel(s->stream);
    succeed(self);
    return v_bool(true);
}

/* free_stream(id: int) -> bool: cancels the stream if it runs and forgets the id. Never waits. */
METHOD(m_free_stream) {
    SELF;
    slot *s = stream_arg(self, "free_stream", nargs, args);
    if (!s) return v_bool(false);
    minerva_stream_free(s->stream); /* pull mode, no on_finish: returns at once */
    *s = self->slots[--self->count];
    succeed(self);
    return v_bool(true);
}

/* stream_count() -> int: streams started and not yet freed. */
METHOD(m_stream_count) {
    SELF;
    (void)nargs, (void)args;
    return v_int((int64_t)self->count);
}

METHOD(m_last_status) {
    SELF;
    (void)nargs, (void)args;
    return v_int(self->last_status);
}

METHOD(m_last_error) {
    SELF;
    (void)nargs, (void)args;
    return v_str(self->last_error);
}

/* version() -> String: minerva's version and ABI, e.g. "0.1.0 (ABI 1)". */
METHOD(m_version) {
    SELF;
    (void)nargs, (void)args;
    char s[64];
    snprintf(s, sizeof s, "%s (ABI %u)", minerva_version(), (unsigned)minerva_abi_version());
    return v_str(s);
}

/* status_string(status: int) -> String: "ok", "invalid argument", ... */
METHOD(m_status_string) {
    SELF;
    if (nargs != 1 || type_of(args[0]) != GODOT_VARIANT_TYPE_INT) return v_str("unknown");
    int64_t st = api->godot_variant_as_int(args[0]);
    return v_str(st < 0 || st > UINT32_MAX ? "unknown" : minerva_status_str((minerva_status)st));
}

/* ---- GDNative entry points ---- */

static bool compatible(godot_gdnative_api_version want, godot_gdnative_api_version have) {
    return want.major == have.major && want.minor <= have.minor;
}

EXPORT void godot_gdnative_init(godot_gdnative_init_options *o) {
    api = NULL;
    nsapi = NULL;
    const godot_gdnative_core_api_struct *core = o ? o->api_struct : NULL;
    const godot_gdnative_api_version want = {1, 0};
    if (!core || core->type != GDNATIVE_CORE || !compatible(want, core->version)) {
        if (core && o->report_version_mismatch)
            o->report_version_mismatch(o->gd_native_library, "core", want, core->version);
        return;
    }
    if (minerva_abi_version() != MINERVA_ABI_VERSION) {
        if (o->report_loading_error)
            o->report_loading_error(o->gd_native_library,
                                    "libminerva's ABI version differs from the minerva.h this library was built with");
        return;
    }
    for (unsigned i = 0; i < core->num_extensions; i++) {
        const godot_gdnative_api_struct *ext = core->extensions[i];
        if (ext && ext->type == GDNATIVE_EXT_NATIVESCRIPT) {
            if (compatible(want, ext->version)) nsapi = (const godot_gdnative_ext_nativescript_api_struct *)ext;
            else if (o->report_version_mismatch)
                o->report_version_mismatch(o->gd_native_library, "nativescript", want, ext->version);
        }
    }
    if (nsapi) api = core;
}

EXPORT void godot_gdnative_terminate(godot_gdnative_terminate_options *o) {
    (void)o;
    api = NULL;
    nsapi = NULL;
}

EXPORT void godot_nativescript_init(void *handle) {
    if (!api || !nsapi) return; /* init refused this Godot: no class is registered */
    godot_instance_create_func create = {ctor, NULL, NULL};
    godot_instance_destroy_func destroy = {dtor, NULL, NULL};
    nsapi->godot_nativescript_register_class(handle, "MinervaEngine", "Reference", create, destroy);
    static const struct {
        const char *name;
        godot_variant (*fn)(godot_object *, void *, void *, int, godot_variant **);
    } METHODS[] = {
        {"open", m_open},           {"close", m_close},
        {"is_open", m_is_open},     {"info", m_info},
        {"start", m_start},         {"start_chat", m_start_chat},
        {"read", m_read},           {"is_finished", m_is_finished},
        {"status", m_status},       {"error", m_error},
        {"stats", m_stats},         {"tool_calls", m_tool_calls},
        {"cancel", m_cancel},       {"free_stream", m_free_stream},
        {"stream_count", m_stream_count}, {"last_status", m_last_status},
        {"last_error", m_last_error}, {"version", m_version},
        {"status_string", m_status_string},
        {"prefill", m_prefill},     {"save_cache", m_save_cache},
        {"load_cache", m_load_cache},
        {"reasoning", m_reasoning},
    };
    godot_method_attributes attr = {GODOT_METHOD_RPC_MODE_DISABLED};
    for (size_t i = 0; i < sizeof METHODS / sizeof *METHODS; i++) {
        godot_instance_method m = {METHODS[i].fn, NULL, NULL};
        nsapi->godot_nativescript_register_method(handle, "MinervaEngine", METHODS[i].name, attr, m);
    }
}
