package main

import (
	"net/http"
	"net/http/pprof"
)

// profileMux serves Go's pprof under /debug/pprof/ on --profile-port
// (--enable-profiling), as daprd's profiling port does: go tool pprof
// http://127.0.0.1:7777/debug/pprof/heap.
func profileMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}
