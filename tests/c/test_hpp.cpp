// include/minerva.hpp on the real model, under ASan/UBSan/LSan: blocking, pull and callback
// streams, exceptions thrown by callbacks, errors as minerva::Error, moves and release; chat with
// a tool call and with the 0.3 chat params (template variables, reasoning), tokens and
// embeddings; game state (prefill, save, load) and LoRA adapters.
#include <minerva.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <unistd.h>
#include <stdexcept>
#include <string>
#include <vector>

#define CHECK(c)                                                                  \
    do {                                                                          \
        if (!(c)) {                                                               \
            std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #c); \
            std::exit(1);                                                         \
        }                                                                         \
    } while (0)

static int passed = 0;
static void pass(const char *name) {
    std::printf("ok - %s\n", name);
    std::fflush(stdout);
    passed++;
}

static minerva_generate_params greedy(uint32_t n) {
    auto p = minerva::generate_params();
    p.max_tokens = n;
    p.temperature = 0.0f;
    p.ignore_eos = true;
    p.cache_prompt = false;
    return p;
}

// The folder of the test LoRA adapters: $MINERVA_LORA_DIR, else what scripts/lora-adapters.sh
// prints (it writes them once), found beside this source file.
static std::string lora_dir() {
    if (const char *dir = std::getenv("MINERVA_LORA_DIR"); dir && *dir) return dir;
    std::string root = __FILE__;
    root = root.substr(0, root.rfind("tests/c/"));
    std::string cmd = (root.empty() ? std::string(".") : root) + "/scripts/lora-adapters.sh";
    FILE *f = popen(cmd.c_str(), "r");
    CHECK(f);
    std::string out;
    char buf[512];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
    CHECK(pclose(f) == 0);
    while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
    CHECK(!out.empty());
    return out;
}

int main() {
    const char *path = std::getenv("MINERVA_MODEL");
    CHECK(path);
    auto ep = minerva::engine_params();
    ep.max_streams = 4;
    ep.context_tokens = 512;
    minerva::Engine engine(path, ep);
    CHECK(engine.info().vocab_size > 0);

    std::string blocking = engine.generate("The lighthouse keeper said", greedy(16));
    CHECK(!blocking.empty());
    {
        minerva::Stream s = engine.stream("The lighthouse keeper said", greedy(16));
        std::string pulled = s.read_all();
        CHECK(s.finished() && s.wait());
        CHECK(pulled == blocking);
        CHECK(s.stats().generated_tokens == 16);
    }
    pass("generate and a pull stream give the same greedy text");

    {
        std::string got;
        int pieces = 0;
        minerva::Stream s = engine.stream(
            "The lighthouse keeper said", [&](std::string_view t) { got += t; pieces++; }, greedy(16));
        CHECK(s.wait());
        CHECK(got == blocking && pieces > 0);
        // A callable that returns false stops the stream.
        int calls = 0;
        minerva::Stream stop = engine.stream(
            "Once upon a time", [&](std::string_view) { return ++calls < 3; }, greedy(32));
        CHECK(stop.wait());
        CHECK(calls == 3 && stop.stats().finish_reason == MINERVA_FINISH_STOP);
    }
    pass("callback streams: lambdas with captures, false stops");

    {
        minerva::Stream s = engine.stream(
            "Once upon a time",
            [](std::string_view) -> bool { throw std::runtime_error("from the callback"); },
            greedy(32));
        bool caught = false;
        try {
            s.wait();
        } catch (const std::runtime_error &e) {
            caught = std::strcmp(e.what(), "from the callback") == 0;
        }
        CHECK(caught);
        CHECK(s.stats().generated_tokens == 1);
    }
    pass("an exception thrown by a callback stops the stream and comes out of wait()");

    {
        bool threw = false;
        try {
            minerva::Engine missing("/nonexistent/model.gguf");
        } catch (const minerva::Error &e) {
            threw = e.status() == MINERVA_ERR_IO && std::strstr(e.what(), "nonexistent");
        }
        CHECK(threw);
        auto bad = greedy(4);
        bad.temperature = -1.0f;
        threw = false;
        try {
            engine.generate("x", bad);
        } catch (const minerva::Error &e) {
            threw = e.status() == MINERVA_ERR_INVALID_ARGUMENT && std::strstr(e.what(), "temperature");
        }
        CHECK(threw);
    }
    pass("failures throw minerva::Error with the status and the message");

    {
        std::vector<minerva::Stream> many;
        for (int i = 0; i < 6; i++) many.push_back(engine.stream("A story:", greedy(64)));
        minerva::Stream moved = std::move(many[0]);
        CHECK(moved.get() != nullptr && many[0].get() == nullptr);
        std::move(many[1]).release(); // gives the handle back at once
        CHECK(many[1].get() == nullptr);
        std::string first = moved.read(0); // never waits
        (void)first;
        moved.cancel();
        CHECK(moved.wait()); // a cancelled stream ends: no exception
        CHECK(moved.stats().finish_reason == MINERVA_FINISH_CANCELLED ||
              moved.stats().finish_reason == MINERVA_FINISH_LENGTH);
    } // the rest are freed here, running or queued
    {
        minerva::Engine second(path, ep);
        minerva::Stream outlives = second.stream("Hello", greedy(8));
        minerva::Engine gone = std::move(second);
        (void)gone;
    } // the engine is destroyed before the stream: the stream's handle stays valid
    pass("moves, release, streams freed running or queued");

    {
        auto tokens = engine.tokenize("The lighthouse keeper said", false);
        CHECK(!tokens.empty());
        CHECK(engine.detokenize(tokens) == "The lighthouse keeper said");
        auto vectors = engine.embed({"a cat", "a dog", "the stock market"});
        CHECK(vectors.size() == 3 && vectors[0].size() == engine.info().embedding_dims);
        bool threw = false;
        try {
            engine.tokenize(std::string("bad \xff utf-8"));
        } catch (const minerva::Error &e) {
            threw = e.status() == MINERVA_ERR_INVALID_ARGUMENT;
        }
        CHECK(threw);
    }
    pass("tokenize, detokenize, embed");

    {
        const char *chat_path = std::getenv("MINERVA_CHAT_MODEL");
        CHECK(chat_path);
        minerva::Engine chat_engine(chat_path, ep);
        std::vector<minerva::Message> turns = {
            {"system", "You are Bram, the guard of the town gate."},
            {"user", "A thief ran toward the tavern! Stop him!"},
        };
        std::string rendered = chat_engine.chat_format(turns);
        CHECK(rendered.find("the guard of the town gate") != std::string::npos);
        auto chat = minerva::chat_params();
        chat.tools_json = R"([{"type": "function", "function": {"name": "walk_to",
            "parameters": {"type": "object", "properties": {"place": {"enum": ["tavern", "gate"]}},
            "required": ["place"]}}}])";
        chat.tool_choice = MINERVA_TOOL_CHOICE_REQUIRED;
        auto p = greedy(200);
        p.ignore_eos = false;
        std::string text;
        minerva::Stream s = chat_engine.chat(turns, [&](std::string_view t) { text += t; }, chat, p);
        CHECK(s.wait());
        std::string calls = s.tool_calls();
        CHECK(calls.find("\"walk_to\"") != std::string::npos);
        // The tool turn answers the first call by its id: "call_" and 9 letters and digits.
        size_t at = calls.find("\"id\":\"call_");
        CHECK(at != std::string::npos && calls.size() > at + 20 && calls[at + 20] == '"');
        std::string id = calls.substr(at + 6, 14);
        turns.push_back({"assistant", "", calls});
        turns.push_back({"tool", "The thief is caught.", "", id});
        minerva::Stream next = chat_engine.chat(turns, minerva::chat_params(), greedy(8));
        next.read_all();
        CHECK(next.wait());
    }
    pass("chat: a required tool call, its result as the next turn");

    {
        auto chat = minerva::chat_params();
        CHECK(chat.reasoning == MINERVA_REASONING_AUTO && !chat.continue_final_message &&
              chat.max_tool_calls == 0 && chat.template_kwargs_json == nullptr);
        chat.template_kwargs_json = R"({"enable_thinking": false})";
        chat.reasoning = MINERVA_REASONING_NONE;
        chat.max_tool_calls = 2;
        minerva::Stream s = engine.chat({{"user", "Hello"}}, chat, greedy(8));
        CHECK(s.reasoning().empty()); // while it runs
        s.read_all();
        CHECK(s.wait());
        CHECK(s.reasoning().empty()); // the default model's template marks no reasoning
        chat.template_kwargs_json = "[1]";
        bool threw = false;
        try {
            engine.chat({{"user", "Hello"}}, chat, greedy(8));
        } catch (const minerva::Error &e) {
            threw = e.status() == MINERVA_ERR_INVALID_ARGUMENT &&
                    std::string(e.what()).find("template_kwargs_json") != std::string::npos;
        }
        CHECK(threw);
    }
    pass("chat: template_kwargs_json, reasoning NONE, Stream::reasoning(), a bad kwargs object");

    {
        const std::string persona =
            "You are Ilse, the ferrywoman of the northern lake.\n"
            "Ilse knows every current and every traveller who ever crossed without paying.\n";
        const std::string ask = persona + "Traveller: How much for the crossing?\nIlse:";
        engine.cache_prefill(persona, true);
        auto info = engine.info();
        CHECK(info.pinned_tokens > 10 && info.pinned_bytes > 0);
        engine.cache_prefill(persona); // pinned already: not pinned twice
        CHECK(engine.info().pinned_tokens == info.pinned_tokens);
        std::vector<unsigned char> bytes = engine.cache_save();
        CHECK(bytes.size() > 100);

        minerva::Engine second(path, ep);
        CHECK(second.info().pinned_tokens == 0);
        second.cache_load(bytes);
        CHECK(second.info().pinned_tokens == info.pinned_tokens);
        auto p = greedy(8);
        p.cache_prompt = true;
        minerva::Stream s = second.stream(ask, p);
        s.read_all();
        CHECK(s.wait());
        CHECK(s.stats().cached_prompt_tokens > 0);

        std::string file = "/tmp/minerva-test-hpp-" + std::to_string(getpid()) + ".bin";
        engine.cache_save_file(file);
        minerva::Engine third(path, ep);
        third.cache_load_file(file);
        CHECK(third.info().pinned_tokens == info.pinned_tokens);
        std::remove(file.c_str());

        bytes[bytes.size() / 2] ^= 1;
        bool threw = false;
        try {
            third.cache_load(bytes);
        } catch (const minerva::Error &e) {
            threw = e.status() == MINERVA_ERR_INVALID_ARGUMENT;
        }
        CHECK(threw);
        threw = false;
        try {
            third.cache_load_file("/nonexistent/dir/save.bin");
        } catch (const minerva::Error &e) {
            threw = e.status() == MINERVA_ERR_IO && std::strstr(e.what(), "nonexistent");
        }
        CHECK(threw);
    }
    pass("game state: prefill pinned, cache_save, cache_load into another engine, a file, "
         "corrupt bytes");

    {
        std::string dir = lora_dir();
        std::string voice = dir + "/voice.gguf", wrong = dir + "/wrong-shape.gguf";
        minerva_lora one[] = {{voice.c_str(), 1.0f}};
        auto lp = ep;
        lp.max_streams = 1;
        lp.loras = one;
        lp.lora_count = 1;
        minerva::Engine with(path, lp);
        const char *prompt = "The old lighthouse keeper said";
        std::string adapted = with.generate(prompt, greedy(24));
        float off[] = {0.0f};
        auto p = greedy(24);
        p.lora_scales = off;
        std::string plain = with.generate(prompt, p);
        CHECK(adapted != plain);
        CHECK(plain == engine.generate(prompt, greedy(24)));
        minerva_lora bad[] = {{wrong.c_str(), 1.0f}};
        lp.loras = bad;
        bool threw = false;
        try {
            minerva::Engine refused(path, lp);
        } catch (const minerva::Error &e) {
            threw = e.status() == MINERVA_ERR_MODEL && std::strstr(e.what(), "wrong-shape.gguf");
        }
        CHECK(threw);
    }
    pass("LoRA: an adapter changes the text, lora_scales 0 turns it off, a wrong shape throws");

    std::printf("%d passed, 0 failed\n", passed);
    return 0;
}
