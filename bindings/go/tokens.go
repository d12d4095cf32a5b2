package minerva

/*
#include "shim.h"
*/
import "C"

import (
	"unsafe"
)

// Tokenize gives the tokens of text in the engine's vocabulary (minerva_tokenize): with
// addSpecial, BOS (and EOS) where the vocabulary asks for them; with parseSpecial, special tokens
// written in the text become their token. With both, exactly the tokens a stream on text starts
// from (Stats.PromptTokens). Any goroutine, a callback too.
func (e *Engine) Tokenize(text string, addSpecial, parseSpecial bool) ([]Token, error) {
	var m cmem
	defer m.free()
	ctext, err := m.str(text, "the text")
	if err != nil {
		return nil, err
	}
	ep := e.acquire()
	if ep == nil {
		return nil, ErrClosed
	}
	defer e.release()
	var n C.size_t
	var cerr *C.char
	st := C.mv_tokenize(ep, ctext, C.bool(addSpecial), C.bool(parseSpecial), nil, 0, &n, &cerr)
	for {
		switch st {
		case C.MINERVA_OK:
			return []Token{}, nil
		case C.MINERVA_ERR_BUFFER_TOO_SMALL:
			C.free(unsafe.Pointer(cerr))
			cerr = nil
		default:
			return nil, callError(st, cerr)
		}
		toks := make([]Token, n)
		st = C.mv_tokenize(ep, ctext, C.bool(addSpecial), C.bool(parseSpecial),
			(*C.minerva_token)(unsafe.Pointer(&toks[0])), n, &n, &cerr)
		if st == C.MINERVA_OK {
			return toks[:n], nil
		}
	}
}

// Detokenize gives the text of tokens as the model would write it (minerva_detokenize); special
// tokens (BOS, "<end_of_turn>") are shown with renderSpecial, left out otherwise. Any
// goroutine, a callback too.
func (e *Engine) Detokenize(tokens []Token, renderSpecial bool) (string, error) {
	ep := e.acquire()
	if ep == nil {
		return "", ErrClosed
	}
	defer e.release()
	var ptr *C.minerva_token
	if len(tokens) > 0 {
		ptr = (*C.minerva_token)(unsafe.Pointer(&tokens[0]))
	}
	return sized(func(buf *C.char, cap C.size_t, n *C.size_t, cerr **C.char) C.minerva_status {
		return C.mv_detokenize(ep, ptr, C.size_t(len(tokens)), C.bool(renderSpecial), buf, cap, n, cerr)
	})
}

// Pooling is how the vectors of a text's tokens become one (MINERVA_POOLING_*).
type Pooling uint32

const (
	PoolingDefault Pooling = C.MINERVA_POOLING_DEFAULT // the model's own, else mean
	PoolingMean    Pooling = C.MINERVA_POOLING_MEAN
	PoolingLast    Pooling = C.MINERVA_POOLING_LAST
	PoolingCLS     Pooling = C.MINERVA_POOLING_CLS
)

// EmbedParams are the settings of Embed (minerva_embed_params). Start from
// DefaultEmbedParams(); nil means the defaults.
type EmbedParams struct {
	Pooling   Pooling // default PoolingDefault
	Normalize bool    // L2-normalize each vector (default true): a dot product is then the cosine
}

// DefaultEmbedParams gives minerva's defaults (minerva_embed_params_init).
func DefaultEmbedParams() *EmbedParams {
	var c C.minerva_embed_params
	C.minerva_embed_params_init(&c, C.uint32_t(unsafe.Sizeof(c)))
	return &EmbedParams{Pooling: Pooling(c.pooling), Normalize: bool(c.normalize)}
}

// Embed gives one vector per text, each EngineInfo.EmbeddingDims long (minerva_embed). It works
// while the engine's streams generate (they slow down, never stop), and blocks until the vectors
// are done: not from inside a callback (ErrInvalidArgument). Engine.Close waits for it.
func (e *Engine) Embed(texts []string, p *EmbedParams) ([][]float32, error) {
	var m cmem
	defer m.free()
	ctexts, err := m.strArray(texts, "a text")
	if err != nil {
		return nil, err
	}
	var cp C.minerva_embed_params
	C.minerva_embed_params_init(&cp, C.uint32_t(unsafe.Sizeof(cp)))
	if p != nil {
		cp.pooling = C.minerva_pooling(p.Pooling)
		cp.normalize = C.bool(p.Normalize)
	}
	ep := e.acquire()
	if ep == nil {
		return nil, ErrClosed
	}
	defer e.release()
	count := C.size_t(len(texts))
	var n C.size_t
	var cerr *C.char
	st := C.mv_embed(ep, ctexts, count, &cp, nil, 0, &n, &cerr)
	switch st {
	case C.MINERVA_OK:
		if n == 0 {
			return [][]float32{}, nil
		}
	case C.MINERVA_ERR_BUFFER_TOO_SMALL:
		C.free(unsafe.Pointer(cerr))
		cerr = nil
	default:
		return nil, callError(st, cerr)
	}
	flat := make([]float32, n)
	st = C.mv_embed(ep, ctexts, count, &cp, (*C.float)(unsafe.Pointer(&flat[0])), n, &n, &cerr)
	if st != C.MINERVA_OK {
		return nil, callError(st, cerr)
	}
	dims := len(flat) / len(texts)
	out := make([][]float32, len(texts))
	for i := range out {
		out[i] = flat[i*dims : (i+1)*dims : (i+1)*dims]
	}
	return out, nil
}
