"""Structured output on real-world JSON schemas: for each schema, a stream with that
`json_schema`, greedy, and what came of it: refused at the start (and why), valid output (it
parses and validates against the schema), invalid output, cut by max_tokens, too slow (stopped at
the time limit), and whether llama.cpp warned that it loosened a constraint while converting the
schema. Run by scripts/schema-coverage.sh, which fetches the schemas and the validator.

    python3 schema-coverage.py SCHEMA_DIR [--max-tokens N] [--seconds S] [--only NAME,...]
                               [--lenient] [--suite]

With --suite, SCHEMA_DIR holds files of the official JSON Schema Test Suite
(tests/json-schema-suite/): every group's schema is one entry, "file#index", and a summary per
file follows the summary of all.
"""

import argparse
import json
import os
import sys
import tempfile
import time

import jsonschema
import minerva


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("schemas")
    ap.add_argument("--max-tokens", type=int, default=192)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--only", default="")
    ap.add_argument("--lenient", action="store_true",
                    help='add "x-guidance": {"lenient": true, "coerce_one_of": true} to each '
                         "schema's root: keywords llguidance cannot enforce are accepted and left "
                         "unchecked, oneOf is read as anyOf")
    ap.add_argument("--suite", action="store_true",
                    help="SCHEMA_DIR is the JSON Schema Test Suite: one entry per group")
    args = ap.parse_args()

    names = sorted(f for f in os.listdir(args.schemas) if f.endswith(".json"))
    if args.only:
        keep = set(args.only.split(","))
        names = [n for n in names if n[:-5] in keep]
    entries = []  # (name, schema text, prompt)
    for name in names:
        with open(os.path.join(args.schemas, name), encoding="utf-8") as f:
            text = f.read()
        if args.suite:
            for i, group in enumerate(json.loads(text)):
                entries.append((f"{name[:-5]}#{i}", json.dumps(group["schema"]),
                                "Data, in JSON:\n"))
        else:
            entries.append((name[:-5], text, f"A {name[:-5]} configuration file, in JSON:\n"))

    warnings: list = []
    minerva.set_log_callback(lambda level, msg: warnings.append(msg), "warn")

    rows = []
    with minerva.Engine(os.environ["MINERVA_MODEL"], max_streams=1,
                        context_tokens=1024) as engine:
        plain_rate = rate_of(engine, "A configuration file:\n", {}, args)
        for name, text, prompt in entries:
            schema = json.loads(text)
            if args.lenient and isinstance(schema, dict):
                given = json.loads(text)
                given["x-guidance"] = {"lenient": True, "coerce_one_of": True}
                text = json.dumps(given)
            warnings.clear()
            row = {"schema": name, "kb": len(text) // 1024}
            t0 = time.monotonic()
            try:
                # llama.cpp's schema conversion says what it loosened on stderr, not in the log.
                with stderr_into(warnings):
                    s = engine.stream(prompt, json_schema=text, max_tokens=args.max_tokens,
                                      temperature=0, cache_prompt=False)
            except minerva.Error as e:
                why = " ".join(str(e).split()).replace("minerva_stream_new: json_schema: ", "")
                row.update(outcome="refused", why=why[:200])
                rows.append(row)
                print(fmt(row), flush=True)
                continue
            out, slow = [], False
            with s:
                for piece in s:
                    out.append(piece)
                    if time.monotonic() - t0 > args.seconds:
                        slow = True
                        s.cancel()
                        break
                st = s.stats()
            row["tokens"] = st.generated_tokens
            row["t/s"] = st.tokens_per_second
            row["loosened"] = sum(w.count("accepting any") for w in warnings)
            output = "".join(out)
            if slow:
                row["outcome"] = "slow"
            elif st.finish_reason == minerva.FinishReason.LENGTH:
                row["outcome"] = "cut"
            else:
                row["outcome"] = verdict(output, schema)
            if row["outcome"] in ("invalid", "cut", "slow"):
                row["why"] = verdict_detail(output, schema)
            rows.append(row)
            print(fmt(row), flush=True)

    print()
    print(f"plain stream on this engine: {plain_rate:.1f} t/s")
    total = len(rows)
    for outcome in ("valid", "invalid", "cut", "slow", "refused"):
        n = sum(r["outcome"] == outcome for r in rows)
        print(f"{outcome:>8}: {n} of {total}")
    loosened = [r["schema"] for r in rows if r.get("loosened")]
    print(f"loosened by the conversion (llama.cpp warned): {len(loosened)} of {total}"
          + (f" ({', '.join(loosened)})" if loosened else ""))
    if args.suite:
        print()
        print(f"{'file':<24} {'schemas':>7} {'accepted':>8} {'valid':>5} {'invalid':>7} "
              f"{'cut':>4} {'refused':>7}")
        files = sorted({r["schema"].split("#")[0] for r in rows})
        for f in files:
            rs = [r for r in rows if r["schema"].split("#")[0] == f]
            n = lambda o: sum(r["outcome"] == o for r in rs)
            print(f"{f:<24} {len(rs):>7} {len(rs) - n('refused'):>8} "
                  f"{n('valid') + n('valid?'):>5} {n('invalid'):>7} {n('cut'):>4} "
                  f"{n('refused'):>7}")
    rates = [r["t/s"] for r in rows if r.get("t/s")]
    if rates and plain_rate > 0:
        rates.sort()
        print(f"constrained rate against a plain stream's: median {rates[len(rates) // 2] / plain_rate:.2f}x, "
              f"lowest {rates[0] / plain_rate:.2f}x")
    return 0


class stderr_into:
    """Collects what is written to file descriptor 2 (C code's stderr) while it is open."""

    def __init__(self, lines: list) -> None:
        self.lines = lines

    def __enter__(self):
        sys.stderr.flush()
        self.tmp = tempfile.TemporaryFile()
        self.saved = os.dup(2)
        os.dup2(self.tmp.fileno(), 2)
        return self

    def __exit__(self, *exc):
        os.dup2(self.saved, 2)
        os.close(self.saved)
        self.tmp.seek(0)
        text = self.tmp.read().decode("utf-8", "replace")
        self.tmp.close()
        self.lines.extend(text.splitlines())
        # Pass the rest on.
        sys.stderr.write("".join(l + "\n" for l in text.splitlines()
                                 if "JSON schema conversion" not in l))
        return False


def rate_of(engine, prompt, params, args) -> float:
    with engine.stream(prompt, max_tokens=args.max_tokens, temperature=0, ignore_eos=True,
                       **params) as s:
        s.read_all()
        return s.stats().tokens_per_second


def verdict(output: str, schema) -> str:
    try:
        value = json.loads(output)
    except ValueError:
        return "invalid"
    try:
        cls = jsonschema.validators.validator_for(schema)
        cls(schema).validate(value)
    except jsonschema.ValidationError:
        return "invalid"
    except Exception:  # a schema the validator cannot use (remote $ref, ...)
        return "valid?"
    return "valid"


def verdict_detail(output: str, schema) -> str:
    try:
        value = json.loads(output)
    except ValueError as e:
        tail = output[-40:].replace("\n", "\\n")
        return f"not JSON ({e.msg} at {e.pos}); ends with {tail!r}"
    try:
        jsonschema.validators.validator_for(schema)(schema).validate(value)
    except jsonschema.ValidationError as e:
        return f"schema: {e.message[:90]}"
    except Exception as e:
        return f"validator: {type(e).__name__}"
    return ""


def fmt(r) -> str:
    rate = f"{r['t/s']:6.1f} t/s" if r.get("t/s") else " " * 10
    extra = f"  loosened {r['loosened']}x" if r.get("loosened") else ""
    why = f"  {r['why']}" if r.get("why") else ""
    return (f"{r['schema']:<24} {r['kb']:>5} KB  {r['outcome']:<8} {r.get('tokens', 0):>4} tokens "
            f"{rate}{extra}{why}")


if __name__ == "__main__":
    sys.exit(main())
