package minerva

/*
#include "shim.h"
*/
import "C"

import (
	"context"
	"unsafe"
)

// Message is one turn of a conversation (minerva_chat_message).
type Message struct {
	Role          string // "system", "user", "assistant" or "tool"
	Content       string // the text; "" with ToolCallsJSON set is an assistant turn that only called tools
	ToolCallsJSON string // assistant turns: the calls it made, as Stream.ToolCallsJSON gave them
	ToolCallID    string // tool turns: the id of the call this turn answers
}

// ToolChoice is whether and how the model may call tools (MINERVA_TOOL_CHOICE_*).
type ToolChoice uint32

const (
	ToolChoiceAuto     ToolChoice = C.MINERVA_TOOL_CHOICE_AUTO     // the model may answer or call tools
	ToolChoiceNone     ToolChoice = C.MINERVA_TOOL_CHOICE_NONE     // the tools are not offered
	ToolChoiceRequired ToolChoice = C.MINERVA_TOOL_CHOICE_REQUIRED // the reply is one to four valid calls
)

// Reasoning is what becomes of the reasoning a model writes (MINERVA_REASONING_*).
type Reasoning uint32

const (
	// The reasoning the template's format marks (<think>...</think>, ...) is kept apart from the
	// text: never delivered as text, readable with Stream.Reasoning.
	ReasoningAuto Reasoning = C.MINERVA_REASONING_AUTO
	ReasoningNone Reasoning = C.MINERVA_REASONING_NONE // the reasoning is left in the text
)

// ChatParams say how a conversation is rendered (minerva_chat_params). Start from
// DefaultChatParams(); nil means the defaults.
type ChatParams struct {
	// "" (default): the model's own template (ChatML if it has none); otherwise a Jinja template
	// text or the name of one built into llama.cpp ("chatml", "gemma", "llama3", ...).
	ChatTemplate string
	// "" (default) or an OpenAI-style JSON array of tools:
	// [{"type": "function", "function": {"name", "description", "parameters"}}].
	ToolsJSON  string
	ToolChoice ToolChoice // default ToolChoiceAuto
	// End the rendering with the start of an assistant turn (default true).
	AddGenerationPrompt bool
	// "" (default) or a JSON object of extra template variables, e.g. {"enable_thinking": false};
	// anything else is ErrInvalidArgument.
	TemplateKwargsJSON string
	Reasoning          Reasoning // default ReasoningAuto
	// The last message is an assistant turn the model continues (rendered without its end of
	// turn); a last message of another role is ErrInvalidArgument.
	ContinueFinalMessage bool
	// A ToolChoiceRequired reply holds 1 to MaxToolCalls calls; 0 (default): 4.
	MaxToolCalls uint32
}

// DefaultChatParams gives minerva's defaults (minerva_chat_params_init).
func DefaultChatParams() *ChatParams {
	var c C.minerva_chat_params
	C.minerva_chat_params_init(&c, C.uint32_t(unsafe.Sizeof(c)))
	return &ChatParams{
		ToolChoice:           ToolChoice(c.tool_choice),
		AddGenerationPrompt:  bool(c.add_generation_prompt),
		Reasoning:            Reasoning(c.reasoning),
		ContinueFinalMessage: bool(c.continue_final_message),
		MaxToolCalls:         uint32(c.max_tool_calls),
	}
}

func (p *ChatParams) toC(m *cmem, c *C.minerva_chat_params) error {
	C.minerva_chat_params_init(c, C.uint32_t(unsafe.Sizeof(*c)))
	if p == nil {
		return nil
	}
	var err error
	if c.chat_template, err = m.optStr(p.ChatTemplate, "the chat template"); err != nil {
		return err
	}
	if c.tools_json, err = m.optStr(p.ToolsJSON, "the tools JSON"); err != nil {
		return err
	}
	c.tool_choice = C.minerva_tool_choice(p.ToolChoice)
	c.add_generation_prompt = C.bool(p.AddGenerationPrompt)
	if c.template_kwargs_json, err = m.optStr(p.TemplateKwargsJSON, "the template kwargs JSON"); err != nil {
		return err
	}
	c.reasoning = C.minerva_reasoning(p.Reasoning)
	c.continue_final_message = C.bool(p.ContinueFinalMessage)
	c.max_tool_calls = C.uint32_t(p.MaxToolCalls)
	return nil
}

// messagesToC copies msgs into a C array (NULL for an empty list, which minerva refuses).
func messagesToC(m *cmem, msgs []Message) (*C.minerva_chat_message, error) {
	if len(msgs) == 0 {
		return nil, nil
	}
	arr := (*C.minerva_chat_message)(m.alloc(uintptr(len(msgs)) * unsafe.Sizeof(C.minerva_chat_message{})))
	items := unsafe.Slice(arr, len(msgs))
	for i, msg := range msgs {
		var err error
		if items[i].role, err = m.str(msg.Role, "a message role"); err != nil {
			return nil, err
		}
		if msg.Content != "" || msg.ToolCallsJSON == "" {
			if items[i].content, err = m.str(msg.Content, "a message content"); err != nil {
				return nil, err
			}
		}
		if items[i].tool_calls_json, err = m.optStr(msg.ToolCallsJSON, "a message's tool calls"); err != nil {
			return nil, err
		}
		if items[i].tool_call_id, err = m.optStr(msg.ToolCallID, "a message's tool call id"); err != nil {
			return nil, err
		}
	}
	return arr, nil
}

// ChatFormat renders msgs with the chat template as the model would see them
// (minerva_chat_format): the text a chat stream on them starts from.
func (e *Engine) ChatFormat(msgs []Message, c *ChatParams) (string, error) {
	var m cmem
	defer m.free()
	cmsgs, err := messagesToC(&m, msgs)
	if err != nil {
		return "", err
	}
	var cc C.minerva_chat_params
	if err := c.toC(&m, &cc); err != nil {
		return "", err
	}
	ep := e.acquire()
	if ep == nil {
		return "", ErrClosed
	}
	defer e.release()
	return sized(func(buf *C.char, cap C.size_t, n *C.size_t, cerr **C.char) C.minerva_status {
		return C.mv_chat_format(ep, cmsgs, C.size_t(len(msgs)), &cc, buf, cap, n, cerr)
	})
}

// ChatStream renders msgs and starts a pull-mode stream on them (minerva_chat_stream_new). The
// stream ends at the end of the assistant's turn; with tools, its text is the reply's content
// and the calls come from ToolCalls once it has ended; with ReasoningAuto, the reasoning the
// model writes is kept out of the text and comes from Stream.Reasoning. Context and errors as
// Engine.Stream.
func (e *Engine) ChatStream(ctx context.Context, msgs []Message, c *ChatParams, p *GenerateParams) (*Stream, error) {
	return e.startChat(ctx, msgs, c, p, nil)
}

// ChatStreamFunc is ChatStream in callback mode; fn as for StreamFunc.
func (e *Engine) ChatStreamFunc(ctx context.Context, msgs []Message, c *ChatParams, p *GenerateParams, fn func(text string) bool) (*Stream, error) {
	if fn == nil {
		return nil, invalid("ChatStreamFunc needs a callback")
	}
	return e.startChat(ctx, msgs, c, p, fn)
}

func (e *Engine) startChat(ctx context.Context, msgs []Message, c *ChatParams, p *GenerateParams, fn func(string) bool) (*Stream, error) {
	return e.start(ctx, p, fn, func(m *cmem, ep *C.minerva_engine, cp *C.minerva_generate_params,
		h C.uintptr_t, out **C.minerva_stream, cerr **C.char) (C.minerva_status, error) {
		cmsgs, err := messagesToC(m, msgs)
		if err != nil {
			return 0, err
		}
		var cc C.minerva_chat_params
		if err := c.toC(m, &cc); err != nil {
			return 0, err
		}
		return C.mv_chat_stream_new(ep, cmsgs, C.size_t(len(msgs)), &cc, cp, h, out, cerr), nil
	})
}

// ChatReply is the whole of a chat turn.
type ChatReply struct {
	Text          string     // the reply's content (tool-call markup is never in it)
	ToolCalls     []ToolCall // the calls it made, if any
	ToolCallsJSON string     // the same as minerva gave them: the next assistant Message's ToolCallsJSON
	Reasoning     string     // the reasoning kept out of Text (ReasoningAuto); "" when there is none
	Stats         Stats
}

// Chat runs one chat turn to its end: ChatStream, then its text, tool calls, reasoning and
// figures. When ctx is done it is cancelled as Generate is (the reply so far comes with the
// error).
func (e *Engine) Chat(ctx context.Context, msgs []Message, c *ChatParams, p *GenerateParams) (ChatReply, error) {
	s, err := e.ChatStream(ctx, msgs, c, p)
	if err != nil {
		return ChatReply{}, err
	}
	defer s.Close()
	var r ChatReply
	r.Text, err = s.readAll()
	if err != nil {
		return r, err
	}
	if r.ToolCallsJSON, err = s.ToolCallsJSON(); err != nil {
		return r, err
	}
	if r.ToolCalls, err = s.ToolCalls(); err != nil {
		return r, err
	}
	if r.Reasoning, err = s.Reasoning(); err != nil {
		return r, err
	}
	r.Stats, err = s.Stats()
	return r, err
}
