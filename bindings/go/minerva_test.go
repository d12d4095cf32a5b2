package minerva_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	minerva "github.com/minerva-ai/minerva/bindings/go"
)

// The tests run the real model: MINERVA_MODEL (a base model) and MINERVA_CHAT_MODEL (the same
// with a chat template). Without them they are skipped.

var (
	engine       *minerva.Engine // shared by the tests: ContextTokens 512, MaxStreams 4
	chatOnce     sync.Once
	chatEngine   *minerva.Engine
	chatEngineEr error
)

func TestMain(m *testing.M) {
	if path := os.Getenv("MINERVA_MODEL"); path != "" {
		p := minerva.DefaultEngineParams()
		p.ContextTokens = 512
		p.MaxStreams = 4
		p.Threads = testThreads
		var err error
		if engine, err = minerva.Open(path, p); err != nil {
			fmt.Fprintln(os.Stderr, "cannot open MINERVA_MODEL:", err)
			os.Exit(1)
		}
	}
	code := m.Run()
	if engine != nil {
		engine.Close()
	}
	if chatEngine != nil {
		chatEngine.Close()
	}
	if n := minerva.LiveHandles(); n != 0 && code == 0 {
		fmt.Fprintf(os.Stderr, "FAIL: %d cgo handles still live after every engine was closed\n", n)
		code = 1
	}
	os.Exit(code)
}

// One decoding thread: llama.cpp's threads spin while they wait for each other, so on a small
// machine shared with other work (a CI runner, -race's own threads) two of them can stall a step
// for seconds.
const testThreads = 1

func base(t *testing.T) *minerva.Engine {
	t.Helper()
	if engine == nil {
		t.Skip("MINERVA_MODEL is not set")
	}
	return engine
}

func chat(t *testing.T) *minerva.Engine {
	t.Helper()
	path := os.Getenv("MINERVA_CHAT_MODEL")
	if path == "" {
		t.Skip("MINERVA_CHAT_MODEL is not set")
	}
	chatOnce.Do(func() {
		p := minerva.DefaultEngineParams()
		p.ContextTokens = 1024
		p.MaxStreams = 2
		p.Threads = testThreads
		chatEngine, chatEngineEr = minerva.Open(path, p)
	})
	if chatEngineEr != nil {
		t.Fatal(chatEngineEr)
	}
	return chatEngine
}

// greedy: temperature 0 and no prompt cache, so that the same prompt gives the same text.
func greedy(maxTokens uint32) *minerva.GenerateParams {
	p := minerva.DefaultGenerateParams()
	p.MaxTokens = maxTokens
	p.Temperature = 0
	p.Seed = 1
	p.CachePrompt = false
	return p
}

// long: a generation that goes on until cancelled (within the context).
func long() *minerva.GenerateParams {
	p := greedy(400)
	p.IgnoreEOS = true
	return p
}

func status(t *testing.T, err error, want minerva.Status) {
	t.Helper()
	var e *minerva.Error
	if !errors.As(err, &e) {
		t.Fatalf("want a *minerva.Error with status %v, got %T %v", want, err, err)
	}
	if e.Status != want || !errors.Is(err, want) {
		t.Fatalf("want status %v, got %v (%v)", want, e.Status, err)
	}
	if e.Message == "" {
		t.Fatalf("error without a message: %#v", e)
	}
}

func waitHandles(t *testing.T, want int64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for minerva.LiveHandles() != want {
		if time.Now().After(deadline) {
			t.Fatalf("live cgo handles: %d, want %d", minerva.LiveHandles(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

const prompt = "The three primary colors are"

func TestVersionAndDefaults(t *testing.T) {
	if minerva.Version() == "" {
		t.Fatal("empty version")
	}
	if minerva.ABIVersion() != minerva.HeaderABIVersion {
		t.Fatalf("library ABI %d, header %d", minerva.ABIVersion(), minerva.HeaderABIVersion)
	}
	g := minerva.DefaultGenerateParams()
	if g.MaxTokens != 256 || g.Temperature != 0.8 || g.TopK != 40 || g.TopP != 0.95 ||
		g.Seed != minerva.SeedRandom || !g.CachePrompt || g.IgnoreEOS || g.Stop != nil {
		t.Fatalf("generate defaults: %+v", g)
	}
	e := minerva.DefaultEngineParams()
	if e.ContextTokens != 2048 || e.MaxStreams != 4 || e.GPULayers != -1 || !e.UseMmap {
		t.Fatalf("engine defaults: %+v", e)
	}
	if c := minerva.DefaultChatParams(); !c.AddGenerationPrompt || c.ToolChoice != minerva.ToolChoiceAuto {
		t.Fatalf("chat defaults: %+v", c)
	}
	if p := minerva.DefaultEmbedParams(); !p.Normalize || p.Pooling != minerva.PoolingDefault {
		t.Fatalf("embed defaults: %+v", p)
	}
	if minerva.ErrIO.String() == "unknown" || minerva.Status(1000).String() != "unknown" {
		t.Fatal("minerva_status_str")
	}
}

func TestOpenErrors(t *testing.T) {
	_, err := minerva.Open(filepath.Join(t.TempDir(), "missing.gguf"), nil)
	status(t, err, minerva.ErrIO)

	notGGUF := filepath.Join(t.TempDir(), "not.gguf")
	if err := os.WriteFile(notGGUF, []byte("this is not a model file, not at all"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = minerva.Open(notGGUF, nil)
	status(t, err, minerva.ErrModel)

	_, err = minerva.Open("model\x00.gguf", nil)
	status(t, err, minerva.ErrInvalidArgument)

	if path := os.Getenv("MINERVA_MODEL"); path != "" {
		p := minerva.DefaultEngineParams()
		p.MaxStreams = 0
		_, err = minerva.Open(path, p)
		status(t, err, minerva.ErrInvalidArgument)
		if !strings.Contains(err.Error(), "max_streams") {
			t.Fatalf("the message should name the field: %v", err)
		}
	}
}

func TestInfo(t *testing.T) {
	e := base(t)
	info, err := e.Info()
	if err != nil {
		t.Fatal(err)
	}
	if info.ContextTokens != 512 || info.MaxStreams != 4 || info.VocabSize == 0 ||
		info.EmbeddingDims == 0 || info.TotalLayers <= 0 || info.ModelDescription == "" ||
		info.DeviceName == "" || info.Threads == 0 || info.FileBytes == 0 || info.HasChatTemplate {
		t.Fatalf("info: %+v", info)
	}
	if info.DeviceKind == minerva.DeviceCPU {
		if !strings.HasPrefix(info.Devices, "CPU: ") || !strings.HasSuffix(info.Devices, " layers + output") {
			t.Fatalf("devices on the CPU: %q", info.Devices)
		}
	} else if info.Devices == "" {
		t.Fatal("no devices")
	}
	t.Logf("%s on %v %q, %d threads; %s", info.ModelDescription, info.DeviceKind, info.DeviceName, info.Threads, info.Devices)
}

// closedPort is a local port where nothing listens (bound, read, closed).
func closedPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}

func rpcParams(servers ...string) *minerva.EngineParams {
	p := minerva.DefaultEngineParams()
	p.ContextTokens = 256
	p.MaxStreams = 1
	p.Threads = testThreads
	p.RPCServers = servers
	return p
}

func TestOpenRPCErrors(t *testing.T) {
	path := os.Getenv("MINERVA_MODEL")
	if path == "" {
		t.Skip("MINERVA_MODEL is not set")
	}
	endpoint := fmt.Sprintf("127.0.0.1:%d", closedPort(t))
	_, err := minerva.Open(path, rpcParams(endpoint))
	status(t, err, minerva.ErrBackend)
	if !strings.Contains(err.Error(), endpoint) {
		t.Fatalf("the message should name the server %s: %v", endpoint, err)
	}
	_, err = minerva.Open(path, rpcParams("nohostport"))
	status(t, err, minerva.ErrInvalidArgument)
	if !strings.Contains(err.Error(), "nohostport") {
		t.Fatalf("the message should name the entry: %v", err)
	}
	_, err = minerva.Open(path, rpcParams("127.0.0.1:1\x00"))
	status(t, err, minerva.ErrInvalidArgument)
}

// TestRPCServer runs a real minerva-rpc-server, found next to the library (a build tree) or in
// the prefix's bin/ (an install), and puts every layer there. Without one it passes without
// running (test.sh counts a skip as a failure).
func TestRPCServer(t *testing.T) {
	path := os.Getenv("MINERVA_MODEL")
	lib := os.Getenv("MINERVA_LIB_DIR")
	if path == "" || lib == "" {
		t.Skip("MINERVA_MODEL or MINERVA_LIB_DIR is not set")
	}
	server := ""
	for _, f := range []string{filepath.Join(lib, "minerva-rpc-server"), filepath.Join(lib, "..", "bin", "minerva-rpc-server")} {
		if st, err := os.Stat(f); err == nil && !st.IsDir() {
			server = f
			break
		}
	}
	if server == "" {
		t.Logf("no minerva-rpc-server in %s or %s/../bin: not run", lib, lib)
		return
	}
	port := closedPort(t)
	endpoint := fmt.Sprintf("127.0.0.1:%d", port)
	cmd := exec.Command(server, "--port", fmt.Sprint(port), "--mem", "4096", "--threads", "1")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	defer func() {
		cmd.Process.Kill()
		<-exited
	}()
	// Ready when it accepts; it serves that connection, which ends at once, and then the
	// engine's (one connection at a time).
	deadline := time.Now().Add(60 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", endpoint, time.Second)
		if err == nil {
			c.Close()
			break
		}
		select {
		case <-exited:
			t.Fatalf("minerva-rpc-server exited: %v", cmd.ProcessState)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("minerva-rpc-server did not listen on %s: %v", endpoint, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	p := rpcParams(endpoint)
	p.GPULayers = -1
	e, err := minerva.Open(path, p)
	if err != nil {
		t.Fatal(err)
	}
	// Closed before the server is killed: a server lost while an engine uses it ends the process.
	defer e.Close()
	info, err := e.Info()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(info.Devices, "RPC") || !strings.Contains(info.Devices, endpoint) || info.DeviceKind != minerva.DeviceRPC {
		t.Fatalf("devices %q, device kind %v", info.Devices, info.DeviceKind)
	}
	text, err := e.Generate(context.Background(), prompt, greedy(8))
	if err != nil || strings.TrimSpace(text) == "" {
		t.Fatalf("generate on the server: %q, %v", text, err)
	}
	t.Logf("%s: %q", info.Devices, text)
}

func TestGenerateDeterministic(t *testing.T) {
	e := base(t)
	ctx := context.Background()
	a, err := e.Generate(ctx, prompt, greedy(16))
	if err != nil {
		t.Fatal(err)
	}
	b, err := e.Generate(ctx, prompt, greedy(16))
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(a) == "" || a != b {
		t.Fatalf("greedy text should be non-empty and the same twice: %q, %q", a, b)
	}
	t.Logf("%q", a)
}

func TestPullMode(t *testing.T) {
	e := base(t)
	ctx := context.Background()
	want, err := e.Generate(ctx, prompt, greedy(16))
	if err != nil {
		t.Fatal(err)
	}

	s, err := e.Stream(ctx, prompt, greedy(16))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(s)
	if err != nil || string(got) != want {
		t.Fatalf("io.ReadAll: %q, %v; want %q", got, err, want)
	}
	st, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	toks, err := e.Tokenize(prompt, true, true)
	if err != nil {
		t.Fatal(err)
	}
	if st.GeneratedTokens == 0 || st.GeneratedTokens > 16 || int(st.PromptTokens) != len(toks) ||
		(st.FinishReason != minerva.FinishLength && st.FinishReason != minerva.FinishEOS) {
		t.Fatalf("stats: %+v (prompt tokens %d)", st, len(toks))
	}
	if err := s.Wait(); err != nil {
		t.Fatal(err)
	}
	if s.ErrorText() != "" {
		t.Fatalf("ErrorText: %q", s.ErrorText())
	}
	s.Close()

	// The iterator.
	s, err = e.Stream(ctx, prompt, greedy(16))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	pieces := 0
	for text, err := range s.Text() {
		if err != nil {
			t.Fatal(err)
		}
		pieces++
		b.WriteString(text)
	}
	s.Close()
	if b.String() != want || pieces == 0 {
		t.Fatalf("Text(): %q in %d pieces, want %q", b.String(), pieces, want)
	}

	// A frame loop: Poll never waits.
	s, err = e.Stream(ctx, prompt, greedy(16))
	if err != nil {
		t.Fatal(err)
	}
	b.Reset()
	for frames := 0; ; frames++ {
		text, done, err := s.Poll()
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString(text)
		if done {
			break
		}
		if frames > 10000 {
			t.Fatal("no end after 10000 frames")
		}
		time.Sleep(time.Millisecond)
	}
	if text, done, err := s.Poll(); text != "" || !done || err != nil {
		t.Fatalf("Poll after the end: %q %v %v", text, done, err)
	}
	s.Close()
	if b.String() != want {
		t.Fatalf("Poll: %q, want %q", b.String(), want)
	}

	// Reads of 1 to 3 bytes still give every byte.
	s, err = e.Stream(ctx, prompt, greedy(16))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var got2 []byte
	for i := 0; ; i++ {
		buf := make([]byte, 1+i%3)
		n, err := s.Read(buf)
		got2 = append(got2, buf[:n]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if string(got2) != want {
		t.Fatalf("small reads: %q, want %q", got2, want)
	}
}

func TestCallbackMode(t *testing.T) {
	e := base(t)
	ctx := context.Background()
	want, err := e.Generate(ctx, prompt, greedy(16))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	s, err := e.StreamFunc(ctx, prompt, greedy(16), func(text string) bool {
		b.WriteString(text)
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Wait(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if b.String() != want {
		t.Fatalf("callback text %q, want %q", b.String(), want)
	}

	// false stops the stream: FinishStop, and no error.
	pieces := 0
	s, err = e.StreamFunc(ctx, prompt, greedy(16), func(string) bool {
		pieces++
		return false
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Wait(); err != nil {
		t.Fatal(err)
	}
	// A callback stream gives no text to Read: it reaches the end at once.
	if n, err := s.Read(make([]byte, 16)); n != 0 || err != io.EOF {
		t.Fatalf("Read of a callback stream: %d %v", n, err)
	}
	st, _ := s.Stats()
	if pieces != 1 || st.FinishReason != minerva.FinishStop {
		t.Fatalf("%d pieces, finish %v", pieces, st.FinishReason)
	}

	b.Reset()
	if err := e.GenerateFunc(ctx, prompt, greedy(16), func(text string) bool {
		b.WriteString(text)
		return true
	}); err != nil || b.String() != want {
		t.Fatalf("GenerateFunc: %q %v", b.String(), err)
	}
}

func TestContextCancellation(t *testing.T) {
	e := base(t)

	// A context cancelled while the stream runs.
	ctx, cancel := context.WithCancel(context.Background())
	s, err := e.Stream(ctx, prompt, long())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	buf := make([]byte, 64)
	if n, err := s.Read(buf); n == 0 || err != nil {
		t.Fatalf("first read: %d %v", n, err)
	}
	cancel()
	_, err = io.ReadAll(s)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("want context.Canceled, got %v", err)
	}
	status(t, err, minerva.ErrCancelled)
	if err2 := s.Wait(); !errors.Is(err2, context.Canceled) {
		t.Fatalf("Wait: %v", err2)
	}
	if st, _ := s.Stats(); st.FinishReason != minerva.FinishCancelled || st.GeneratedTokens >= 400 {
		t.Fatalf("stats after cancel: %+v", st)
	}

	// A deadline on Generate: the text so far comes with the error.
	ctx, cancel = context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	text, err := e.Generate(ctx, prompt, long())
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, minerva.ErrCancelled) {
		t.Fatalf("want DeadlineExceeded, got %v", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("the deadline took %v to stop the generation", time.Since(start))
	}
	t.Logf("%d bytes before the deadline", len(text))

	// A context done before the start: no stream.
	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	if _, err := e.Stream(ctx, prompt, nil); !errors.Is(err, context.Canceled) || !errors.Is(err, minerva.ErrCancelled) {
		t.Fatalf("stream on a done context: %v", err)
	}

	// Cancel (no context): ErrCancelled with no context error.
	s2, err := e.StreamFunc(context.Background(), prompt, long(), func(string) bool { return true })
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	s2.Cancel()
	err = s2.Wait()
	status(t, err, minerva.ErrCancelled)
	var me *minerva.Error
	errors.As(err, &me)
	if me.Err != nil {
		t.Fatalf("no context error expected: %v", me.Err)
	}
}

func TestJSONSchema(t *testing.T) {
	e := base(t)
	p := greedy(48)
	p.JSONSchema = `{"type": "object", "properties": {"color": {"enum": ["red", "green", "blue"]},
		"count": {"type": "integer", "minimum": 0, "maximum": 9}}, "required": ["color", "count"]}`
	s, err := e.Stream(context.Background(), "A color and a count, as JSON:", p)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	text, err := io.ReadAll(s)
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Color string `json:"color"`
		Count *int   `json:"count"`
	}
	if err := json.Unmarshal(text, &v); err != nil || v.Count == nil ||
		(v.Color != "red" && v.Color != "green" && v.Color != "blue") {
		t.Fatalf("%q: %v %+v", text, err, v)
	}
	if st, _ := s.Stats(); st.FinishReason != minerva.FinishEOS {
		t.Fatalf("a complete schema ends with EOS: %v", st.FinishReason)
	}
}

func TestGrammar(t *testing.T) {
	e := base(t)
	p := greedy(8)
	p.Grammar = `root ::= "yes" | "no"`
	text, err := e.Generate(context.Background(), "Is the sky blue? Answer yes or no:", p)
	if err != nil {
		t.Fatal(err)
	}
	if text != "yes" && text != "no" {
		t.Fatalf("grammar output %q", text)
	}
}

func TestStopStrings(t *testing.T) {
	e := base(t)
	ctx := context.Background()
	full, err := e.Generate(ctx, prompt, greedy(24))
	if err != nil {
		t.Fatal(err)
	}
	words := strings.Fields(full)
	if len(words) < 3 {
		t.Fatalf("too short to test stop strings: %q", full)
	}
	stop := words[len(words)/2]
	p := greedy(24)
	p.Stop = []string{stop}
	s, err := e.Stream(ctx, prompt, p)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	text, err := io.ReadAll(s)
	if err != nil {
		t.Fatal(err)
	}
	if want := full[:strings.Index(full, stop)]; string(text) != want {
		t.Fatalf("stop %q: %q, want %q", stop, text, want)
	}
	if st, _ := s.Stats(); st.FinishReason != minerva.FinishStop {
		t.Fatalf("finish %v", st.FinishReason)
	}
}

func TestLogitBias(t *testing.T) {
	e := base(t)
	ctx := context.Background()
	full, err := e.Generate(ctx, prompt, greedy(4))
	if err != nil {
		t.Fatal(err)
	}
	first, err := e.Tokenize(full, false, false)
	if err != nil || len(first) == 0 {
		t.Fatal(first, err)
	}
	p := greedy(4)
	p.LogitBias = []minerva.LogitBias{{Token: first[0], Bias: float32(math.Inf(-1))}}
	other, err := e.Generate(ctx, prompt, p)
	if err != nil {
		t.Fatal(err)
	}
	if other == full {
		t.Fatalf("banning the first token %d changed nothing: %q", first[0], other)
	}
}

func TestChat(t *testing.T) {
	e := chat(t)
	info, err := e.Info()
	if err != nil || !info.HasChatTemplate {
		t.Fatalf("the chat model should have a template: %+v %v", info, err)
	}
	msgs := []minerva.Message{
		{Role: "system", Content: "You answer in one short sentence."},
		{Role: "user", Content: "What color is the sky?"},
	}
	rendered, err := e.ChatFormat(msgs, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(rendered, "<start_of_turn>user") || !strings.Contains(rendered, "What color is the sky?") {
		t.Fatalf("rendered: %q", rendered)
	}
	ctx := context.Background()
	reply, err := e.Chat(ctx, msgs, nil, greedy(32))
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(reply.Text) == "" || len(reply.ToolCalls) != 0 || reply.ToolCallsJSON != "[]" ||
		strings.Contains(reply.Text, "<end_of_turn>") {
		t.Fatalf("reply: %+v", reply)
	}
	if reply.Stats.FinishReason != minerva.FinishEOS && reply.Stats.FinishReason != minerva.FinishLength {
		t.Fatalf("finish: %v", reply.Stats.FinishReason)
	}
	t.Logf("%q", reply.Text)

	var b strings.Builder
	s, err := e.ChatStreamFunc(ctx, msgs, nil, greedy(32), func(text string) bool {
		b.WriteString(text)
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Wait(); err != nil {
		t.Fatal(err)
	}
	if b.String() != reply.Text {
		t.Fatalf("callback chat %q, want %q", b.String(), reply.Text)
	}
}

func TestToolCallRequired(t *testing.T) {
	e := chat(t)
	msgs := []minerva.Message{
		{Role: "user", Content: "A thief ran toward the tavern! Stop him!"},
	}
	c := minerva.DefaultChatParams()
	c.ToolsJSON = `[{"type": "function", "function": {"name": "walk_to", "description": "Walk somewhere",
		"parameters": {"type": "object", "properties": {"place": {"enum": ["gate", "tavern"]}},
		"required": ["place"]}}}]`
	c.ToolChoice = minerva.ToolChoiceRequired
	reply, err := e.Chat(context.Background(), msgs, c, greedy(200)) // up to four calls: about 150 tokens with this model
	if err != nil {
		t.Fatal(err)
	}
	if len(reply.ToolCalls) == 0 || reply.Text != "" {
		t.Fatalf("reply: %+v", reply)
	}
	call := reply.ToolCalls[0]
	var args struct {
		Place string `json:"place"`
	}
	if call.Name != "walk_to" || !regexp.MustCompile(`^call_[0-9a-z]{9}$`).MatchString(call.ID) || json.Unmarshal(call.Arguments, &args) != nil ||
		(args.Place != "gate" && args.Place != "tavern") {
		t.Fatalf("call: %+v (%s)", call, call.Arguments)
	}
	t.Logf("%s (%d tokens)", reply.ToolCallsJSON, reply.Stats.GeneratedTokens)

	// The next turn: the calls given back, and the tool's result.
	msgs = append(msgs,
		minerva.Message{Role: "assistant", ToolCallsJSON: reply.ToolCallsJSON},
		minerva.Message{Role: "tool", ToolCallID: call.ID, Content: `{"arrived": true}`})
	c.ToolChoice = minerva.ToolChoiceAuto
	rendered, err := e.ChatFormat(msgs, c)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(rendered, "walk_to") || !strings.Contains(rendered, "arrived") {
		t.Fatalf("next turn: %q", rendered)
	}
}

func TestChatTemplateKwargsAndReasoning(t *testing.T) {
	e := chat(t)
	c := minerva.DefaultChatParams()
	if c.Reasoning != minerva.ReasoningAuto || c.ContinueFinalMessage || c.MaxToolCalls != 0 || c.TemplateKwargsJSON != "" {
		t.Fatalf("chat defaults: %+v", c)
	}
	msgs := []minerva.Message{{Role: "user", Content: "Say hello in one word."}}
	c.TemplateKwargsJSON = `{"enable_thinking": false}`
	c.Reasoning = minerva.ReasoningNone
	c.MaxToolCalls = 2
	ctx := context.Background()
	s, err := e.ChatStream(ctx, msgs, c, greedy(8))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if r, err := s.Reasoning(); err != nil || r != "" { // while it runs
		t.Fatalf("reasoning while running: %q %v", r, err)
	}
	if _, err := io.ReadAll(s); err != nil {
		t.Fatal(err)
	}
	if r, err := s.Reasoning(); err != nil || r != "" {
		t.Fatalf("reasoning with ReasoningNone: %q %v", r, err)
	}
	reply, err := e.Chat(ctx, msgs, &minerva.ChatParams{AddGenerationPrompt: true, TemplateKwargsJSON: `{"enable_thinking": false}`}, greedy(8))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%q (reasoning %q)", reply.Text, reply.Reasoning)

	// Template variables reach the template; an assistant turn is continued.
	tmpl := "{{ greeting }}{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}"
	rendered, err := e.ChatFormat(msgs, &minerva.ChatParams{ChatTemplate: tmpl, TemplateKwargsJSON: `{"greeting": "Hi! "}`})
	if err != nil || !strings.HasPrefix(rendered, "Hi! [user] Say hello") {
		t.Fatalf("rendered %q %v", rendered, err)
	}
	cont := append(msgs, minerva.Message{Role: "assistant", Content: "Hel"})
	rendered, err = e.ChatFormat(cont, &minerva.ChatParams{ChatTemplate: tmpl, ContinueFinalMessage: true})
	if err != nil || !strings.HasSuffix(rendered, "[assistant] Hel") {
		t.Fatalf("continued %q %v", rendered, err)
	}

	// A kwargs value that is not a JSON object, and an unknown reasoning value.
	c.TemplateKwargsJSON = "[1]"
	_, err = e.Chat(ctx, msgs, c, greedy(4))
	status(t, err, minerva.ErrInvalidArgument)
	if !strings.Contains(err.Error(), "template_kwargs_json") {
		t.Fatalf("error %q does not name template_kwargs_json", err)
	}
	c.TemplateKwargsJSON = ""
	c.Reasoning = 7
	_, err = e.Chat(ctx, msgs, c, greedy(4))
	status(t, err, minerva.ErrInvalidArgument)
}

func TestEmbeddings(t *testing.T) {
	e := base(t)
	info, _ := e.Info()
	texts := []string{"The cat sat on the mat.", "Stock markets fell sharply today.", "The cat sat on the mat."}
	vecs, err := e.Embed(texts, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(vecs) != 3 {
		t.Fatalf("%d vectors", len(vecs))
	}
	dot := func(a, b []float32) (s float64) {
		for i := range a {
			s += float64(a[i]) * float64(b[i])
		}
		return
	}
	for i, v := range vecs {
		if len(v) != int(info.EmbeddingDims) {
			t.Fatalf("vector %d: %d dims, want %d", i, len(v), info.EmbeddingDims)
		}
		if n := dot(v, v); math.Abs(n-1) > 1e-3 {
			t.Fatalf("vector %d is not normalized: |v|^2 = %v", i, n)
		}
	}
	if same, other := dot(vecs[0], vecs[2]), dot(vecs[0], vecs[1]); same < 0.999 || other > 0.99 {
		t.Fatalf("cosines: same text %v, other text %v", same, other)
	}
	p := minerva.DefaultEmbedParams()
	p.Normalize = false
	raw, err := e.Embed(texts[:1], p)
	if err != nil {
		t.Fatal(err)
	}
	if n := dot(raw[0], raw[0]); math.Abs(n-1) < 1e-3 {
		t.Fatalf("Normalize false should give the raw vector: |v|^2 = %v", n)
	}
	if vecs, err := e.Embed(nil, nil); err != nil || len(vecs) != 0 {
		t.Fatalf("no texts: %v %v", vecs, err)
	}
}

func TestTokenize(t *testing.T) {
	e := base(t)
	text := "Hello, world! Ünïcödé 東京"
	toks, err := e.Tokenize(text, false, false)
	if err != nil || len(toks) == 0 {
		t.Fatal(toks, err)
	}
	back, err := e.Detokenize(toks, false)
	if err != nil || back != text {
		t.Fatalf("round trip: %q %v", back, err)
	}
	withBOS, err := e.Tokenize(text, true, false)
	if err != nil || len(withBOS) != len(toks)+1 {
		t.Fatalf("with BOS: %v %v", withBOS, err)
	}
	if shown, _ := e.Detokenize(withBOS, true); !strings.HasPrefix(shown, "<bos>") {
		t.Fatalf("render special: %q", shown)
	}
	if hidden, _ := e.Detokenize(withBOS, false); hidden != text {
		t.Fatalf("special hidden: %q", hidden)
	}
	special, _ := e.Tokenize("<start_of_turn>", false, true)
	spelled, _ := e.Tokenize("<start_of_turn>", false, false)
	if len(special) != 1 || len(spelled) <= 1 {
		t.Fatalf("parse special: %v vs %v", special, spelled)
	}
	if toks, err := e.Tokenize("", false, false); err != nil || len(toks) != 0 {
		t.Fatalf("empty: %v %v", toks, err)
	}
	if s, err := e.Detokenize(nil, false); err != nil || s != "" {
		t.Fatalf("no tokens: %q %v", s, err)
	}
	info, _ := e.Info()
	_, err = e.Detokenize([]minerva.Token{toks[0], minerva.Token(info.VocabSize)}, false)
	status(t, err, minerva.ErrInvalidArgument)
	_, err = e.Tokenize("a\x00b", false, false)
	status(t, err, minerva.ErrInvalidArgument)
}

func TestArgumentErrors(t *testing.T) {
	e := base(t)
	ctx := context.Background()
	bad := func(name string, p *minerva.GenerateParams, prompt string) {
		t.Helper()
		s, err := e.Stream(ctx, prompt, p)
		if err == nil {
			s.Close()
			t.Fatalf("%s: no error", name)
		}
		status(t, err, minerva.ErrInvalidArgument)
	}
	p := greedy(8)
	p.TopP = 0
	bad("top_p 0", p, prompt)
	p = greedy(8)
	p.Grammar = "root ::= ("
	bad("bad grammar", p, prompt)
	p = greedy(8)
	p.Grammar = `root ::= "a"`
	p.JSONSchema = `{"type": "string"}`
	bad("grammar and schema", p, prompt)
	p = greedy(8)
	p.JSONSchema = `{"type": `
	bad("bad schema", p, prompt)
	p = greedy(8)
	p.Stop = []string{""}
	bad("empty stop string", p, prompt)
	p = greedy(8)
	p.Temperature = float32(math.NaN())
	bad("NaN temperature", p, prompt)
	bad("NUL in the prompt", greedy(8), "a\x00b")
	bad("prompt not UTF-8", greedy(8), "a\xffb")
	if _, err := e.StreamFunc(ctx, prompt, nil, nil); !errors.Is(err, minerva.ErrInvalidArgument) {
		t.Fatalf("nil callback: %v", err)
	}

	_, err := e.ChatFormat(nil, nil)
	status(t, err, minerva.ErrInvalidArgument)
	_, err = e.ChatFormat([]minerva.Message{{Role: "wizard", Content: "hi"}}, nil)
	status(t, err, minerva.ErrInvalidArgument)
	_, err = e.Chat(ctx, []minerva.Message{{Role: "user", Content: "hi"}}, &minerva.ChatParams{ChatTemplate: "no-such-template"}, nil)
	status(t, err, minerva.ErrInvalidArgument)

	// A prompt longer than the context ends the stream (or is refused at once) with ErrContextFull.
	huge := strings.Repeat("many words make a long prompt ", 400)
	s, err := e.Stream(ctx, huge, greedy(4))
	if err == nil {
		defer s.Close()
		_, err = io.ReadAll(s)
		if st, _ := s.Stats(); st.FinishReason != minerva.FinishError {
			t.Fatalf("finish %v", st.FinishReason)
		}
		if s.ErrorText() == "" {
			t.Fatal("no ErrorText")
		}
	}
	status(t, err, minerva.ErrContextFull)

	// Tool calls of a stream that still runs.
	s, err = e.Stream(ctx, prompt, long())
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.ToolCallsJSON()
	s.Close()
	status(t, err, minerva.ErrInvalidArgument)
}

func TestUseAfterClose(t *testing.T) {
	e := base(t)
	s, err := e.Stream(context.Background(), prompt, greedy(8))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	s.Release()
	s.Cancel()
	check := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, minerva.ErrClosed) || !errors.Is(err, minerva.ErrInvalidArgument) {
			t.Fatalf("%s after Close: %v", what, err)
		}
	}
	_, err = s.Read(make([]byte, 8))
	check("Read", err)
	check("Wait", s.Wait())
	_, err = s.Stats()
	check("Stats", err)
	_, err = s.ToolCallsJSON()
	check("ToolCallsJSON", err)
	_, _, err = s.Poll()
	check("Poll", err)
	_, err = s.TryWait()
	check("TryWait", err)
	if s.ErrorText() != "" {
		t.Fatal("ErrorText after Close")
	}
}

func TestPanicInCallback(t *testing.T) {
	e := base(t)
	ctx := context.Background()
	before := minerva.LiveHandles()
	calls := 0
	err := e.GenerateFunc(ctx, prompt, greedy(16), func(string) bool {
		calls++
		panic("boom")
	})
	var pe *minerva.PanicError
	if !errors.As(err, &pe) || pe.Value != "boom" || len(pe.Stack) == 0 || calls != 1 {
		t.Fatalf("want the panic back, got %v after %d calls", err, calls)
	}
	boom := errors.New("boom error")
	s, err := e.StreamFunc(ctx, prompt, greedy(16), func(string) bool { panic(boom) })
	if err != nil {
		t.Fatal(err)
	}
	err = s.Wait()
	s.Close()
	if !errors.Is(err, boom) {
		t.Fatalf("an error panic value should unwrap: %v", err)
	}
	waitHandles(t, before)

	// The engine is fine afterwards.
	if text, err := e.Generate(ctx, prompt, greedy(4)); err != nil || text == "" {
		t.Fatal(text, err)
	}
}

func TestProgress(t *testing.T) {
	path := os.Getenv("MINERVA_MODEL")
	if path == "" {
		t.Skip("MINERVA_MODEL is not set")
	}
	before := minerva.LiveHandles()
	p := minerva.DefaultEngineParams()
	p.ContextTokens = 64
	p.MaxStreams = 1
	p.Progress = func(float32) bool { return false }
	_, err := minerva.Open(path, p)
	status(t, err, minerva.ErrCancelled)

	p.Progress = func(float32) bool { panic("load panic") }
	_, err = minerva.Open(path, p)
	var pe *minerva.PanicError
	if !errors.As(err, &pe) || pe.Value != "load panic" {
		t.Fatalf("want the panic back: %v", err)
	}

	var last float32
	p.Progress = func(f float32) bool { last = f; return true }
	e, err := minerva.Open(path, p)
	if err != nil {
		t.Fatal(err)
	}
	e.Close()
	if last != 1 {
		t.Fatalf("last progress %v", last)
	}
	waitHandles(t, before)
}

func TestLogCallback(t *testing.T) {
	path := os.Getenv("MINERVA_MODEL")
	if path == "" {
		t.Skip("MINERVA_MODEL is not set")
	}
	before := minerva.LiveHandles()
	var mu sync.Mutex
	var lines []string
	levels := map[minerva.LogLevel]int{}
	minerva.SetLogCallback(func(level minerva.LogLevel, msg string) {
		mu.Lock()
		defer mu.Unlock()
		lines = append(lines, msg)
		levels[level]++
		if len(lines) == 1 {
			panic("a log callback panic is dropped")
		}
	}, minerva.LogInfo)
	if minerva.LiveHandles() != before+1 {
		t.Fatal("the log callback holds one handle")
	}
	p := minerva.DefaultEngineParams()
	p.ContextTokens = 64
	p.MaxStreams = 1
	e, err := minerva.Open(path, p)
	if err != nil {
		t.Fatal(err)
	}
	e.Close()
	minerva.SetLogCallback(nil, minerva.LogWarn)
	mu.Lock()
	n := len(lines)
	mu.Unlock()
	if n < 2 || levels[minerva.LogDebug] != 0 {
		t.Fatalf("%d lines at info and above, levels %v", n, levels)
	}
	t.Logf("%d lines, e.g. %q", n, lines[1])
	if minerva.LiveHandles() != before {
		t.Fatalf("handles: %d, want %d", minerva.LiveHandles(), before)
	}
	// No more lines reach it.
	e, err = minerva.Open(path, p)
	if err != nil {
		t.Fatal(err)
	}
	e.Close()
	mu.Lock()
	defer mu.Unlock()
	if len(lines) != n {
		t.Fatal("the old log callback was called after it was replaced")
	}
}

func TestConcurrentGenerate(t *testing.T) {
	e := base(t)
	var wg sync.WaitGroup
	errs := make(chan error, 6)
	for i := 0; i < 6; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			text, err := e.Generate(context.Background(), fmt.Sprintf("Item %d of a list of fruits:", i), greedy(8))
			if err == nil && text == "" {
				err = errors.New("empty text")
			}
			errs <- err
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}
