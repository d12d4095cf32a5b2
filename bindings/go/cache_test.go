package minerva_test

import (
	"bytes"
	"context"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	minerva "github.com/minerva-ai/minerva/bindings/go"
)

// Game state (0.3): prefill and pin, save and load the prompt cache; LoRA adapters.

const persona = "You are Ilse, the ferrywoman of the northern lake.\n" +
	"Ilse knows every current, every drowned village under the water, and every traveller who " +
	"ever crossed without paying.\n"

const ask = persona + "Traveller: How much for the crossing?\nIlse:"

func openState(t *testing.T, maxStreams uint32, loras ...minerva.Lora) *minerva.Engine {
	t.Helper()
	path := os.Getenv("MINERVA_MODEL")
	if path == "" {
		t.Skip("MINERVA_MODEL is not set")
	}
	p := minerva.DefaultEngineParams()
	p.ContextTokens = 512
	p.MaxStreams = maxStreams
	p.Threads = testThreads
	p.Loras = loras
	e, err := minerva.Open(path, p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// line: a greedy line on ask with the prompt cache on; its text and cached prompt tokens.
func line(t *testing.T, e *minerva.Engine) (string, uint32) {
	t.Helper()
	p := greedy(12)
	p.CachePrompt = true
	s, err := e.Stream(context.Background(), ask, p)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	text, err := io.ReadAll(s)
	if err != nil {
		t.Fatal(err)
	}
	st, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	return string(text), st.CachedPromptTokens
}

func pinned(t *testing.T, e *minerva.Engine) minerva.EngineInfo {
	t.Helper()
	info, err := e.Info()
	if err != nil {
		t.Fatal(err)
	}
	return info
}

func TestCacheRoundTrip(t *testing.T) {
	a := openState(t, 2)
	if info := pinned(t, a); info.PinnedTokens != 0 || info.PinnedBytes != 0 {
		t.Fatalf("a new engine pins nothing: %+v", info)
	}
	if err := a.CachePrefill(persona, true); err != nil {
		t.Fatal(err)
	}
	info := pinned(t, a)
	if info.PinnedTokens < 20 || info.PinnedBytes == 0 {
		t.Fatalf("pinned: %d tokens, %d bytes", info.PinnedTokens, info.PinnedBytes)
	}
	if err := a.CachePrefill(persona, true); err != nil { // pinned already: not twice
		t.Fatal(err)
	}
	if got := pinned(t, a).PinnedTokens; got != info.PinnedTokens {
		t.Fatalf("pinned twice: %d tokens, was %d", got, info.PinnedTokens)
	}
	data, err := a.CacheSave()
	if err != nil || len(data) < 100 {
		t.Fatalf("CacheSave: %d bytes, %v", len(data), err)
	}
	inPlace, cached := line(t, a)
	if uint64(cached)+2 < info.PinnedTokens {
		t.Fatalf("in place: %d cached, %d pinned", cached, info.PinnedTokens)
	}

	// Another engine, loaded with a stream running.
	b := openState(t, 2)
	running, err := b.Stream(context.Background(), "Meanwhile:", greedy(32))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.CacheLoad(data); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(running); err != nil {
		t.Fatal(err)
	}
	running.Close()
	if got := pinned(t, b).PinnedTokens; got != info.PinnedTokens {
		t.Fatalf("loaded: %d pinned tokens, want %d", got, info.PinnedTokens)
	}
	loaded, cached := line(t, b)
	if cached == 0 || uint64(cached)+2 < info.PinnedTokens {
		t.Fatalf("loaded: %d cached, %d pinned", cached, info.PinnedTokens)
	}
	if loaded != inPlace {
		t.Fatalf("from the loaded cache %q, in place %q", loaded, inPlace)
	}

	// Through a file. This save holds the line's own cells too: the line now reuses all but its
	// last token, as it does again in a from the same cells (the first time its tokens were
	// computed together, which may differ in the last bits).
	file := filepath.Join(t.TempDir(), "save.bin")
	if err := a.CacheSaveFile(file); err != nil {
		t.Fatal(err)
	}
	again, cachedAgain := line(t, a)
	c := openState(t, 2)
	if err := c.CacheLoadFile(file); err != nil {
		t.Fatal(err)
	}
	if text, cached := line(t, c); text != again || cached != cachedAgain || uint64(cached) <= info.PinnedTokens {
		t.Fatalf("from the file: %q, %d cached; in a again: %q, %d cached", text, cached, again, cachedAgain)
	}

	// Saving while other goroutines generate.
	var wg sync.WaitGroup
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := a.Generate(context.Background(), "The guard said", greedy(6)); err != nil {
				t.Error(err)
			}
		}()
	}
	for i := 0; i < 3; i++ {
		if again, err := a.CacheSave(); err != nil || len(again) < 100 {
			t.Fatalf("CacheSave while streams run: %d bytes, %v", len(again), err)
		}
	}
	wg.Wait()
}

func TestCacheErrors(t *testing.T) {
	a := openState(t, 2)
	if err := a.CachePrefill(persona, true); err != nil {
		t.Fatal(err)
	}
	data, err := a.CacheSave()
	if err != nil {
		t.Fatal(err)
	}
	e := openState(t, 1)
	// One stream of 512: no room to pin beside it.
	status(t, e.CacheLoad(data), minerva.ErrContextFull)
	status(t, e.CachePrefill(persona, true), minerva.ErrContextFull)
	corrupt := bytes.Clone(data)
	corrupt[len(corrupt)/2] ^= 1
	err = e.CacheLoad(corrupt)
	status(t, err, minerva.ErrInvalidArgument)
	if !strings.Contains(err.Error(), "checksum") {
		t.Fatalf("the message should say checksum: %v", err)
	}
	for _, junk := range [][]byte{nil, []byte("junk"), data[:len(data)/2]} {
		status(t, e.CacheLoad(junk), minerva.ErrInvalidArgument)
	}
	missing := filepath.Join(t.TempDir(), "no", "such", "save.bin")
	err = e.CacheLoadFile(missing)
	status(t, err, minerva.ErrIO)
	if !strings.Contains(err.Error(), "save.bin") {
		t.Fatalf("the message should name the file: %v", err)
	}
	status(t, e.CacheSaveFile(missing), minerva.ErrIO)
	status(t, e.CacheSaveFile("a\x00b"), minerva.ErrInvalidArgument)
	for _, bad := range []string{"", "a\xffb", "a\x00b"} {
		status(t, e.CachePrefill(bad, false), minerva.ErrInvalidArgument)
	}
	// Unpinned: the cache of a stream slot, which the next stream reuses.
	if err := e.CachePrefill(persona, false); err != nil {
		t.Fatal(err)
	}
	if got := pinned(t, e).PinnedTokens; got != 0 {
		t.Fatalf("unpinned prefill pinned %d tokens", got)
	}
	if _, cached := line(t, e); cached == 0 {
		t.Fatal("the prefilled prefix was not reused")
	}

	// Inside a callback: refused (they wait for the engine thread).
	results := make(chan error, 3)
	err = e.GenerateFunc(context.Background(), prompt, greedy(4), func(string) bool {
		results <- e.CachePrefill("x", false)
		_, err := e.CacheSave()
		results <- err
		results <- e.CacheLoad(data)
		return false
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		status(t, <-results, minerva.ErrInvalidArgument)
	}

	e.Close()
	check := func(what string, err error) {
		t.Helper()
		if err != minerva.ErrClosed {
			t.Fatalf("%s after Close: %v", what, err)
		}
	}
	check("CachePrefill", e.CachePrefill("x", false))
	_, err = e.CacheSave()
	check("CacheSave", err)
	check("CacheLoad", e.CacheLoad(data))
	check("CacheSaveFile", e.CacheSaveFile(missing))
	check("CacheLoadFile", e.CacheLoadFile(missing))
}

// loraDir is the folder of the test LoRA adapters (voice.gguf, calm.gguf, wrong-shape.gguf):
// $MINERVA_LORA_DIR, else what scripts/lora-adapters.sh prints (it writes them once).
func loraDir(t *testing.T) string {
	t.Helper()
	if dir := os.Getenv("MINERVA_LORA_DIR"); dir != "" {
		return dir
	}
	out, err := exec.Command(filepath.Join("..", "..", "scripts", "lora-adapters.sh")).Output()
	if err != nil {
		t.Fatalf("scripts/lora-adapters.sh: %v", err)
	}
	return strings.TrimSpace(string(out))
}

const loraPrompt = "The old lighthouse keeper said"

func loraText(t *testing.T, e *minerva.Engine, scales []float32) string {
	t.Helper()
	p := greedy(24)
	p.LoraScales = scales
	text, err := e.Generate(context.Background(), loraPrompt, p)
	if err != nil {
		t.Fatal(err)
	}
	return text
}

func TestLora(t *testing.T) {
	dir := loraDir(t)
	plain := loraText(t, openState(t, 1), nil)
	e := openState(t, 2, minerva.Lora{Path: filepath.Join(dir, "voice.gguf"), Scale: 1})
	adapted := loraText(t, e, nil)
	off := loraText(t, e, []float32{0})
	if adapted == off {
		t.Fatalf("the adapter changed nothing: %q", adapted)
	}
	if off != plain {
		t.Fatalf("scale 0: %q, without the adapter: %q", off, plain)
	}
	if again := loraText(t, e, []float32{1}); again != adapted {
		t.Fatalf("scale 1: %q, the engine's default 1: %q", again, adapted)
	}
	// One scale per adapter, checked here (minerva reads as many as the engine has).
	for _, scales := range [][]float32{{}, {1, 0.5}} {
		p := greedy(4)
		p.LoraScales = scales
		_, err := e.Generate(context.Background(), loraPrompt, p)
		status(t, err, minerva.ErrInvalidArgument)
		if !strings.Contains(err.Error(), "LoraScales") {
			t.Fatalf("the message should name LoraScales: %v", err)
		}
	}
	p := greedy(4)
	p.LoraScales = []float32{float32(math.NaN())}
	_, err := e.Generate(context.Background(), loraPrompt, p)
	status(t, err, minerva.ErrInvalidArgument)
	// An engine without adapters takes no scales, and an empty list is none.
	p.LoraScales = []float32{1}
	_, err = base(t).Generate(context.Background(), loraPrompt, p)
	status(t, err, minerva.ErrInvalidArgument)
	p.LoraScales = []float32{}
	if _, err := base(t).Generate(context.Background(), loraPrompt, p); err != nil {
		t.Fatal(err)
	}
}

func TestLoraOpenErrors(t *testing.T) {
	dir := loraDir(t)
	path := os.Getenv("MINERVA_MODEL")
	if path == "" {
		t.Skip("MINERVA_MODEL is not set")
	}
	open := func(l minerva.Lora) error {
		p := minerva.DefaultEngineParams()
		p.ContextTokens = 256
		p.MaxStreams = 1
		p.Threads = testThreads
		p.Loras = []minerva.Lora{l}
		e, err := minerva.Open(path, p)
		if err == nil {
			e.Close()
		}
		return err
	}
	err := open(minerva.Lora{Path: filepath.Join(dir, "wrong-shape.gguf"), Scale: 1})
	status(t, err, minerva.ErrModel)
	if !strings.Contains(err.Error(), "wrong-shape.gguf") {
		t.Fatalf("the message should name the file: %v", err)
	}
	err = open(minerva.Lora{Path: filepath.Join(t.TempDir(), "missing.gguf"), Scale: 1})
	status(t, err, minerva.ErrIO)
	err = open(minerva.Lora{Path: filepath.Join(dir, "voice.gguf"), Scale: float32(math.Inf(1))})
	status(t, err, minerva.ErrInvalidArgument)
	err = open(minerva.Lora{Path: "voice\x00.gguf", Scale: 1})
	status(t, err, minerva.ErrInvalidArgument)
}
