package minerva_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	minerva "github.com/minerva-ai/minerva/bindings/go"
)

// Lifetime stress: streams opened and closed in every way, from several goroutines, with no cgo
// handle and no goroutine left behind.

func openSmall(t *testing.T, maxStreams uint32) *minerva.Engine {
	t.Helper()
	path := os.Getenv("MINERVA_MODEL")
	if path == "" {
		t.Skip("MINERVA_MODEL is not set")
	}
	p := minerva.DefaultEngineParams()
	p.ContextTokens = 64
	p.MaxStreams = maxStreams
	p.Threads = testThreads
	e, err := minerva.Open(path, p)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func waitGoroutines(t *testing.T, baseline int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > baseline {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("goroutines: %d, baseline %d\n%s", runtime.NumGoroutine(), baseline, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestThousandStreams(t *testing.T) {
	handles := minerva.LiveHandles()
	goroutines := runtime.NumGoroutine()
	e := openSmall(t, 16)
	defer e.Close()
	p := greedy(1)
	p.CachePrompt = true

	start := time.Now()
	const workers, each = 4, 250
	var wg sync.WaitGroup
	var texts, failures atomic.Int64
	fail := func(err error) {
		if failures.Add(1) == 1 {
			t.Error(err)
		}
	}
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				ctx, cancel := context.WithCancel(context.Background())
				count := func(string) bool { texts.Add(1); return true }
				switch (w*each + i) % 6 {
				case 0: // pull mode, closed at once
					s, err := e.Stream(ctx, "Hi", p)
					if err != nil {
						fail(err)
						break
					}
					s.Close()
				case 1: // callback mode, closed at once (queued, or cancelled in its first step)
					s, err := e.StreamFunc(ctx, "Hi", p, count)
					if err != nil {
						fail(err)
						break
					}
					s.Close()
				case 2: // pull mode, read to the end
					s, err := e.Stream(ctx, "Hello", p)
					if err != nil {
						fail(err)
						break
					}
					if _, err := io.ReadAll(s); err != nil {
						fail(err)
					}
					s.Close()
				case 3: // callback mode, waited for
					if err := e.GenerateFunc(ctx, "Hello", p, count); err != nil {
						fail(err)
					}
				case 4: // callback mode, released without waiting
					s, err := e.StreamFunc(ctx, "Hey", p, count)
					if err != nil {
						fail(err)
						break
					}
					s.Release()
				case 5: // cancelled through its context, then waited for
					s, err := e.StreamFunc(ctx, "Hey", p, count)
					if err != nil {
						fail(err)
						break
					}
					cancel()
					if err := s.Wait(); err != nil && !errors.Is(err, context.Canceled) {
						fail(err)
					}
					s.Close()
				}
				cancel()
			}
		}(w)
	}
	wg.Wait()
	waitHandles(t, handles)
	e.Close() // its thread goes, and with it the goroutine Go keeps for callbacks from that thread
	waitGoroutines(t, goroutines)
	t.Logf("%d streams in %v, %d callback texts", workers*each, time.Since(start).Round(time.Millisecond), texts.Load())
}

func TestCloseWhileCallbacksRun(t *testing.T) {
	e := base(t)
	// Go keeps a goroutine for the engine thread once it has called back: count it in.
	if err := e.GenerateFunc(context.Background(), prompt, greedy(1), func(string) bool { return true }); err != nil {
		t.Fatal(err)
	}
	handles := minerva.LiveHandles()
	goroutines := runtime.NumGoroutine()
	for round := 0; round < 5; round++ {
		var calls atomic.Int64
		started := make(chan struct{})
		s, err := e.StreamFunc(context.Background(), prompt, long(), func(string) bool {
			if calls.Add(1) == 2 {
				close(started)
			}
			time.Sleep(time.Millisecond)
			return true
		})
		if err != nil {
			t.Fatal(err)
		}
		// Other goroutines blocked on the stream while it is closed.
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); _ = s.Wait() }()
		go func() { defer wg.Done(); _, _ = io.ReadAll(s) }()
		<-started
		closed := make(chan struct{})
		go func() { s.Close(); close(closed) }()
		select {
		case <-closed:
		case <-time.After(10 * time.Second):
			t.Fatal("Close hung")
		}
		after := calls.Load()
		wg.Wait()
		time.Sleep(50 * time.Millisecond)
		if calls.Load() != after {
			t.Fatalf("the callback ran after Close returned (%d, then %d)", after, calls.Load())
		}
	}
	waitHandles(t, handles)
	waitGoroutines(t, goroutines)
}

func TestCallsFromInsideCallbacks(t *testing.T) {
	e := base(t)
	handles := minerva.LiveHandles()
	var self atomic.Pointer[minerva.Stream]
	ready := make(chan struct{})
	results := make(chan error, 16)
	first := true
	finished := make(chan struct{})
	s, err := e.StreamFunc(context.Background(), prompt, long(), func(string) bool {
		<-ready
		if !first {
			return true
		}
		first = false
		s := self.Load()
		results <- s.Wait()                                  // refused: would wait for this thread
		_, err := e.Generate(context.Background(), "x", nil) // refused
		results <- err
		_, err = e.Embed([]string{"x"}, nil) // refused
		results <- err
		results <- e.Close() // refused: its own engine
		if ended, err := s.TryWait(); ended || err != nil {
			results <- errors.New("TryWait inside the callback should say: not ended")
		}
		if _, err := e.Tokenize("fine", false, false); err != nil { // allowed
			results <- fmt.Errorf("tokenize: %w", err)
		}
		if _, err := s.Stats(); err != nil { // allowed
			results <- fmt.Errorf("stats: %w", err)
		}
		s.Close() // allowed: does not wait here
		close(finished)
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	self.Store(s)
	close(ready)
	for i := 0; i < 4; i++ {
		status(t, <-results, minerva.ErrInvalidArgument)
	}
	<-finished
	s.Close() // a second Close: nothing
	waitHandles(t, handles)
	select {
	case err := <-results:
		t.Fatalf("%T %#v", err, err)
	default:
	}
	// The engine is still open and fine.
	if text, err := e.Generate(context.Background(), prompt, greedy(4)); err != nil || text == "" {
		t.Fatal(text, err)
	}
}

func TestEngineCloseWithLiveStreams(t *testing.T) {
	e := openSmall(t, 2)
	handles := minerva.LiveHandles()
	goroutines := runtime.NumGoroutine()
	p := long()
	p.MaxTokens = 40
	ctx := context.Background()
	var pull, cbs []*minerva.Stream
	for i := 0; i < 3; i++ { // more than MaxStreams: some are still queued
		s, err := e.Stream(ctx, prompt, p)
		if err != nil {
			t.Fatal(err)
		}
		pull = append(pull, s)
		s, err = e.StreamFunc(ctx, prompt, p, func(string) bool { return true })
		if err != nil {
			t.Fatal(err)
		}
		cbs = append(cbs, s)
	}
	if n, err := pull[0].Read(make([]byte, 16)); n == 0 || err != nil {
		t.Fatal(n, err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	// Every stream has ended; the handles stay valid to read, wait on and close.
	for _, s := range append(pull, cbs...) {
		err := s.Wait()
		if err != nil {
			status(t, err, minerva.ErrCancelled)
		}
		if _, err := io.ReadAll(s); err != nil && !errors.Is(err, minerva.ErrCancelled) {
			t.Fatal(err)
		}
		if st, err := s.Stats(); err != nil || st.FinishReason == minerva.FinishRunning {
			t.Fatalf("%+v %v", st, err)
		}
	}
	if _, err := e.Stream(ctx, prompt, nil); !errors.Is(err, minerva.ErrClosed) {
		t.Fatalf("Stream after Close: %v", err)
	}
	if _, err := e.Info(); !errors.Is(err, minerva.ErrClosed) {
		t.Fatalf("Info after Close: %v", err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	for _, s := range append(pull, cbs...) {
		s.Close()
	}
	waitHandles(t, handles)
	waitGoroutines(t, goroutines)
}

func TestCloseWhileReading(t *testing.T) {
	e := base(t)
	s, err := e.Stream(context.Background(), prompt, long())
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	first := make(chan struct{})
	go func() {
		buf := make([]byte, 8)
		n, err := s.Read(buf)
		close(first)
		for err == nil && n >= 0 {
			n, err = s.Read(buf)
		}
		got <- err
	}()
	<-first
	start := time.Now()
	s.Close()
	select {
	case err := <-got:
		// ErrClosed, as os.File says to a Read cut short by Close; ErrCancelled if the read in
		// progress saw the end first.
		if !errors.Is(err, minerva.ErrClosed) && !errors.Is(err, minerva.ErrCancelled) {
			t.Fatalf("a Read cut short by Close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Read did not return after Close")
	}
	t.Logf("Close took %v", time.Since(start))
}
