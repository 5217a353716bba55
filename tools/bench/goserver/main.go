// A file server from Go's standard library only (net/http.FileServer: ServeContent's Range,
// multipart and conditional handling, sendfile for whole-file copies), for the side-by-side
// benchmark in ../bench_stream.py. Usage: goserver -addr 127.0.0.1:PORT -root DIR
package main

import (
	"flag"
	"log"
	"net/http"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address")
	root := flag.String("root", ".", "folder to serve")
	flag.Parse()
	log.Fatal(http.ListenAndServe(*addr, http.FileServer(http.Dir(*root))))
}
