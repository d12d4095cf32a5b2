// The C API of include/minerva.h, one to one: P/Invoke declarations, the callback types, the
// structs mirrored field for field (same order, same C types), and the two SafeHandles.
// Nothing here is public: Engine, Stream and the *Params classes are the binding.
using System;
using System.Runtime.InteropServices;
using System.Threading;

namespace Minerva
{
    internal static class Native
    {
#if (UNITY_IOS || UNITY_TVOS || UNITY_WEBGL) && !UNITY_EDITOR
        // Linked statically into the player (libminerva.a).
        internal const string Lib = "__Internal";
#else
        // libminerva.so / libminerva.dylib / minerva.dll, found by the runtime's usual search
        // (LD_LIBRARY_PATH or a dllmap under Mono, Assets/Plugins under Unity).
        internal const string Lib = "minerva";
#endif
        internal const int AbiVersion = 1;           // MINERVA_ABI_VERSION
        internal const uint Continue = 0;            // MINERVA_CONTINUE
        internal const uint Stop = 1;                // MINERVA_STOP

        // minerva_token_callback
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        internal delegate uint TokenCallback(IntPtr userData, IntPtr text, UIntPtr len);

        // minerva_finish_callback
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        internal delegate void FinishCallback(IntPtr userData, uint status, uint reason);

        // minerva_progress_callback
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        internal delegate uint ProgressCallback(IntPtr userData, float progress);

        // minerva_log_callback
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        internal delegate void LogCallback(IntPtr userData, uint level, IntPtr message);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern IntPtr minerva_status_str(uint status);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern IntPtr minerva_last_error();

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern uint minerva_abi_version();

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern IntPtr minerva_version();

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern void minerva_engine_params_init(ref NativeEngineParams p, uint structSize);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern uint minerva_engine_new(byte[] modelPath, ref NativeEngineParams p, out EngineHandle engine);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern uint minerva_engine_get_info(EngineHandle engine, ref NativeEngineInfo info);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern void minerva_engine_free(IntPtr engine);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern void minerva_generate_params_init(ref NativeGenerateParams p, uint structSize);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern uint minerva_stream_new(EngineHandle engine, byte[] prompt, ref NativeGenerateParams p,
            IntPtr onToken, IntPtr userData, out StreamHandle stream);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern uint minerva_stream_read(StreamHandle stream, [Out] byte[] buf, UIntPtr cap,
            out UIntPtr outLen, out byte finished, int timeoutMs);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern uint minerva_stream_wait(StreamHandle stream, int timeoutMs);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern void minerva_stream_cancel(StreamHandle stream);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern uint minerva_stream_get_stats(StreamHandle stream, ref NativeStreamStats stats);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern IntPtr minerva_stream_error(StreamHandle stream);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern void minerva_stream_free(IntPtr stream);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern void minerva_stream_release(IntPtr stream);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern uint minerva_generate(EngineHandle engine, byte[] prompt, ref NativeGenerateParams p,
            IntPtr onToken, IntPtr userData, ref NativeStreamStats stats);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern uint minerva_tokenize(EngineHandle engine, byte[] text,
            [MarshalAs(UnmanagedType.I1)] bool addSpecial, [MarshalAs(UnmanagedType.I1)] bool parseSpecial,
            [Out] int[] tokens, UIntPtr cap, out UIntPtr outCount);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern uint minerva_detokenize(EngineHandle engine, int[] tokens, UIntPtr count,
            [MarshalAs(UnmanagedType.I1)] bool renderSpecial, [Out] byte[] buf, UIntPtr cap, out UIntPtr outLen);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern uint minerva_cache_prefill(EngineHandle engine, byte[] prompt,
            [MarshalAs(UnmanagedType.I1)] bool pin);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern uint minerva_cache_save(EngineHandle engine, [Out] byte[] buf, UIntPtr cap, out UIntPtr outLen);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern uint minerva_cache_load(EngineHandle engine, byte[] buf, UIntPtr len);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern uint minerva_cache_save_file(EngineHandle engine, byte[] path);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern uint minerva_cache_load_file(EngineHandle engine, byte[] path);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern void minerva_chat_params_init(ref NativeChatParams p, uint structSize);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern uint minerva_chat_format(EngineHandle engine, NativeChatMessage[] messages, UIntPtr count,
            ref NativeChatParams chat, [Out] byte[] buf, UIntPtr cap, out UIntPtr outLen);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern uint minerva_chat_stream_new(EngineHandle engine, NativeChatMessage[] messages, UIntPtr count,
            ref NativeChatParams chat, ref NativeGenerateParams p, IntPtr onToken, IntPtr userData, out StreamHandle stream);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern uint minerva_stream_tool_calls(StreamHandle stream, [Out] byte[] buf, UIntPtr cap, out UIntPtr outLen);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern uint minerva_stream_reasoning(StreamHandle stream, [Out] byte[] buf, UIntPtr cap, out UIntPtr outLen);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern void minerva_embed_params_init(ref NativeEmbedParams p, uint structSize);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern uint minerva_embed(EngineHandle engine, IntPtr texts, UIntPtr count, ref NativeEmbedParams p,
            [Out] float[] output, UIntPtr cap, out UIntPtr outLen);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern void minerva_set_log_callback(IntPtr callback, IntPtr userData, uint minLevel);
    }

    // The structs, field for field as in minerva.h. C `bool` is one byte: mirrored as `byte` so that
    // every struct but minerva_engine_info stays blittable (passed pinned, never copied by the
    // marshaler); `size_t` is UIntPtr, pointers IntPtr. The tests compare every offset and size
    // with what a C compiler gives for the header.

    [StructLayout(LayoutKind.Sequential)]
    internal struct NativeEngineParams
    {
        public uint struct_size;
        public int gpu_layers;
        public uint context_tokens;
        public uint max_streams;
        public uint threads;
        public uint batch_tokens;
        public byte use_mmap;
        public IntPtr progress;            // minerva_progress_callback
        public IntPtr progress_user_data;
        // Added after 0.1 (src/ffi/engine.rs); an older library does not read it.
        public IntPtr rpc_servers;         // const char *: NULL or "" for none
        // Added in 0.3.
        public IntPtr loras;               // const minerva_lora *
        public UIntPtr lora_count;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct NativeLora
    {
        public IntPtr path;                // const char *
        public float scale;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct NativeEngineInfo
    {
        public uint struct_size;
        public uint device_kind;
        [MarshalAs(UnmanagedType.ByValArray, SizeConst = 128)] public byte[] device_name;
        [MarshalAs(UnmanagedType.ByValArray, SizeConst = 256)] public byte[] fallback_reason;
        public int gpu_layers;
        public int total_layers;
        public uint context_tokens;
        public uint max_streams;
        public uint threads;
        [MarshalAs(UnmanagedType.ByValArray, SizeConst = 128)] public byte[] model_description;
        public ulong parameter_count;
        public ulong file_bytes;
        public uint vocab_size;
        public uint train_context_tokens;
        public byte has_chat_template;
        public uint embedding_dims;
        // Added after 0.1 (src/ffi/engine.rs); an older library leaves it zeroed (it writes only
        // the fields it knows, whatever struct_size says).
        [MarshalAs(UnmanagedType.ByValArray, SizeConst = 64)] public byte[] cpu_variant;
        [MarshalAs(UnmanagedType.ByValArray, SizeConst = 256)] public byte[] devices;
        // Added in 0.3.
        public ulong pinned_tokens;
        public ulong pinned_bytes;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct NativeGenerateParams
    {
        public uint struct_size;
        public uint max_tokens;
        public float temperature;
        public int top_k;
        public float top_p;
        public float min_p;
        public float repeat_penalty;
        public uint repeat_last_n;
        public ulong seed;
        public IntPtr stop;                // const char *const *
        public UIntPtr stop_count;
        public byte ignore_eos;
        public byte cache_prompt;
        public IntPtr on_finish;           // minerva_finish_callback
        public IntPtr grammar;
        public IntPtr json_schema;
        public float presence_penalty;
        public float frequency_penalty;
        public IntPtr logit_bias;          // const minerva_logit_bias *
        public UIntPtr logit_bias_count;
        // Added in 0.3.
        public IntPtr lora_scales;         // const float *: NULL or one per adapter of the engine
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct NativeStreamStats
    {
        public uint struct_size;
        public uint prompt_tokens;
        public uint cached_prompt_tokens;
        public uint generated_tokens;
        public double time_to_first_token_ms;
        public double prompt_tokens_per_second;
        public double tokens_per_second;
        public uint finish_reason;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct NativeChatParams
    {
        public uint struct_size;
        public IntPtr chat_template;
        public IntPtr tools_json;
        public uint tool_choice;
        public byte add_generation_prompt;
        // Added in 0.3.
        public IntPtr template_kwargs_json;
        public uint reasoning;
        public byte continue_final_message;
        public uint max_tool_calls;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct NativeChatMessage
    {
        public IntPtr role;
        public IntPtr content;
        public IntPtr tool_calls_json;
        public IntPtr tool_call_id;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct NativeEmbedParams
    {
        public uint struct_size;
        public uint pooling;
        public byte normalize;
    }

    // minerva_engine *: freed with minerva_engine_free once Dispose has been called (or the GC
    // finalized the Engine) and no call using it is still in progress on another thread.
    internal sealed class EngineHandle : SafeHandle
    {
        public EngineHandle() : base(IntPtr.Zero, true) { }

        public override bool IsInvalid { get { return handle == IntPtr.Zero; } }

        protected override bool ReleaseHandle()
        {
            IntPtr engine = handle;
            if (Callbacks.InsideCallback || Callbacks.InsideLogHandler)
            {
                // minerva ignores minerva_engine_free of an engine from inside one of its own
                // callbacks, or from a log handler running on its thread (an engine cannot wait
                // for its own thread): free it from a pool thread.
                ThreadPool.QueueUserWorkItem(delegate { Native.minerva_engine_free(engine); });
            }
            else
            {
                Native.minerva_engine_free(engine);
            }
            return true;
        }
    }

    // minerva_stream *: minerva_stream_free (waits until no callback of the stream can run) after
    // Stream.Dispose, minerva_stream_release (never waits) after Stream.Release or finalization.
    internal sealed class StreamHandle : SafeHandle
    {
        internal volatile bool WaitOnRelease;

        public StreamHandle() : base(IntPtr.Zero, true) { }

        public override bool IsInvalid { get { return handle == IntPtr.Zero; } }

        protected override bool ReleaseHandle()
        {
            if (WaitOnRelease)
                Native.minerva_stream_free(handle);
            else
                Native.minerva_stream_release(handle);
            return true;
        }
    }
}
