// llama.cpp's own chat-template rendering (common/chat.h, its Jinja engine), for the tests only:
// minerva renders templates with minijinja, whose fuel bounds the work a template from a stranger's
// model file can make (llama.cpp's engine has no such limit), and its tests compare the two on the
// same templates. Nothing in the library calls this; the linker drops it from the library.

#include "chat.h"

#include <cstdlib>
#include <cstring>
#include <string>

extern "C" {

// Renders `messages_json` (an OpenAI-style array) with `tmpl` (Jinja text) as llama.cpp's server
// would. 0 and *out (malloc'ed) on success; otherwise non-zero and *out holds the error message.
int mshim_reference_render(const char *tmpl, const char *messages_json, const char *tools_json,
                           bool add_generation_prompt, const char *bos, const char *eos,
                           char **out) noexcept {
    std::string result;
    int rc = 0;
    try {
        auto tmpls = common_chat_templates_init(nullptr, tmpl, bos, eos);
        common_chat_templates_inputs in;
        in.messages = common_chat_msgs_parse_oaicompat(common_json::parse(messages_json));
        if (tools_json) in.tools = common_chat_tools_parse_oaicompat(common_json::parse(tools_json));
        in.add_generation_prompt = add_generation_prompt;
        in.use_jinja = true;
        result = common_chat_templates_apply(tmpls.get(), in).prompt;
    } catch (const std::exception &e) {
        result = e.what();
        rc = 1;
    } catch (...) {
        result = "unknown exception";
        rc = 1;
    }
    *out = static_cast<char *>(std::malloc(result.size() + 1));
    if (!*out) return 2;
    std::memcpy(*out, result.c_str(), result.size() + 1);
    return rc;
}

} // extern "C"
