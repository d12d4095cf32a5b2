// Plumbing between managed code and the C API: UTF-8 by hand, native scratch memory for the
// duration of one call, handle leases, errors, and the static callback trampolines.
using System;
using System.Collections.Generic;
using System.Runtime.InteropServices;
using System.Text;
using System.Threading;
#if UNITY_5_3_OR_NEWER
using AOT;
#endif

namespace Minerva
{
#if !UNITY_5_3_OR_NEWER
    // Unity's IL2CPP generates a native entry point for each static method carrying an attribute
    // of this name (AOT.MonoPInvokeCallbackAttribute under Unity; it matches by name), so that
    // minerva can call it. Outside Unity the attribute documents the same thing and does nothing.
    [AttributeUsage(AttributeTargets.Method)]
    internal sealed class MonoPInvokeCallbackAttribute : Attribute
    {
        public MonoPInvokeCallbackAttribute(Type delegateType) { DelegateType = delegateType; }
        public Type DelegateType { get; private set; }
    }
#endif

    // UTF-8 both ways with Encoding.UTF8 (Mono's LPUTF8Str marshaling is uneven).
    internal static class Utf8
    {
        // NUL-terminated UTF-8 of s; null stays null (it reaches minerva as NULL, which minerva
        // refuses with MINERVA_ERR_INVALID_ARGUMENT where a value is needed).
        internal static byte[] Z(string s)
        {
            if (s == null) return null;
            if (s.IndexOf('\0') >= 0)
                throw new ArgumentException("a string given to minerva contains a NUL character");
            int n = Encoding.UTF8.GetByteCount(s);
            byte[] b = new byte[n + 1];
            Encoding.UTF8.GetBytes(s, 0, s.Length, b, 0);
            return b;
        }

        [ThreadStatic] private static byte[] t_scratch;

        internal static string FromNative(IntPtr p, int len)
        {
            if (p == IntPtr.Zero || len <= 0) return "";
            byte[] buf = t_scratch;
            if (buf == null || buf.Length < len) t_scratch = buf = new byte[Math.Max(len, 256)];
            Marshal.Copy(p, buf, 0, len);
            return Encoding.UTF8.GetString(buf, 0, len);
        }

        // A NUL-terminated string owned by minerva.
        internal static string FromNative(IntPtr p)
        {
            if (p == IntPtr.Zero) return "";
            int len = 0;
            while (Marshal.ReadByte(p, len) != 0) len++;
            return FromNative(p, len);
        }

        // A NUL-terminated string in a fixed char array of a struct.
        internal static string FromFixed(byte[] b)
        {
            if (b == null) return "";
            int len = Array.IndexOf(b, (byte)0);
            return Encoding.UTF8.GetString(b, 0, len < 0 ? b.Length : len);
        }
    }

    // Native memory that lives for one call: strings and string arrays for minerva to copy,
    // pinned arrays. Freed by Dispose.
    internal sealed class Scratch : IDisposable
    {
        private readonly List<IntPtr> _blocks = new List<IntPtr>();
        private readonly List<GCHandle> _pins = new List<GCHandle>();

        internal IntPtr Str(string s)
        {
            byte[] b = Utf8.Z(s);
            if (b == null) return IntPtr.Zero;
            IntPtr p = Alloc(b.Length);
            Marshal.Copy(b, 0, p, b.Length);
            return p;
        }

        // A `const char *const *` of the strings (null entries become NULL).
        internal IntPtr StrArray(IList<string> items)
        {
            if (items == null) return IntPtr.Zero;
            IntPtr arr = Alloc(Math.Max(1, items.Count) * IntPtr.Size);
            for (int i = 0; i < items.Count; i++)
                Marshal.WriteIntPtr(arr, i * IntPtr.Size, Str(items[i]));
            return arr;
        }

        internal IntPtr Pin(Array a)
        {
            if (a == null) return IntPtr.Zero;
            GCHandle h = GCHandle.Alloc(a, GCHandleType.Pinned);
            _pins.Add(h);
            return h.AddrOfPinnedObject();
        }

        private IntPtr Alloc(int bytes)
        {
            IntPtr p = Marshal.AllocHGlobal(bytes);
            _blocks.Add(p);
            return p;
        }

        public void Dispose()
        {
            foreach (IntPtr p in _blocks) Marshal.FreeHGlobal(p);
            _blocks.Clear();
            foreach (GCHandle h in _pins) h.Free();
            _pins.Clear();
        }
    }

    // Holds a reference on a SafeHandle for a whole operation: throws ObjectDisposedException up
    // front if the handle was disposed, and keeps it from being freed until Dispose.
    internal struct Lease : IDisposable
    {
        private readonly SafeHandle _h;
        private bool _added;

        internal Lease(SafeHandle h, string objectName)
        {
            _h = h;
            _added = false;
            try
            {
                h.DangerousAddRef(ref _added);
            }
            catch (ObjectDisposedException)
            {
                throw new ObjectDisposedException(objectName);
            }
        }

        public void Dispose()
        {
            if (_added)
            {
                _added = false;
                _h.DangerousRelease();
            }
        }
    }

    internal static class Errors
    {
        // Call right after the failed call, before any other minerva call on this thread:
        // minerva_last_error is per thread and valid until the next call.
        internal static MinervaException Last(uint status)
        {
            string why = Utf8.FromNative(Native.minerva_last_error());
            return new MinervaException((Status)status, why);
        }

        internal static void Check(uint status)
        {
            if (status != 0) throw Last(status);
        }
    }

    // What a callback stream shares with the engine thread, reached through a GCHandle passed as
    // user_data. The finish callback frees the GCHandle: minerva calls it exactly once per created
    // stream, last; for a stream that failed to start no callback ever runs and the creator frees it.
    internal sealed class StreamCallbacks
    {
        internal Func<string, bool> OnText;
        internal Action<Status, FinishReason> OnFinish;
        internal StringBuilder Collected;          // Engine.Generate
        internal volatile Exception Thrown;        // the first exception a user callback threw
    }

    internal sealed class ProgressState
    {
        internal Func<float, bool> OnProgress;
        internal Exception Thrown;
    }

    // The static trampolines minerva calls. Each is a static method with MonoPInvokeCallback (what
    // IL2CPP requires), held by a static delegate so it is never collected, and never lets an
    // exception unwind into minerva: a callback that throws stops its stream, and the exception is
    // thrown again by Stream.Wait (or Engine.Generate / the Engine constructor).
    internal static class Callbacks
    {
        [ThreadStatic] private static int t_depth;

        // True on a thread that is inside one of minerva's callbacks (engine thread, progress).
        internal static bool InsideCallback { get { return t_depth > 0; } }

        private static readonly Native.TokenCallback s_token = OnToken;
        private static readonly Native.FinishCallback s_finish = OnFinish;
        private static readonly Native.ProgressCallback s_progress = OnProgress;
        private static readonly Native.LogCallback s_log = OnLog;
        internal static readonly IntPtr TokenPtr = Marshal.GetFunctionPointerForDelegate(s_token);
        internal static readonly IntPtr FinishPtr = Marshal.GetFunctionPointerForDelegate(s_finish);
        internal static readonly IntPtr ProgressPtr = Marshal.GetFunctionPointerForDelegate(s_progress);
        internal static readonly IntPtr LogPtr = Marshal.GetFunctionPointerForDelegate(s_log);

        internal static volatile Action<LogLevel, string> LogHandler;

        // GCHandles of callback streams not yet released by their finish callback (for tests).
        private static int s_live;
        internal static int LiveStreamHandles { get { return Volatile.Read(ref s_live); } }

        internal static GCHandle Hold(StreamCallbacks cb)
        {
            GCHandle h = GCHandle.Alloc(cb);
            Interlocked.Increment(ref s_live);
            return h;
        }

        internal static void Free(ref GCHandle h)
        {
            if (!h.IsAllocated) return;
            h.Free();
            Interlocked.Decrement(ref s_live);
        }

        [MonoPInvokeCallback(typeof(Native.TokenCallback))]
        private static uint OnToken(IntPtr userData, IntPtr text, UIntPtr len)
        {
            StreamCallbacks cb = null;
            t_depth++;
            try
            {
                cb = (StreamCallbacks)GCHandle.FromIntPtr(userData).Target;
                if (cb.Thrown != null) return Native.Stop;
                string s = Utf8.FromNative(text, checked((int)len.ToUInt64()));
                if (cb.Collected != null)
                {
                    cb.Collected.Append(s);
                    return Native.Continue;
                }
                return cb.OnText(s) ? Native.Continue : Native.Stop;
            }
            catch (Exception e)
            {
                if (cb != null && cb.Thrown == null) cb.Thrown = e;
                return Native.Stop;
            }
            finally
            {
                t_depth--;
            }
        }

        [MonoPInvokeCallback(typeof(Native.FinishCallback))]
        private static void OnFinish(IntPtr userData, uint status, uint reason)
        {
            GCHandle gch = default(GCHandle);
            StreamCallbacks cb = null;
            t_depth++;
            try
            {
                gch = GCHandle.FromIntPtr(userData);
                cb = (StreamCallbacks)gch.Target;
                if (cb.OnFinish != null) cb.OnFinish((Status)status, (FinishReason)reason);
            }
            catch (Exception e)
            {
                if (cb != null && cb.Thrown == null) cb.Thrown = e;
            }
            finally
            {
                // minerva never touches user_data again: release it here, exactly once.
                Free(ref gch);
                t_depth--;
            }
        }

        [MonoPInvokeCallback(typeof(Native.ProgressCallback))]
        private static uint OnProgress(IntPtr userData, float progress)
        {
            ProgressState st = null;
            t_depth++;
            try
            {
                st = (ProgressState)GCHandle.FromIntPtr(userData).Target;
                return st.OnProgress(progress) ? Native.Continue : Native.Stop;
            }
            catch (Exception e)
            {
                if (st != null && st.Thrown == null) st.Thrown = e;
                return Native.Stop;
            }
            finally
            {
                t_depth--;
            }
        }

        [ThreadStatic] private static int t_logDepth;

        internal static bool InsideLogHandler { get { return t_logDepth > 0; } }

        [MonoPInvokeCallback(typeof(Native.LogCallback))]
        private static void OnLog(IntPtr userData, uint level, IntPtr message)
        {
            t_logDepth++;
            try
            {
                Action<LogLevel, string> h = LogHandler;
                if (h != null) h((LogLevel)level, Utf8.FromNative(message));
            }
            catch (Exception)
            {
                // A log handler's exception has nowhere to go; it must not reach minerva.
            }
            finally
            {
                t_logDepth--;
            }
        }
    }
}
