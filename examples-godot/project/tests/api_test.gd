# The MinervaEngine class from GDScript, against the real model: run headless with
#   godot3-server --path <project> -s res://tests/api_test.gd
# Prints one "ok - ..." or "not ok - ..." line per check and quits with 0 if all passed.
# (The misuse checks make the library print Godot errors on stderr: that is expected.)
extends SceneTree

const MinervaEngine = preload("res://minerva/minerva_engine.gdns")
const ERR_INVALID_ARGUMENT := 1
const ERR_IO := 2
const ERR_CANCELLED := 6
const ERR_TIMEOUT := 7
const ERR_BACKEND := 8

var passed := 0
var failed := 0


func check(ok: bool, what: String) -> void:
	if ok:
		passed += 1
		print("ok - " + what)
	else:
		failed += 1
		print("not ok - " + what)


# Pulls a stream to its end as a frame loop would, a few milliseconds apart; "" on timeout.
func pull_all(engine, id: int, limit_ms := 60000) -> String:
	var text := ""
	var start := OS.get_ticks_msec()
	while not engine.is_finished(id):
		text += engine.read(id)
		if OS.get_ticks_msec() - start > limit_ms:
			return ""
		OS.delay_msec(2)
	return text


# A local port where nothing listens: one a server could listen on, closed again (Godot 3's
# TCP_Server cannot tell which port it got for 0).
func closed_port() -> int:
	var server := TCP_Server.new()
	for i in range(100):
		var port := 20000 + randi() % 30000
		if server.listen(port, "127.0.0.1") == OK:
			server.stop()
			return port
	return 1


# One line for the report: newlines escaped, at most 80 characters.
func short(text: String) -> String:
	var t := text.strip_edges().c_escape()
	return t if t.length() <= 80 else t.substr(0, 77) + "..."


func greedy(extra := {}) -> Dictionary:
	var p := {"max_tokens": 16, "temperature": 0.0, "cache_prompt": false}
	for k in extra:
		p[k] = extra[k]
	return p


func _init() -> void:
	var model := OS.get_environment("MINERVA_MODEL")
	var chat_model := OS.get_environment("MINERVA_CHAT_MODEL")
	if not MinervaEngine.can_instance():  # the GDNative library did not load: Godot said why
		check(false, "MinervaEngine: the GDNative library did not load (see the errors above)")
		finish()
		return
	var engine = MinervaEngine.new()
	check(engine.version().find("(ABI 1)") > 0, "version: " + engine.version())

	# --- errors carry minerva's status and message ---
	var st: int = engine.open("/nonexistent/model.gguf")
	check(st == ERR_IO and engine.last_status() == ERR_IO and engine.last_error().find("nonexistent") >= 0
			and not engine.is_open(),
		"open of a missing file: status %d (%s), \"%s\"" % [st, engine.status_string(st), short(engine.last_error())])
	st = engine.open(model, {"thread": 1})
	check(st == ERR_INVALID_ARGUMENT and engine.last_error().find("thread") >= 0, "open with an unknown setting is refused")
	st = engine.open(model, {"threads": "two"})
	check(st == ERR_INVALID_ARGUMENT and not engine.is_open(), "open with a setting of the wrong type is refused")
	check(engine.start("Hello") == 0 and engine.last_status() == ERR_INVALID_ARGUMENT, "start before open is refused")
	var port := closed_port()
	st = engine.open(model, {"threads": 1, "rpc_servers": "127.0.0.1:%d" % port})
	check(st == ERR_BACKEND and engine.last_error().find("127.0.0.1:%d" % port) >= 0 and not engine.is_open(),
		"rpc_servers with nothing listening: status %d, \"%s\"" % [st, short(engine.last_error())])
	st = engine.open(model, {"threads": 1, "rpc_servers": "nohostport"})
	check(st == ERR_INVALID_ARGUMENT and engine.last_error().find("nohostport") >= 0,
		"a malformed rpc_servers is refused: \"%s\"" % short(engine.last_error()))

	st = engine.open(model, {"threads": int(max(1, OS.get_processor_count() - 1)), "max_streams": 4, "context_tokens": 512})
	check(st == 0 and engine.is_open(), "open the model" if st == 0 else "open the model: %d %s" % [st, engine.last_error()])
	if st != 0:
		finish()
		return
	var info: Dictionary = engine.info()
	check(info.vocab_size > 0 and info.context_tokens == 512 and info.max_streams == 4 and not info.has_chat_template,
		"info: %s, vocab %d, %d-dim embeddings" % [info.model_description, info.vocab_size, info.embedding_dims])
	check(info.devices.begins_with("CPU: ") if info.device_kind == 0 else info.devices != "", "info devices: " + info.devices)
	check(engine.open(model) == ERR_INVALID_ARGUMENT, "open twice is refused")

	# --- pull mode, greedy, deterministic ---
	var a: int = engine.start("The capital of France is", greedy())
	var text_a := pull_all(engine, a)
	var stats: Dictionary = engine.stats(a)
	check(text_a != "" and engine.status(a) == 0 and engine.error(a) == "" and stats.generated_tokens > 0
			and stats.generated_tokens <= 16,
		"pull mode: %d tokens, \"%s\"" % [stats.generated_tokens, short(text_a)])
	var b: int = engine.start("The capital of France is", greedy())
	var text_b := pull_all(engine, b)
	check(text_a == text_b, "greedy text is deterministic")
	check(engine.free_stream(a) and engine.free_stream(b) and engine.stream_count() == 0, "free_stream")

	# --- stop strings, seed -1 (random), JSON schema ---
	var s: int = engine.start("One, two, three, four", greedy({"max_tokens": 24, "stop": [", seven"]}))
	var text := pull_all(engine, s)
	check(text.find("six") >= 0 and text.find("seven") < 0 and engine.stats(s).finish_reason == 2,
		"stop string: \"%s\", the match not delivered" % short(text))
	engine.free_stream(s)
	s = engine.start("Once upon a time", {"max_tokens": 8, "seed": -1})
	check(s != 0 and pull_all(engine, s) != "" and engine.status(s) == 0, "seed -1 (MINERVA_SEED_RANDOM)")
	engine.free_stream(s)
	var schema := '{"type": "object", "properties": {"name": {"type": "string", "maxLength": 12}, "age": {"type": "integer"}}, "required": ["name", "age"]}'
	s = engine.start("A knight, described as JSON:", greedy({"max_tokens": 48, "json_schema": schema}))
	text = pull_all(engine, s)
	var parsed := JSON.parse(text)
	check(parsed.error == OK and typeof(parsed.result) == TYPE_DICTIONARY and parsed.result.has("name")
			and parsed.result.has("age"), "json_schema: %s" % short(text))
	engine.free_stream(s)
	check(engine.start("x", {"json_schema": "{not json"}) == 0 and engine.last_status() == ERR_INVALID_ARGUMENT
			and engine.last_error() != "", "a bad schema is refused: " + short(engine.last_error()))
	check(engine.start("x", {"max_tokens": -1}) == 0 and engine.last_status() == ERR_INVALID_ARGUMENT,
		"max_tokens -1 is refused")
	check(engine.start("x", {"temperature": "hot"}) == 0 and engine.last_status() == ERR_INVALID_ARGUMENT,
		"a setting of the wrong type is refused")
	check(engine.start("x", {"stop": [1]}) == 0, "a stop list that is not Strings is refused")
	check(engine.start(42) == 0 and engine.last_status() == ERR_INVALID_ARGUMENT, "a prompt that is not a String is refused")

	# --- game state: a persona prefilled at level load, the cache saved and loaded ---
	var persona := "You are Ilse, the ferrywoman of the northern lake. She knows every current.\n"
	check(engine.prefill(persona, true) == 0 and engine.info().pinned_tokens > 10,
		"prefill pins a persona: %d tokens" % engine.info().pinned_tokens)
	var line := persona + "Traveller: How much?\nIlse:"
	s = engine.start(line, greedy({"cache_prompt": true}))
	var warm := pull_all(engine, s)
	check(engine.stats(s).cached_prompt_tokens >= engine.info().pinned_tokens - 2,
		"a line after the persona starts from the cache: %d tokens cached" % engine.stats(s).cached_prompt_tokens)
	engine.free_stream(s)
	var cache_path := ProjectSettings.globalize_path("user://minerva-test.cache")
	check(engine.save_cache(cache_path) == 0, "save_cache to " + cache_path)
	var other = MinervaEngine.new()
	other.open(model, {"threads": 1, "max_streams": 4, "context_tokens": 512})
	check(other.load_cache(cache_path) == 0 and other.info().pinned_tokens == engine.info().pinned_tokens,
		"load_cache into another engine")
	s = other.start(line, greedy({"cache_prompt": true}))
	var loaded := pull_all(other, s)
	check(loaded == warm and other.stats(s).cached_prompt_tokens > 10, "the loaded cache gives the same line")
	other.close()
	check(engine.load_cache("/nonexistent/x.cache") == ERR_IO and engine.prefill(42) == ERR_INVALID_ARGUMENT,
		"load_cache of a missing file, prefill of a non-String: refused")
	Directory.new().remove(cache_path)

	# --- cancel: the stream ends with MINERVA_ERR_CANCELLED ---
	s = engine.start("The history of the world, in great detail:", {"max_tokens": 4000, "ignore_eos": true})
	check(engine.status(s) == ERR_TIMEOUT, "status while running is MINERVA_ERR_TIMEOUT")
	check(engine.cancel(s), "cancel")
	pull_all(engine, s)
	check(engine.status(s) == ERR_CANCELLED and engine.stats(s).finish_reason == 4,
		"a cancelled stream ends with status %d (%s)" % [engine.status(s), engine.status_string(engine.status(s))])

	# --- ids that are gone are refused, never a crash ---
	check(engine.free_stream(s), "free a cancelled stream")
	check(not engine.free_stream(s) and engine.last_status() == ERR_INVALID_ARGUMENT, "free_stream twice is refused")
	check(engine.read(s) == "" and engine.last_status() == ERR_INVALID_ARGUMENT, "read of a freed id is refused")
	check(engine.status(123456) == ERR_INVALID_ARGUMENT and engine.is_finished(123456), "an unknown id is refused")
	check(engine.read("1") == "" and engine.last_status() == ERR_INVALID_ARGUMENT, "an id that is not an int is refused")

	# --- lifetimes: many streams, freed mid-generation in any order, and engines dropped with live streams ---
	var ids := []
	for i in range(12):
		ids.append(engine.start("Character %d says:" % i, {"max_tokens": 32, "seed": i}))
	check(not (0 in ids) and engine.stream_count() == 12, "12 streams at once (4 decoded together, the rest queued)")
	for round_ in range(3):
		OS.delay_msec(20)
		for id in ids:
			engine.read(id)
	var order := [5, 0, 11, 3, 7, 1, 9, 2, 10, 4, 8, 6]
	var freed_ok := true
	for i in order:
		freed_ok = freed_ok and engine.free_stream(ids[i])
	check(freed_ok and engine.stream_count() == 0, "free 12 streams mid-generation in any order")
	for i in range(6):
		engine.start("Another line %d:" % i, {"max_tokens": 64})
	engine.close()
	check(not engine.is_open() and engine.stream_count() == 0, "close with 6 live streams")
	engine.close()
	check(engine.start("x") == 0 and engine.last_status() == ERR_INVALID_ARGUMENT, "close twice; start after close is refused")
	var dropped = MinervaEngine.new()
	dropped.open(model, {"threads": 1, "context_tokens": 256})
	for i in range(4):
		dropped.start("Dropped %d:" % i, {"max_tokens": 64})
	dropped = null  # the last reference: the destructor frees the streams and the engine
	check(true, "an engine dropped with 4 live streams")

	# --- chat and tool calls on the chat model ---
	var chat = MinervaEngine.new()
	st = chat.open(chat_model, {"threads": int(max(1, OS.get_processor_count() - 1)), "context_tokens": 1024})
	check(st == 0 and chat.info().has_chat_template, "open the chat model")
	if st == 0:
		var msgs := [{"role": "system", "content": "You are Bram, the guard of the town gate."},
			{"role": "user", "content": "Who are you?"}]
		var c: int = chat.start_chat(msgs, greedy({"max_tokens": 24}))
		text = pull_all(chat, c)
		check(c != 0 and text != "" and chat.status(c) == 0, "start_chat: \"%s\"" % short(text))
		check(chat.tool_calls(c) == "[]", "no tool calls without tools")
		chat.free_stream(c)
		var tools := '[{"type": "function", "function": {"name": "walk_to", "description": "Walk to a place", "parameters": {"type": "object", "properties": {"place": {"type": "string", "enum": ["gate", "tavern", "barracks"]}}, "required": ["place"]}}}]'
		msgs = [{"role": "user", "content": "A thief ran toward the tavern! Go there!"}]
		c = chat.start_chat(msgs, greedy({"max_tokens": 160, "tools_json": tools, "tool_choice": 2}))
		var running_calls: String = chat.tool_calls(c)
		var refused: bool = running_calls == "" and chat.last_status() == ERR_INVALID_ARGUMENT
		pull_all(chat, c)
		var calls := JSON.parse(chat.tool_calls(c))
		check(calls.error == OK and typeof(calls.result) == TYPE_ARRAY and calls.result.size() >= 1
				and calls.result[0].name == "walk_to" and calls.result[0].arguments.has("place"),
			"tool_choice REQUIRED: %s" % short(chat.tool_calls(c)))
		check(refused, "tool_calls before the end is refused")
		check(chat.start_chat([{"role": "wizard", "content": "hi"}]) == 0 and chat.last_status() == ERR_INVALID_ARGUMENT,
			"an unknown role is refused: " + short(chat.last_error()))
		check(chat.start_chat(["hi"]) == 0 and chat.last_status() == ERR_INVALID_ARGUMENT, "a message that is not a Dictionary is refused")
		chat.free_stream(c)
		# 0.3: reasoning kept apart. DeepSeek R1's template opens <think> in its generation prompt;
		# a grammar literal makes the model write a reply with reasoning.
		var f := File.new()
		if f.open(OS.get_environment("MINERVA_REASONING_TEMPLATE"), File.READ) == OK:
			var r1 := f.get_as_text()
			f.close()
			c = chat.start_chat([{"role": "user", "content": "Weather?"}], greedy({"max_tokens": 64,
				"chat_template": r1, "template_kwargs_json": '{"enable_thinking": true}',
				"grammar": 'root ::= "Sun or rain.\\n</think>\\n\\nIt is sunny."'}))
			text = pull_all(chat, c)
			var reasoning: String = chat.reasoning(c)
			check(c != 0 and "It is sunny." in text and not ("Sun or rain" in text) and not ("think" in text)
					and "Sun or rain." in reasoning and not ("think" in reasoning),
				"reasoning kept apart: text \"%s\", reasoning \"%s\"" % [short(text), short(reasoning)])
			chat.free_stream(c)
			c = chat.start_chat([{"role": "user", "content": "Weather?"}], greedy({"max_tokens": 64,
				"chat_template": r1, "reasoning": 1,
				"grammar": 'root ::= "Sun or rain.\\n</think>\\n\\nIt is sunny."'}))
			text = pull_all(chat, c)
			check(c != 0 and "</think>" in text and chat.reasoning(c) == "", "reasoning NONE keeps it in the text")
			chat.free_stream(c)
			check(chat.start_chat([{"role": "user", "content": "hi"}], {"template_kwargs_json": "[1]"}) == 0
					and chat.last_status() == ERR_INVALID_ARGUMENT and "template_kwargs_json" in chat.last_error(),
				"bad template_kwargs_json is refused: " + short(chat.last_error()))
		else:
			check(false, "read the template at MINERVA_REASONING_TEMPLATE")
	chat.close()
	finish()


func finish() -> void:
	print("%d passed, %d failed" % [passed, failed])
	quit(0 if failed == 0 else 1)
