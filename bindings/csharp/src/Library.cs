using System;
using System.Runtime.CompilerServices;
using System.Threading;

[assembly: InternalsVisibleTo("Minerva.Tests")]

namespace Minerva
{
    /// <summary>The library as a whole: version, ABI, error words, logging.</summary>
    public static class Library
    {
        /// <summary>The ABI version this binding was written for (MINERVA_ABI_VERSION).</summary>
        public const int BindingAbiVersion = Native.AbiVersion;

        /// <summary>The loaded library's ABI version; differs from BindingAbiVersion only when
        /// the binding runs against a library other than the one it was written for.</summary>
        public static int AbiVersion { get { return (int)Native.minerva_abi_version(); } }

        /// <summary>The loaded library's version, e.g. "0.1.0".</summary>
        public static string Version { get { return Utf8.FromNative(Native.minerva_version()); } }

        /// <summary>The words for a status ("ok", "invalid argument", ...).</summary>
        public static string StatusString(Status status)
        {
            return Utf8.FromNative(Native.minerva_status_str((uint)status));
        }

        /// <summary>The message of the last failed minerva call on this thread ("" if none).
        /// The binding already puts it in every MinervaException.</summary>
        public static string LastError { get { return Utf8.FromNative(Native.minerva_last_error()); } }

        /// <summary>
        /// Sends minerva's and llama.cpp's log lines at <paramref name="minLevel"/> and above to
        /// <paramref name="handler"/>, for the whole process; null restores the default (warnings
        /// and errors on stderr). The handler gets one whole line at a time, on any thread
        /// (engine threads included: never touch Unity objects there), one call at a time; an
        /// exception it throws is dropped. When this returns (called outside a callback) the
        /// previous handler is not running and is never called again.
        /// </summary>
        public static void SetLogCallback(Action<LogLevel, string> handler, LogLevel minLevel = LogLevel.Info)
        {
            // The lock keeps the handler and minerva's registration in step between threads; the
            // log handler itself does not take it (the thread holding it may be waiting in
            // minerva for that very handler to return).
            bool locked = false;
            try
            {
                if (!Callbacks.InsideLogHandler) Monitor.Enter(s_logLock, ref locked);
                if (handler == null)
                {
                    Native.minerva_set_log_callback(IntPtr.Zero, IntPtr.Zero, (uint)minLevel);
                    Callbacks.LogHandler = null;
                }
                else
                {
                    // One static trampoline, kept alive by a static delegate; the handler is read
                    // from a static field at each line.
                    if (!s_exitHooked)
                    {
                        s_exitHooked = true;
                        AppDomain.CurrentDomain.ProcessExit += ResetLogAtExit;
                        AppDomain.CurrentDomain.DomainUnload += ResetLogAtExit;
                    }
                    Callbacks.LogHandler = handler;
                    Native.minerva_set_log_callback(Callbacks.LogPtr, IntPtr.Zero, (uint)minLevel);
                }
            }
            finally
            {
                if (locked) Monitor.Exit(s_logLock);
            }
        }

        private static readonly object s_logLock = new object();
        private static bool s_exitHooked;

        // minerva's threads outlive the runtime (and Unity's domain, reloaded in the editor): once
        // it goes, its trampoline must no longer be called. Engines are the program's to dispose.
        private static void ResetLogAtExit(object sender, EventArgs e)
        {
            Native.minerva_set_log_callback(IntPtr.Zero, IntPtr.Zero, (uint)LogLevel.Warn);
            Callbacks.LogHandler = null;
        }
    }
}
