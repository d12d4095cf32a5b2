using System;
using System.Runtime.ExceptionServices;
using System.Runtime.InteropServices;
using System.Text;

namespace Minerva
{
    /// <summary>
    /// One generation, from prompt to finish (minerva_stream), running as soon as
    /// Engine.StartStream or Engine.StartChat returns.
    /// <para>Pull mode (started without onText): take the text that has arrived with
    /// <see cref="TryRead"/> or <see cref="ReadAvailable"/> once a frame (they never wait) until
    /// <see cref="IsFinished"/>; or block with <see cref="Read"/> and <see cref="ReadToEnd"/>.</para>
    /// <para>Callback mode: onText gets each piece of text on the engine's thread (not the
    /// thread that started the stream, not Unity's main thread), one callback at a time for all
    /// the engine's streams; onFinish runs exactly once, last.</para>
    /// <para>Threads: every member may be called from any thread. Inside a callback, only
    /// non-waiting calls are allowed (TryRead, ReadAvailable, IsFinished, Wait(0), Cancel,
    /// GetStats, Error, Dispose, Release); waiting ones throw MinervaException with
    /// Status.InvalidArgument.</para>
    /// <para>Lifetime: Dispose (or Release) ends it. A Stream nobody references any more is
    /// cancelled and released when the GC finalizes it, so keep a reference while it should run.
    /// The Stream stays usable after its Engine is disposed (it then ends as cancelled); a
    /// Stream keeps its Engine from being finalized.</para>
    /// </summary>
    public sealed class Stream : IDisposable
    {
        private readonly StreamHandle _h;
        private readonly StreamCallbacks _cb;     // null for a stream without callbacks
        private readonly bool _pull;
        private readonly Engine _engine;          // keeps the Engine from being finalized first
        private volatile bool _finished;

        internal Stream(StreamHandle h, StreamCallbacks cb, bool pull, Engine engine)
        {
            _h = h;
            _cb = cb;
            _pull = pull;
            _engine = engine;
        }

        /// <summary>The Engine that runs this stream.</summary>
        public Engine Engine { get { return _engine; } }

        /// <summary>Whether the stream was started without onText (its text is pulled).</summary>
        public bool IsPullMode { get { return _pull; } }

        /// <summary>Pull mode: true once a read has returned the end (the stream ended and all of
        /// its text was read). Callback mode: true once the stream has ended and its last callback
        /// has returned. Never waits.</summary>
        public bool IsFinished
        {
            get
            {
                if (_finished) return true;
                if (_pull) return false;
                using (new Lease(_h, "Minerva.Stream"))
                {
                    if (Native.minerva_stream_wait(_h, 0) == (uint)Status.Timeout) return false;
                }
                _finished = true;
                return true;
            }
        }

        /// <summary>Pull mode: the text that has arrived, waiting up to <paramref name="timeoutMs"/>
        /// for some (0: never wait; -1: no limit). Returns "" on timeout and once finished. Up to
        /// 4 KiB at a time, whole characters only. Reads on several threads at once each get a
        /// part of the text, in no set order.</summary>
        public string Read(int timeoutMs)
        {
            // One buffer per thread, and no lock: a Read(0) (a frame loop, or a callback on the
            // engine thread) must never wait behind a Read(-1) that waits for the engine thread.
            byte[] buf = t_readBuf;
            if (buf == null) t_readBuf = buf = new byte[ReadCap];
            using (new Lease(_h, "Minerva.Stream"))
            {
                UIntPtr n;
                byte done;
                uint st = Native.minerva_stream_read(_h, buf, (UIntPtr)buf.Length, out n, out done, timeoutMs);
                if (st != 0) throw Errors.Last(st);
                if (done != 0) _finished = true;
                int len = (int)n.ToUInt64();
                return len == 0 ? "" : Encoding.UTF8.GetString(buf, 0, len);
            }
        }

        private const int ReadCap = 4096;
        [ThreadStatic] private static byte[] t_readBuf;

        /// <summary>Pull mode, for a frame loop: all the text that has arrived, without waiting
        /// ("" if none yet).</summary>
        public string ReadAvailable()
        {
            string first = Read(0);
            if (first.Length == 0 || _finished) return first;
            StringBuilder sb = null;
            for (;;)
            {
                string more = Read(0);
                if (more.Length == 0) break;
                if (sb == null) sb = new StringBuilder(first);
                sb.Append(more);
            }
            return sb == null ? first : sb.ToString();
        }

        /// <summary>Pull mode, for a frame loop: true and the text that has arrived when there is
        /// some, false otherwise; never waits. Check IsFinished for the end.</summary>
        public bool TryRead(out string text)
        {
            text = ReadAvailable();
            return text.Length > 0;
        }

        /// <summary>Pull mode, blocking: all the text until the end, then Wait() (which throws the
        /// stream's error, if it ended with one).</summary>
        public string ReadToEnd()
        {
            var sb = new StringBuilder();
            while (!_finished) sb.Append(Read(-1));
            Wait();
            return sb.ToString();
        }

        /// <summary>
        /// Waits up to <paramref name="timeoutMs"/> (-1: no limit; 0: poll, the only value allowed
        /// inside a callback) for the stream to end and its last callback to return. Returns true
        /// when it has ended, also when it was cancelled (GetStats().FinishReason says so), false
        /// on timeout. Throws what a callback of the stream threw, and MinervaException when the
        /// stream ended with an error (Status and Error say which).
        /// </summary>
        public bool Wait(int timeoutMs = -1)
        {
            uint st;
            string why = null;
            using (new Lease(_h, "Minerva.Stream"))
            {
                st = Native.minerva_stream_wait(_h, timeoutMs);
                if (st == (uint)Status.Timeout) return false;
                if (st != 0 && st != (uint)Status.Cancelled)
                {
                    // Either the stream's own error (minerva_stream_error has its words), or the
                    // wait itself was refused (a timeout inside a callback: the stream runs on).
                    string lastError = Utf8.FromNative(Native.minerva_last_error());
                    string streamError = Utf8.FromNative(Native.minerva_stream_error(_h));
                    if (streamError.Length == 0 && st == (uint)Status.InvalidArgument)
                        throw new MinervaException((Status)st, lastError);
                    why = streamError.Length > 0 ? streamError : lastError;
                }
            }
            if (!_pull) _finished = true;
            Exception thrown = _cb == null ? null : _cb.Thrown;
            if (thrown != null) ExceptionDispatchInfo.Capture(thrown).Throw();
            if (why != null) throw new MinervaException((Status)st, why);
            return true;
        }

        /// <summary>Asks the stream to end; returns at once, from any thread (a callback too).
        /// It ends within one engine step with FinishReason.Cancelled, unless it had ended.</summary>
        public void Cancel()
        {
            using (new Lease(_h, "Minerva.Stream"))
                Native.minerva_stream_cancel(_h);
        }

        /// <summary>The stream's figures so far. Any thread, a callback too.</summary>
        public StreamStats GetStats()
        {
            NativeStreamStats s = StreamStats.NewNative();
            using (new Lease(_h, "Minerva.Stream"))
                Errors.Check(Native.minerva_stream_get_stats(_h, ref s));
            return new StreamStats(s);
        }

        /// <summary>The message of the error the stream ended with; "" while it runs or when it
        /// ended without one.</summary>
        public string Error
        {
            get
            {
                using (new Lease(_h, "Minerva.Stream"))
                    return Utf8.FromNative(Native.minerva_stream_error(_h));
            }
        }

        /// <summary>Once the stream has ended (from onFinish on): the tool calls of a chat reply as
        /// minerva's JSON array <c>[{"id", "name", "arguments"}]</c>, "[]" when there are none.
        /// Pass it back as the assistant turn's ToolCallsJson. Throws MinervaException
        /// (InvalidArgument) while the stream runs.</summary>
        public string ToolCallsJson()
        {
            using (new Lease(_h, "Minerva.Stream"))
            {
                byte[] buf = null;
                for (int attempt = 0; ; attempt++)
                {
                    UIntPtr n;
                    uint st = Native.minerva_stream_tool_calls(_h, buf, (UIntPtr)(buf == null ? 0 : buf.Length), out n);
                    int len = (int)n.ToUInt64();
                    if (st == 0 && (buf != null || len == 0)) return Encoding.UTF8.GetString(buf ?? new byte[0], 0, len);
                    if (st != 0 && (st != (uint)Status.BufferTooSmall || attempt > 2)) throw Errors.Last(st);
                    buf = new byte[len + 1];
                }
            }
        }

        /// <summary>The reasoning of a chat reply so far: under Reasoning.Auto, what the template's
        /// format marks as reasoning (&lt;think&gt;...&lt;/think&gt;, ...), kept out of the text; "" when
        /// there is none (a plain stream, Reasoning.None, or a template that marks no reasoning).
        /// Readable while the stream runs and after it ended. Any thread, a callback too.</summary>
        public string Reasoning()
        {
            using (new Lease(_h, "Minerva.Stream"))
            {
                byte[] buf = null;
                for (int attempt = 0; ; attempt++)
                {
                    UIntPtr n;
                    uint st = Native.minerva_stream_reasoning(_h, buf, (UIntPtr)(buf == null ? 0 : buf.Length), out n);
                    int len = (int)n.ToUInt64();
                    if (st == 0 && (buf != null || len == 0)) return Encoding.UTF8.GetString(buf ?? new byte[0], 0, len);
                    if (st != 0 && (st != (uint)Status.BufferTooSmall || attempt > 8)) throw Errors.Last(st);
                    // It may grow while the stream runs: room for some more.
                    buf = new byte[len + len / 4 + 64];
                }
            }
        }

        /// <summary>Once the stream has ended: its tool calls, read from ToolCallsJson().</summary>
        public ToolCall[] ToolCalls()
        {
            return ToolCall.ParseArray(ToolCallsJson());
        }

        /// <summary>
        /// Cancels the stream if it runs, waits until none of its callbacks can run any more (its
        /// onFinish has returned), and frees it (minerva_stream_free). Returns at once for a pull
        /// stream without onFinish, for a stream still queued, and when called from inside a
        /// callback (onFinish then runs after the current callback returns). If another thread
        /// is inside a call on this Stream, the stream is cancelled now (a blocked Read or Wait
        /// returns) and freed when that call returns, on that thread. Calling it again does
        /// nothing. Use Release in a frame loop for callback streams.
        /// </summary>
        public void Dispose()
        {
            Close(true);
        }

        /// <summary>Cancels the stream if it runs and gives the handle back at once, never waiting
        /// (minerva_stream_release): for a frame loop. Its callbacks may still run on the engine
        /// thread until onFinish, which runs last, exactly once.</summary>
        public void Release()
        {
            Close(false);
        }

        private void Close(bool wait)
        {
            if (_h.IsClosed) return;
            _h.WaitOnRelease = wait;
            try
            {
                Cancel();   // wakes a Read(-1) or Wait(-1) in progress on another thread
            }
            catch (ObjectDisposedException)
            {
                return;
            }
            _h.Dispose();
        }

        internal StreamHandle Handle { get { return _h; } }
    }
}
