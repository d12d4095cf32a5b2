using System;
using System.Collections.Generic;
using System.Runtime.InteropServices;

namespace Minerva
{
    internal static class Range
    {
        internal static uint NonNegative(int value, string name)
        {
            if (value < 0) throw new ArgumentOutOfRangeException(name, value, name + " must not be negative");
            return (uint)value;
        }
    }

    /// <summary>Settings of an engine (minerva_engine_params). A new instance holds the C defaults,
    /// as minerva_engine_params_init gives them; change what you need. Read when the Engine is
    /// created; minerva checks the ranges (MinervaException with Status.InvalidArgument).</summary>
    public sealed class EngineParams
    {
        private NativeEngineParams _n;

        public EngineParams()
        {
            Native.minerva_engine_params_init(ref _n, (uint)Marshal.SizeOf(typeof(NativeEngineParams)));
        }

        /// <summary>Layers to offload to the best GPU and the RpcServers' devices: -1 (default) as
        /// many as fit, 0 CPU only, N at most N. Without a usable GPU the engine runs on the CPU
        /// (never an error).</summary>
        public int GpuLayers { get { return _n.gpu_layers; } set { _n.gpu_layers = value; } }

        /// <summary>Tokens one stream can hold, prompt plus output (default 2048).</summary>
        public int ContextTokens
        {
            get { return (int)_n.context_tokens; }
            set { _n.context_tokens = Range.NonNegative(value, "ContextTokens"); }
        }

        /// <summary>Streams decoded together (default 4); more wait in a queue.</summary>
        public int MaxStreams
        {
            get { return (int)_n.max_streams; }
            set { _n.max_streams = Range.NonNegative(value, "MaxStreams"); }
        }

        /// <summary>CPU threads for decoding; 0 (default): one per physical core. In a game on a
        /// small machine leave a core to the game.</summary>
        public int Threads
        {
            get { return (int)_n.threads; }
            set { _n.threads = Range.NonNegative(value, "Threads"); }
        }

        /// <summary>Tokens per decode step, all streams together (default 512).</summary>
        public int BatchTokens
        {
            get { return (int)_n.batch_tokens; }
            set { _n.batch_tokens = Range.NonNegative(value, "BatchTokens"); }
        }

        /// <summary>Map the model file instead of reading it (default true).</summary>
        public bool UseMmap { get { return _n.use_mmap != 0; } set { _n.use_mmap = (byte)(value ? 1 : 0); } }

        /// <summary>Load progress from 0 to 1, called on the thread that creates the Engine; return
        /// false to abort the load (the constructor then throws MinervaException with
        /// Status.Cancelled). An exception it throws aborts the load and comes out of the
        /// constructor.</summary>
        public Func<float, bool> Progress { get; set; }

        /// <summary>Other machines' devices through ggml's RPC protocol (docs/RPC.md): null or ""
        /// (default) for none, else "host:port" entries of minerva-rpc-server processes separated
        /// by commas, e.g. "10.0.0.2:50052,10.0.0.3:50052". Their devices take layers with the
        /// local GPU's (GpuLayers). A server that cannot be reached: MinervaException with
        /// Status.Backend naming it; a malformed list: Status.InvalidArgument. The protocol has no
        /// authentication: loopback or a trusted network only.</summary>
        public string RpcServers { get; set; }

        /// <summary>LoRA adapters loaded with the model (default none), at most 32: each a GGUF
        /// adapter made for this model, with its default scale for every stream (a stream may
        /// give its own: GenerateParams.LoraScales). One that does not fit the model:
        /// MinervaException with Status.Model naming the file; a missing file: Status.Io.</summary>
        public Lora[] Loras { get; set; }

        internal NativeEngineParams Native_ { get { return _n; } }
    }

    /// <summary>Settings of one generation (minerva_generate_params). <c>new GenerateParams()</c>
    /// holds the C defaults, as minerva_generate_params_init gives them (MaxTokens 256, Temperature
    /// 0.8, TopK 40, TopP 0.95, MinP 0.05, Seed random, ...); change what you need. Read (and its
    /// strings copied) when a stream starts, so one instance may serve many streams and be
    /// changed afterwards. minerva checks the values: out of range is a MinervaException with
    /// Status.InvalidArgument naming the field.</summary>
    public sealed class GenerateParams
    {
        /// <summary>The Seed that asks for a new random seed for each stream (MINERVA_SEED_RANDOM).</summary>
        public const ulong SeedRandom = ulong.MaxValue;

        private NativeGenerateParams _n;

        public GenerateParams()
        {
            Native.minerva_generate_params_init(ref _n, (uint)Marshal.SizeOf(typeof(NativeGenerateParams)));
        }

        /// <summary>A copy, strings and arrays included (shallow).</summary>
        public GenerateParams Clone()
        {
            var c = (GenerateParams)MemberwiseClone();
            if (Stop != null) c.Stop = (string[])Stop.Clone();
            if (LogitBias != null) c.LogitBias = (LogitBias[])LogitBias.Clone();
            if (LoraScales != null) c.LoraScales = (float[])LoraScales.Clone();
            return c;
        }

        /// <summary>Tokens to generate at most (default 256); 0: until end-of-generation or a full context.</summary>
        public int MaxTokens
        {
            get { return (int)_n.max_tokens; }
            set { _n.max_tokens = Range.NonNegative(value, "MaxTokens"); }
        }

        /// <summary>Sampling temperature (default 0.8); 0: greedy, the most likely token every time.</summary>
        public float Temperature { get { return _n.temperature; } set { _n.temperature = value; } }

        /// <summary>Keep the k most likely tokens (default 40); 0: off.</summary>
        public int TopK { get { return _n.top_k; } set { _n.top_k = value; } }

        /// <summary>Nucleus sampling (default 0.95); 1: off.</summary>
        public float TopP { get { return _n.top_p; } set { _n.top_p = value; } }

        /// <summary>Drop tokens less likely than MinP times the most likely (default 0.05); 0: off.</summary>
        public float MinP { get { return _n.min_p; } set { _n.min_p = value; } }

        /// <summary>Penalty on repeated tokens (default 1: off).</summary>
        public float RepeatPenalty { get { return _n.repeat_penalty; } set { _n.repeat_penalty = value; } }

        /// <summary>How many recent tokens the penalties look at (default 64; 0: off).</summary>
        public int RepeatLastN
        {
            get { return (int)_n.repeat_last_n; }
            set { _n.repeat_last_n = Range.NonNegative(value, "RepeatLastN"); }
        }

        /// <summary>Sampling seed (default SeedRandom). With a fixed seed the same prompt and
        /// settings give the same text when the stream is decoded alone, its prompt computed
        /// afresh (set CachePrompt false for that).</summary>
        public ulong Seed { get { return _n.seed; } set { _n.seed = value; } }

        /// <summary>Stop strings (default none), non-empty: generation ends when one appears, and
        /// the matched text is never delivered.</summary>
        public string[] Stop { get; set; }

        /// <summary>Keep going past end-of-generation (default false; for benchmarks).</summary>
        public bool IgnoreEos { get { return _n.ignore_eos != 0; } set { _n.ignore_eos = (byte)(value ? 1 : 0); } }

        /// <summary>Reuse KV cache cells holding the same prompt prefix (default true).</summary>
        public bool CachePrompt { get { return _n.cache_prompt != 0; } set { _n.cache_prompt = (byte)(value ? 1 : 0); } }

        /// <summary>A GBNF grammar with a rule <c>root</c> (default none): the output follows it,
        /// and the stream ends (FinishReason.Eos) when it is complete. One that does not parse is
        /// refused when the stream starts.</summary>
        public string Grammar { get; set; }

        /// <summary>A JSON Schema (default none): the output is JSON valid against it, whole when
        /// the stream ends with FinishReason.Eos. Not together with Grammar.</summary>
        public string JsonSchema { get; set; }

        /// <summary>Penalty on tokens already present among the last RepeatLastN (default 0: off).</summary>
        public float PresencePenalty { get { return _n.presence_penalty; } set { _n.presence_penalty = value; } }

        /// <summary>Penalty by how often tokens occur among the last RepeatLastN (default 0: off).</summary>
        public float FrequencyPenalty { get { return _n.frequency_penalty; } set { _n.frequency_penalty = value; } }

        /// <summary>Biases added to token logits (default none); float.NegativeInfinity bans a token.</summary>
        public LogitBias[] LogitBias { get; set; }

        /// <summary>The scale of each of the engine's LoRA adapters for this stream, in the order
        /// of EngineParams.Loras, exactly that many (0 turns one off; another count is a
        /// MinervaException with Status.InvalidArgument); null (default): the engine's scales.
        /// Streams of different scales run on one engine at the same time.</summary>
        public float[] LoraScales { get; set; }

        // The C struct for one call; its strings and arrays live in `s` until the call returns.
        // on_finish is left NULL: the binding sets it for its own callbacks. loraCount: the
        // engine's adapters, as many scales as minerva reads from lora_scales.
        internal NativeGenerateParams ToNative(Scratch s, int loraCount)
        {
            if (LoraScales != null && LoraScales.Length != loraCount)
                throw new MinervaException(Status.InvalidArgument, "LoraScales has " + LoraScales.Length +
                    " scales; the engine has " + loraCount + " adapters");
            NativeGenerateParams n = _n;
            n.on_finish = IntPtr.Zero;
            n.stop = s.StrArray(Stop);
            n.stop_count = (UIntPtr)(Stop == null ? 0 : Stop.Length);
            n.grammar = s.Str(Grammar);
            n.json_schema = s.Str(JsonSchema);
            n.logit_bias = LogitBias == null || LogitBias.Length == 0 ? IntPtr.Zero : s.Pin(LogitBias);
            n.logit_bias_count = (UIntPtr)(LogitBias == null ? 0 : LogitBias.Length);
            n.lora_scales = LoraScales == null || LoraScales.Length == 0 ? IntPtr.Zero : s.Pin(LoraScales);
            return n;
        }
    }

    /// <summary>How a conversation is rendered (minerva_chat_params); a new instance holds the C
    /// defaults (the model's own template, no tools, ToolChoice.Auto, AddGenerationPrompt, no
    /// template variables, Reasoning.Auto, MaxToolCalls 0: four).</summary>
    public sealed class ChatParams
    {
        private NativeChatParams _n;

        public ChatParams()
        {
            Native.minerva_chat_params_init(ref _n, (uint)Marshal.SizeOf(typeof(NativeChatParams)));
        }

        /// <summary>null (default): the model's own template (ChatML, with a warning log line,
        /// when it has none). Otherwise a Jinja template, or a template name built into llama.cpp
        /// ("chatml", "gemma", "llama3", ...; see docs/CHAT.md).</summary>
        public string ChatTemplate { get; set; }

        /// <summary>null (default) or an OpenAI-style JSON array of tools:
        /// <c>[{"type": "function", "function": {"name", "description", "parameters"}}]</c>.</summary>
        public string ToolsJson { get; set; }

        /// <summary>Whether and how the model may call the tools (default Auto).</summary>
        public ToolChoice ToolChoice { get { return (ToolChoice)_n.tool_choice; } set { _n.tool_choice = (uint)value; } }

        /// <summary>End the rendering with the start of an assistant turn (default true).</summary>
        public bool AddGenerationPrompt
        {
            get { return _n.add_generation_prompt != 0; }
            set { _n.add_generation_prompt = (byte)(value ? 1 : 0); }
        }

        /// <summary>null (default) or a JSON object of extra template variables, e.g.
        /// <c>{"enable_thinking": false}</c>; anything else is refused (InvalidArgument).</summary>
        public string TemplateKwargsJson { get; set; }

        /// <summary>What becomes of the reasoning the model writes (default Auto: kept apart from
        /// the text, read with Stream.Reasoning()).</summary>
        public Reasoning Reasoning { get { return (Reasoning)_n.reasoning; } set { _n.reasoning = (uint)value; } }

        /// <summary>The last message is an assistant turn the model continues (rendered without
        /// its end of turn); a last message of another role is refused (default false).</summary>
        public bool ContinueFinalMessage
        {
            get { return _n.continue_final_message != 0; }
            set { _n.continue_final_message = (byte)(value ? 1 : 0); }
        }

        /// <summary>A ToolChoice.Required reply holds 1 to MaxToolCalls calls; 0 (default): 4.</summary>
        public int MaxToolCalls
        {
            get { return (int)_n.max_tool_calls; }
            set { _n.max_tool_calls = Range.NonNegative(value, "MaxToolCalls"); }
        }

        internal NativeChatParams ToNative(Scratch s)
        {
            NativeChatParams n = _n;
            n.chat_template = s.Str(ChatTemplate);
            n.tools_json = s.Str(ToolsJson);
            n.template_kwargs_json = s.Str(TemplateKwargsJson);
            return n;
        }
    }

    /// <summary>One turn of a conversation (minerva_chat_message).</summary>
    public sealed class ChatMessage
    {
        public ChatMessage(string role, string content)
        {
            Role = role;
            Content = content;
        }

        /// <summary>"system", "user", "assistant" or "tool"; any other role is refused.</summary>
        public string Role { get; set; }
        /// <summary>The text of the turn; null only for an assistant turn that only called tools.</summary>
        public string Content { get; set; }
        /// <summary>Assistant turns: the calls it made, as Stream.ToolCallsJson gave them.</summary>
        public string ToolCallsJson { get; set; }
        /// <summary>Tool turns: the id of the call this turn answers.</summary>
        public string ToolCallId { get; set; }

        public static ChatMessage System(string content) { return new ChatMessage("system", content); }
        public static ChatMessage User(string content) { return new ChatMessage("user", content); }

        public static ChatMessage Assistant(string content, string toolCallsJson = null)
        {
            return new ChatMessage("assistant", content) { ToolCallsJson = toolCallsJson };
        }

        /// <summary>The result of the call <paramref name="toolCallId"/>, for the model to read.</summary>
        public static ChatMessage Tool(string toolCallId, string content)
        {
            return new ChatMessage("tool", content) { ToolCallId = toolCallId };
        }

        internal static NativeChatMessage[] ToNative(IList<ChatMessage> messages, Scratch s)
        {
            if (messages == null) return null;
            var n = new NativeChatMessage[messages.Count];
            for (int i = 0; i < n.Length; i++)
            {
                ChatMessage m = messages[i];
                if (m == null) throw new ArgumentNullException("messages", "message " + i + " is null");
                n[i].role = s.Str(m.Role);
                n[i].content = s.Str(m.Content);
                n[i].tool_calls_json = s.Str(m.ToolCallsJson);
                n[i].tool_call_id = s.Str(m.ToolCallId);
            }
            return n;
        }
    }

    /// <summary>Settings of Engine.Embed (minerva_embed_params); a new instance holds the C
    /// defaults (Pooling.Default, Normalize true).</summary>
    public sealed class EmbedParams
    {
        private NativeEmbedParams _n;

        public EmbedParams()
        {
            Native.minerva_embed_params_init(ref _n, (uint)Marshal.SizeOf(typeof(NativeEmbedParams)));
        }

        public Pooling Pooling { get { return (Pooling)_n.pooling; } set { _n.pooling = (uint)value; } }

        /// <summary>L2-normalize each vector (default true): a dot product is then the cosine similarity.</summary>
        public bool Normalize { get { return _n.normalize != 0; } set { _n.normalize = (byte)(value ? 1 : 0); } }

        internal NativeEmbedParams Native_ { get { return _n; } }
    }
}
