using System;
using System.Collections.Generic;
using System.Runtime.InteropServices;
using System.Text;

namespace Minerva
{
    /// <summary>The result of a minerva call (minerva_status). Values are never renumbered.</summary>
    public enum Status
    {
        /// <summary>Success.</summary>
        Ok = 0,
        /// <summary>NULL where a value is needed, bad parameters, text that is not UTF-8, or a
        /// blocking call made from inside a callback.</summary>
        InvalidArgument = 1,
        /// <summary>The model file is missing or unreadable.</summary>
        Io = 2,
        /// <summary>The model file is not GGUF, is truncated or corrupt, or unsupported.</summary>
        Model = 3,
        /// <summary>Memory (host or device) ran out.</summary>
        OutOfMemory = 4,
        /// <summary>The prompt does not fit a stream's context, or the stream filled it.</summary>
        ContextFull = 5,
        /// <summary>The stream was cancelled, or a load was stopped by its progress callback.</summary>
        Cancelled = 6,
        /// <summary>A wait ended before the stream did.</summary>
        Timeout = 7,
        /// <summary>llama.cpp or the device failed.</summary>
        Backend = 8,
        /// <summary>A bug in minerva (a panic was caught).</summary>
        Internal = 9,
        /// <summary>A caller's buffer was too small (the binding sizes its buffers itself).</summary>
        BufferTooSmall = 10,
    }

    /// <summary>Why a stream ended (minerva_finish_reason).</summary>
    public enum FinishReason
    {
        /// <summary>The stream has not ended yet.</summary>
        Running = 0,
        /// <summary>MaxTokens were generated.</summary>
        Length = 1,
        /// <summary>A stop string matched (it is not delivered), or a callback returned false.</summary>
        Stop = 2,
        /// <summary>The model produced its end-of-generation token (or a grammar completed).</summary>
        Eos = 3,
        /// <summary>The stream was cancelled.</summary>
        Cancelled = 4,
        /// <summary>The stream failed: Stream.Wait throws its error, Stream.Error gives its words.</summary>
        Error = 5,
    }

    /// <summary>The kind of device that holds most of the model (minerva_device_kind).</summary>
    public enum DeviceKind
    {
        Cpu = 0,
        Cuda = 1,
        Metal = 2,
        Vulkan = 3,
        Other = 4,
        /// <summary>A minerva-rpc-server given in EngineParams.RpcServers (docs/RPC.md).</summary>
        Rpc = 5,
    }

    /// <summary>Whether and how the model may call tools (minerva_tool_choice).</summary>
    public enum ToolChoice
    {
        /// <summary>The model may answer or call tools.</summary>
        Auto = 0,
        /// <summary>The tools are not offered to the model.</summary>
        None = 1,
        /// <summary>The reply is one to four calls, always valid against the tools' schemas.</summary>
        Required = 2,
    }

    /// <summary>What becomes of the reasoning a model writes (minerva_reasoning).</summary>
    public enum Reasoning
    {
        /// <summary>The reasoning the template's format marks (&lt;think&gt;...&lt;/think&gt;, ...) is
        /// kept apart from the text: never delivered as text, readable with Stream.Reasoning().</summary>
        Auto = 0,
        /// <summary>The reasoning is left in the text as the model wrote it.</summary>
        None = 1,
    }

    /// <summary>How the vectors of a text's tokens become one (minerva_pooling).</summary>
    public enum Pooling
    {
        /// <summary>The model's own pooling if its file declares one, else Mean.</summary>
        Default = 0,
        Mean = 1,
        Last = 2,
        Cls = 3,
    }

    /// <summary>Severity of a log line (minerva_log_level).</summary>
    public enum LogLevel { Debug = 0, Info = 1, Warn = 2, Error = 3, None = 4 }

    /// <summary>A failed minerva call: its <see cref="Status"/> and minerva's message naming the
    /// function and the problem (minerva_last_error, or minerva_stream_error for an error that
    /// ended a stream).</summary>
    public class MinervaException : Exception
    {
        public MinervaException(Status status, string message)
            : base(string.IsNullOrEmpty(message) ? Library.StatusString(status) : message)
        {
            Status = status;
        }

        /// <summary>The minerva_status of the failure.</summary>
        public Status Status { get; private set; }
    }

    /// <summary>A bias added to one token's logit (minerva_logit_bias); float.NegativeInfinity
    /// bans the token.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct LogitBias
    {
        public int Token;
        public float Bias;

        public LogitBias(int token, float bias)
        {
            Token = token;
            Bias = bias;
        }
    }

    /// <summary>A LoRA adapter of EngineParams.Loras (minerva_lora): a GGUF adapter file made for
    /// the model, with its default scale for every stream (1: as trained; 0: off).</summary>
    public struct Lora
    {
        public string Path;
        public float Scale;

        public Lora(string path, float scale = 1)
        {
            Path = path;
            Scale = scale;
        }
    }

    /// <summary>Figures of one stream (minerva_stream_stats).</summary>
    public sealed class StreamStats
    {
        internal StreamStats(NativeStreamStats s)
        {
            PromptTokens = (int)s.prompt_tokens;
            CachedPromptTokens = (int)s.cached_prompt_tokens;
            GeneratedTokens = (int)s.generated_tokens;
            TimeToFirstTokenMs = s.time_to_first_token_ms;
            PromptTokensPerSecond = s.prompt_tokens_per_second;
            TokensPerSecond = s.tokens_per_second;
            FinishReason = (FinishReason)s.finish_reason;
        }

        internal static NativeStreamStats NewNative()
        {
            NativeStreamStats s = default(NativeStreamStats);
            s.struct_size = (uint)Marshal.SizeOf(typeof(NativeStreamStats));
            return s;
        }

        /// <summary>Tokens of the prompt (with BOS where the model adds one).</summary>
        public int PromptTokens { get; private set; }
        /// <summary>Prompt tokens reused from the KV cache, not computed again.</summary>
        public int CachedPromptTokens { get; private set; }
        /// <summary>Tokens generated so far.</summary>
        public int GeneratedTokens { get; private set; }
        /// <summary>From the stream's start to its first generated token.</summary>
        public double TimeToFirstTokenMs { get; private set; }
        /// <summary>Prompt processing speed, over the computed (not cached) prompt tokens.</summary>
        public double PromptTokensPerSecond { get; private set; }
        /// <summary>Generation speed, after the first token.</summary>
        public double TokensPerSecond { get; private set; }
        /// <summary>Why it ended; Running while it runs.</summary>
        public FinishReason FinishReason { get; private set; }
    }

    /// <summary>What an engine runs on and what it loaded (minerva_engine_info).</summary>
    public sealed class EngineInfo
    {
        internal EngineInfo(NativeEngineInfo i)
        {
            DeviceKind = (DeviceKind)i.device_kind;
            DeviceName = Utf8.FromFixed(i.device_name);
            FallbackReason = Utf8.FromFixed(i.fallback_reason);
            GpuLayers = i.gpu_layers;
            TotalLayers = i.total_layers;
            ContextTokens = (int)i.context_tokens;
            MaxStreams = (int)i.max_streams;
            Threads = (int)i.threads;
            ModelDescription = Utf8.FromFixed(i.model_description);
            ParameterCount = (long)i.parameter_count;
            FileBytes = (long)i.file_bytes;
            VocabSize = (int)i.vocab_size;
            TrainContextTokens = (int)i.train_context_tokens;
            HasChatTemplate = i.has_chat_template != 0;
            EmbeddingDims = (int)i.embedding_dims;
            CpuVariant = Utf8.FromFixed(i.cpu_variant);
            Devices = Utf8.FromFixed(i.devices);
            PinnedTokens = (long)i.pinned_tokens;
            PinnedBytes = (long)i.pinned_bytes;
        }

        internal static NativeEngineInfo NewNative()
        {
            NativeEngineInfo i = default(NativeEngineInfo);
            i.struct_size = (uint)Marshal.SizeOf(typeof(NativeEngineInfo));
            i.device_name = new byte[128];
            i.fallback_reason = new byte[256];
            i.model_description = new byte[128];
            i.cpu_variant = new byte[64];
            i.devices = new byte[256];
            return i;
        }

        public DeviceKind DeviceKind { get; private set; }
        /// <summary>The device's name, e.g. the CPU model or "NVIDIA H200".</summary>
        public string DeviceName { get; private set; }
        /// <summary>Why the CPU was used although a GPU was asked for; "" if not.</summary>
        public string FallbackReason { get; private set; }
        public int GpuLayers { get; private set; }
        public int TotalLayers { get; private set; }
        /// <summary>Tokens one stream can hold.</summary>
        public int ContextTokens { get; private set; }
        /// <summary>Streams decoded together.</summary>
        public int MaxStreams { get; private set; }
        /// <summary>CPU threads used for decoding.</summary>
        public int Threads { get; private set; }
        /// <summary>llama.cpp's description of the model, e.g. "gemma3 270M Q4_K - Medium".</summary>
        public string ModelDescription { get; private set; }
        public long ParameterCount { get; private set; }
        public long FileBytes { get; private set; }
        public int VocabSize { get; private set; }
        public int TrainContextTokens { get; private set; }
        public bool HasChatTemplate { get; private set; }
        /// <summary>The length of the vectors Engine.Embed gives.</summary>
        public int EmbeddingDims { get; private set; }
        /// <summary>The CPU backend in use, e.g. "x86-64 AVX-512 VBMI VNNI (icelake)"; "" from a
        /// library older than this field.</summary>
        public string CpuVariant { get; private set; }
        /// <summary>Each device that holds layers, with how many (llama.cpp counts the output
        /// layer as one), e.g. "RPC0 (10.0.0.2:50052): 12 layers, CPU: 7 layers"; "" from a
        /// library older than this field.</summary>
        public string Devices { get; private set; }
        /// <summary>Tokens the engine's pinned prefixes hold (Engine.CachePrefill with pin); 0
        /// from a library older than this field.</summary>
        public long PinnedTokens { get; private set; }
        /// <summary>The bytes of KV cache the pinned prefixes take (0 when the model's header
        /// does not say enough to count them).</summary>
        public long PinnedBytes { get; private set; }
    }

    /// <summary>One tool call of a chat reply, as minerva_stream_tool_calls gives it.</summary>
    public sealed class ToolCall
    {
        public ToolCall(string id, string name, string argumentsJson)
        {
            Id = id;
            Name = name;
            ArgumentsJson = argumentsJson;
        }

        /// <summary>The model's own id, or "call_" and 9 letters and digits, unique in the process;
        /// a "tool" turn answering the call gives it as ToolCallId.</summary>
        public string Id { get; private set; }
        /// <summary>The tool's name, one of those offered.</summary>
        public string Name { get; private set; }
        /// <summary>The arguments, a JSON object (valid against the tool's schema with
        /// ToolChoice.Required), for the game's own JSON reader (JsonUtility, System.Text.Json...).</summary>
        public string ArgumentsJson { get; private set; }

        // Reads minerva's `[{"id": ..., "name": ..., "arguments": {...}}, ...]`.
        internal static ToolCall[] ParseArray(string json)
        {
            var r = new JsonReader(json);
            var calls = new List<ToolCall>();
            r.Expect('[');
            if (!r.TryConsume(']'))
            {
                do
                {
                    string id = null, name = null, args = null;
                    r.Expect('{');
                    if (!r.TryConsume('}'))
                    {
                        do
                        {
                            string key = r.ReadString();
                            r.Expect(':');
                            if (key == "id") id = r.ReadString();
                            else if (key == "name") name = r.ReadString();
                            else if (key == "arguments") args = r.RawValue();
                            else r.RawValue();
                        } while (r.TryConsume(','));
                        r.Expect('}');
                    }
                    calls.Add(new ToolCall(id, name, args ?? "{}"));
                } while (r.TryConsume(','));
                r.Expect(']');
            }
            return calls.ToArray();
        }
    }

    // Just enough JSON for the tool calls minerva writes.
    internal sealed class JsonReader
    {
        private readonly string _s;
        private int _i;

        internal JsonReader(string s) { _s = s; }

        private void Ws()
        {
            while (_i < _s.Length && char.IsWhiteSpace(_s[_i])) _i++;
        }

        private FormatException Bad() { return new FormatException("unexpected JSON at " + _i + ": " + _s); }

        internal bool TryConsume(char c)
        {
            Ws();
            if (_i < _s.Length && _s[_i] == c) { _i++; return true; }
            return false;
        }

        internal void Expect(char c)
        {
            if (!TryConsume(c)) throw Bad();
        }

        internal string ReadString()
        {
            Expect('"');
            var sb = new StringBuilder();
            while (_i < _s.Length)
            {
                char c = _s[_i++];
                if (c == '"') return sb.ToString();
                if (c != '\\') { sb.Append(c); continue; }
                if (_i >= _s.Length) break;
                char e = _s[_i++];
                switch (e)
                {
                    case 'n': sb.Append('\n'); break;
                    case 't': sb.Append('\t'); break;
                    case 'r': sb.Append('\r'); break;
                    case 'b': sb.Append('\b'); break;
                    case 'f': sb.Append('\f'); break;
                    case 'u':
                        if (_i + 4 > _s.Length) throw Bad();
                        sb.Append((char)Convert.ToInt32(_s.Substring(_i, 4), 16));
                        _i += 4;
                        break;
                    default: sb.Append(e); break;
                }
            }
            throw Bad();
        }

        // Skips one value and returns its text.
        internal string RawValue()
        {
            Ws();
            int start = _i;
            SkipValue();
            return _s.Substring(start, _i - start);
        }

        private void SkipValue()
        {
            Ws();
            if (_i >= _s.Length) throw Bad();
            char c = _s[_i];
            if (c == '"') { ReadString(); return; }
            if (c == '{' || c == '[')
            {
                char close = c == '{' ? '}' : ']';
                _i++;
                if (TryConsume(close)) return;
                do
                {
                    if (c == '{') { ReadString(); Expect(':'); }
                    SkipValue();
                } while (TryConsume(','));
                Expect(close);
                return;
            }
            int start = _i;
            while (_i < _s.Length && "{}[],: \t\r\n\"".IndexOf(_s[_i]) < 0) _i++;
            if (_i == start) throw Bad();
        }
    }
}
