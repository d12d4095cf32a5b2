package minerva

/*
#include "shim.h"
*/
import "C"

import (
	"unsafe"
)

// Token is a token id of an engine's vocabulary (minerva_token).
type Token int32

// LogitBias is added to one token's logit (minerva_logit_bias); math.Inf(-1) bans the token.
type LogitBias struct {
	Token Token
	Bias  float32
}

// GenerateParams are the settings of one generation (minerva_generate_params). Start from
// DefaultGenerateParams() (a zero GenerateParams is not the defaults); nil means the defaults.
// They are read, and copied, when the stream starts. An empty Grammar or JSONSchema is none.
type GenerateParams struct {
	MaxTokens        uint32      // tokens to generate at most (default 256); 0: until end-of-generation or a full context
	Temperature      float32     // default 0.8; 0: greedy
	TopK             int32       // default 40; 0: off
	TopP             float32     // default 0.95; 1: off; in (0, 1]
	MinP             float32     // default 0.05; 0: off
	RepeatPenalty    float32     // default 1: off
	RepeatLastN      uint32      // window of the three penalties (default 64)
	Seed             uint64      // default SeedRandom
	Stop             []string    // stop strings, non-empty; the match is never delivered
	IgnoreEOS        bool        // keep going past end-of-generation (default false)
	CachePrompt      bool        // reuse KV cells of the same prompt prefix (default true)
	Grammar          string      // a GBNF grammar with a rule root
	JSONSchema       string      // a JSON Schema the output is valid against; not with Grammar
	PresencePenalty  float32     // default 0: off
	FrequencyPenalty float32     // default 0: off
	LogitBias        []LogitBias // biases added to token logits
	// The scale of each of the engine's LoRA adapters for this stream, in the order of
	// EngineParams.Loras (exactly that many; 0 turns one off); nil (default): the engine's
	// scales. Streams of different scales run on one engine at the same time.
	LoraScales []float32
}

// DefaultGenerateParams gives minerva's defaults (minerva_generate_params_init).
func DefaultGenerateParams() *GenerateParams {
	var c C.minerva_generate_params
	C.minerva_generate_params_init(&c, C.uint32_t(unsafe.Sizeof(c)))
	return &GenerateParams{
		MaxTokens:        uint32(c.max_tokens),
		Temperature:      float32(c.temperature),
		TopK:             int32(c.top_k),
		TopP:             float32(c.top_p),
		MinP:             float32(c.min_p),
		RepeatPenalty:    float32(c.repeat_penalty),
		RepeatLastN:      uint32(c.repeat_last_n),
		Seed:             uint64(c.seed),
		IgnoreEOS:        bool(c.ignore_eos),
		CachePrompt:      bool(c.cache_prompt),
		PresencePenalty:  float32(c.presence_penalty),
		FrequencyPenalty: float32(c.frequency_penalty),
	}
}

// toC fills c (its strings and arrays in m); nil p: the defaults. loraCount is the engine's
// number of adapters: minerva reads that many LoraScales.
func (p *GenerateParams) toC(m *cmem, c *C.minerva_generate_params, loraCount int) error {
	C.minerva_generate_params_init(c, C.uint32_t(unsafe.Sizeof(*c)))
	if p == nil {
		return nil
	}
	c.max_tokens = C.uint32_t(p.MaxTokens)
	c.temperature = C.float(p.Temperature)
	c.top_k = C.int32_t(p.TopK)
	c.top_p = C.float(p.TopP)
	c.min_p = C.float(p.MinP)
	c.repeat_penalty = C.float(p.RepeatPenalty)
	c.repeat_last_n = C.uint32_t(p.RepeatLastN)
	c.seed = C.uint64_t(p.Seed)
	c.ignore_eos = C.bool(p.IgnoreEOS)
	c.cache_prompt = C.bool(p.CachePrompt)
	c.presence_penalty = C.float(p.PresencePenalty)
	c.frequency_penalty = C.float(p.FrequencyPenalty)
	stop, err := m.strArray(p.Stop, "a stop string")
	if err != nil {
		return err
	}
	c.stop = stop
	c.stop_count = C.size_t(len(p.Stop))
	if c.grammar, err = m.optStr(p.Grammar, "the grammar"); err != nil {
		return err
	}
	if c.json_schema, err = m.optStr(p.JSONSchema, "the JSON schema"); err != nil {
		return err
	}
	if n := len(p.LogitBias); n > 0 {
		arr := (*C.minerva_logit_bias)(m.alloc(uintptr(n) * unsafe.Sizeof(C.minerva_logit_bias{})))
		items := unsafe.Slice(arr, n)
		for i, b := range p.LogitBias {
			items[i] = C.minerva_logit_bias{token: C.int32_t(b.Token), bias: C.float(b.Bias)}
		}
		c.logit_bias = arr
		c.logit_bias_count = C.size_t(n)
	}
	if p.LoraScales != nil {
		if len(p.LoraScales) != loraCount {
			return invalid("LoraScales has %d scales; the engine has %d adapters", len(p.LoraScales), loraCount)
		}
		if n := len(p.LoraScales); n > 0 {
			arr := (*C.float)(m.alloc(uintptr(n) * unsafe.Sizeof(C.float(0))))
			items := unsafe.Slice(arr, n)
			for i, s := range p.LoraScales {
				items[i] = C.float(s)
			}
			c.lora_scales = arr
		}
	}
	return nil
}

// FinishReason is why a stream ended (MINERVA_FINISH_*).
type FinishReason uint32

const (
	FinishRunning   FinishReason = C.MINERVA_FINISH_RUNNING   // not ended yet
	FinishLength    FinishReason = C.MINERVA_FINISH_LENGTH    // MaxTokens were generated
	FinishStop      FinishReason = C.MINERVA_FINISH_STOP      // a stop string matched, or the callback returned false
	FinishEOS       FinishReason = C.MINERVA_FINISH_EOS       // end-of-generation (or a complete grammar, or the end of a chat turn)
	FinishCancelled FinishReason = C.MINERVA_FINISH_CANCELLED // cancelled
	FinishError     FinishReason = C.MINERVA_FINISH_ERROR     // failed: Wait gives the error
)

func (r FinishReason) String() string {
	switch r {
	case FinishRunning:
		return "running"
	case FinishLength:
		return "length"
	case FinishStop:
		return "stop"
	case FinishEOS:
		return "eos"
	case FinishCancelled:
		return "cancelled"
	case FinishError:
		return "error"
	}
	return "unknown"
}

// Stats are the figures of one stream so far (minerva_stream_stats).
type Stats struct {
	PromptTokens          uint32 // with BOS where the model adds one
	CachedPromptTokens    uint32 // reused from the KV cache
	GeneratedTokens       uint32
	TimeToFirstTokenMs    float64 // from the start of the stream to its first generated token
	PromptTokensPerSecond float64
	TokensPerSecond       float64
	FinishReason          FinishReason
}

func statsFromC(c *C.minerva_stream_stats) Stats {
	return Stats{
		PromptTokens:          uint32(c.prompt_tokens),
		CachedPromptTokens:    uint32(c.cached_prompt_tokens),
		GeneratedTokens:       uint32(c.generated_tokens),
		TimeToFirstTokenMs:    float64(c.time_to_first_token_ms),
		PromptTokensPerSecond: float64(c.prompt_tokens_per_second),
		TokensPerSecond:       float64(c.tokens_per_second),
		FinishReason:          FinishReason(c.finish_reason),
	}
}
