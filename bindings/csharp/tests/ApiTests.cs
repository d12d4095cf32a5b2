// The binding against the real model: every part of the C API once, and its error cases.
using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Net;
using System.Net.Sockets;
using System.Reflection;
using System.Runtime.InteropServices;
using System.Text;
using System.Threading;

namespace Minerva.Tests
{
    internal static class Fx
    {
        public static string Model { get { return Env("MINERVA_MODEL"); } }
        public static string ChatModel { get { return Env("MINERVA_CHAT_MODEL"); } }

        public static string Env(string name)
        {
            string v = Environment.GetEnvironmentVariable(name);
            if (string.IsNullOrEmpty(v)) throw new Exception(name + " is not set");
            return v;
        }

        private static Engine s_base, s_chat;

        // One decoding thread: llama.cpp's threads spin while they wait for each other, so on a
        // small machine shared with other work (CI, a build) more threads are far slower.
        public const int Threads = 1;

        // The base model: 512 tokens a stream, 4 streams.
        public static Engine Base
        {
            get { return s_base ?? (s_base = new Engine(Model, new EngineParams { ContextTokens = 512, MaxStreams = 4, Threads = Threads })); }
        }

        // The same model with Gemma's chat template.
        public static Engine Chat
        {
            get { return s_chat ?? (s_chat = new Engine(ChatModel, new EngineParams { ContextTokens = 1024, MaxStreams = 2, Threads = Threads })); }
        }

        public static Engine Small()
        {
            return new Engine(Model, new EngineParams { ContextTokens = 256, MaxStreams = 2, Threads = Threads });
        }

        public static void DisposeAll()
        {
            if (s_base != null) s_base.Dispose();
            if (s_chat != null) s_chat.Dispose();
            s_base = s_chat = null;
        }

        // Greedy, computed afresh (no prompt cache): the same text every time when decoded alone.
        public static GenerateParams Greedy(int maxTokens)
        {
            return new GenerateParams { MaxTokens = maxTokens, Temperature = 0, CachePrompt = false };
        }

        // Runs until cancelled.
        public static GenerateParams Endless()
        {
            return new GenerateParams { MaxTokens = 0, Temperature = 0, IgnoreEos = true };
        }

        public const string Prompt = "The capital of France is";

        private static string s_loraDir;

        // The test LoRA adapters' folder (voice.gguf, calm.gguf, wrong-shape.gguf):
        // $MINERVA_LORA_DIR, else what scripts/lora-adapters.sh prints (it writes them once).
        public static string LoraDir
        {
            get
            {
                if (s_loraDir != null) return s_loraDir;
                string dir = Environment.GetEnvironmentVariable("MINERVA_LORA_DIR");
                if (string.IsNullOrEmpty(dir))
                {
                    string script = Path.GetFullPath(Path.Combine(AppDomain.CurrentDomain.BaseDirectory,
                        "..", "..", "..", "scripts", "lora-adapters.sh"));
                    var psi = new ProcessStartInfo(script) { UseShellExecute = false, RedirectStandardOutput = true };
                    using (Process p = Process.Start(psi))
                    {
                        dir = p.StandardOutput.ReadToEnd().Trim();
                        p.WaitForExit();
                        if (p.ExitCode != 0) throw new Exception("scripts/lora-adapters.sh failed (" + p.ExitCode + ")");
                    }
                }
                return s_loraDir = dir;
            }
        }
    }

    internal static class ApiTests
    {
        [Test]
        private static void version_and_abi()
        {
            Assert.True(Library.Version.Length > 0, "a version");
            Assert.Equal(Library.BindingAbiVersion, Library.AbiVersion, "ABI version");
            Assert.Equal("ok", Library.StatusString(Status.Ok));
            Assert.True(Library.StatusString(Status.Io).Length > 0, "words for Io");
            Assert.True(Library.StatusString((Status)999).Length > 0, "words for an unknown status");
        }

        [Test]
        private static void struct_layout_matches_the_c_compiler()
        {
            string path = Environment.GetEnvironmentVariable("MINERVA_LAYOUT");
            if (string.IsNullOrEmpty(path)) throw new SkipException("no C compiler to lay out minerva.h");
            var types = new Dictionary<string, Type>
            {
                { "minerva_engine_params", typeof(NativeEngineParams) },
                { "minerva_engine_info", typeof(NativeEngineInfo) },
                { "minerva_logit_bias", typeof(LogitBias) },
                { "minerva_generate_params", typeof(NativeGenerateParams) },
                { "minerva_stream_stats", typeof(NativeStreamStats) },
                { "minerva_chat_params", typeof(NativeChatParams) },
                { "minerva_chat_message", typeof(NativeChatMessage) },
                { "minerva_embed_params", typeof(NativeEmbedParams) },
                { "minerva_lora", typeof(NativeLora) },
            };
            var fieldCounts = new Dictionary<string, int>();
            var cSizes = new Dictionary<string, int>();
            int checkedFields = 0;
            foreach (string line in File.ReadAllLines(path))
            {
                string[] w = line.Split(' ');
                Type t = types[w[0]];
                int offset = int.Parse(w[2]), size = int.Parse(w[3]);
                if (w[1] == "-")
                {
                    cSizes[w[0]] = size;
                    continue;
                }
                FieldInfo f = t.GetField(w[1], BindingFlags.Public | BindingFlags.Instance | BindingFlags.IgnoreCase);
                Assert.True(f != null, t.Name + " mirrors " + w[0] + "." + w[1]);
                Assert.Equal(offset, (int)Marshal.OffsetOf(t, f.Name), "offset of " + w[0] + "." + w[1]);
                int managedSize;
                var ma = (MarshalAsAttribute)f.GetCustomAttributes(typeof(MarshalAsAttribute), false).FirstOrDefault();
                if (f.FieldType.IsArray) managedSize = ma.SizeConst * Marshal.SizeOf(f.FieldType.GetElementType());
                else managedSize = Marshal.SizeOf(f.FieldType);
                Assert.Equal(size, managedSize, "size of " + w[0] + "." + w[1]);
                int n;
                fieldCounts.TryGetValue(w[0], out n);
                fieldCounts[w[0]] = n + 1;
                checkedFields++;
            }
            foreach (var kv in types)
            {
                // Every field of the header is mirrored exactly (above); the mirror may only go on
                // past the header's end with fields of a newer library (the struct_size rule).
                FieldInfo[] mine = kv.Value.GetFields(BindingFlags.Public | BindingFlags.Instance);
                int size = Marshal.SizeOf(kv.Value);
                if (mine.Length == fieldCounts[kv.Key])
                {
                    Assert.Equal(cSizes[kv.Key], size, "Marshal.SizeOf(" + kv.Value.Name + ") vs sizeof(" + kv.Key + ")");
                    continue;
                }
                var extra = mine.Where(f => (int)Marshal.OffsetOf(kv.Value, f.Name) >= cSizes[kv.Key]).ToList();
                Assert.Equal(mine.Length - fieldCounts[kv.Key], extra.Count,
                    kv.Key + ": the fields the header lacks come after its end");
                Console.WriteLine("# {0}: {1} mirrored past this header's end", kv.Key, string.Join(", ", extra.Select(f => f.Name)));
            }
            Assert.True(checkedFields > 60, "all fields compared");
        }

        [Test]
        private static void params_hold_the_c_defaults()
        {
            var p = new GenerateParams();
            Assert.Equal(256, p.MaxTokens, "MaxTokens");
            Assert.Near(0.8, p.Temperature, 1e-6, "Temperature");
            Assert.Equal(40, p.TopK, "TopK");
            Assert.Near(0.95, p.TopP, 1e-6, "TopP");
            Assert.Near(0.05, p.MinP, 1e-6, "MinP");
            Assert.Near(1.0, p.RepeatPenalty, 1e-6, "RepeatPenalty");
            Assert.Equal(64, p.RepeatLastN, "RepeatLastN");
            Assert.Equal(GenerateParams.SeedRandom, p.Seed, "Seed");
            Assert.True(p.CachePrompt && !p.IgnoreEos, "CachePrompt, IgnoreEos");
            Assert.True(p.Stop == null && p.Grammar == null && p.JsonSchema == null && p.LogitBias == null, "no strings");
            Assert.True(p.LoraScales == null, "LoraScales");
            Assert.Throws<ArgumentOutOfRangeException>(() => p.MaxTokens = -1);

            var e = new EngineParams();
            Assert.Equal(-1, e.GpuLayers, "GpuLayers");
            Assert.Equal(2048, e.ContextTokens, "ContextTokens");
            Assert.Equal(4, e.MaxStreams, "MaxStreams");
            Assert.Equal(0, e.Threads, "Threads");
            Assert.Equal(512, e.BatchTokens, "BatchTokens");
            Assert.True(e.UseMmap, "UseMmap");
            Assert.True(e.RpcServers == null, "RpcServers");
            Assert.True(e.Loras == null, "Loras");

            var c = new ChatParams();
            Assert.Equal(ToolChoice.Auto, c.ToolChoice, "ToolChoice");
            Assert.True(c.AddGenerationPrompt, "AddGenerationPrompt");
            Assert.True(c.TemplateKwargsJson == null && !c.ContinueFinalMessage, "TemplateKwargsJson, ContinueFinalMessage");
            Assert.Equal(Reasoning.Auto, c.Reasoning, "Reasoning");
            Assert.Equal(0, c.MaxToolCalls, "MaxToolCalls");
            Assert.Throws<ArgumentOutOfRangeException>(() => c.MaxToolCalls = -1);
            var ep = new EmbedParams();
            Assert.Equal(Pooling.Default, ep.Pooling, "Pooling");
            Assert.True(ep.Normalize, "Normalize");
        }

        [Test]
        private static void engine_errors_carry_the_status()
        {
            MinervaException e = Assert.Fails(Status.Io, () => new Engine("/nonexistent/minerva/model.gguf"), "missing file");
            Assert.True(e.Message.Contains("model.gguf"), "the message names the file: " + e.Message);
            Assert.Fails(Status.InvalidArgument, () => new Engine(null), "null path");

            string junk = Path.Combine(AppDomain.CurrentDomain.BaseDirectory, "not-a-model.gguf");
            File.WriteAllText(junk, "this is not a GGUF file, just text long enough to be read as a header");
            Assert.Fails(Status.Model, () => new Engine(junk), "not GGUF");

            e = Assert.Fails(Status.InvalidArgument,
                () => new Engine(Fx.Model, new EngineParams { ContextTokens = 1 }), "context_tokens 1");
            Assert.True(e.Message.Contains("context_tokens"), "the message names the field: " + e.Message);
            Assert.Throws<ArgumentException>(() => new Engine("a\0b"), "NUL in a string");
        }

        [Test]
        private static void progress_callback_reports_and_aborts_the_load()
        {
            var seen = new List<float>();
            int thread = Thread.CurrentThread.ManagedThreadId, otherThread = 0;
            using (var e = new Engine(Fx.Model, new EngineParams
            {
                ContextTokens = 256, MaxStreams = 1, Threads = Fx.Threads,
                Progress = f => { seen.Add(f); if (Thread.CurrentThread.ManagedThreadId != thread) otherThread++; return true; },
            }))
            {
                Assert.True(seen.Count > 0, "progress was reported");
                Assert.True(seen.All(f => f >= 0 && f <= 1), "progress in [0, 1]");
                Assert.Equal(0, otherThread, "progress on the constructing thread");
            }
            Assert.Fails(Status.Cancelled, () => new Engine(Fx.Model, new EngineParams { Progress = f => false }), "progress false");
            var thrown = Assert.Throws<InvalidOperationException>(() =>
                new Engine(Fx.Model, new EngineParams { Progress = f => { throw new InvalidOperationException("stop the load"); } }));
            Assert.Equal("stop the load", thrown.Message);
        }

        [Test]
        private static void engine_info()
        {
            EngineInfo i = Fx.Base.GetInfo();
            Assert.Equal(512, i.ContextTokens, "ContextTokens");
            Assert.Equal(4, i.MaxStreams, "MaxStreams");
            Assert.True(i.DeviceName.Length > 0, "DeviceName");
            Assert.True(i.ModelDescription.Length > 0, "ModelDescription");
            Assert.True(i.TotalLayers > 0 && i.Threads > 0 && i.VocabSize > 1000 && i.EmbeddingDims > 0, "counts");
            Assert.True(i.ParameterCount > 0 && i.FileBytes > 0 && i.TrainContextTokens > 0, "sizes");
            Assert.True(!i.HasChatTemplate, "the base model has no chat template");
            Assert.True(Fx.Chat.GetInfo().HasChatTemplate, "the chat model has one");
            if (i.DeviceKind == DeviceKind.Cpu)
            {
                Assert.Equal(0, i.GpuLayers, "no GPU layers on the CPU");
                Assert.True(i.Devices.StartsWith("CPU: ") && i.Devices.EndsWith(" layers + output"), "Devices: " + i.Devices);
            }
            else
            {
                Assert.True(i.Devices.Length > 0, "Devices");
            }
        }

        // A local port where nothing listens: bound, read, closed.
        private static int ClosedPort()
        {
            using (var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp))
            {
                s.Bind(new IPEndPoint(IPAddress.Loopback, 0));
                return ((IPEndPoint)s.LocalEndPoint).Port;
            }
        }

        [Test]
        private static void rpc_servers_errors()
        {
            string endpoint = "127.0.0.1:" + ClosedPort();
            MinervaException e = Assert.Fails(Status.Backend, () => new Engine(Fx.Model, new EngineParams
            {
                ContextTokens = 256, MaxStreams = 1, Threads = Fx.Threads, RpcServers = endpoint,
            }), "a closed port");
            Assert.True(e.Message.Contains(endpoint), "the message names the server: " + e.Message);
            e = Assert.Fails(Status.InvalidArgument, () => new Engine(Fx.Model, new EngineParams
            {
                ContextTokens = 256, MaxStreams = 1, Threads = Fx.Threads, RpcServers = "nohostport",
            }), "a malformed list");
            Assert.True(e.Message.Contains("nohostport"), "the message names the entry: " + e.Message);
            Assert.Throws<ArgumentException>(() => new Engine(Fx.Model, new EngineParams { RpcServers = "a:1\0" }),
                "NUL in RpcServers");
        }

        [Test]
        private static void rpc_server_takes_the_layers()
        {
            string lib = Environment.GetEnvironmentVariable("MINERVA_LIB_DIR") ?? "";
            string server = new[]
            {
                Path.Combine(lib, "minerva-rpc-server"),
                Path.Combine(Path.Combine(Path.Combine(lib, ".."), "bin"), "minerva-rpc-server"),
            }.FirstOrDefault(f => lib.Length > 0 && File.Exists(f));
            if (server == null) throw new SkipException("no minerva-rpc-server next to MINERVA_LIB_DIR");
            int port = ClosedPort();
            var psi = new ProcessStartInfo(server, "--port " + port + " --mem 4096 --threads 1")
            {
                UseShellExecute = false,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
            };
            using (Process proc = Process.Start(psi))
            {
                try
                {
                    proc.OutputDataReceived += (o, a) => { };
                    proc.ErrorDataReceived += (o, a) => { };
                    proc.BeginOutputReadLine();
                    proc.BeginErrorReadLine();
                    // Ready when it accepts; it serves that connection, which ends at once, and
                    // then the engine's (one connection at a time).
                    var sw = Stopwatch.StartNew();
                    while (true)
                    {
                        Assert.True(!proc.HasExited, "minerva-rpc-server is running");
                        try
                        {
                            using (var c = new TcpClient()) c.Connect(IPAddress.Loopback, port);
                            break;
                        }
                        catch (SocketException)
                        {
                            Assert.True(sw.ElapsedMilliseconds < 60000, "minerva-rpc-server listens within 60 s");
                            Thread.Sleep(50);
                        }
                    }
                    // Disposed before the server is killed: a server lost while an engine uses it
                    // ends the process.
                    using (var e = new Engine(Fx.Model, new EngineParams
                    {
                        ContextTokens = 256, MaxStreams = 1, Threads = Fx.Threads, GpuLayers = -1,
                        RpcServers = "127.0.0.1:" + port,
                    }))
                    {
                        EngineInfo i = e.GetInfo();
                        Assert.True(i.Devices.Contains("RPC") && i.Devices.Contains("127.0.0.1:" + port), "Devices: " + i.Devices);
                        Assert.Equal(DeviceKind.Rpc, i.DeviceKind, "DeviceKind");
                        Assert.True(e.Generate(Fx.Prompt, Fx.Greedy(8)).Trim().Length > 0, "text from the server's layers");
                    }
                }
                finally
                {
                    if (!proc.HasExited) proc.Kill();
                    proc.WaitForExit();
                }
            }
        }

        [Test]
        private static void generate_greedy_is_deterministic()
        {
            StreamStats stats;
            string a = Fx.Base.Generate(Fx.Prompt, Fx.Greedy(16), out stats);
            string b = Fx.Base.Generate(Fx.Prompt, Fx.Greedy(16));
            Assert.True(a.Length > 0, "text");
            Assert.Equal(a, b, "same text twice");
            Assert.True(stats.GeneratedTokens > 0 && stats.GeneratedTokens <= 16, "generated tokens " + stats.GeneratedTokens);
            Assert.True(stats.FinishReason == FinishReason.Length || stats.FinishReason == FinishReason.Eos, "reason " + stats.FinishReason);
            Assert.Equal(Fx.Base.Tokenize(Fx.Prompt).Length, stats.PromptTokens, "prompt tokens = Tokenize");
            Assert.True(stats.TokensPerSecond >= 0 && stats.TimeToFirstTokenMs > 0, "timings");
        }

        [Test]
        private static void generate_refuses_bad_arguments()
        {
            MinervaException e = Assert.Fails(Status.InvalidArgument,
                () => Fx.Base.Generate(Fx.Prompt, new GenerateParams { Temperature = -1 }), "temperature -1");
            Assert.True(e.Message.Contains("temperature"), "names the field: " + e.Message);
            Assert.Fails(Status.InvalidArgument, () => Fx.Base.Generate(Fx.Prompt, new GenerateParams { TopP = 0 }), "top_p 0");
            Assert.Fails(Status.InvalidArgument, () => Fx.Base.Generate(null, Fx.Greedy(4)), "null prompt");
            Assert.Fails(Status.InvalidArgument, () => Fx.Base.StartStream(null), "null prompt, stream");
            Assert.Fails(Status.InvalidArgument, () => Fx.Base.Generate(Fx.Prompt, new GenerateParams { Stop = new[] { "" } }), "empty stop");
            Assert.Fails(Status.InvalidArgument, () => Fx.Base.Generate(Fx.Prompt, new GenerateParams { Stop = new string[] { null } }), "null stop");
            Assert.Fails(Status.InvalidArgument, () => Fx.Base.Generate(Fx.Prompt,
                new GenerateParams { JsonSchema = "{\"type\": \"object\"}", Grammar = "root ::= \"a\"" }), "schema and grammar");
        }

        [Test]
        private static void pull_mode_once_a_frame()
        {
            string expected = Fx.Base.Generate(Fx.Prompt, Fx.Greedy(16));
            var sb = new StringBuilder();
            int frames = 0;
            using (Stream s = Fx.Base.StartStream(Fx.Prompt, Fx.Greedy(16)))
            {
                Assert.True(s.IsPullMode, "pull mode");
                while (!s.IsFinished)
                {
                    string text;
                    if (s.TryRead(out text)) sb.Append(text);
                    frames++;
                    Thread.Sleep(1);
                }
                Assert.Equal("", s.ReadAvailable(), "nothing after the end");
                Assert.True(s.Wait(0), "ended");
                Assert.True(s.GetStats().GeneratedTokens > 0, "stats");
                Assert.Equal("", s.Error, "no error");
            }
            Assert.Equal(expected, sb.ToString(), "pulled text = generated text");
            Assert.True(frames > 1, "several frames");
            using (Stream s = Fx.Base.StartStream(Fx.Prompt, Fx.Greedy(16)))
                Assert.Equal(expected, s.ReadToEnd(), "ReadToEnd");
        }

        [Test]
        private static void callback_mode_on_the_engine_thread()
        {
            string expected = Fx.Base.Generate(Fx.Prompt, Fx.Greedy(16));
            var sb = new StringBuilder();
            int main = Thread.CurrentThread.ManagedThreadId, onMain = 0, finishes = 0;
            Status status = (Status)(-1);
            FinishReason reason = FinishReason.Running;
            using (Stream s = Fx.Base.StartStream(Fx.Prompt, Fx.Greedy(16),
                t => { sb.Append(t); if (Thread.CurrentThread.ManagedThreadId == main) onMain++; return true; },
                (st, r) => { status = st; reason = r; finishes++; }))
            {
                Assert.True(!s.IsPullMode, "callback mode");
                Assert.True(s.Wait(), "ended");
                Assert.True(s.IsFinished, "IsFinished");
                Assert.Equal("", s.ReadAvailable(), "no text to pull in callback mode");
                Assert.Equal(reason, s.GetStats().FinishReason, "reason");
            }
            Assert.Equal(expected, sb.ToString(), "callback text = generated text");
            Assert.Equal(1, finishes, "onFinish once");
            Assert.Equal(Status.Ok, status, "final status");
            Assert.True(reason == FinishReason.Length || reason == FinishReason.Eos, "reason " + reason);
            Assert.Equal(0, onMain, "callbacks never on the main thread");
        }

        [Test]
        private static void callback_returning_false_stops()
        {
            int pieces = 0;
            using (Stream s = Fx.Base.StartStream(Fx.Prompt, Fx.Endless(), t => { pieces++; return false; }))
            {
                Assert.True(s.Wait(), "ended");
                Assert.Equal(FinishReason.Stop, s.GetStats().FinishReason, "reason");
            }
            Assert.Equal(1, pieces, "one piece");
        }

        [Test]
        private static void callback_exceptions_come_out_of_wait()
        {
            int finishes = 0;
            using (Stream s = Fx.Base.StartStream(Fx.Prompt, Fx.Endless(),
                t => { throw new InvalidOperationException("boom"); }, (st, r) => finishes++))
            {
                var e = Assert.Throws<InvalidOperationException>(() => s.Wait());
                Assert.Equal("boom", e.Message);
                Assert.Equal(FinishReason.Stop, s.GetStats().FinishReason, "the exception stopped the stream");
            }
            Assert.Equal(1, finishes, "onFinish once");
            using (Stream s = Fx.Base.StartStream(Fx.Prompt, Fx.Greedy(2), t => true,
                (st, r) => { throw new ArgumentException("from onFinish"); }))
                Assert.Equal("from onFinish", Assert.Throws<ArgumentException>(() => s.Wait()).Message);
        }

        [Test]
        private static void cancel_and_wait_timeouts()
        {
            using (Stream s = Fx.Base.StartStream(Fx.Prompt, Fx.Endless()))
            {
                Assert.True(!s.Wait(0), "running: Wait(0) is false");
                Assert.True(!s.Wait(5), "running: Wait(5) is false");
                Assert.True(s.Read(-1).Length > 0, "some text");
                Assert.Equal(FinishReason.Running, s.GetStats().FinishReason, "running");
                Assert.Fails(Status.InvalidArgument, () => s.ToolCallsJson(), "tool calls of a running stream");
                s.Cancel();
                s.ReadToEnd();
                Assert.True(s.Wait(), "a cancelled stream has ended (no exception)");
                Assert.Equal(FinishReason.Cancelled, s.GetStats().FinishReason, "cancelled");
                s.Cancel();
            }
        }

        [Test]
        private static void stop_strings()
        {
            string full = Fx.Base.Generate(Fx.Prompt, Fx.Greedy(24));
            Assert.True(full.Length >= 8, "long enough: " + full);
            string stop = full.Substring(full.Length / 2, 3);
            string expected = full.Substring(0, full.IndexOf(stop, StringComparison.Ordinal));
            var p = Fx.Greedy(24);
            p.Stop = new[] { "never appears in this text 123", stop };
            StreamStats stats;
            Assert.Equal(expected, Fx.Base.Generate(Fx.Prompt, p, out stats), "text before the stop string " + Quote(stop));
            Assert.Equal(FinishReason.Stop, stats.FinishReason, "reason");
        }

        [Test]
        private static void json_schema_output_parses()
        {
            var p = Fx.Greedy(48);
            p.JsonSchema = "{\"type\": \"object\", \"properties\": {"
                + "\"action\": {\"enum\": [\"attack\", \"flee\", \"talk\"]},"
                + "\"mood\": {\"enum\": [\"calm\", \"angry\"]}},"
                + "\"required\": [\"action\", \"mood\"]}";
            StreamStats stats;
            string json = Fx.Base.Generate("The orc sees the player. Its decision, as JSON:", p, out stats);
            Assert.Equal(FinishReason.Eos, stats.FinishReason, "the JSON completed: " + json);
            var o = (Dictionary<string, object>)MiniJson.Parse(json);
            Assert.True(new[] { "attack", "flee", "talk" }.Contains((string)o["action"]), "action: " + json);
            Assert.True(new[] { "calm", "angry" }.Contains((string)o["mood"]), "mood: " + json);

            Assert.Fails(Status.InvalidArgument, () => Fx.Base.StartStream("x", new GenerateParams { JsonSchema = "{not json" }), "bad schema");
        }

        [Test]
        private static void grammar_output_follows_it()
        {
            var p = Fx.Greedy(8);
            p.Grammar = "root ::= \"yes\" | \"no\"";
            StreamStats stats;
            string text = Fx.Base.Generate("Is the sky blue? Answer:", p, out stats);
            Assert.True(text == "yes" || text == "no", "yes or no: " + Quote(text));
            Assert.Equal(FinishReason.Eos, stats.FinishReason, "complete");
            Assert.Fails(Status.InvalidArgument, () => Fx.Base.StartStream("x", new GenerateParams { Grammar = "root ::= (" }), "bad grammar");
        }

        [Test]
        private static void logit_bias_bans_a_token()
        {
            string full = Fx.Base.Generate(Fx.Prompt, Fx.Greedy(4));
            int first = Fx.Base.Tokenize(full, false, false)[0];
            var p = Fx.Greedy(4);
            p.LogitBias = new[] { new LogitBias(first, float.NegativeInfinity) };
            string banned = Fx.Base.Generate(Fx.Prompt, p);
            Assert.True(!banned.StartsWith(Fx.Base.Detokenize(new[] { first }), StringComparison.Ordinal),
                "the banned token " + first + " does not come first: " + Quote(banned));
            p.LogitBias = new[] { new LogitBias(Fx.Base.GetInfo().VocabSize + 5, 1) };
            Assert.Fails(Status.InvalidArgument, () => Fx.Base.Generate(Fx.Prompt, p), "token outside the vocabulary");
        }

        [Test]
        private static void prompt_too_long_for_the_context()
        {
            string prompt = string.Join(" ", Enumerable.Repeat("word", 900));
            try
            {
                using (Stream s = Fx.Base.StartStream(prompt, Fx.Greedy(4)))
                {
                    MinervaException e = Assert.Fails(Status.ContextFull, () => s.ReadToEnd(), "context full at the end");
                    Assert.Equal(FinishReason.Error, s.GetStats().FinishReason, "reason");
                    Assert.True(s.Error.Length > 0, "Stream.Error");
                    Assert.Equal(s.Error, e.Message, "the exception carries the stream's error");
                }
            }
            catch (MinervaException e)
            {
                Assert.Equal(Status.ContextFull, e.Status, "refused at the start: " + e.Message);
            }
            Assert.Fails(Status.ContextFull, () => Fx.Base.Generate(prompt, Fx.Greedy(4)), "Generate");
        }

        [Test]
        private static void tokenize_round_trip()
        {
            foreach (string text in new[] { "Hello world", "Grüße, 世界! 🎉 <b>tags</b>", " leading space", "" })
            {
                int[] tokens = Fx.Base.Tokenize(text);
                Assert.Equal(text, Fx.Base.Detokenize(tokens), "round trip");
                int[] plain = Fx.Base.Tokenize(text, false, false);
                Assert.True(plain.Length <= tokens.Length, "no special tokens without addSpecial");
                Assert.Equal(text, Fx.Base.Detokenize(plain), "round trip without special tokens");
            }
            int[] withBos = Fx.Base.Tokenize("Hi");
            Assert.True(Fx.Base.Detokenize(withBos, true).Length >= "Hi".Length, "rendered special tokens");
            Assert.Equal("", Fx.Base.Detokenize(new int[0]), "no tokens");
            Assert.Fails(Status.InvalidArgument, () => Fx.Base.Detokenize(new[] { -1 }), "token -1");
            Assert.Fails(Status.InvalidArgument, () => Fx.Base.Tokenize(null), "null text");
        }

        [Test]
        private static void embeddings()
        {
            int dims = Fx.Base.GetInfo().EmbeddingDims;
            float[][] v = Fx.Base.Embed(new[] { "a cat sat on the mat", "quantum field theory" });
            Assert.Equal(2, v.Length, "two vectors");
            foreach (float[] row in v)
            {
                Assert.Equal(dims, row.Length, "dims");
                Assert.True(row.All(x => !float.IsNaN(x) && !float.IsInfinity(x)), "finite");
                Assert.Near(1.0, Math.Sqrt(row.Sum(x => (double)x * x)), 1e-3, "normalized");
            }
            Assert.True(v[0].Zip(v[1], (a, b) => Math.Abs(a - b)).Max() > 1e-3, "different texts, different vectors");
            float[] one = Fx.Base.Embed("a cat sat on the mat");
            Assert.True(one.Zip(v[0], (a, b) => (double)a * b).Sum() > 0.999, "a text's vector does not depend on the others");
            float[][] other = Fx.Base.Embed(new[] { "a cat sat on the mat", "x" });
            Assert.True(other[0].Zip(v[0], (a, b) => Math.Abs(a - b)).Max() < 1e-4, "nor on the other texts");
            float[] raw = Fx.Base.Embed("a cat sat on the mat", new EmbedParams { Normalize = false, Pooling = Pooling.Mean });
            Assert.Equal(dims, raw.Length, "dims, not normalized");
            Assert.Equal(0, Fx.Base.Embed(new string[0]).Length, "no texts");
            Assert.Fails(Status.InvalidArgument, () => Fx.Base.Embed(new string[] { "fine", null }), "a null text");
            Assert.Fails(Status.InvalidArgument, () => Fx.Base.Embed("x", new EmbedParams { Pooling = (Pooling)77 }), "unknown pooling");
        }

        [Test]
        private static void chat_with_the_model_template()
        {
            var messages = new List<ChatMessage>
            {
                ChatMessage.System("You are Bram, the guard of the town gate. Answer in one short sentence."),
                ChatMessage.User("Who goes there?"),
            };
            string prompt = Fx.Chat.FormatChat(messages);
            Assert.True(prompt.Contains("Who goes there?") && prompt.Contains("You are Bram"), "rendered: " + prompt);
            string reply = Fx.Chat.Chat(messages, null, Fx.Greedy(24));
            Assert.True(reply.Trim().Length > 0, "a reply");
            Assert.Equal(reply, Fx.Chat.Chat(messages, null, Fx.Greedy(24)), "greedy chat is deterministic");
            using (Stream s = Fx.Chat.StartChat(messages, null, Fx.Greedy(24)))
            {
                Assert.Equal(reply, s.ReadToEnd(), "pull-mode chat");
                FinishReason r = s.GetStats().FinishReason;
                Assert.True(r == FinishReason.Eos || r == FinishReason.Length, "reason " + r);
                Assert.Equal(0, s.ToolCalls().Length, "no tool calls");
                Assert.Equal("[]", s.ToolCallsJson(), "no tool calls, JSON");
            }
            var cb = new StringBuilder();
            using (Stream s = Fx.Chat.StartChat(messages, null, Fx.Greedy(24), t => { cb.Append(t); return true; }))
                s.Wait();
            Assert.Equal(reply, cb.ToString(), "callback chat");

            Assert.Fails(Status.InvalidArgument, () => Fx.Chat.Chat(new[] { new ChatMessage("narrator", "hi") }), "unknown role");
            Assert.Fails(Status.InvalidArgument, () => Fx.Chat.Chat(new ChatMessage[0]), "no messages");
            Assert.Fails(Status.InvalidArgument, () => Fx.Chat.Chat(null), "null messages");
            Assert.Fails(Status.InvalidArgument, () => Fx.Chat.FormatChat(messages, new ChatParams { ChatTemplate = "no-such-template" }), "unknown template");
            string chatml = Fx.Chat.FormatChat(messages, new ChatParams { ChatTemplate = "chatml" });
            Assert.True(chatml.Contains("<|im_start|>user\nWho goes there?<|im_end|>"), "a named template: " + chatml);
        }

        private const string Tools = "[{\"type\": \"function\", \"function\": {\"name\": \"walk_to\", "
            + "\"description\": \"Walk to a place of the town.\", \"parameters\": {\"type\": \"object\", "
            + "\"properties\": {\"place\": {\"enum\": [\"gate\", \"tavern\"]}}, \"required\": [\"place\"]}}}]";

        [Test]
        private static void tool_call_with_tool_choice_required()
        {
            var messages = new List<ChatMessage>
            {
                ChatMessage.System("You are Bram, the guard of the town gate."),
                ChatMessage.User("A thief ran toward the tavern! Stop him!"),
            };
            var chat = new ChatParams { ToolsJson = Tools, ToolChoice = ToolChoice.Required };
            string json;
            ToolCall[] calls;
            // Gemma 3 270M makes up to four calls, spaced out: about 150 tokens.
            using (Stream s = Fx.Chat.StartChat(messages, chat, Fx.Greedy(200)))
            {
                Assert.Equal("", s.ReadToEnd(), "no text with REQUIRED");
                Assert.Equal(FinishReason.Eos, s.GetStats().FinishReason, "the calls completed");
                json = s.ToolCallsJson();
                calls = s.ToolCalls();
            }
            var parsed = (List<object>)MiniJson.Parse(json);
            Assert.True(parsed.Count >= 1 && parsed.Count <= 4, "one to four calls: " + json);
            Assert.Equal(parsed.Count, calls.Length, "ToolCalls() reads them all");
            Assert.True(System.Text.RegularExpressions.Regex.IsMatch(calls[0].Id, "^call_[0-9a-z]{9}$"), "id: " + calls[0].Id);
            Assert.Equal("walk_to", calls[0].Name, "name");
            var args = (Dictionary<string, object>)MiniJson.Parse(calls[0].ArgumentsJson);
            Assert.True(new[] { "gate", "tavern" }.Contains((string)args["place"]), "arguments: " + calls[0].ArgumentsJson);
            var first = (Dictionary<string, object>)parsed[0];
            Assert.Equal("walk_to", (string)first["name"], "name in the JSON");

            // The next turn: the calls and their result go back to the model.
            messages.Add(ChatMessage.Assistant(null, json));
            messages.Add(ChatMessage.Tool(calls[0].Id, "You are at the tavern. The thief is here."));
            var auto = new ChatParams { ToolsJson = Tools };
            string rendered = Fx.Chat.FormatChat(messages, auto);
            Assert.True(rendered.Contains("The thief is here."), "the tool result is rendered: " + rendered);
            ToolCall[] next;
            string answer = Fx.Chat.Chat(messages, auto, Fx.Greedy(16), out next);
            Assert.True(next.Length <= 4 && (answer.Length > 0 || next.Length > 0), "AUTO: calls or text");
            Assert.Fails(Status.InvalidArgument, () => Fx.Chat.FormatChat(messages, new ChatParams { ToolsJson = "[{" }), "bad tools JSON");
        }

        [Test]
        private static void chat_template_kwargs_and_reasoning()
        {
            var messages = new List<ChatMessage> { ChatMessage.User("Say hello in one word.") };
            var chat = new ChatParams
            {
                TemplateKwargsJson = "{\"enable_thinking\": false}",
                Reasoning = Reasoning.None,
                MaxToolCalls = 2,
            };
            using (Stream s = Fx.Chat.StartChat(messages, chat, Fx.Greedy(8)))
            {
                Assert.Equal("", s.Reasoning(), "no reasoning while it runs");
                s.ReadToEnd();
                Assert.Equal("", s.Reasoning(), "Reasoning.None: none kept apart");
            }
            using (Stream s = Fx.Chat.StartChat(messages, new ChatParams { TemplateKwargsJson = "{\"enable_thinking\": false}" }, Fx.Greedy(8)))
            {
                s.ReadToEnd();
                Assert.True(s.Reasoning() != null, "Reasoning.Auto: a string");
            }

            // Template variables reach the template; an assistant turn is continued.
            const string tmpl = "{{ greeting }}{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}";
            string rendered = Fx.Chat.FormatChat(messages, new ChatParams { ChatTemplate = tmpl, TemplateKwargsJson = "{\"greeting\": \"Hi! \"}" });
            Assert.True(rendered.StartsWith("Hi! [user] Say hello", StringComparison.Ordinal), "template variables: " + rendered);
            var cont = new List<ChatMessage>(messages) { ChatMessage.Assistant("Hel") };
            string open = Fx.Chat.FormatChat(cont, new ChatParams { ChatTemplate = tmpl, ContinueFinalMessage = true });
            Assert.True(open.EndsWith("[assistant] Hel", StringComparison.Ordinal), "continued: " + open);

            chat.TemplateKwargsJson = "[1]";
            MinervaException e = Assert.Fails(Status.InvalidArgument, () => Fx.Chat.Chat(messages, chat, Fx.Greedy(4)), "kwargs not an object");
            Assert.True(e.Message.Contains("template_kwargs_json"), "the message names the field: " + e.Message);
            chat.TemplateKwargsJson = null;
            chat.Reasoning = (Reasoning)7;
            Assert.Fails(Status.InvalidArgument, () => Fx.Chat.Chat(messages, chat, Fx.Greedy(4)), "unknown reasoning");
        }

        [Test]
        private static void log_callback()
        {
            var lines = new ConcurrentQueue<KeyValuePair<LogLevel, string>>();
            Library.SetLogCallback((level, line) => lines.Enqueue(new KeyValuePair<LogLevel, string>(level, line)), LogLevel.Debug);
            try
            {
                using (var e = Fx.Small()) e.Generate("Hi", Fx.Greedy(2));
            }
            finally
            {
                Library.SetLogCallback(null, LogLevel.Warn);
            }
            Assert.True(lines.Count > 0, "log lines arrived");
            Assert.True(lines.All(l => l.Value != null && !l.Value.EndsWith("\n") && l.Key >= LogLevel.Debug && l.Key <= LogLevel.Error),
                "whole lines with a level");
            int count = lines.Count;
            using (var e = Fx.Small()) { }
            Assert.Equal(count, lines.Count, "no lines after the handler was removed");

            // A handler that throws cannot hurt minerva.
            Library.SetLogCallback((level, line) => { throw new Exception("log handler"); }, LogLevel.Debug);
            try
            {
                using (var e = Fx.Small()) e.Generate("Hi", Fx.Greedy(2));
            }
            finally
            {
                Library.SetLogCallback(null, LogLevel.Warn);
            }
        }

        [Test]
        private static void blocking_calls_are_refused_inside_callbacks()
        {
            var statuses = new List<string>();
            var holder = new Stream[1];
            using (Stream s = Fx.Base.StartStream(Fx.Prompt, Fx.Endless(), t =>
            {
                try { Fx.Base.Generate("x", Fx.Greedy(2)); statuses.Add("generate ran"); }
                catch (MinervaException e) { statuses.Add("generate " + e.Status); }
                try { Fx.Base.Embed("x"); statuses.Add("embed ran"); }
                catch (MinervaException e) { statuses.Add("embed " + e.Status); }
                Stream self = Volatile.Read(ref holder[0]);
                if (self == null) return true;   // not assigned yet: try again on the next token
                try { self.Wait(-1); statuses.Add("wait ran"); }
                catch (MinervaException e) { statuses.Add("wait " + e.Status); }
                try { self.Read(10); statuses.Add("read ran"); }
                catch (MinervaException e) { statuses.Add("read " + e.Status); }
                statuses.Add("poll " + self.Wait(0) + " " + self.IsFinished + " " + self.GetStats().FinishReason);
                return false;
            }))
            {
                Volatile.Write(ref holder[0], s);
                s.Wait();
            }
            Assert.True(statuses.Contains("generate InvalidArgument"), string.Join(", ", statuses));
            Assert.True(statuses.Contains("embed InvalidArgument"), string.Join(", ", statuses));
            Assert.True(statuses.Contains("wait InvalidArgument"), string.Join(", ", statuses));
            Assert.True(statuses.Contains("read InvalidArgument"), string.Join(", ", statuses));
            Assert.True(statuses.Contains("poll False False Running"), string.Join(", ", statuses));
        }

        [Test]
        private static void disposed_objects_throw_object_disposed()
        {
            var e = Fx.Small();
            Stream s = e.StartStream(Fx.Prompt, Fx.Greedy(4));
            e.Dispose();
            e.Dispose();
            Assert.True(e.IsDisposed, "IsDisposed");
            Assert.Throws<ObjectDisposedException>(() => e.Generate("x"), "Generate");
            Assert.Throws<ObjectDisposedException>(() => e.StartStream("x"), "StartStream");
            Assert.Throws<ObjectDisposedException>(() => e.GetInfo(), "GetInfo");
            Assert.Throws<ObjectDisposedException>(() => e.Tokenize("x"), "Tokenize");
            s.ReadToEnd();
            s.Dispose();
            s.Dispose();
            s.Release();
            Assert.Throws<ObjectDisposedException>(() => s.Read(0), "Read");
            Assert.Throws<ObjectDisposedException>(() => s.Wait(), "Wait");
            Assert.Throws<ObjectDisposedException>(() => s.Cancel(), "Cancel");
            Assert.Throws<ObjectDisposedException>(() => s.GetStats(), "GetStats");
        }

        [Test]
        private static void streams_outlive_their_engine()
        {
            var e = Fx.Small();
            int finishes = 0;
            Status status = Status.Ok;
            Stream pull = e.StartStream(Fx.Prompt, Fx.Endless());
            Stream cb = e.StartStream(Fx.Prompt, Fx.Endless(), t => true, (st, r) => { status = st; finishes++; });
            Assert.True(pull.Read(-1).Length > 0, "text before");
            e.Dispose();
            Assert.Equal(1, finishes, "the engine's Dispose ran onFinish");
            Assert.Equal(Status.Cancelled, status, "cancelled");
            pull.ReadToEnd();
            Assert.True(pull.Wait(), "ended");
            Assert.Equal(FinishReason.Cancelled, pull.GetStats().FinishReason, "pull stream cancelled");
            Assert.True(cb.Wait(0) && cb.IsFinished, "callback stream ended");
            pull.Dispose();
            cb.Dispose();
            Assert.Equal(1, finishes, "onFinish only once");
        }

        private const string Persona = "You are Ilse, the ferrywoman of the northern lake.\n" +
            "Ilse knows every current, every drowned village under the water, and every traveller who " +
            "ever crossed without paying.\n";
        private const string Ask = Persona + "Traveller: How much for the crossing?\nIlse:";

        private static Engine StateEngine(int maxStreams)
        {
            return new Engine(Fx.Model, new EngineParams { ContextTokens = 512, MaxStreams = maxStreams, Threads = Fx.Threads });
        }

        // A greedy line on Ask with the prompt cache on: its text and cached prompt tokens.
        private static string Line(Engine e, out int cached)
        {
            var p = Fx.Greedy(12);
            p.CachePrompt = true;
            using (Stream s = e.StartStream(Ask, p))
            {
                string text = s.ReadToEnd();
                cached = s.GetStats().CachedPromptTokens;
                return text;
            }
        }

        [Test]
        private static void cache_prefill_save_and_load_into_another_engine()
        {
            string file = Path.Combine(Path.GetTempPath(), "minerva-cs-cache-" + Process.GetCurrentProcess().Id + ".bin");
            using (Engine a = StateEngine(2))
            {
                Assert.Equal(0L, a.GetInfo().PinnedTokens, "nothing pinned at first");
                a.CachePrefill(Persona, true);
                EngineInfo info = a.GetInfo();
                Assert.True(info.PinnedTokens > 20 && info.PinnedBytes > 0, "pinned " + info.PinnedTokens + " tokens, " + info.PinnedBytes + " bytes");
                a.CachePrefill(Persona, true);   // pinned already: not twice
                Assert.Equal(info.PinnedTokens, a.GetInfo().PinnedTokens, "pinned once");
                byte[] data = a.CacheSave();
                Assert.True(data.Length > 100, "saved bytes: " + data.Length);
                int cached;
                string inPlace = Line(a, out cached);
                Assert.True(cached + 2 >= info.PinnedTokens, "in place: " + cached + " cached");

                using (Engine b = StateEngine(2))
                {
                    // Loaded with a stream running.
                    using (Stream running = b.StartStream("Meanwhile:", Fx.Greedy(32)))
                    {
                        b.CacheLoad(data);
                        running.ReadToEnd();
                    }
                    Assert.Equal(info.PinnedTokens, b.GetInfo().PinnedTokens, "pinned after the load");
                    string loaded = Line(b, out cached);
                    Assert.True(cached > 0 && cached + 2 >= info.PinnedTokens, "loaded: " + cached + " cached");
                    Assert.Equal(inPlace, loaded, "the same greedy line from the loaded cache");
                }

                // This save holds the line's own cells too: the line now reuses all but its last
                // token, as it does again in a from the same cells (the first time its tokens
                // were computed together, which may differ in the last bits).
                a.CacheSaveFile(file);
                int cachedAgain;
                string again = Line(a, out cachedAgain);
                using (Engine c = StateEngine(2))
                {
                    c.CacheLoadFile(file);
                    Assert.Equal(again, Line(c, out cached), "the same line from the file");
                    Assert.True(cached == cachedAgain && cached > info.PinnedTokens,
                                "cached from the file: " + cached + ", in a again: " + cachedAgain);
                }
                File.Delete(file);

                using (Engine one = StateEngine(1))
                {
                    // One stream of 512: no room to pin beside it.
                    Assert.Fails(Status.ContextFull, () => one.CacheLoad(data), "no room to pin");
                    Assert.Fails(Status.ContextFull, () => one.CachePrefill(Persona, true), "no room to pin");
                    byte[] corrupt = (byte[])data.Clone();
                    corrupt[corrupt.Length / 2] ^= 1;
                    MinervaException e = Assert.Fails(Status.InvalidArgument, () => one.CacheLoad(corrupt), "corrupt bytes");
                    Assert.True(e.Message.Contains("checksum"), "the message says checksum: " + e.Message);
                    Assert.Fails(Status.InvalidArgument, () => one.CacheLoad(new byte[0]), "no bytes");
                    Assert.Fails(Status.InvalidArgument, () => one.CacheLoad(null), "null");
                    Assert.Fails(Status.InvalidArgument, () => one.CacheLoad(Encoding.ASCII.GetBytes("junk")), "junk");
                    e = Assert.Fails(Status.Io, () => one.CacheLoadFile("/nonexistent/minerva/save.bin"), "missing file");
                    Assert.True(e.Message.Contains("save.bin"), "the message names the file: " + e.Message);
                    Assert.Fails(Status.Io, () => one.CacheSaveFile("/nonexistent/minerva/save.bin"), "unwritable file");
                    Assert.Fails(Status.InvalidArgument, () => one.CachePrefill(""), "empty prompt");
                    Assert.Fails(Status.InvalidArgument, () => one.CachePrefill(null), "null prompt");
                    Assert.Throws<ArgumentException>(() => one.CachePrefill("a\0b"), "NUL in the prompt");
                    // Unpinned: the cache of a stream slot, which the next stream reuses.
                    one.CachePrefill(Persona);
                    Assert.Equal(0L, one.GetInfo().PinnedTokens, "unpinned");
                    Line(one, out cached);
                    Assert.True(cached > 0, "the prefilled prefix was reused");

                    // Inside a callback: refused (they wait for the engine thread).
                    var statuses = new List<string>();
                    one.Generate(Fx.Prompt, Fx.Greedy(2));
                    using (Stream s = one.StartStream(Fx.Prompt, Fx.Greedy(4), t =>
                    {
                        try { one.CachePrefill("x"); statuses.Add("prefill ran"); }
                        catch (MinervaException x) { statuses.Add("prefill " + x.Status); }
                        try { one.CacheSave(); statuses.Add("save ran"); }
                        catch (MinervaException x) { statuses.Add("save " + x.Status); }
                        try { one.CacheLoad(data); statuses.Add("load ran"); }
                        catch (MinervaException x) { statuses.Add("load " + x.Status); }
                        return false;
                    }))
                        s.Wait();
                    Assert.Equal("prefill InvalidArgument, save InvalidArgument, load InvalidArgument",
                        string.Join(", ", statuses), "inside a callback");
                }
            }
            var gone = StateEngine(1);
            gone.Dispose();
            Assert.Throws<ObjectDisposedException>(() => gone.CachePrefill("x"), "CachePrefill");
            Assert.Throws<ObjectDisposedException>(() => gone.CacheSave(), "CacheSave");
            Assert.Throws<ObjectDisposedException>(() => gone.CacheLoad(new byte[1]), "CacheLoad");
            Assert.Throws<ObjectDisposedException>(() => gone.CacheSaveFile(file), "CacheSaveFile");
            Assert.Throws<ObjectDisposedException>(() => gone.CacheLoadFile(file), "CacheLoadFile");
        }

        private const string LoraPrompt = "The old lighthouse keeper said";

        private static string LoraText(Engine e, float[] scales)
        {
            var p = Fx.Greedy(24);
            p.LoraScales = scales;
            return e.Generate(LoraPrompt, p);
        }

        [Test]
        private static void lora_adapter_changes_the_text_and_scale_zero_turns_it_off()
        {
            string dir = Fx.LoraDir;
            string plain;
            using (Engine e = StateEngine(1)) plain = LoraText(e, null);
            using (var e = new Engine(Fx.Model, new EngineParams
            {
                ContextTokens = 512, MaxStreams = 2, Threads = Fx.Threads,
                Loras = new[] { new Lora(Path.Combine(dir, "voice.gguf"), 1) },
            }))
            {
                string adapted = LoraText(e, null);
                string off = LoraText(e, new[] { 0f });
                Assert.True(adapted != off, "the adapter changed nothing: " + Quote(adapted));
                Assert.Equal(plain, off, "scale 0 is the model alone");
                Assert.Equal(adapted, LoraText(e, new[] { 1f }), "scale 1 is the engine's default");
                // One scale per adapter, checked here (minerva reads as many as the engine has).
                MinervaException x = Assert.Fails(Status.InvalidArgument, () => LoraText(e, new[] { 1f, 0.5f }), "two scales");
                Assert.True(x.Message.Contains("LoraScales"), "the message names LoraScales: " + x.Message);
                Assert.Fails(Status.InvalidArgument, () => LoraText(e, new float[0]), "no scales");
                Assert.Fails(Status.InvalidArgument, () => LoraText(e, new[] { float.NaN }), "NaN");
                var clone = new GenerateParams { LoraScales = new[] { 0.5f } }.Clone();
                Assert.Equal(0.5f, clone.LoraScales[0], "Clone copies LoraScales");
            }
            // An engine without adapters takes no scales.
            Assert.Fails(Status.InvalidArgument, () => LoraText(Fx.Base, new[] { 1f }), "scales without adapters");
            Assert.True(LoraText(Fx.Base, new float[0]).Length > 0, "an empty list is none");
        }

        [Test]
        private static void lora_adapters_that_do_not_fit_are_refused()
        {
            string dir = Fx.LoraDir;
            Func<Lora, Engine> open = l => new Engine(Fx.Model, new EngineParams
            {
                ContextTokens = 256, MaxStreams = 1, Threads = Fx.Threads, Loras = new[] { l },
            });
            MinervaException e = Assert.Fails(Status.Model, () => open(new Lora(Path.Combine(dir, "wrong-shape.gguf"))).Dispose(), "wrong shape");
            Assert.True(e.Message.Contains("wrong-shape.gguf"), "the message names the file: " + e.Message);
            e = Assert.Fails(Status.Io, () => open(new Lora("/nonexistent/minerva/missing.gguf")).Dispose(), "missing adapter");
            Assert.True(e.Message.Contains("missing.gguf"), "the message names the file: " + e.Message);
            Assert.Fails(Status.InvalidArgument, () => open(new Lora(Path.Combine(dir, "voice.gguf"), float.PositiveInfinity)).Dispose(), "infinite scale");
            Assert.Fails(Status.InvalidArgument, () => open(new Lora(null)).Dispose(), "null path");
        }

        private static string Quote(string s) { return "\"" + s.Replace("\n", "\\n") + "\""; }
    }
}
