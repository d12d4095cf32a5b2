# Two characters talk. Each line is one minerva stream; its text is pulled once a frame in
# _process with MinervaEngine.read(), which never waits. When one character finishes, the other
# answers, prompted with the line just said. The model loads on a Thread, so no frame ever waits
# for minerva, and every frame's duration is measured (OS.get_ticks_usec) to prove it.
#
# Headless (godot3-server) it quits when the dialogue ends, with exit code 0 if text arrived and
# no frame took longer than max_frame_ms, 1 otherwise; with a window it stays open.
extends Node2D

const MinervaEngine = preload("res://minerva/minerva_engine.gdns")

export var model_path := ""           # empty: the MINERVA_MODEL environment variable
export var lines_to_say := 6          # lines generated after the opening one
export var max_tokens := 32           # per line
export var max_frame_ms := 250.0      # a longer frame counts as a stall
export var time_limit_s := 120.0

const SETTING := "A scene from a fantasy novel. In the village forge, on a stormy evening, Tom, a young traveler, asks Mira, the old blacksmith, for a sword to fight the dragon of the mountain.\n\n"
const OPENING := "Good evening! I need a sword that can cut through dragon scales."

var engine
var loader: Thread
var load_lock := Mutex.new()
var load_status := -1                 # set by the loader thread when open() returns

var who := ["Tom", "Mira"]
var speaking := 0                     # index into who
var previous_line := OPENING          # what the other one just said
var stream_id := 0
var line := ""
var lines_said := 0
var text_bytes := 0
var tokens := 0
var failures := []

var frames := 0
var frames_with_text := 0
var last_frame_us := 0
var longest_frame_us := 0
var longest_pull_us := 0
var start_ms := 0
var finished := false


func _ready() -> void:
	start_ms = OS.get_ticks_msec()
	if not MinervaEngine.can_instance():  # the GDNative library did not load: Godot said why
		fail("MinervaEngine: the GDNative library did not load (see the errors above)")
		return
	engine = MinervaEngine.new()
	var path := model_path if model_path != "" else OS.get_environment("MINERVA_MODEL")
	if path == "":
		fail("no model: set MINERVA_MODEL or model_path")
		return
	print("minerva %s, model %s" % [engine.version(), path])
	# A game loads on a thread, so the frame loop keeps running: open() blocks while the model
	# loads. Only the loader thread touches the engine until wait_to_finish() below.
	var threads := int(max(1, OS.get_processor_count() - 1))  # leave a core to the game
	loader = Thread.new()
	loader.start(self, "_load", [path, {"threads": threads, "max_streams": 2, "context_tokens": 512}])
	$Tom.text = "Tom: " + OPENING


func _load(args: Array) -> void:
	var status: int = engine.open(args[0], args[1])
	load_lock.lock()
	load_status = status
	load_lock.unlock()


func _process(_delta: float) -> void:
	var now := OS.get_ticks_usec()
	if last_frame_us > 0:
		frames += 1
		longest_frame_us = int(max(longest_frame_us, now - last_frame_us))
	last_frame_us = now
	if finished:
		return
	if OS.get_ticks_msec() - start_ms > time_limit_s * 1000:
		fail("the dialogue did not end within %d s" % time_limit_s)
		return
	if loader != null:
		load_lock.lock()
		var status := load_status
		load_lock.unlock()
		if status < 0:
			return  # still loading; the frame goes on
		loader.wait_to_finish()
		loader = null
		if status != 0:
			fail("open failed (%d): %s" % [status, engine.last_error()])
			return
		var info: Dictionary = engine.info()
		print("engine: %s on %s, %d threads" % [info.model_description, info.device_name, info.threads])
		$Status.text = ""
		speaking = 1  # Mira answers the opening line
		start_line()
		return

	# --- once a frame: take whatever text is ready, never wait ---
	var t0 := OS.get_ticks_usec()
	var piece: String = engine.read(stream_id)
	var done: bool = engine.is_finished(stream_id)
	longest_pull_us = int(max(longest_pull_us, OS.get_ticks_usec() - t0))
	# The read that reports the end usually carries the line's last text: take it before
	# end_line() hands the turn (and `line`) to the other character.
	if piece != "":
		frames_with_text += 1
		line += piece
		text_bytes += piece.to_utf8().size()
		get_node(who[speaking]).text = "%s: %s" % [who[speaking], line.strip_edges()]
	if done:
		end_line()


# The prompt: the setting, the line just said by the other, and this character's name.
func start_line() -> void:
	var other: String = who[1 - speaking]
	var prompt := "%s%s: %s\n%s:" % [SETTING, other, previous_line, who[speaking]]
	line = ""
	get_node(who[speaking]).text = who[speaking] + ": ..."
	stream_id = engine.start(prompt, {"max_tokens": max_tokens, "temperature": 0.0, "repeat_penalty": 1.2, "stop": ["\n"]})
	if stream_id == 0:
		fail("start failed (%d): %s" % [engine.last_status(), engine.last_error()])


func end_line() -> void:
	var status: int = engine.status(stream_id)
	var stats: Dictionary = engine.stats(stream_id)
	tokens += stats.generated_tokens
	if status != 0:
		failures.append("line %d ended with %s: %s" % [lines_said + 1, engine.status_string(status), engine.error(stream_id)])
	engine.free_stream(stream_id)
	stream_id = 0
	var said := line.strip_edges()
	print("%s: %s" % [who[speaking], said])
	lines_said += 1
	previous_line = said if said != "" else "..."
	if lines_said >= lines_to_say:
		finish()
		return
	speaking = 1 - speaking
	start_line()


func fail(why: String) -> void:
	failures.append(why)
	finish()


func finish() -> void:
	if finished:
		return
	finished = true
	if loader != null:
		loader.wait_to_finish()  # open() returns before the thread ends
		loader = null
	if stream_id != 0:
		engine.free_stream(stream_id)
	if engine != null:
		engine.close()
	var longest_ms := longest_frame_us / 1000.0
	var frames_ok := frames > 0 and longest_ms <= max_frame_ms
	var text_ok := text_bytes > 0 and lines_said == lines_to_say
	var report := [
		"%s - dialogue: %d of %d lines, %d bytes of text, %d tokens" % [ok_word(text_ok and failures.empty()), lines_said, lines_to_say, text_bytes, tokens],
		"%s - frame loop: %d frames in %.1f s, longest frame %.1f ms (bound %d ms), %d frames with text, longest pull %.2f ms" % [ok_word(frames_ok), frames, (OS.get_ticks_msec() - start_ms) / 1000.0, longest_ms, max_frame_ms, frames_with_text, longest_pull_us / 1000.0],
	]
	for r in report:
		print(r)
	for f in failures:
		print("  failure: " + f)
	$Status.text = PoolStringArray(report).join("\n")
	var passed := text_ok and frames_ok and failures.empty()
	if OS.get_name() == "Server" or "--quit-when-done" in OS.get_cmdline_args():
		get_tree().quit(0 if passed else 1)


func ok_word(ok: bool) -> String:
	return "ok" if ok else "not ok"
