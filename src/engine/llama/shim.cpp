// The C++ exception boundary between minerva and llama.cpp.
//
// llama.cpp is C++: its C functions can throw (std::bad_alloc from any allocation, std::out_of_range
// from a vocabulary look-up, std::runtime_error from a grammar or a failed graph), and a C++
// exception that reaches Rust aborts the process ("Rust cannot catch foreign exceptions"). Every
// llama.cpp function that minerva calls and that can allocate or throw is called through one of
// these wrappers instead: each catches every exception, keeps its message for
// mshim_take_error(), and answers non-zero. Results come back through out pointers.
//
// Only the wrapper shape lives here; what to call and when is decided in Rust (src/engine/llama/).

#include "ggml-backend.h"
#include "llama.h"
#include "log.h" // llama.cpp's common library

#include <dlfcn.h>

#include <algorithm>
#include <dirent.h>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <limits>
#include <vector>
#include <new>
#include <stdexcept>
#include <string>

namespace {

thread_local std::string last_error;

void record(const char *what, const char *prefix = "") noexcept {
    try {
        last_error = prefix;
        last_error += what ? what : "";
    } catch (...) {
        // Out of memory while recording the message: keep what fits (nothing).
    }
}

// Runs f; 0 when it returned, 1 when it threw (the message kept for mshim_take_error).
template <typename F> int guarded(F &&f) noexcept {
    try {
        f();
        return 0;
    } catch (const std::bad_alloc &) {
        record("llama.cpp ran out of memory (std::bad_alloc)");
    } catch (const std::length_error &e) {
        record(e.what(), "llama.cpp could not allocate: ");
    } catch (const std::exception &e) {
        record(e.what());
    } catch (...) {
        record("llama.cpp threw an unknown C++ exception");
    }
    return 1;
}

// A malloc'ed copy of s (NUL-terminated) in *out: free it with mshim_string_free.
void copy_out(const std::string &s, char **out) {
    char *copy = static_cast<char *>(std::malloc(s.size() + 1));
    if (!copy) throw std::bad_alloc();
    std::memcpy(copy, s.c_str(), s.size() + 1);
    *out = copy;
}

// Whether the CPU backend loaded is a variant built with AMX (its features name AMX_*).
bool cpu_backend_uses_amx() {
    ggml_backend_reg_t cpu = ggml_backend_reg_by_name("CPU");
    auto get_features = cpu ? (ggml_backend_get_features_t)ggml_backend_reg_get_proc_address(
                                  cpu, "ggml_backend_get_features")
                            : nullptr;
    if (!get_features) return false;
    for (auto *f = get_features(cpu); f && f->name; f++)
        if (std::strncmp(f->name, "AMX", 3) == 0 && f->value && std::strcmp(f->value, "1") == 0) return true;
    return false;
}

// ggml's AMX matrix kernels fault (SIGILL: #UD at TILEZERO, in tinygemm_kernel_amx) on machines
// that report AMX and grant its use, seen on a Sapphire Rapids virtual machine, where a plain AMX
// program runs: every decode of the default model ended the process. So the CPU variant built
// with AMX (ggml's "sapphirerapids") is passed over for the best of the others (their own score
// functions, as ggml_backend_load_best asks them), unless MINERVA_CPU_AMX=1.
void avoid_amx_variant(const char *dir) {
    const char *opt_in = std::getenv("MINERVA_CPU_AMX");
    if ((opt_in && std::strcmp(opt_in, "1") == 0) || !cpu_backend_uses_amx()) return;
    std::string best;
    int best_score = 0;
    if (DIR *d = opendir(dir)) {
        while (dirent *e = readdir(d)) {
            std::string name = e->d_name;
            const std::string prefix = "libggml-cpu-", suffix = ".so";
            if (name.size() <= prefix.size() + suffix.size() || name.compare(0, prefix.size(), prefix) != 0 ||
                name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0 ||
                name.find("sapphirerapids") != std::string::npos)
                continue;
            std::string path = std::string(dir) + "/" + name;
            void *h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
            if (!h) continue;
            auto score = (int (*)())dlsym(h, "ggml_backend_score");
            int sc = score ? score() : 0;
            dlclose(h);
            if (sc > best_score) {
                best_score = sc;
                best = path;
            }
        }
        closedir(d);
    }
    if (best.empty()) return;
    ggml_backend_unload(ggml_backend_reg_by_name("CPU"));
    if (!ggml_backend_load(best.c_str())) throw std::runtime_error("could not load the CPU backend " + best);
}

} // namespace

extern "C" {

// Copies the message of the last exception caught on this thread into buf (NUL-terminated,
// truncated to cap) and forgets it. Returns its full length.
size_t mshim_take_error(char *buf, size_t cap) noexcept {
    size_t n = last_error.size();
    if (cap > 0) {
        size_t k = n < cap - 1 ? n : cap - 1;
        std::memcpy(buf, last_error.data(), k);
        buf[k] = 0;
    }
    last_error.clear();
    return n;
}

// guarded() for the wrappers of other files (rpc.cpp): runs fn(ctx) behind the same boundary.
int mshim_guard(void (*fn)(void *), void *ctx) noexcept {
    return guarded([&] { fn(ctx); });
}

int mshim_backend_init(const char *backend_dir, bool load_dynamic) noexcept {
    return guarded([&] {
        if (load_dynamic) {
            if (backend_dir) {
                ggml_backend_load_all_from_path(backend_dir);
                avoid_amx_variant(backend_dir);
            } else {
                ggml_backend_load_all();
            }
            // llama_backend_init would look again in ggml's default places (the build's
            // folder, the executable's): a folder that was named and holds no backend is an error.
            if (ggml_backend_reg_count() == 0) {
                throw std::runtime_error(std::string("no ggml backend could be loaded from ") +
                                         (backend_dir ? backend_dir : "ggml's default folders"));
            }
        }
        llama_backend_init();
        (void)ggml_backend_dev_count();
        // llama.cpp's common library (chat formats, JSON schema grammars) logs through a logger
        // of its own that writes to stderr and cannot be given minerva's sink. A library does
        // not write to stderr by itself: it is silenced, and what it would say (a reply off its
        // template's format, a template it cannot read) minerva says through its own log and
        // errors. Set once, before any of common's code runs.
        common_log_set_verbosity_thold(-1);
    });
}

// Names the CPU backend in use into buf (NUL-terminated, truncated to cap), e.g.
// "x86-64 AVX-512 VBMI VNNI (icelake)": the architecture, the instruction sets of the backend's
// build (its "ggml_backend_get_features"), and, for a run-time dispatch build, the variant whose
// file was chosen (libggml-cpu-<variant>.so, found by the address of that function).
int mshim_cpu_variant(char *buf, size_t cap) noexcept {
    return guarded([&] {
        std::string out;
#if defined(__x86_64__) || defined(_M_X64)
        out = "x86-64";
#elif defined(__aarch64__) || defined(_M_ARM64)
        out = "arm64";
#else
        out = "cpu";
#endif
        ggml_backend_reg_t reg = ggml_backend_reg_by_name("CPU");
        auto get_features = reg ? (ggml_backend_get_features_t)ggml_backend_reg_get_proc_address(
                                      reg, "ggml_backend_get_features")
                                : nullptr;
        std::vector<std::string> have;
        if (get_features) {
            for (auto *f = get_features(reg); f && f->name; f++) {
                if (f->value && std::strcmp(f->value, "1") == 0) have.emplace_back(f->name);
            }
        }
        auto has = [&](const char *n) { return std::find(have.begin(), have.end(), n) != have.end(); };
        if (has("AVX512")) {
            out += " AVX-512";
            if (has("AVX512_VBMI")) out += " VBMI";
            if (has("AVX512_VNNI")) out += " VNNI";
            if (has("AVX512_BF16")) out += " BF16";
            if (has("AMX_INT8")) out += " AMX";
        } else if (has("AVX2")) {
            out += " AVX2";
            if (has("AVX_VNNI")) out += " AVX-VNNI";
        } else if (has("AVX")) {
            out += " AVX";
        } else if (has("SSSE3")) {
            out += " SSE4.2";
        } else if (has("NEON")) {
            out += " NEON";
            if (has("DOTPROD")) out += " DOTPROD";
            if (has("MATMUL_INT8")) out += " I8MM";
            if (has("SVE")) out += " SVE";
            if (has("SME")) out += " SME";
        } else {
            out += " baseline";
        }
        Dl_info info{};
        std::string variant = "built in";
        if (get_features && dladdr(reinterpret_cast<void *>(get_features), &info) && info.dli_fname) {
            std::string file = info.dli_fname;
            file = file.substr(file.find_last_of('/') + 1);
            const std::string prefix = "libggml-cpu-";
            if (file.compare(0, prefix.size(), prefix) == 0) {
                variant = file.substr(prefix.size());
                variant = variant.substr(0, variant.find('.'));
            }
        }
        out += " (" + variant + ")";
        if (cap > 0) {
            size_t k = std::min(out.size(), cap - 1);
            std::memcpy(buf, out.data(), k);
            buf[k] = 0;
        }
    });
}

int mshim_dev_memory(ggml_backend_dev_t dev, size_t *free, size_t *total) noexcept {
    return guarded([&] { ggml_backend_dev_memory(dev, free, total); });
}

int mshim_model_load(const char *path, llama_model_params params, llama_model **out) noexcept {
    return guarded([&] { *out = llama_model_load_from_file(path, params); });
}

int mshim_model_chat_template(const llama_model *model, const char **out) noexcept {
    return guarded([&] { *out = llama_model_chat_template(model, nullptr); });
}

int mshim_model_desc(const llama_model *model, char *buf, size_t cap, int32_t *out) noexcept {
    return guarded([&] { *out = llama_model_desc(model, buf, cap); });
}

int mshim_init_from_model(llama_model *model, llama_context_params params,
                          llama_context **out) noexcept {
    return guarded([&] { *out = llama_init_from_model(model, params); });
}

int mshim_tokenize(const llama_vocab *vocab, const char *text, int32_t len, llama_token *tokens,
                   int32_t cap, bool add_special, bool parse_special, int32_t *out) noexcept {
    return guarded(
        [&] { *out = llama_tokenize(vocab, text, len, tokens, cap, add_special, parse_special); });
}

int mshim_token_to_piece(const llama_vocab *vocab, llama_token token, char *buf, int32_t cap,
                         bool special, int32_t *out) noexcept {
    return guarded([&] { *out = llama_token_to_piece(vocab, token, buf, cap, 0, special); });
}

int mshim_detokenize(const llama_vocab *vocab, const llama_token *tokens, int32_t n, char *buf,
                     int32_t cap, bool render_special, int32_t *out) noexcept {
    return guarded([&] { *out = llama_detokenize(vocab, tokens, n, buf, cap, false, render_special); });
}

// The longest piece (special tokens rendered) of any token, in bytes.
int mshim_vocab_max_piece(const llama_vocab *vocab, int32_t *out) noexcept {
    return guarded([&] {
        char buf[256];
        int32_t best = 0;
        const int32_t n = llama_vocab_n_tokens(vocab);
        for (llama_token t = 0; t < n; t++) {
            int32_t k = llama_token_to_piece(vocab, t, buf, sizeof buf, 0, true);
            if (k < 0) k = -k;
            if (k > best) best = k;
        }
        *out = best;
    });
}

// Whether any token strips the white space beside it (LSTRIP/RSTRIP): then white space in a
// prompt may give no tokens at all.
int mshim_vocab_strips_space(const llama_vocab *vocab, bool *out) noexcept {
    return guarded([&] {
        bool any = false;
        const int32_t n = llama_vocab_n_tokens(vocab);
        for (llama_token t = 0; t < n && !any; t++) {
            any = (llama_vocab_get_attr(vocab, t) & (LLAMA_TOKEN_ATTR_LSTRIP | LLAMA_TOKEN_ATTR_RSTRIP)) != 0;
        }
        *out = any;
    });
}

int mshim_decode(llama_context *ctx, llama_batch batch, int32_t *out) noexcept {
    return guarded([&] { *out = llama_decode(ctx, batch); });
}

int mshim_get_logits_ith(llama_context *ctx, int32_t i, float **out) noexcept {
    return guarded([&] { *out = llama_get_logits_ith(ctx, i); });
}

// Attaches a sampler chain to a sequence for backend sampling (*ok: llama.cpp took it).
int mshim_set_sampler(llama_context *ctx, int32_t seq, llama_sampler *chain, bool *ok) noexcept {
    *ok = false;
    return guarded([&] { *ok = llama_set_sampler(ctx, seq, chain); });
}

int mshim_get_embeddings_ith(llama_context *ctx, int32_t i, float **out) noexcept {
    return guarded([&] { *out = llama_get_embeddings_ith(ctx, i); });
}

int mshim_memory_seq_rm(llama_context *ctx, llama_seq_id seq, llama_pos p0, bool *out) noexcept {
    return guarded([&] { *out = llama_memory_seq_rm(llama_get_memory(ctx), seq, p0, -1); });
}

int mshim_memory_seq_cp(llama_context *ctx, llama_seq_id src, llama_seq_id dst, llama_pos p0,
                        llama_pos p1) noexcept {
    return guarded([&] { llama_memory_seq_cp(llama_get_memory(ctx), src, dst, p0, p1); });
}

int mshim_memory_seq_pos_range(llama_context *ctx, llama_seq_id seq, llama_pos *min,
                               llama_pos *max) noexcept {
    return guarded([&] {
        llama_memory_t mem = llama_get_memory(ctx);
        *min = llama_memory_seq_pos_min(mem, seq);
        *max = llama_memory_seq_pos_max(mem, seq);
    });
}

int mshim_batch_init(int32_t cap, llama_batch *out) noexcept {
    return guarded([&] { *out = llama_batch_init(cap, 0, 1); });
}

// The sampler chain of one stream, built whole: a failure frees what was built and answers NULL.
struct mshim_sampling {
    float temperature;
    int32_t top_k;
    float top_p;
    float min_p;
    float repeat_penalty;
    int32_t repeat_last_n;
    uint32_t seed;
    int32_t n_vocab;
    float presence_penalty;
    float frequency_penalty;
    const llama_logit_bias *logit_bias;
    int32_t n_logit_bias;
    const llama_vocab *vocab;
    const char *grammar; // GBNF with a rule "root", or NULL
};

// What mshim_sampler_new answers when llama.cpp refused the grammar (its words were logged).
const int MSHIM_BAD_GRAMMAR = 2;

// The chain (*out) and, apart from it, the grammar (*grammar_out, NULL without one): the grammar
// is checked against the token the chain picks, and applied to every candidate only when it
// rejects that token (as llama.cpp's common sampler does), which keeps its cost off most tokens.
int mshim_sampler_new(const mshim_sampling *p, llama_sampler **out,
                      llama_sampler **grammar_out) noexcept {
    llama_sampler *chain = nullptr;
    llama_sampler *grammar = nullptr;
    bool bad_grammar = false;
    int rc = guarded([&] {
        llama_sampler_chain_params cp = llama_sampler_chain_default_params();
        cp.no_perf = true;
        chain = llama_sampler_chain_init(cp);
        if (!chain) throw std::bad_alloc();
        auto add = [&](llama_sampler *s) {
            if (!s) throw std::bad_alloc();
            try {
                llama_sampler_chain_add(chain, s);
            } catch (...) {
                llama_sampler_free(s);
                throw;
            }
        };
        if (p->n_logit_bias > 0) {
            add(llama_sampler_init_logit_bias(p->n_vocab, p->n_logit_bias, p->logit_bias));
        }
        if (p->repeat_penalty != 1.0f || p->frequency_penalty != 0.0f || p->presence_penalty != 0.0f) {
            add(llama_sampler_init_penalties(p->n_vocab, p->repeat_last_n, p->repeat_penalty,
                                             p->frequency_penalty, p->presence_penalty));
        }
        if (p->grammar) {
            grammar = llama_sampler_init_grammar(p->vocab, p->grammar, "root");
            if (!grammar) {
                bad_grammar = true;
                throw std::invalid_argument("the grammar does not parse");
            }
        }
        if (p->temperature <= 0.0f) {
            add(llama_sampler_init_greedy());
        } else {
            if (p->top_k > 0) add(llama_sampler_init_top_k(p->top_k));
            if (p->top_p < 1.0f) add(llama_sampler_init_top_p(p->top_p, 1));
            if (p->min_p > 0.0f) add(llama_sampler_init_min_p(p->min_p, 1));
            add(llama_sampler_init_temp(p->temperature));
            add(llama_sampler_init_dist(p->seed));
        }
    });
    if (rc != 0) {
        if (chain) llama_sampler_free(chain);
        if (grammar) llama_sampler_free(grammar);
        chain = nullptr;
        grammar = nullptr;
    }
    *out = chain;
    *grammar_out = grammar;
    return bad_grammar ? MSHIM_BAD_GRAMMAR : rc;
}

// Samples output row i with the chain; with a grammar, the chain's pick is checked first, and
// only a rejected pick makes the grammar filter every candidate before the chain picks again.
// The token is accepted by both.
// The pick of a sampler chain over `logits` (n_vocab of them), the grammar applied to every
// candidate first when `grammar` is given, in slices of GRAMMAR_SLICE between which `stop` is
// asked (a grammar of many alternatives can take seconds over a whole vocabulary). Returns
// LLAMA_TOKEN_NULL when stopped.
} // extern "C"

namespace {
constexpr int32_t GRAMMAR_SLICE = 8192;

llama_token pick(llama_sampler *chain, llama_sampler *grammar, const float *logits, int32_t n,
                 int (*stop)(void *), void *stop_data) {
    thread_local std::vector<llama_token_data> cur;
    cur.resize(n);
    for (llama_token t = 0; t < n; t++) cur[t] = llama_token_data{t, logits[t], 0.0f};
    if (grammar) {
        for (int32_t at = 0; at < n; at += GRAMMAR_SLICE) {
            if (stop && stop(stop_data)) return LLAMA_TOKEN_NULL;
            llama_token_data_array slice{cur.data() + at, (size_t)std::min(GRAMMAR_SLICE, n - at), -1, false};
            llama_sampler_apply(grammar, &slice);
        }
    }
    llama_token_data_array arr{cur.data(), cur.size(), -1, false};
    llama_sampler_apply(chain, &arr);
    if (arr.selected < 0 || (size_t)arr.selected >= arr.size)
        throw std::runtime_error("the sampler selected no token");
    if (arr.data[arr.selected].logit == -std::numeric_limits<float>::infinity())
        throw std::runtime_error(grammar ? "no token is allowed by both the grammar and logit_bias"
                                         : "every token is banned (logit_bias -infinity)");
    return arr.data[arr.selected].id;
}

// After a rejected pick: the grammar checks the best SCREEN candidates first (by logit after the
// chain's logit bias and penalties), one pass over 256 tokens instead of the whole vocabulary
// (262,144 for Gemma 3: about 35 ms). When that settles the choice, the rest of the chain picks
// among the allowed ones: greedy, as soon as one is allowed (the best allowed token is the first
// in logit order); sampling, when every token outside the screen is more than MARGIN times the
// temperature (at least 1) below the best allowed one (together under 1e-3 of its probability
// after the temperature). Otherwise LLAMA_TOKEN_NULL: the grammar must filter every candidate.
llama_token screened(llama_sampler *chain, llama_sampler *grammar, const float *logits, int32_t n,
                     float temperature) {
    constexpr int32_t SCREEN = 256;
    constexpr float MARGIN = 20.0f;
    if (n <= SCREEN) return LLAMA_TOKEN_NULL;
    thread_local std::vector<llama_token_data> cur;
    const int32_t n_chain = llama_sampler_chain_n(chain);
    int32_t n_pre = 0;
    while (n_pre < n_chain) {
        const char *name = llama_sampler_name(llama_sampler_chain_get(chain, n_pre));
        if (std::strcmp(name, "logit-bias") != 0 && std::strcmp(name, "penalties") != 0) break;
        n_pre++;
    }
    const bool greedy =
        n_chain > 0 && std::strcmp(llama_sampler_name(llama_sampler_chain_get(chain, n_chain - 1)), "greedy") == 0;
    cur.resize(n);
    for (llama_token t = 0; t < n; t++) cur[t] = llama_token_data{t, logits[t], 0.0f};
    llama_token_data_array all{cur.data(), cur.size(), -1, false};
    for (int32_t k = 0; k < n_pre; k++) llama_sampler_apply(llama_sampler_chain_get(chain, k), &all);
    auto by_logit = [](const llama_token_data &a, const llama_token_data &b) {
        return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
    };
    std::partial_sort(cur.begin(), cur.begin() + SCREEN + 1, cur.end(), by_logit);
    const float outside = cur[SCREEN].logit; // the best token outside the screen
    llama_token_data_array top{cur.data(), (size_t)SCREEN, -1, true};
    llama_sampler_apply(grammar, &top);
    size_t allowed = 0;
    for (size_t k = 0; k < (size_t)SCREEN; k++)
        if (cur[k].logit != -std::numeric_limits<float>::infinity()) cur[allowed++] = cur[k];
    if (allowed == 0) return LLAMA_TOKEN_NULL;
    const float margin = MARGIN * std::max(1.0f, temperature);
    if (!greedy && !(cur[0].logit - outside > margin)) return LLAMA_TOKEN_NULL;
    llama_token_data_array arr{cur.data(), allowed, -1, true};
    for (int32_t k = n_pre; k < n_chain; k++) llama_sampler_apply(llama_sampler_chain_get(chain, k), &arr);
    if (arr.selected < 0 || (size_t)arr.selected >= arr.size) return LLAMA_TOKEN_NULL;
    return arr.data[arr.selected].id;
}

void accept_token(llama_sampler *chain, llama_sampler *grammar, llama_token id) {
    if (grammar) llama_sampler_accept(grammar, id);
    llama_sampler_accept(chain, id);
}

// The chain's pick among `top` alone, the n_top best tokens by logit, best first (sorted): the
// same pick as over the whole vocabulary when the chain begins with a top-k of at most n_top,
// without building and sorting an array of every token.
llama_token pick_top(llama_sampler *chain, const float *logits, const llama_token *top, int32_t n_top) {
    thread_local std::vector<llama_token_data> cur;
    cur.resize(n_top);
    for (int32_t i = 0; i < n_top; i++) cur[i] = llama_token_data{top[i], logits[top[i]], 0.0f};
    llama_token_data_array arr{cur.data(), cur.size(), -1, true};
    llama_sampler_apply(chain, &arr);
    if (arr.selected < 0 || (size_t)arr.selected >= arr.size)
        throw std::runtime_error("the sampler selected no token");
    return arr.data[arr.selected].id;
}

} // namespace

extern "C" {

// Samples from `logits` (n_vocab of them) and accepts the token: the chain picks, and the grammar
// (if any) checks that one pick, then the best candidates (see screened()). When neither settles
// it, *deferred is set and nothing is accepted: mshim_sampler_sample_full must filter every
// candidate, which can take long and is left to the caller to run where it stalls nobody. With
// n_top > 0 the chain picks among `top` (see pick_top()).
int mshim_sampler_sample(llama_sampler *chain, llama_sampler *grammar, const float *logits,
                         int32_t n_vocab, const llama_token *top, int32_t n_top, float temperature,
                         llama_token *out, bool *deferred) noexcept {
    *deferred = false;
    return guarded([&] {
        llama_token id = n_top > 0 ? pick_top(chain, logits, top, n_top)
                                   : pick(chain, nullptr, logits, n_vocab, nullptr, nullptr);
        if (grammar) {
            llama_token_data one{id, 1.0f, 0.0f};
            llama_token_data_array single{&one, 1, -1, false};
            llama_sampler_apply(grammar, &single);
            if (one.logit == -std::numeric_limits<float>::infinity()) {
                id = screened(chain, grammar, logits, n_vocab, temperature);
                if (id == LLAMA_TOKEN_NULL) {
                    *deferred = true;
                    return;
                }
            }
        }
        accept_token(chain, grammar, id);
        *out = id;
    });
}

// The deferred sampling: the grammar filters every candidate (asking `stop` between slices), the
// chain picks among the allowed ones, and both accept the token. *out is LLAMA_TOKEN_NULL, and
// nothing accepted, when `stop` answered non-zero.
int mshim_sampler_sample_full(llama_sampler *chain, llama_sampler *grammar, const float *logits,
                              int32_t n_vocab, int (*stop)(void *), void *stop_data,
                              llama_token *out) noexcept {
    *out = LLAMA_TOKEN_NULL;
    return guarded([&] {
        llama_token id = pick(chain, grammar, logits, n_vocab, stop, stop_data);
        if (id == LLAMA_TOKEN_NULL) return;
        accept_token(chain, grammar, id);
        *out = id;
    });
}

int mshim_sampler_accept(llama_sampler *s, llama_token token) noexcept {
    return guarded([&] { llama_sampler_accept(s, token); });
}

void mshim_string_free(char *s) noexcept { std::free(s); }

// The text of a token as the vocabulary stores it ("<bos>", "<start_of_turn>"); NULL for
// LLAMA_TOKEN_NULL.
int mshim_vocab_token_text(const llama_vocab *vocab, llama_token token, const char **out) noexcept {
    *out = nullptr;
    return guarded([&] {
        if (token != LLAMA_TOKEN_NULL) *out = llama_vocab_get_text(vocab, token);
    });
}

// Renders messages with one of llama.cpp's built-in (non-Jinja) templates, by name ("chatml",
// "gemma", "llama3", ...). *known is false when llama.cpp has no template of that name; otherwise
// *out is the malloc'ed text (free with mshim_string_free).
int mshim_chat_builtin(const char *name, const char *const *roles, const char *const *contents,
                       size_t n, bool add_assistant, bool *known, char **out) noexcept {
    *known = false;
    *out = nullptr;
    return guarded([&] {
        // Only names: llama_chat_apply_template would also guess a template from Jinja text.
        std::vector<const char *> names(256);
        int32_t count = llama_chat_builtin_templates(names.data(), names.size());
        bool found = false;
        for (int32_t i = 0; i < count && i < (int32_t)names.size(); i++)
            if (std::strcmp(names[i], name) == 0) found = true;
        if (!found) return;
        std::vector<llama_chat_message> chat(n);
        size_t size = 0;
        for (size_t i = 0; i < n; i++) {
            chat[i] = {roles[i], contents[i]};
            size += std::strlen(roles[i]) + std::strlen(contents[i]);
        }
        std::string buf(size * 2 + 256, '\0');
        int32_t len = llama_chat_apply_template(name, chat.data(), n, add_assistant, buf.data(),
                                                (int32_t)buf.size());
        if (len < 0) return;
        if ((size_t)len > buf.size()) {
            buf.resize(len);
            len = llama_chat_apply_template(name, chat.data(), n, add_assistant, buf.data(),
                                            (int32_t)buf.size());
            if (len < 0) return;
        }
        buf.resize(len);
        *known = true;
        copy_out(buf, out);
    });
}

} // extern "C"
