// llama.cpp's chat-format code (common/chat.h): what a template's model writes for tool calls and
// reasoning, found by llama.cpp's detection (its specialised handlers and the autoparser that
// analyses a template by rendering it), and the PEG parser that reads the model's output back.
//
// minerva renders the prompts itself (minijinja, fuel-bounded); llama.cpp's Jinja engine has no
// bound, so the Rust side gives these functions only small fixed probe conversations, after
// minijinja has rendered the same template on them within its fuel (src/engine/chat/format.rs).
//
// Every function catches every exception: the answer is 0 and a malloc'ed JSON text in *out, or
// non-zero and a malloc'ed message in *out.

#include "chat.h"

#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <string>

namespace {

int give(const std::string &text, int rc, char **out) noexcept {
    *out = static_cast<char *>(std::malloc(text.size() + 1));
    if (!*out) return 2;
    std::memcpy(*out, text.c_str(), text.size() + 1);
    return rc;
}

template <typename F> int guarded(char **out, F f) noexcept {
    try {
        return give(f(), 0, out);
    } catch (const std::exception &e) {
        try {
            return give(e.what(), 1, out);
        } catch (...) {
        }
    } catch (...) {
    }
    *out = nullptr;
    return 1;
}

common_chat_tool_choice choice_of(const std::string &s) {
    if (s == "required") return COMMON_CHAT_TOOL_CHOICE_REQUIRED;
    if (s == "none") return COMMON_CHAT_TOOL_CHOICE_NONE;
    return COMMON_CHAT_TOOL_CHOICE_AUTO;
}

common_json msg_json(const common_chat_msg &msg) {
    common_json calls = common_json::array();
    for (const auto &c : msg.tool_calls) {
        calls.push_back({{"name", c.name}, {"arguments", c.arguments}, {"id", c.id}});
    }
    return {{"content", msg.content}, {"reasoning", msg.reasoning_content}, {"calls", calls}};
}

} // namespace

struct mshim_chat_parser {
    common_chat_parser_params params;
};

extern "C" {

// What llama.cpp makes of `tmpl` for these inputs. `inputs_json`: {"messages": [...], "tools":
// [...] or absent, "tool_choice": "auto"|"required"|"none", "parallel": bool, "reasoning": bool,
// "kwargs": {...}, "add_generation_prompt": bool, "continue": bool}.
int mshim_chat_analyze(const char *tmpl, const char *bos, const char *eos, const char *inputs_json,
                       char **out) noexcept {
    return guarded(out, [&] {
        auto in_json = common_json::parse(inputs_json);
        auto tmpls = common_chat_templates_init(nullptr, tmpl, bos, eos);
        common_chat_templates_inputs in;
        in.messages = common_chat_msgs_parse_oaicompat(in_json.at("messages"));
        if (in_json.contains("tools") && in_json["tools"].is_array()) {
            in.tools = common_chat_tools_parse_oaicompat(in_json["tools"]);
        }
        in.tool_choice = choice_of(in_json.value("tool_choice", std::string("auto")));
        in.parallel_tool_calls = in_json.value("parallel", false);
        in.reasoning_format = in_json.value("reasoning", true) ? COMMON_REASONING_FORMAT_DEEPSEEK
                                                                : COMMON_REASONING_FORMAT_NONE;
        in.add_generation_prompt = in_json.value("add_generation_prompt", true);
        if (in_json.value("continue", false)) {
            in.continue_final_message = COMMON_CHAT_CONTINUATION_AUTO;
        }
        in.use_jinja = true;
        if (in_json.contains("kwargs") && in_json["kwargs"].is_object()) {
            for (const auto &[k, v] : in_json["kwargs"].items()) {
                in.chat_template_kwargs[k] = v.dump();
                if (k == "enable_thinking" && v.is_boolean()) in.enable_thinking = v.get<bool>();
            }
        }
        auto p = common_chat_templates_apply(tmpls.get(), in);
        auto caps = common_chat_templates_get_caps(tmpls.get());
        common_json triggers = common_json::array();
        for (const auto &t : p.grammar_triggers) {
            triggers.push_back({{"type", static_cast<int>(t.type)}, {"value", t.value}});
        }
        common_json r = {
            {"format", static_cast<int>(p.format)},
            {"format_name", common_chat_format_name(p.format)},
            {"prompt", p.prompt},
            {"grammar", p.grammar},
            {"grammar_lazy", p.grammar_lazy},
            {"grammar_triggers", triggers},
            {"generation_prompt", p.generation_prompt},
            {"parser", p.parser},
            {"supports_thinking", p.supports_thinking},
            {"thinking_start_tag", p.thinking_start_tag},
            {"thinking_end_tags", p.thinking_end_tags},
            {"preserved_tokens", p.preserved_tokens},
            {"additional_stops", p.additional_stops},
            {"supports_tool_calls", caps["supports_tool_calls"]},
        };
        return r.dump();
    });
}

// A reader of the model's output: the parser `mshim_chat_analyze` gave (its "parser" text) and
// the format and generation prompt that go with it.
int mshim_chat_parser_new(const char *parser, int format, const char *generation_prompt,
                          bool reasoning, mshim_chat_parser **handle, char **err) noexcept {
    *handle = nullptr;
    int rc = guarded(err, [&] {
        auto h = std::make_unique<mshim_chat_parser>();
        h->params.format = static_cast<common_chat_format>(format);
        h->params.generation_prompt = generation_prompt;
        h->params.reasoning_format =
            reasoning ? COMMON_REASONING_FORMAT_DEEPSEEK : COMMON_REASONING_FORMAT_NONE;
        h->params.parse_tool_calls = true;
        if (parser && *parser) h->params.parser.load(parser);
        *handle = h.release();
        return std::string();
    });
    if (rc == 0) {
        std::free(*err);
        *err = nullptr;
    }
    return rc;
}

// Reads `input` (the output so far; `partial`: more may come) as {"content", "reasoning",
// "calls": [{"name", "arguments", "id"}]}.
int mshim_chat_parse(const mshim_chat_parser *h, const char *input, size_t len, bool partial,
                     char **out) noexcept {
    return guarded(out, [&] {
        std::string text(input, len);
        auto msg = common_chat_peg_parse(h->params.parser, text, partial, h->params);
        return msg_json(msg).dump();
    });
}

void mshim_chat_parser_free(mshim_chat_parser *h) noexcept { delete h; }

} // extern "C"
