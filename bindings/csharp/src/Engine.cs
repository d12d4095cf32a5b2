using System;
using System.Collections.Generic;
using System.Runtime.ExceptionServices;
using System.Runtime.InteropServices;
using System.Text;

namespace Minerva
{
    /// <summary>
    /// A loaded GGUF model and its engine thread (minerva_engine), which decodes all of the
    /// engine's streams together in shared batches.
    /// <para>Threads: every method may be called from any thread, concurrently. Token and finish
    /// callbacks run on the engine's thread, one at a time for all its streams, so a slow
    /// callback holds back every stream of the engine. Inside a callback, the calls that would
    /// wait for the engine thread (Generate, Chat, Embed, Stream.Read with a timeout,
    /// Stream.Wait with a timeout) throw MinervaException with Status.InvalidArgument.</para>
    /// <para>Lifetime: Dispose cancels the engine's streams (their onFinish runs, with
    /// Status.Cancelled), waits until none of its callbacks can run, and frees the model. A call
    /// in progress on another thread (a Generate, say) finishes first: the engine is freed when
    /// it returns. Streams stay usable after their engine is disposed. An Engine nobody
    /// references (and no Stream of it) is freed by the GC's finalizer thread; do not rely on
    /// that for a model's memory. Disposing an Engine inside one of its own callbacks is done on
    /// a thread-pool thread (an engine cannot wait for its own thread).</para>
    /// </summary>
    public sealed class Engine : IDisposable
    {
        private readonly EngineHandle _h;
        private readonly int _loraCount;   // EngineParams.Loras: as many as LoraScales must have

        /// <summary>Loads the GGUF model at <paramref name="modelPath"/> with the default
        /// settings; blocks while it loads. Throws MinervaException: Status.Io for a missing or
        /// unreadable file, Status.Model for one that is not a usable GGUF model.</summary>
        public Engine(string modelPath) : this(modelPath, null) { }

        /// <summary>Loads the model with <paramref name="p"/> (null: the defaults).</summary>
        public Engine(string modelPath, EngineParams p)
        {
            if (p == null) p = new EngineParams();
            NativeEngineParams n = p.Native_;
            ProgressState progress = null;
            GCHandle g = default(GCHandle);
            n.progress = IntPtr.Zero;
            n.progress_user_data = IntPtr.Zero;
            byte[] path = Utf8.Z(modelPath);
            EngineHandle h;
            MinervaException error = null;
            using (var s = new Scratch())      // rpc_servers, in native memory until the call returns
            {
                n.rpc_servers = s.Str(p.RpcServers);
                if (p.Loras != null && p.Loras.Length > 0)
                {
                    var loras = new NativeLora[p.Loras.Length];
                    for (int i = 0; i < loras.Length; i++)
                    {
                        loras[i].path = s.Str(p.Loras[i].Path);
                        loras[i].scale = p.Loras[i].Scale;
                    }
                    n.loras = s.Pin(loras);
                    n.lora_count = (UIntPtr)loras.Length;
                }
                if (p.Progress != null)
                {
                    progress = new ProgressState { OnProgress = p.Progress };
                    g = GCHandle.Alloc(progress);
                    n.progress = Callbacks.ProgressPtr;
                    n.progress_user_data = GCHandle.ToIntPtr(g);
                }
                try
                {
                    uint st = Native.minerva_engine_new(path, ref n, out h);
                    if (st != 0) error = Errors.Last(st);
                }
                finally
                {
                    if (g.IsAllocated) g.Free();   // the progress callback runs only during the call
                }
            }
            if (progress != null && progress.Thrown != null)
            {
                h.Dispose();
                ExceptionDispatchInfo.Capture(progress.Thrown).Throw();
            }
            if (error != null)
            {
                h.Dispose();
                throw error;
            }
            _h = h;
            _loraCount = p.Loras == null ? 0 : p.Loras.Length;
        }

        /// <summary>Whether Dispose has been called.</summary>
        public bool IsDisposed { get { return _h.IsClosed; } }

        /// <summary>See the class summary: cancels the streams, runs their onFinish, frees the
        /// model. Calling it again does nothing.</summary>
        public void Dispose()
        {
            _h.Dispose();
        }

        /// <summary>What the engine runs on and what it loaded.</summary>
        public EngineInfo GetInfo()
        {
            NativeEngineInfo i = EngineInfo.NewNative();
            using (new Lease(_h, "Minerva.Engine"))
                Errors.Check(Native.minerva_engine_get_info(_h, ref i));
            return new EngineInfo(i);
        }

        /// <summary>Blocking: the whole text of one generation with the default settings.</summary>
        public string Generate(string prompt)
        {
            StreamStats stats;
            return Generate(prompt, null, out stats);
        }

        /// <summary>Blocking: the whole text of one generation (minerva_generate). Not from inside a
        /// callback. Throws MinervaException when the stream fails to start or ends with an
        /// error.</summary>
        public string Generate(string prompt, GenerateParams p)
        {
            StreamStats stats;
            return Generate(prompt, p, out stats);
        }

        /// <summary>As Generate(prompt, p), with the stream's figures.</summary>
        public string Generate(string prompt, GenerateParams p, out StreamStats stats)
        {
            byte[] z = Utf8.Z(prompt);
            using (new Lease(_h, "Minerva.Engine"))
            using (var s = new Scratch())
            {
                NativeGenerateParams n = (p ?? new GenerateParams()).ToNative(s, _loraCount);
                NativeStreamStats ns = StreamStats.NewNative();
                var cb = new StreamCallbacks { Collected = new StringBuilder() };
                GCHandle g = Callbacks.Hold(cb);
                uint st;
                MinervaException error = null;
                try
                {
                    st = Native.minerva_generate(_h, z, ref n, Callbacks.TokenPtr, GCHandle.ToIntPtr(g), ref ns);
                    if (st != 0) error = Errors.Last(st);
                }
                finally
                {
                    // minerva_generate returns after the stream's last callback (or without
                    // having started one): nothing uses user_data any more.
                    Callbacks.Free(ref g);
                }
                stats = new StreamStats(ns);
                if (cb.Thrown != null) ExceptionDispatchInfo.Capture(cb.Thrown).Throw();
                if (error != null) throw error;
                return cb.Collected.ToString();
            }
        }

        /// <summary>Starts a pull-mode stream and returns at once (never waits for the engine; a
        /// frame loop may start many). Read its text with Stream.TryRead / ReadAvailable.</summary>
        public Stream StartStream(string prompt, GenerateParams p = null)
        {
            return StartStream(prompt, p, null, null);
        }

        /// <summary>
        /// Starts a stream and returns at once. <paramref name="onText"/> (null: pull mode) gets
        /// each piece of text on the engine's thread; return false to stop the stream
        /// (FinishReason.Stop). <paramref name="onFinish"/> runs exactly once, last, on the engine
        /// thread (or on the thread that disposes a stream still queued), with the final status
        /// and the reason. An exception thrown by either stops the stream and is thrown again by
        /// Stream.Wait.
        /// </summary>
        public Stream StartStream(string prompt, GenerateParams p, Func<string, bool> onText,
            Action<Status, FinishReason> onFinish = null)
        {
            byte[] z = Utf8.Z(prompt);
            using (new Lease(_h, "Minerva.Engine"))
            using (var s = new Scratch())
            {
                return Start(p, onText, onFinish, s,
                    (ref NativeGenerateParams n, IntPtr tok, IntPtr ud, out StreamHandle h) =>
                        Native.minerva_stream_new(_h, z, ref n, tok, ud, out h));
            }
        }

        /// <summary>Blocking: renders the messages with the chat template and returns the reply
        /// (minerva_chat_stream_new, read to the end). Not from inside a callback.</summary>
        public string Chat(IList<ChatMessage> messages, ChatParams chat = null, GenerateParams p = null)
        {
            ToolCall[] calls;
            return Chat(messages, chat, p, out calls);
        }

        /// <summary>As Chat, with the tool calls of the reply (empty when there are none).</summary>
        public string Chat(IList<ChatMessage> messages, ChatParams chat, GenerateParams p, out ToolCall[] toolCalls)
        {
            using (Stream s = StartChat(messages, chat, p))
            {
                string text = s.ReadToEnd();
                toolCalls = s.ToolCalls();
                return text;
            }
        }

        /// <summary>Starts a chat stream (pull mode) and returns at once: the messages rendered
        /// with the chat template, ending at the end of the assistant's turn. With tools, call
        /// markup is never delivered as text; the calls come from Stream.ToolCalls() once the
        /// stream has ended. See docs/CHAT.md.</summary>
        public Stream StartChat(IList<ChatMessage> messages, ChatParams chat = null, GenerateParams p = null)
        {
            return StartChat(messages, chat, p, null, null);
        }

        /// <summary>Starts a chat stream with callbacks, as StartStream does.</summary>
        public Stream StartChat(IList<ChatMessage> messages, ChatParams chat, GenerateParams p,
            Func<string, bool> onText, Action<Status, FinishReason> onFinish = null)
        {
            using (new Lease(_h, "Minerva.Engine"))
            using (var s = new Scratch())
            {
                NativeChatMessage[] m = ChatMessage.ToNative(messages, s);
                NativeChatParams c = (chat ?? new ChatParams()).ToNative(s);
                UIntPtr count = (UIntPtr)(m == null ? 0 : m.Length);
                return Start(p, onText, onFinish, s,
                    (ref NativeGenerateParams n, IntPtr tok, IntPtr ud, out StreamHandle h) =>
                        Native.minerva_chat_stream_new(_h, m, count, ref c, ref n, tok, ud, out h));
            }
        }

        /// <summary>The messages rendered with the chat template, as the model sees them (without
        /// the BOS a stream adds).</summary>
        public string FormatChat(IList<ChatMessage> messages, ChatParams chat = null)
        {
            using (new Lease(_h, "Minerva.Engine"))
            using (var s = new Scratch())
            {
                NativeChatMessage[] m = ChatMessage.ToNative(messages, s);
                NativeChatParams c = (chat ?? new ChatParams()).ToNative(s);
                UIntPtr count = (UIntPtr)(m == null ? 0 : m.Length);
                byte[] text = TwoCall((byte[] buf, UIntPtr cap, out UIntPtr len) =>
                    Native.minerva_chat_format(_h, m, count, ref c, buf, cap, out len));
                return Encoding.UTF8.GetString(text);
            }
        }

        /// <summary>The tokens of <paramref name="text"/>: with addSpecial, BOS (and EOS) where the
        /// vocabulary asks for them; with parseSpecial, special tokens written in the text become
        /// their token. With both (the default), exactly the tokens a stream on the text starts
        /// from (StreamStats.PromptTokens).</summary>
        public int[] Tokenize(string text, bool addSpecial = true, bool parseSpecial = true)
        {
            byte[] z = Utf8.Z(text);
            using (new Lease(_h, "Minerva.Engine"))
            {
                int[] tokens = null;
                for (int attempt = 0; ; attempt++)
                {
                    UIntPtr n;
                    uint st = Native.minerva_tokenize(_h, z, addSpecial, parseSpecial, tokens,
                        (UIntPtr)(tokens == null ? 0 : tokens.Length), out n);
                    int count = (int)n.ToUInt64();
                    if (st == 0 && (tokens != null || count == 0))
                    {
                        if (tokens == null) return new int[0];
                        if (count == tokens.Length) return tokens;
                        var r = new int[count];
                        Array.Copy(tokens, r, count);
                        return r;
                    }
                    if (st != 0 && (st != (uint)Status.BufferTooSmall || attempt > 2)) throw Errors.Last(st);
                    tokens = new int[count];
                }
            }
        }

        /// <summary>The text of the tokens, as the model would write them: special tokens (BOS,
        /// "&lt;end_of_turn&gt;") shown with renderSpecial, left out otherwise. Bytes that are not
        /// whole UTF-8 characters become U+FFFD; DetokenizeBytes gives them as they are.</summary>
        public string Detokenize(int[] tokens, bool renderSpecial = false)
        {
            return Encoding.UTF8.GetString(DetokenizeBytes(tokens, renderSpecial));
        }

        /// <summary>The UTF-8 bytes of the tokens' text (see Detokenize).</summary>
        public byte[] DetokenizeBytes(int[] tokens, bool renderSpecial = false)
        {
            using (new Lease(_h, "Minerva.Engine"))
            {
                UIntPtr count = (UIntPtr)(tokens == null ? 0 : tokens.Length);
                return TwoCall((byte[] buf, UIntPtr cap, out UIntPtr len) =>
                    Native.minerva_detokenize(_h, tokens, count, renderSpecial, buf, cap, out len));
            }
        }

        /// <summary>The embedding of one text (EngineInfo.EmbeddingDims floats).</summary>
        public float[] Embed(string text, EmbedParams p = null)
        {
            return Embed(new[] { text }, p)[0];
        }

        /// <summary>One vector per text (EngineInfo.EmbeddingDims floats each; L2-normalized by
        /// default). Works while the engine's streams generate, which slow down but never stop;
        /// blocks until the vectors are done, so not from inside a callback.</summary>
        public float[][] Embed(IList<string> texts, EmbedParams p = null)
        {
            using (new Lease(_h, "Minerva.Engine"))
            using (var s = new Scratch())
            {
                IntPtr arr = s.StrArray(texts);
                int count = texts == null ? 0 : texts.Count;
                NativeEmbedParams n = (p ?? new EmbedParams()).Native_;
                float[] flat = null;
                for (int attempt = 0; ; attempt++)
                {
                    UIntPtr len;
                    uint st = Native.minerva_embed(_h, arr, (UIntPtr)count, ref n, flat,
                        (UIntPtr)(flat == null ? 0 : flat.Length), out len);
                    int total = (int)len.ToUInt64();
                    if (st == 0 && (flat != null || total == 0)) break;
                    if (st != 0 && (st != (uint)Status.BufferTooSmall || attempt > 2)) throw Errors.Last(st);
                    flat = new float[total];
                }
                var rows = new float[count][];
                int dims = count == 0 || flat == null ? 0 : flat.Length / count;
                for (int i = 0; i < count; i++)
                {
                    rows[i] = new float[dims];
                    Array.Copy(flat, i * dims, rows[i], 0, dims);
                }
                return rows;
            }
        }

        /// <summary>
        /// Game state: computes <paramref name="prompt"/>'s KV into the prompt cache now, without
        /// generating (minerva_cache_prefill), so that a later stream (or chat) whose prompt starts
        /// with it skips those tokens (StreamStats.CachedPromptTokens). End it where a prompt that
        /// continues it splits into the same tokens (at a newline, say). With
        /// <paramref name="pin"/> the prefix is kept until the engine is disposed, never evicted
        /// (at most 16; EngineInfo.PinnedTokens and PinnedBytes say what they hold); without, it
        /// is a stream slot's cache that later prompts evict. Runs on the engine thread beside the
        /// streams and returns when the prefix is cached: not from inside a callback
        /// (Status.InvalidArgument). Status.ContextFull beyond what the cache may pin.
        /// </summary>
        public void CachePrefill(string prompt, bool pin = false)
        {
            byte[] z = Utf8.Z(prompt);
            using (new Lease(_h, "Minerva.Engine"))
                Errors.Check(Native.minerva_cache_prefill(_h, z, pin));
        }

        /// <summary>Every cached prefix no stream is computing (the pinned ones and the stream
        /// slots' caches) as bytes for a save file (minerva_cache_save); CacheLoad puts them into
        /// an engine of the same model, ContextTokens and minerva version. Streams keep running;
        /// not from inside a callback.</summary>
        public byte[] CacheSave()
        {
            using (new Lease(_h, "Minerva.Engine"))
            {
                byte[] buf = null;
                for (;;)
                {
                    UIntPtr n;
                    uint st = Native.minerva_cache_save(_h, buf, (UIntPtr)(buf == null ? 0 : buf.Length), out n);
                    long len = (long)n.ToUInt64();
                    if (st == 0)
                    {
                        if (buf == null) return new byte[0];
                        if (len == buf.Length) return buf;
                        var r = new byte[len];
                        Array.Copy(buf, r, len);
                        return r;
                    }
                    // The cache may grow between two calls (streams end and leave their prompts):
                    // ask again with the size it gave.
                    if (st != (uint)Status.BufferTooSmall) throw Errors.Last(st);
                    buf = new byte[checked((int)len)];
                }
            }
        }

        /// <summary>Loads what CacheSave gave (minerva_cache_load): pinned prefixes stay pinned, the
        /// others become stream slots' caches; the first stream on each starts without prompt
        /// processing. Bytes that are not a saved cache, or of another model, ContextTokens or
        /// version, or a checksum that does not match: Status.InvalidArgument naming what, and
        /// nothing is loaded; more pinned prefixes than the engine has room for:
        /// Status.ContextFull. Streams keep running; not from inside a callback.</summary>
        public void CacheLoad(byte[] data)
        {
            using (new Lease(_h, "Minerva.Engine"))
                Errors.Check(Native.minerva_cache_load(_h, data, (UIntPtr)(data == null ? 0 : data.Length)));
        }

        /// <summary>CacheSave into the file at <paramref name="path"/>, written whole or not at all
        /// (minerva_cache_save_file); Status.Io naming a file that cannot be written.</summary>
        public void CacheSaveFile(string path)
        {
            byte[] z = Utf8.Z(path);
            using (new Lease(_h, "Minerva.Engine"))
                Errors.Check(Native.minerva_cache_save_file(_h, z));
        }

        /// <summary>CacheLoad from the file at <paramref name="path"/> (minerva_cache_load_file);
        /// Status.Io naming a file that cannot be read.</summary>
        public void CacheLoadFile(string path)
        {
            byte[] z = Utf8.Z(path);
            using (new Lease(_h, "Minerva.Engine"))
                Errors.Check(Native.minerva_cache_load_file(_h, z));
        }

        private delegate uint Starter(ref NativeGenerateParams n, IntPtr onToken, IntPtr userData, out StreamHandle h);

        private Stream Start(GenerateParams p, Func<string, bool> onText, Action<Status, FinishReason> onFinish,
            Scratch s, Starter start)
        {
            NativeGenerateParams n = (p ?? new GenerateParams()).ToNative(s, _loraCount);
            StreamCallbacks cb = null;
            GCHandle g = default(GCHandle);
            IntPtr onToken = IntPtr.Zero;
            if (onText != null || onFinish != null)
            {
                cb = new StreamCallbacks { OnText = onText, OnFinish = onFinish };
                g = Callbacks.Hold(cb);
                n.on_finish = Callbacks.FinishPtr;
                if (onText != null) onToken = Callbacks.TokenPtr;
            }
            StreamHandle h;
            uint st = start(ref n, onToken, g.IsAllocated ? GCHandle.ToIntPtr(g) : IntPtr.Zero, out h);
            if (st != 0)
            {
                MinervaException error = Errors.Last(st);
                Callbacks.Free(ref g);   // no callback ever runs for a stream that failed to start
                h.Dispose();
                throw error;
            }
            // From here on the finish callback owns the GCHandle.
            return new Stream(h, cb, onText == null, this);
        }

        private delegate uint Filler(byte[] buf, UIntPtr cap, out UIntPtr len);

        // minerva's two-call pattern: ask for the length, then fill a buffer of that size.
        private static byte[] TwoCall(Filler fill)
        {
            byte[] buf = null;
            for (int attempt = 0; ; attempt++)
            {
                UIntPtr n;
                uint st = fill(buf, (UIntPtr)(buf == null ? 0 : buf.Length), out n);
                int len = (int)n.ToUInt64();
                if (st == 0 && (buf != null || len == 0))
                {
                    var r = new byte[len];
                    if (len > 0) Array.Copy(buf, r, len);
                    return r;
                }
                if (st != 0 && (st != (uint)Status.BufferTooSmall || attempt > 2)) throw Errors.Last(st);
                buf = new byte[len + 1];
            }
        }

        internal EngineHandle Handle { get { return _h; } }
    }
}
