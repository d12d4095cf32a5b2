// A tiny test runner (no NuGet here): runs every [Test] method of the test classes in the order
// they are declared, prints "ok - name" / "not ok - name" per test and a summary, and exits non-zero
// when one failed. Arguments: names of tests to run (default all).
using System;
using System.Collections;
using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;
using System.Reflection;
using System.Threading;

namespace Minerva.Tests
{
    [AttributeUsage(AttributeTargets.Method)]
    internal sealed class TestAttribute : Attribute { }

    internal sealed class SkipException : Exception
    {
        public SkipException(string why) : base(why) { }
    }

    internal static class Assert
    {
        public static void True(bool cond, string what = "expected true")
        {
            if (!cond) throw new Exception("assertion failed: " + what);
        }

        public static void Equal<T>(T expected, T actual, string what = "")
        {
            if (!EqualityComparer<T>.Default.Equals(expected, actual))
                throw new Exception(string.Format("{0}: expected <{1}>, got <{2}>", what == "" ? "not equal" : what,
                    Show(expected), Show(actual)));
        }

        public static void Near(double expected, double actual, double tolerance, string what = "")
        {
            if (Math.Abs(expected - actual) > tolerance || double.IsNaN(actual))
                throw new Exception(string.Format("{0}: expected {1} +- {2}, got {3}", what, expected, tolerance, actual));
        }

        public static T Throws<T>(Action a, string what = "") where T : Exception
        {
            try
            {
                a();
            }
            catch (T e)
            {
                return e;
            }
            catch (Exception e)
            {
                throw new Exception(string.Format("{0}: expected {1}, got {2}: {3}", what, typeof(T).Name, e.GetType().Name, e.Message), e);
            }
            throw new Exception(string.Format("{0}: expected {1}, nothing thrown", what, typeof(T).Name));
        }

        // A MinervaException with this status.
        public static MinervaException Fails(Status status, Action a, string what = "")
        {
            MinervaException e = Throws<MinervaException>(a, what);
            if (e.Status != status)
                throw new Exception(string.Format("{0}: expected status {1}, got {2}: {3}", what, status, e.Status, e.Message));
            True(!string.IsNullOrEmpty(e.Message), "the exception has a message");
            return e;
        }

        // Polls until cond holds, collecting garbage meanwhile.
        public static void Eventually(Func<bool> cond, int timeoutMs, string what)
        {
            var sw = Stopwatch.StartNew();
            while (!cond())
            {
                if (sw.ElapsedMilliseconds > timeoutMs) throw new Exception("timed out waiting for: " + what);
                GC.Collect();
                GC.WaitForPendingFinalizers();
                Thread.Sleep(5);
            }
        }

        private static string Show(object o)
        {
            if (o == null) return "null";
            var s = o as string;
            if (s != null) return "\"" + s.Replace("\n", "\\n") + "\"";
            var e = o as IEnumerable;
            if (e != null) return "[" + string.Join(", ", e.Cast<object>().Select(Show)) + "]";
            return o.ToString();
        }
    }

    internal static class Runner
    {
        private const int TestTimeoutMs = 180 * 1000;

        private static int Main(string[] args)
        {
            var tests = typeof(Runner).Assembly.GetTypes()
                .SelectMany(t => t.GetMethods(BindingFlags.Static | BindingFlags.Public | BindingFlags.NonPublic))
                .Where(m => m.GetCustomAttributes(typeof(TestAttribute), false).Length > 0)
                .OrderBy(m => m.DeclaringType.Name == "Final" ? 1 : 0)
                .ThenBy(m => m.DeclaringType.Name)
                .ThenBy(m => m.MetadataToken)
                .Where(m => args.Length == 0 || args.Contains(m.Name) || m.DeclaringType.Name == "Final")
                .ToList();
            int passed = 0, failed = 0, skipped = 0;
            var total = Stopwatch.StartNew();
            Console.WriteLine("1.." + tests.Count);
            foreach (MethodInfo m in tests)
            {
                string name = m.Name;
                var watchdog = new Timer(_ =>
                {
                    Console.WriteLine("not ok - {0} # timed out after {1} s", name, TestTimeoutMs / 1000);
                    Console.Out.Flush();
                    Environment.Exit(2);
                }, null, TestTimeoutMs, Timeout.Infinite);
                var sw = Stopwatch.StartNew();
                try
                {
                    m.Invoke(null, null);
                    passed++;
                    Console.WriteLine("ok - {0} ({1} ms)", name, sw.ElapsedMilliseconds);
                }
                catch (TargetInvocationException tie) when (tie.InnerException is SkipException)
                {
                    skipped++;
                    Console.WriteLine("ok - {0} # SKIP {1}", name, tie.InnerException.Message);
                }
                catch (TargetInvocationException tie)
                {
                    failed++;
                    Console.WriteLine("not ok - {0} ({1} ms)", name, sw.ElapsedMilliseconds);
                    foreach (string line in tie.InnerException.ToString().Split('\n'))
                        Console.WriteLine("#   " + line.TrimEnd());
                }
                finally
                {
                    watchdog.Dispose();
                }
                Console.Out.Flush();
            }
            Console.WriteLine("# C#: {0} passed, {1} failed, {2} skipped in {3:F1} s", passed, failed, skipped,
                total.Elapsed.TotalSeconds);
            return failed == 0 ? 0 : 1;
        }
    }
}
