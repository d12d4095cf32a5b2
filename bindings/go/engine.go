package minerva

/*
#cgo LDFLAGS: -lminerva
#include "shim.h"
*/
import "C"

import (
	"runtime"
	"strings"
	"sync"
	"unsafe"
)

// HeaderABIVersion is MINERVA_ABI_VERSION of the minerva.h this package was built with;
// ABIVersion() gives the library's. They differ only when the program runs against another
// library than the one it was built for.
const HeaderABIVersion = C.MINERVA_ABI_VERSION

// SeedRandom (MINERVA_SEED_RANDOM) as GenerateParams.Seed asks for a new random seed per stream.
const SeedRandom uint64 = 1<<64 - 1

// Version is the library's version, e.g. "0.1.0" (minerva_version).
func Version() string { return C.GoString(C.minerva_version()) }

// ABIVersion is the library's ABI version (minerva_abi_version).
func ABIVersion() uint32 { return uint32(C.minerva_abi_version()) }

// EngineParams are the settings of an engine (minerva_engine_params). Start from
// DefaultEngineParams(); Open(path, nil) uses the defaults.
type EngineParams struct {
	// Layers to offload to the GPU and the RPCServers' devices: -1 (default): as many as fit;
	// 0: CPU only; N: at most N. Without a usable device the engine runs on the CPU
	// (EngineInfo.FallbackReason says why).
	GPULayers int32
	// Tokens one stream can hold, prompt and text (default 2048).
	ContextTokens uint32
	// Streams decoded together (default 4); more wait in a queue.
	MaxStreams uint32
	// CPU threads for decoding; 0 (default): one per physical core.
	Threads uint32
	// Tokens per decode step, all streams together (default 512).
	BatchTokens uint32
	// Map the model file instead of reading it (default true).
	UseMmap bool
	// Optional: called during Open, on Open's goroutine, with the load progress from 0 to 1;
	// return false to abort the load (Open then fails with ErrCancelled). A panic in it aborts
	// the load too and comes back from Open as a *PanicError.
	Progress func(progress float32) bool
	// Other machines' devices through ggml's RPC protocol (docs/RPC.md): "host:port" of
	// minerva-rpc-server processes, e.g. {"10.0.0.2:50052", "10.0.0.3:50052"}; nil or empty
	// (default): none. Passed to minerva joined with commas (rpc_servers). Their devices take
	// layers with the local GPU's (GPULayers). Open fails with ErrBackend naming a server that
	// cannot be reached, and with ErrInvalidArgument for a malformed entry. The protocol has no
	// authentication: loopback or a trusted network only.
	RPCServers []string
	// LoRA adapters loaded with the model (minerva_engine_params.loras), at most 32: each a GGUF
	// adapter made for this model, with its default scale for every stream (a stream may give
	// its own, GenerateParams.LoraScales). Open fails with ErrModel naming the file of an
	// adapter that does not fit the model, ErrIO for a missing file.
	Loras []Lora
}

// Lora is one LoRA adapter of EngineParams.Loras (minerva_lora).
type Lora struct {
	Path  string  // the adapter's GGUF file
	Scale float32 // its default scale for every stream (1: as trained; 0: off)
}

// DefaultEngineParams gives minerva's defaults (minerva_engine_params_init).
func DefaultEngineParams() *EngineParams {
	var c C.minerva_engine_params
	C.minerva_engine_params_init(&c, C.uint32_t(unsafe.Sizeof(c)))
	return &EngineParams{
		GPULayers:     int32(c.gpu_layers),
		ContextTokens: uint32(c.context_tokens),
		MaxStreams:    uint32(c.max_streams),
		Threads:       uint32(c.threads),
		BatchTokens:   uint32(c.batch_tokens),
		UseMmap:       bool(c.use_mmap),
	}
}

// Engine is one loaded model and its engine thread, which decodes all of the engine's streams
// together (minerva_engine). Its methods may be called from any goroutine, concurrently. Close
// it when done; a Stream stays usable after its Engine is closed.
type Engine struct {
	mu     sync.Mutex
	idle   sync.Cond // signalled when users drops to 0 after Close began
	ptr    *C.minerva_engine
	users  int // calls in progress on ptr: Close waits for them (minerva_engine_free must not overlap them)
	closed bool

	loraCount int // len(EngineParams.Loras): the length GenerateParams.LoraScales must have
}

// Open loads the GGUF model at path and starts the engine's thread (minerva_engine_new). p nil:
// DefaultEngineParams(). It blocks while the model loads. Errors: ErrIO (missing or unreadable
// file), ErrModel (not GGUF, corrupt, unsupported), ErrInvalidArgument (a parameter out of
// range), ErrOutOfMemory, ErrCancelled (Progress returned false).
func Open(path string, p *EngineParams) (*Engine, error) {
	if p == nil {
		p = DefaultEngineParams()
	}
	var m cmem
	defer m.free()
	cpath, err := m.str(path, "the model path")
	if err != nil {
		return nil, err
	}
	var c C.minerva_engine_params
	C.minerva_engine_params_init(&c, C.uint32_t(unsafe.Sizeof(c)))
	c.gpu_layers = C.int32_t(p.GPULayers)
	c.context_tokens = C.uint32_t(p.ContextTokens)
	c.max_streams = C.uint32_t(p.MaxStreams)
	c.threads = C.uint32_t(p.Threads)
	c.batch_tokens = C.uint32_t(p.BatchTokens)
	c.use_mmap = C.bool(p.UseMmap)
	if c.rpc_servers, err = m.optStr(strings.Join(p.RPCServers, ","), "RPCServers"); err != nil {
		return nil, err
	}
	if n := len(p.Loras); n > 0 {
		// C memory: an array of structs that point at C strings (cgo's pointer rules).
		arr := (*C.minerva_lora)(m.alloc(uintptr(n) * unsafe.Sizeof(C.minerva_lora{})))
		items := unsafe.Slice(arr, n)
		for i, l := range p.Loras {
			path, err := m.str(l.Path, "a LoRA adapter's path")
			if err != nil {
				return nil, err
			}
			items[i] = C.minerva_lora{path: path, scale: C.float(l.Scale)}
		}
		c.loras = arr
		c.lora_count = C.size_t(n)
	}
	var ps *progressState
	var h C.uintptr_t
	if p.Progress != nil {
		ps = &progressState{fn: p.Progress}
		ph := newHandle(ps)
		defer deleteHandle(ph) // minerva_engine_new calls it on this goroutine only
		h = C.uintptr_t(ph)
	}
	var out *C.minerva_engine
	var cerr *C.char
	st := C.mv_engine_new(cpath, &c, h, &out, &cerr)
	if ps != nil && ps.panicked != nil {
		if st == C.MINERVA_OK {
			C.minerva_engine_free(out)
		} else {
			C.free(unsafe.Pointer(cerr))
		}
		return nil, ps.panicked
	}
	if st != C.MINERVA_OK {
		return nil, callError(st, cerr)
	}
	e := &Engine{ptr: out, loraCount: len(p.Loras)}
	e.idle.L = &e.mu
	runtime.SetFinalizer(e, (*Engine).Close)
	return e, nil
}

// acquire gives the C handle for one call, nil once closed; release must follow.
func (e *Engine) acquire() *C.minerva_engine {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil
	}
	e.users++
	return e.ptr
}

func (e *Engine) release() {
	e.mu.Lock()
	e.users--
	if e.users == 0 && e.closed {
		e.idle.Broadcast()
	}
	e.mu.Unlock()
}

// Close cancels the engine's streams (they end with ErrCancelled, their callbacks finish),
// waits until none of its callbacks can run, and frees the model (minerva_engine_free). Streams
// not yet closed stay valid: their text so far can be read, and they must still be closed.
// Calls on the engine in other goroutines that had begun finish first (Embed, Tokenize, ...);
// later ones return ErrClosed. A second Close does nothing.
//
// Close from inside a callback of one of this engine's own streams is refused with
// ErrInvalidArgument (an engine cannot wait for its own thread): close it from another
// goroutine. Nor call it from the log callback: minerva would ignore it when the line comes from
// this engine's thread.
func (e *Engine) Close() error {
	if cb, ok := currentCallback().(*callbackState); ok && cb.engine == e {
		return invalid("Engine.Close called from a callback of one of its own streams: an engine cannot wait for its own thread; close it from another goroutine")
	}
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	for e.users > 0 {
		e.idle.Wait()
	}
	p := e.ptr
	e.ptr = nil
	e.mu.Unlock()
	runtime.SetFinalizer(e, nil)
	C.minerva_engine_free(p)
	return nil
}

// DeviceKind is the kind of device that holds most of the model (MINERVA_DEVICE_*).
type DeviceKind uint32

const (
	DeviceCPU    DeviceKind = C.MINERVA_DEVICE_CPU
	DeviceCUDA   DeviceKind = C.MINERVA_DEVICE_CUDA
	DeviceMetal  DeviceKind = C.MINERVA_DEVICE_METAL
	DeviceVulkan DeviceKind = C.MINERVA_DEVICE_VULKAN
	DeviceOther  DeviceKind = C.MINERVA_DEVICE_OTHER
	DeviceRPC    DeviceKind = C.MINERVA_DEVICE_RPC // a minerva-rpc-server of EngineParams.RPCServers
)

func (d DeviceKind) String() string {
	switch d {
	case DeviceCPU:
		return "cpu"
	case DeviceCUDA:
		return "cuda"
	case DeviceMetal:
		return "metal"
	case DeviceVulkan:
		return "vulkan"
	case DeviceOther:
		return "other"
	case DeviceRPC:
		return "rpc"
	}
	return "unknown"
}

// EngineInfo is what an engine runs on and what it loaded (minerva_engine_info).
type EngineInfo struct {
	DeviceKind         DeviceKind
	DeviceName         string // e.g. the CPU model or "NVIDIA H200"
	FallbackReason     string // why the CPU was used although a GPU was asked for; "" if not
	GPULayers          int32  // layers offloaded to the GPU
	TotalLayers        int32
	ContextTokens      uint32 // tokens one stream can hold
	MaxStreams         uint32
	Threads            uint32 // CPU threads used for decoding
	ModelDescription   string // e.g. "gemma3 270M Q4_K - Medium"
	ParameterCount     uint64
	FileBytes          uint64
	VocabSize          uint32
	TrainContextTokens uint32
	HasChatTemplate    bool
	EmbeddingDims      uint32 // the length of the vectors Embed gives
	CPUVariant         string // the CPU backend in use, e.g. "x86-64 AVX-512 VBMI VNNI (icelake)"
	// Each device that holds layers, with how many (llama.cpp counts the output layer as one),
	// e.g. "RPC0 (10.0.0.2:50052): 12 layers, CPU: 7 layers".
	Devices string
	// Tokens the engine's pinned prefixes hold (CachePrefill with pin), and the bytes of KV
	// cache they take (0 when the model's header does not say enough to count them).
	PinnedTokens uint64
	PinnedBytes  uint64
}

// Info tells what the engine runs on and what it loaded (minerva_engine_get_info).
func (e *Engine) Info() (EngineInfo, error) {
	p := e.acquire()
	if p == nil {
		return EngineInfo{}, ErrClosed
	}
	defer e.release()
	var c C.minerva_engine_info
	c.struct_size = C.uint32_t(unsafe.Sizeof(c))
	var cerr *C.char
	if st := C.mv_engine_get_info(p, &c, &cerr); st != C.MINERVA_OK {
		return EngineInfo{}, callError(st, cerr)
	}
	return EngineInfo{
		DeviceKind:         DeviceKind(c.device_kind),
		DeviceName:         C.GoString(&c.device_name[0]),
		FallbackReason:     C.GoString(&c.fallback_reason[0]),
		GPULayers:          int32(c.gpu_layers),
		TotalLayers:        int32(c.total_layers),
		ContextTokens:      uint32(c.context_tokens),
		MaxStreams:         uint32(c.max_streams),
		Threads:            uint32(c.threads),
		ModelDescription:   C.GoString(&c.model_description[0]),
		ParameterCount:     uint64(c.parameter_count),
		FileBytes:          uint64(c.file_bytes),
		VocabSize:          uint32(c.vocab_size),
		TrainContextTokens: uint32(c.train_context_tokens),
		HasChatTemplate:    bool(c.has_chat_template),
		EmbeddingDims:      uint32(c.embedding_dims),
		CPUVariant:         C.GoString(&c.cpu_variant[0]),
		Devices:            C.GoString(&c.devices[0]),
		PinnedTokens:       uint64(c.pinned_tokens),
		PinnedBytes:        uint64(c.pinned_bytes),
	}, nil
}
