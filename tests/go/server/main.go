// Command server is a Go net/http server for faultline's tests: the server side of
// Go's standard library (HTTP/1.1, and HTTP/2 negotiated by ALPN over TLS), with
// handlers that fail the ways real Go services do. Standard library only.
//
// It listens on 127.0.0.1 with ports chosen by the kernel and prints one JSON line on
// stdout naming them: {"tls":"127.0.0.1:P","plain":"127.0.0.1:Q"}.
package main

import (
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
)

func handlers() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintln(w, "ok")
	})
	// A panic in a handler: net/http recovers it; on HTTP/1.1 it closes the
	// connection without a response, on HTTP/2 it resets the stream with
	// INTERNAL_ERROR (h2_bundle.go, handlerPanicRST).
	mux.HandleFunc("/panic", func(w http.ResponseWriter, r *http.Request) {
		panic("faultline test server: /panic")
	})
	// Declares more body than it writes, then returns: the answer is cut short.
	mux.HandleFunc("/cut", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Content-Length", "1000")
		w.WriteHeader(http.StatusOK)
		fmt.Fprint(w, "short body")
	})
	mux.HandleFunc("/503", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
	})
	return mux
}

func main() {
	cert := flag.String("cert", "", "PEM certificate chain for the TLS listener")
	key := flag.String("key", "", "PEM private key for the TLS listener")
	flag.Parse()
	if *cert == "" || *key == "" {
		log.Fatal("-cert and -key are required")
	}
	pair, err := tls.LoadX509KeyPair(*cert, *key)
	if err != nil {
		log.Fatalf("load key pair: %v", err)
	}
	plainLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatalf("listen: %v", err)
	}
	tlsLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatalf("listen: %v", err)
	}
	mux := handlers()
	// Panics are the point of /panic: keep their stack traces out of the way.
	quiet := log.New(os.Stderr, "goserver: ", 0)
	plain := &http.Server{Handler: mux, ErrorLog: quiet}
	// TLSConfig with NextProtos unset: ServeTLS configures h2 and http/1.1 itself.
	secure := &http.Server{
		Handler:   mux,
		ErrorLog:  quiet,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{pair}},
	}
	errs := make(chan error, 2)
	go func() { errs <- plain.Serve(plainLn) }()
	go func() { errs <- secure.ServeTLS(tlsLn, "", "") }()
	addrs, _ := json.Marshal(map[string]string{
		"tls":   tlsLn.Addr().String(),
		"plain": plainLn.Addr().String(),
	})
	fmt.Println(string(addrs))
	log.Fatal(<-errs)
}
