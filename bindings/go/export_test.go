package minerva

// LiveHandles is the number of runtime/cgo handles the binding holds (streams with callbacks
// still running, the log callback, a progress callback during Open). For the tests only.
func LiveHandles() int64 { return liveHandles.Load() }
