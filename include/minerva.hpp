// minerva.hpp: the C++ binding of minerva, header only, C++17, over include/minerva.h.
//
//     #include <minerva.hpp>
//     minerva::Engine engine("model.gguf");
//     auto p = minerva::generate_params();
//     p.max_tokens = 64;
//     std::string text = engine.generate("Once upon a time", p);       // blocking
//     minerva::Stream s = engine.stream("The guard says:", p);         // pull mode
//     while (!s.finished()) std::cout << s.read(0);                   // once a frame, never waits
//     engine.stream("Hi", [](std::string_view t) { std::cout << t; }, p).wait();  // callback
//     auto reply = engine.chat({{"user", "Hello!"}}).read_all();       // chat template
//     auto ids = engine.tokenize("Hello");  auto vecs = engine.embed({"a", "b"});
//     engine.cache_prefill(persona, true);  auto save = engine.cache_save();  // game state
//
// Rules, as in the C header: every method may be called from any thread; callbacks run on the
// engine's thread, one at a time; an exception thrown by a callback never crosses into minerva:
// it stops the stream and is thrown again by Stream::wait(). Failures throw minerva::Error, which
// carries the minerva_status. Engine and Stream are move-only and free their handle when
// destroyed; a Stream stays valid after its Engine is destroyed.
#ifndef MINERVA_HPP
#define MINERVA_HPP

#include "minerva.h"

#include <exception>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace minerva {

// A failed call: the status and minerva's message naming the problem.
class Error : public std::runtime_error {
  public:
    Error(minerva_status status, const std::string &message)
        : std::runtime_error(message), status_(status) {}
    minerva_status status() const noexcept { return status_; }

  private:
    minerva_status status_;
};

namespace detail {
inline void check(minerva_status s) {
    if (s != MINERVA_OK) {
        std::string why = minerva_last_error();
        throw Error(s, why.empty() ? minerva_status_str(s) : why);
    }
}
} // namespace detail

// The C defaults, ready to change.
inline minerva_generate_params generate_params() {
    minerva_generate_params p;
    minerva_generate_params_init(&p, sizeof p);
    return p;
}

inline minerva_engine_params engine_params() {
    minerva_engine_params p;
    minerva_engine_params_init(&p, sizeof p);
    return p;
}

inline minerva_chat_params chat_params() {
    minerva_chat_params p;
    minerva_chat_params_init(&p, sizeof p);
    return p;
}

inline minerva_embed_params embed_params() {
    minerva_embed_params p;
    minerva_embed_params_init(&p, sizeof p);
    return p;
}

// One turn of a conversation. tool_calls_json: an assistant turn's calls, as
// Stream::tool_calls() gave them; tool_call_id: the call a "tool" turn answers.
struct Message {
    std::string role;
    std::string content;
    std::string tool_calls_json = {};
    std::string tool_call_id = {};
};

namespace detail {
// The C view of messages; valid while `messages` lives.
inline std::vector<minerva_chat_message> c_messages(const std::vector<Message> &messages) {
    std::vector<minerva_chat_message> out;
    out.reserve(messages.size());
    for (const auto &m : messages) {
        minerva_chat_message c;
        c.role = m.role.c_str();
        c.content = m.content.empty() && !m.tool_calls_json.empty() ? nullptr : m.content.c_str();
        c.tool_calls_json = m.tool_calls_json.empty() ? nullptr : m.tool_calls_json.c_str();
        c.tool_call_id = m.tool_call_id.empty() ? nullptr : m.tool_call_id.c_str();
        out.push_back(c);
    }
    return out;
}
} // namespace detail

// Sends minerva's log lines at `min_level` and above to `cb` (a plain function, called from any
// thread); nullptr restores the default, stderr.
inline void set_log_callback(minerva_log_callback cb, void *user_data = nullptr,
                             minerva_log_level min_level = MINERVA_LOG_INFO) {
    minerva_set_log_callback(cb, user_data, min_level);
}

class Engine;

// One generation. Pull its text with read(), or give Engine::stream a callback.
class Stream {
  public:
    Stream(Stream &&o) noexcept : s_(std::exchange(o.s_, nullptr)), state_(std::move(o.state_)) {}
    Stream &operator=(Stream &&o) noexcept {
        if (this != &o) {
            reset();
            s_ = std::exchange(o.s_, nullptr);
            state_ = std::move(o.state_);
        }
        return *this;
    }
    Stream(const Stream &) = delete;
    Stream &operator=(const Stream &) = delete;
    // Cancels if running and waits until no callback of the stream can run (minerva_stream_free).
    ~Stream() { reset(); }

    // Pull mode: the text that has arrived, waiting up to timeout_ms for some (0: never waits;
    // -1: no limit). Empty once finished() is true.
    std::string read(int timeout_ms = -1) {
        char buf[4096];
        size_t n = 0;
        bool done = false;
        detail::check(minerva_stream_read(s_, buf, sizeof buf, &n, &done, timeout_ms));
        finished_ = done;
        return std::string(buf, n);
    }
    // Pull mode: all the text until the end.
    std::string read_all() {
        std::string out;
        while (!finished_) out += read(-1);
        return out;
    }
    // Whether read() has returned the end (the stream ended and all its text was read).
    bool finished() const noexcept { return finished_; }

    void cancel() noexcept { minerva_stream_cancel(s_); }

    // Waits for the end (timeout_ms -1: no limit). Returns true when it ended (also when it was
    // cancelled: stats().finish_reason says so), false on timeout; throws what a callback threw,
    // and minerva::Error when the stream ended with an error.
    bool wait(int timeout_ms = -1) {
        minerva_status st = minerva_stream_wait(s_, timeout_ms);
        if (st == MINERVA_ERR_TIMEOUT) return false;
        if (state_ && state_->thrown) std::rethrow_exception(state_->thrown);
        if (st != MINERVA_OK && st != MINERVA_ERR_CANCELLED) {
            std::string why = minerva_stream_error(s_);
            throw Error(st, why.empty() ? minerva_status_str(st) : why);
        }
        return true;
    }

    minerva_stream_stats stats() const {
        minerva_stream_stats st;
        st.struct_size = sizeof st;
        detail::check(minerva_stream_get_stats(s_, &st));
        return st;
    }

    // The stream's error message, "" if none.
    std::string error() const { return minerva_stream_error(s_); }

    // Once ended: the tool calls of a chat stream's reply, as JSON.
    std::string tool_calls() const {
        size_t n = 0;
        minerva_status st = minerva_stream_tool_calls(s_, nullptr, 0, &n);
        if (st != MINERVA_ERR_BUFFER_TOO_SMALL) detail::check(st);
        std::string out(n, '\0');
        detail::check(minerva_stream_tool_calls(s_, out.data(), n, &n));
        out.resize(n);
        return out;
    }

    // A chat stream's reasoning so far: under MINERVA_REASONING_AUTO, what the template's format
    // marks as reasoning (<think>...</think>, ...), kept out of the text; "" when there is none.
    // Readable while the stream runs and after it ended.
    std::string reasoning() const {
        std::string out;
        size_t n = 0;
        minerva_status st = minerva_stream_reasoning(s_, nullptr, 0, &n);
        while (st == MINERVA_ERR_BUFFER_TOO_SMALL) { // it may grow between the calls
            out.resize(n);
            st = minerva_stream_reasoning(s_, out.data(), out.size(), &n);
        }
        detail::check(st);
        out.resize(n);
        return out;
    }

    // Gives the handle back at once, never waiting (minerva_stream_release): for a frame loop.
    void release() && noexcept { minerva_stream_release(std::exchange(s_, nullptr)); }

    minerva_stream *get() const noexcept { return s_; }

  private:
    friend class Engine;
    // What a callback stream shares with the engine thread; the engine's reference is dropped in
    // the finish callback.
    struct State {
        std::function<bool(std::string_view)> on_text;
        std::exception_ptr thrown;
    };
    Stream(minerva_stream *s, std::shared_ptr<State> state) : s_(s), state_(std::move(state)) {}
    void reset() noexcept {
        if (s_) minerva_stream_free(std::exchange(s_, nullptr));
    }

    static minerva_control on_token(void *ud, const char *text, size_t len) noexcept {
        auto &state = **static_cast<std::shared_ptr<State> *>(ud);
        try {
            return state.on_text(std::string_view(text, len)) ? MINERVA_CONTINUE : MINERVA_STOP;
        } catch (...) {
            state.thrown = std::current_exception();
            return MINERVA_STOP;
        }
    }
    static void on_finish(void *ud, minerva_status, minerva_finish_reason) noexcept {
        delete static_cast<std::shared_ptr<State> *>(ud);
    }

    minerva_stream *s_ = nullptr;
    std::shared_ptr<State> state_;
    bool finished_ = false;
};

// A loaded model and its engine thread.
class Engine {
  public:
    explicit Engine(const std::string &path) : Engine(path, engine_params()) {}
    Engine(const std::string &path, const minerva_engine_params &params) {
        detail::check(minerva_engine_new(path.c_str(), &params, &e_));
    }
    Engine(Engine &&o) noexcept : e_(std::exchange(o.e_, nullptr)) {}
    Engine &operator=(Engine &&o) noexcept {
        if (this != &o) {
            minerva_engine_free(e_);
            e_ = std::exchange(o.e_, nullptr);
        }
        return *this;
    }
    Engine(const Engine &) = delete;
    Engine &operator=(const Engine &) = delete;
    // Cancels the streams, runs their finish callbacks, frees the model.
    ~Engine() { minerva_engine_free(e_); }

    // Blocking: the whole text of one generation (not from inside a callback).
    std::string generate(const std::string &prompt,
                         const minerva_generate_params &params = generate_params()) {
        std::string out;
        auto collect = [](void *ud, const char *text, size_t len) noexcept -> minerva_control {
            try {
                static_cast<std::string *>(ud)->append(text, len);
                return MINERVA_CONTINUE;
            } catch (...) {
                return MINERVA_STOP;
            }
        };
        detail::check(minerva_generate(e_, prompt.c_str(), &params, collect, &out, nullptr));
        return out;
    }

    // A pull-mode stream (params.on_finish is kept).
    Stream stream(const std::string &prompt,
                  const minerva_generate_params &params = generate_params()) {
        return start(nullptr, [&](minerva_token_callback cb, void *ud, minerva_stream **s) {
            return minerva_stream_new(e_, prompt.c_str(), &params, cb, ud, s);
        });
    }

    // A callback stream: on_text(std::string_view) runs on the engine thread for each piece of
    // text; it may return bool (false stops the stream) or nothing. params.on_finish is replaced.
    template <class F, class = std::enable_if_t<std::is_invocable_v<F &, std::string_view>>>
    Stream stream(const std::string &prompt, F on_text,
                  const minerva_generate_params &params = generate_params()) {
        minerva_generate_params p = params;
        return start(wrap(std::move(on_text)),
                     [&](minerva_token_callback cb, void *ud, minerva_stream **s) {
                         p.on_finish = &Stream::on_finish;
                         return minerva_stream_new(e_, prompt.c_str(), &p, cb, ud, s);
                     });
    }

    // A chat reply as a pull-mode stream: the messages rendered with the model's chat template
    // (or chat.chat_template), tools and tool choice, template variables
    // (chat.template_kwargs_json), reasoning and continue_final_message from `chat`. Once the
    // stream has ended, Stream::tool_calls() gives the calls it made; Stream::reasoning() gives
    // its reasoning at any time.
    Stream chat(const std::vector<Message> &messages,
                const minerva_chat_params &chat = chat_params(),
                const minerva_generate_params &params = generate_params()) {
        auto c = detail::c_messages(messages);
        return start(nullptr, [&](minerva_token_callback cb, void *ud, minerva_stream **s) {
            return minerva_chat_stream_new(e_, c.data(), c.size(), &chat, &params, cb, ud, s);
        });
    }

    // A chat reply with a callback, as stream(prompt, on_text, params).
    template <class F, class = std::enable_if_t<std::is_invocable_v<F &, std::string_view>>>
    Stream chat(const std::vector<Message> &messages, F on_text,
                const minerva_chat_params &chat = chat_params(),
                const minerva_generate_params &params = generate_params()) {
        auto c = detail::c_messages(messages);
        minerva_generate_params p = params;
        return start(wrap(std::move(on_text)),
                     [&](minerva_token_callback cb, void *ud, minerva_stream **s) {
                         p.on_finish = &Stream::on_finish;
                         return minerva_chat_stream_new(e_, c.data(), c.size(), &chat, &p, cb, ud, s);
                     });
    }

    // The text the model would see for these messages (the chat template's rendering).
    std::string chat_format(const std::vector<Message> &messages,
                            const minerva_chat_params &chat = chat_params()) const {
        auto c = detail::c_messages(messages);
        return read_text([&](char *buf, size_t cap, size_t *len) {
            return minerva_chat_format(e_, c.data(), c.size(), &chat, buf, cap, len);
        });
    }

    // The model's tokens for `text`.
    std::vector<minerva_token> tokenize(const std::string &text, bool add_special = true,
                                        bool parse_special = false) const {
        size_t n = 0;
        minerva_status st = minerva_tokenize(e_, text.c_str(), add_special, parse_special,
                                             nullptr, 0, &n);
        if (st != MINERVA_OK && st != MINERVA_ERR_BUFFER_TOO_SMALL) detail::check(st);
        std::vector<minerva_token> out(n);
        detail::check(minerva_tokenize(e_, text.c_str(), add_special, parse_special, out.data(),
                                       out.size(), &n));
        out.resize(n);
        return out;
    }

    // The text of tokens, as the model would write them.
    std::string detokenize(const std::vector<minerva_token> &tokens,
                           bool render_special = false) const {
        return read_text([&](char *buf, size_t cap, size_t *len) {
            return minerva_detokenize(e_, tokens.data(), tokens.size(), render_special, buf, cap,
                                      len);
        });
    }

    // One vector (info().embedding_dims floats) per text. Blocks: not from inside a callback.
    std::vector<std::vector<float>> embed(const std::vector<std::string> &texts,
                                          const minerva_embed_params &params = embed_params()) {
        std::vector<const char *> c;
        c.reserve(texts.size());
        for (const auto &t : texts) c.push_back(t.c_str());
        size_t n = 0;
        minerva_status st = minerva_embed(e_, c.data(), c.size(), &params, nullptr, 0, &n);
        if (st != MINERVA_OK && st != MINERVA_ERR_BUFFER_TOO_SMALL) detail::check(st);
        std::vector<float> flat(n);
        detail::check(minerva_embed(e_, c.data(), c.size(), &params, flat.data(), flat.size(), &n));
        std::vector<std::vector<float>> out;
        if (texts.empty()) return out;
        size_t dims = n / texts.size();
        for (size_t i = 0; i < texts.size(); i++) {
            out.emplace_back(flat.begin() + static_cast<std::ptrdiff_t>(i * dims),
                             flat.begin() + static_cast<std::ptrdiff_t>((i + 1) * dims));
        }
        return out;
    }

    // Game state (0.3). Computes `prompt`'s KV into the prompt cache now, without generating: a
    // later stream whose prompt starts with it skips those tokens (stats().cached_prompt_tokens).
    // `pin`: kept until the engine is destroyed, never evicted (info().pinned_tokens and
    // pinned_bytes). Blocks until it is cached: not from inside a callback.
    void cache_prefill(const std::string &prompt, bool pin = false) {
        detail::check(minerva_cache_prefill(e_, prompt.c_str(), pin));
    }

    // Every cached prefix no stream is computing (pinned ones and the stream slots' caches), as
    // bytes for a save file; cache_load() puts them into an engine of the same model,
    // context_tokens and minerva version. Blocks: not from inside a callback.
    std::vector<unsigned char> cache_save() {
        std::vector<unsigned char> out;
        size_t n = 0;
        minerva_status st = minerva_cache_save(e_, nullptr, 0, &n);
        while (st == MINERVA_ERR_BUFFER_TOO_SMALL) { // the cache may grow between the calls
            out.resize(n);
            st = minerva_cache_save(e_, out.data(), out.size(), &n);
        }
        detail::check(st);
        out.resize(n);
        return out;
    }

    // Loads what cache_save() gave; throws minerva::Error (MINERVA_ERR_INVALID_ARGUMENT naming
    // what differs or is wrong, MINERVA_ERR_CONTEXT_FULL) and loads nothing when it does not fit.
    void cache_load(const std::vector<unsigned char> &bytes) {
        detail::check(minerva_cache_load(e_, bytes.data(), bytes.size()));
    }

    // cache_save() into a file, written whole or not at all; cache_load() from one.
    void cache_save_file(const std::string &path) {
        detail::check(minerva_cache_save_file(e_, path.c_str()));
    }
    void cache_load_file(const std::string &path) {
        detail::check(minerva_cache_load_file(e_, path.c_str()));
    }

    minerva_engine_info info() const {
        minerva_engine_info i;
        i.struct_size = sizeof i;
        detail::check(minerva_engine_get_info(e_, &i));
        return i;
    }

    minerva_engine *get() const noexcept { return e_; }

  private:
    template <class F> static std::shared_ptr<Stream::State> wrap(F on_text) {
        auto state = std::make_shared<Stream::State>();
        state->on_text = [f = std::move(on_text)](std::string_view t) mutable -> bool {
            if constexpr (std::is_same_v<std::invoke_result_t<F &, std::string_view>, void>) {
                f(t);
                return true;
            } else {
                return static_cast<bool>(f(t));
            }
        };
        return state;
    }

    // Starts a stream through `create(on_token, user_data, &out)`: with a callback when `state`
    // is set (its reference is released by the finish callback), in pull mode when not.
    template <class Create> Stream start(std::shared_ptr<Stream::State> state, Create create) {
        minerva_stream *s = nullptr;
        if (!state) {
            detail::check(create(nullptr, nullptr, &s));
            return Stream(s, nullptr);
        }
        auto *ref = new std::shared_ptr<Stream::State>(state);
        minerva_status st = create(&Stream::on_token, ref, &s);
        if (st != MINERVA_OK) {
            delete ref; // no callback runs for a stream that failed to start
            detail::check(st);
        }
        return Stream(s, std::move(state));
    }

    // Text from a C function with minerva's buffer rules (ask for the length, then fill).
    template <class Fill> static std::string read_text(Fill fill) {
        size_t n = 0;
        minerva_status st = fill(nullptr, 0, &n);
        if (st != MINERVA_OK && st != MINERVA_ERR_BUFFER_TOO_SMALL) detail::check(st);
        std::string out(n + 1, '\0');
        detail::check(fill(out.data(), out.size(), &n));
        out.resize(n);
        return out;
    }

    minerva_engine *e_ = nullptr;
};

} // namespace minerva

#endif
