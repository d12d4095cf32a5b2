// A small strict JSON parser for the tests (independent of the binding's own reader):
// objects become Dictionary<string, object>, arrays List<object>, numbers double.
using System;
using System.Collections.Generic;
using System.Globalization;
using System.Text;

namespace Minerva.Tests
{
    internal sealed class MiniJson
    {
        private readonly string _s;
        private int _i;

        private MiniJson(string s) { _s = s; }

        public static object Parse(string s)
        {
            var p = new MiniJson(s);
            object v = p.Value();
            p.Ws();
            if (p._i != s.Length) throw p.Bad("trailing text");
            return v;
        }

        private Exception Bad(string why) { return new FormatException("bad JSON (" + why + ") at " + _i + ": " + _s); }

        private void Ws()
        {
            while (_i < _s.Length && " \t\r\n".IndexOf(_s[_i]) >= 0) _i++;
        }

        private char Peek()
        {
            Ws();
            if (_i >= _s.Length) throw Bad("end");
            return _s[_i];
        }

        private void Eat(char c)
        {
            if (Peek() != c) throw Bad("expected " + c);
            _i++;
        }

        private object Value()
        {
            char c = Peek();
            if (c == '{')
            {
                _i++;
                var d = new Dictionary<string, object>();
                if (Peek() == '}') { _i++; return d; }
                for (;;)
                {
                    if (Peek() != '"') throw Bad("key");
                    string k = Str();
                    Eat(':');
                    d[k] = Value();
                    if (Peek() == ',') { _i++; continue; }
                    Eat('}');
                    return d;
                }
            }
            if (c == '[')
            {
                _i++;
                var l = new List<object>();
                if (Peek() == ']') { _i++; return l; }
                for (;;)
                {
                    l.Add(Value());
                    if (Peek() == ',') { _i++; continue; }
                    Eat(']');
                    return l;
                }
            }
            if (c == '"') return Str();
            if (Lit("true")) return true;
            if (Lit("false")) return false;
            if (Lit("null")) return null;
            int start = _i;
            while (_i < _s.Length && "+-0123456789.eE".IndexOf(_s[_i]) >= 0) _i++;
            double num;
            if (_i == start || !double.TryParse(_s.Substring(start, _i - start), NumberStyles.Float,
                    CultureInfo.InvariantCulture, out num))
                throw Bad("value");
            return num;
        }

        private bool Lit(string w)
        {
            if (string.CompareOrdinal(_s, _i, w, 0, w.Length) != 0) return false;
            _i += w.Length;
            return true;
        }

        private string Str()
        {
            Eat('"');
            var sb = new StringBuilder();
            while (_i < _s.Length)
            {
                char c = _s[_i++];
                if (c == '"') return sb.ToString();
                if (c < 0x20) throw Bad("control character in string");
                if (c != '\\') { sb.Append(c); continue; }
                char e = _s[_i++];
                switch (e)
                {
                    case '"': case '\\': case '/': sb.Append(e); break;
                    case 'n': sb.Append('\n'); break;
                    case 't': sb.Append('\t'); break;
                    case 'r': sb.Append('\r'); break;
                    case 'b': sb.Append('\b'); break;
                    case 'f': sb.Append('\f'); break;
                    case 'u': sb.Append((char)Convert.ToInt32(_s.Substring(_i, 4), 16)); _i += 4; break;
                    default: throw Bad("escape");
                }
            }
            throw Bad("unterminated string");
        }
    }
}
