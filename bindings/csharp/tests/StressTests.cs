// Lifetimes under pressure: streams and engines freed while callbacks run, abandoned to the GC's
// finalizers, disposed from other threads and from inside their own callbacks, with garbage
// collections forced all along. Every callback stream's onFinish must run exactly once and every
// GCHandle the binding made must be released.
using System;
using System.Collections.Generic;
using System.Threading;

namespace Minerva.Tests
{
    internal static class StressTests
    {
        private static int s_started, s_finished, s_cancelled, s_extraFinishes;

        private static void CountFinish(int[] once, Status st)
        {
            if (Interlocked.Increment(ref once[0]) != 1) Interlocked.Increment(ref s_extraFinishes);
            if (st == Status.Cancelled) Interlocked.Increment(ref s_cancelled);
            Interlocked.Increment(ref s_finished);
        }

        private static void Collect()
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
        }

        // Runs `a` on a thread of its own that then ends: Mono scans stacks conservatively, and a
        // dead thread's stack holds no stale reference to what `a` made.
        private static void OnOwnThread(Action a)
        {
            var t = new Thread(() => a());
            t.Start();
            t.Join();
        }

        // Starts a stream that runs until cancelled and drops every reference to it: only the GC's
        // finalizer can end it now (it would otherwise end when its 128-token context is full).
        private static void StartAbandoned(Engine e, int i)
        {
            var p = new GenerateParams { MaxTokens = 0, IgnoreEos = true, Temperature = 0.7f, Seed = (ulong)i };
            switch (i % 4)
            {
                case 0: // pull mode, never read
                    e.StartStream("Tell me about the number " + i, p);
                    break;
                case 1: // pull mode, read once
                    e.StartStream("A story about " + i, p).Read(0);
                    break;
                default: // callback mode, collecting garbage from the engine thread
                    var once = new int[1];
                    var junk = new List<byte[]>();
                    Interlocked.Increment(ref s_started);
                    e.StartStream("Count with me: " + i, p, t =>
                    {
                        junk.Add(new byte[1024 * (1 + junk.Count % 64)]);
                        if (junk.Count % 3 == 0) GC.Collect();
                        if (junk.Count % 5 == 0) GC.WaitForPendingFinalizers();
                        return true;
                    }, (st, r) => CountFinish(once, st));
                    break;
            }
        }

        [Test]
        private static void abandoned_streams_are_released_by_finalizers()
        {
            s_started = s_finished = s_cancelled = s_extraFinishes = 0;
            int live = Callbacks.LiveStreamHandles;
            using (var e = new Engine(Fx.Model, new EngineParams { ContextTokens = 128, MaxStreams = 4, Threads = Fx.Threads }))
            {
                for (int i = 0; i < 24; i++)
                {
                    int k = i;
                    OnOwnThread(() => StartAbandoned(e, k));
                    if (i % 2 == 0) Collect();
                }
                Assert.Eventually(() => Volatile.Read(ref s_finished) == Volatile.Read(ref s_started), 60000,
                    "every abandoned callback stream finished");
                Assert.Equal(s_started, s_cancelled, "ended by their finalizers (cancelled), not by a full context");
                Assert.True(e.Generate("Still working?", Fx.Greedy(2)).Length > 0, "the engine still works");
            }
            Assert.Equal(0, s_extraFinishes, "no onFinish ran twice");
            Assert.Equal(live, Callbacks.LiveStreamHandles, "every GCHandle released");
        }

        [Test]
        private static void dispose_from_another_thread_while_a_callback_is_inside()
        {
            using (var e = Fx.Small())
            {
                for (int iter = 0; iter < 4; iter++)
                {
                    var inside = new ManualResetEventSlim();
                    int finishes = 0, textAfterDispose = 0;
                    bool disposed = false;
                    Stream s = e.StartStream(Fx.Prompt, Fx.Endless(), t =>
                    {
                        if (Volatile.Read(ref disposed)) Interlocked.Increment(ref textAfterDispose);
                        inside.Set();
                        Thread.Sleep(15);   // still inside when Dispose is called
                        GC.Collect();
                        return true;
                    }, (st, r) =>
                    {
                        Thread.Sleep(5);
                        Interlocked.Increment(ref finishes);
                    });
                    Assert.True(inside.Wait(30000), "a callback is running");
                    var t1 = new Thread(() =>
                    {
                        s.Dispose();
                        Volatile.Write(ref disposed, true);
                    });
                    t1.Start();
                    Assert.True(t1.Join(30000), "Dispose returned");
                    Assert.Equal(1, Volatile.Read(ref finishes), "Dispose returned after onFinish");
                    Thread.Sleep(20);
                    Assert.Equal(0, Volatile.Read(ref textAfterDispose), "no text after Dispose");
                    Collect();
                }
                // Release from another thread: never waits; onFinish still runs once.
                var running = new ManualResetEventSlim();
                int fin = 0;
                Stream r2 = e.StartStream(Fx.Prompt, Fx.Endless(), t => { running.Set(); Thread.Sleep(10); return true; },
                    (st, r) => Interlocked.Increment(ref fin));
                Assert.True(running.Wait(30000), "running");
                new Thread(r2.Release).Start();
                Assert.Eventually(() => Volatile.Read(ref fin) == 1, 30000, "onFinish after Release");
            }
        }

        [Test]
        private static void dispose_and_release_from_inside_callbacks()
        {
            using (var e = Fx.Small())
            {
                // A stream disposing itself from its own callback.
                var holder = new Stream[1];
                int finishes = 0, pieces = 0;
                Stream s = e.StartStream(Fx.Prompt, Fx.Endless(), t =>
                {
                    pieces++;
                    Stream self = Volatile.Read(ref holder[0]);
                    if (self != null) self.Dispose();   // does not wait: onFinish runs after this returns
                    return true;
                }, (st, r) => Interlocked.Increment(ref finishes));
                Volatile.Write(ref holder[0], s);
                Assert.Eventually(() => Volatile.Read(ref finishes) == 1, 30000, "onFinish after self-Dispose");
                Assert.Throws<ObjectDisposedException>(() => s.Wait(0), "disposed");

                // One stream releasing another, which is itself inside nothing.
                int otherFinishes = 0;
                Stream victim = e.StartStream(Fx.Prompt, Fx.Endless(), t => true, (st, r) => Interlocked.Increment(ref otherFinishes));
                Stream killer = e.StartStream(Fx.Prompt, Fx.Greedy(4), t => { victim.Release(); victim.Dispose(); return true; });
                Assert.True(killer.Wait(), "killer ended");
                Assert.Eventually(() => Volatile.Read(ref otherFinishes) == 1, 30000, "the victim's onFinish");
                killer.Dispose();
            }
        }

        [Test]
        private static void engine_disposed_inside_its_own_callback()
        {
            var e = Fx.Small();
            int finishes = 0;
            Status status = Status.Ok;
            Stream s = e.StartStream(Fx.Prompt, Fx.Endless(), t => { e.Dispose(); return true; },
                (st, r) => { status = st; Interlocked.Increment(ref finishes); });
            Assert.Eventually(() => Volatile.Read(ref finishes) == 1, 30000, "the engine, freed from a pool thread, ended the stream");
            Assert.Equal(Status.Cancelled, status, "cancelled");
            Assert.True(e.IsDisposed, "disposed");
            s.Dispose();
        }

        [Test]
        private static void engine_disposed_from_another_thread_while_streams_run()
        {
            for (int iter = 0; iter < 2; iter++)
            {
                var e = new Engine(Fx.Model, new EngineParams { ContextTokens = 128, MaxStreams = 2, Threads = Fx.Threads });
                var inside = new ManualResetEventSlim();
                var finishes = new int[5];
                var statuses = new Status[5];
                var streams = new List<Stream>();
                for (int i = 0; i < 5; i++)   // 2 run, 3 wait in the queue
                {
                    int k = i;
                    streams.Add(e.StartStream("Stream " + i + " says", Fx.Endless(), t =>
                    {
                        inside.Set();
                        Thread.Sleep(3);
                        if (k == 0) GC.Collect();
                        return true;
                    }, (st, r) => { statuses[k] = st; Interlocked.Increment(ref finishes[k]); }));
                }
                Stream pull1 = e.StartStream("Pull one", Fx.Endless()), pull2 = e.StartStream("Pull two", Fx.Greedy(8));
                Assert.True(inside.Wait(30000), "a callback is running");
                var t1 = new Thread(e.Dispose);
                t1.Start();
                Collect();
                Assert.True(t1.Join(30000), "Engine.Dispose returned");
                for (int i = 0; i < 5; i++)
                {
                    Assert.Equal(1, Volatile.Read(ref finishes[i]), "onFinish of stream " + i + " ran once, before Dispose returned");
                    Assert.Equal(Status.Cancelled, statuses[i], "stream " + i + " cancelled");
                }
                pull1.ReadToEnd();
                pull2.ReadToEnd();
                Assert.Equal(FinishReason.Cancelled, pull1.GetStats().FinishReason, "pull stream cancelled");
                foreach (Stream s in streams) { Assert.True(s.Wait(0), "ended"); s.Dispose(); }
                pull1.Dispose();
                pull2.Dispose();
            }
        }

        private static void StartAbandonedEngine()
        {
            var e = new Engine(Fx.Model, new EngineParams { ContextTokens = 128, MaxStreams = 3, Threads = Fx.Threads });
            for (int i = 0; i < 2; i++)
            {
                var once = new int[1];
                Interlocked.Increment(ref s_started);
                e.StartStream("Abandoned " + i, Fx.Endless(), t => true, (st, r) => CountFinish(once, st));
            }
            e.StartStream("Abandoned pull", Fx.Endless()).Read(-1);
        }

        [Test]
        private static void abandoned_engines_are_freed_by_finalizers()
        {
            s_started = s_finished = s_cancelled = s_extraFinishes = 0;
            int live = Callbacks.LiveStreamHandles;
            for (int i = 0; i < 2; i++) OnOwnThread(StartAbandonedEngine);
            Assert.Eventually(() => Volatile.Read(ref s_finished) == 4, 60000, "every stream of the abandoned engines ended");
            Assert.Equal(4, s_cancelled, "ended by the finalizers (cancelled), not by a full context");
            Assert.Equal(0, s_extraFinishes, "no onFinish ran twice");
            Assert.Equal(live, Callbacks.LiveStreamHandles, "every GCHandle released");
        }

        [Test]
        private static void read0_never_waits_behind_a_blocked_reader()
        {
            // A thread blocked in Read(-1) waits for the engine thread; a Read(0) of the same
            // stream from a callback (on that engine thread) must not wait for that reader.
            using (Stream pull = Fx.Base.StartStream(Fx.Prompt, Fx.Endless()))
            {
                var reader = new Thread(() =>
                {
                    try { while (!pull.IsFinished) pull.Read(-1); }
                    catch (ObjectDisposedException) { }
                });
                reader.Start();
                int polls = 0;
                bool ended;
                using (Stream cb = Fx.Base.StartStream(Fx.Prompt, Fx.Greedy(24),
                    t => { pull.ReadAvailable(); Interlocked.Increment(ref polls); return true; }))
                {
                    ended = cb.Wait(30000);
                    pull.Cancel();      // unblocks the reader (and, before the fix, the engine)
                }
                Assert.True(reader.Join(30000), "the reader ended");
                Assert.True(ended, "the callback stream ended while a reader was blocked");
                Assert.True(polls > 1, "its callbacks polled the other stream");
            }
        }

        [Test]
        private static void racing_dispose_release_cancel_and_read()
        {
            using (var e = Fx.Small())
            {
                for (int iter = 0; iter < 12; iter++)
                {
                    int fin = 0;
                    Stream s = iter % 2 == 0
                        ? e.StartStream(Fx.Prompt, Fx.Endless())
                        : e.StartStream(Fx.Prompt, Fx.Endless(), null, (st, r) => Interlocked.Increment(ref fin));
                    var go = new ManualResetEventSlim();
                    var threads = new List<Thread>
                    {
                        new Thread(() =>
                        {
                            try { while (!s.IsFinished) s.Read(-1); }
                            catch (ObjectDisposedException) { }
                        }),
                        new Thread(() => { go.Wait(); s.Dispose(); }),
                        new Thread(() => { go.Wait(); s.Release(); }),
                        new Thread(() => { go.Wait(); try { s.Cancel(); } catch (ObjectDisposedException) { } }),
                        new Thread(() => { go.Wait(); try { s.GetStats(); s.Wait(0); } catch (ObjectDisposedException) { } }),
                    };
                    foreach (Thread t in threads) t.Start();
                    Thread.Sleep(iter * 3);
                    go.Set();
                    foreach (Thread t in threads) Assert.True(t.Join(30000), "thread ended");
                    if (iter % 2 == 1) Assert.Eventually(() => Volatile.Read(ref fin) == 1, 30000, "onFinish once");
                    Assert.Throws<ObjectDisposedException>(() => s.Read(0), "disposed");
                }
            }
        }
    }

    // Runs last.
    internal static class Final
    {
        [Test]
        private static void shared_engines_dispose_and_nothing_leaks()
        {
            Fx.DisposeAll();
            GC.Collect();
            GC.WaitForPendingFinalizers();
            Assert.Equal(0, Callbacks.LiveStreamHandles, "GCHandles of callback streams still held");
        }
    }
}
