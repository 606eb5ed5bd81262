// Command client is a Go net/http client for faultline's tests: the HTTP stack of
// vegeta and k6 (net/http, crypto/tls, the bundled HTTP/2 transport), built stripped
// as their release binaries are. Standard library only.
//
// It sends -n GET requests to -url from -c workers and prints one JSON line on stdout:
//
//	{"requests":50,"ok":50,"responses":50,"errors":{},"status":{"200":50},
//	 "protos":{"HTTP/2.0":50},"conns_new":5,"conns_reused":45,"local_addrs":5}
//
// ok counts 2xx answers read to their end; responses counts answers of any status
// read to their end; errors counts every failed request by its error text (URL
// removed, stream IDs replaced by N); conns_new and conns_reused come from
// httptrace's GotConn, local_addrs counts distinct client ports. It exits 0 even when
// requests fail; 2 on bad flags.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"sync"
	"time"
)

type summary struct {
	Requests    int            `json:"requests"`
	Ok          int            `json:"ok"`
	Responses   int            `json:"responses"`
	Errors      map[string]int `json:"errors"`
	Status      map[string]int `json:"status"`
	Protos      map[string]int `json:"protos"`
	ConnsNew    int            `json:"conns_new"`
	ConnsReused int            `json:"conns_reused"`
	LocalAddrs  int            `json:"local_addrs"`
}

type tally struct {
	mu     sync.Mutex
	s      summary
	locals map[string]bool
}

var streamID = regexp.MustCompile(`stream ID \d+`)

// describe is the error text without the per-request parts (the URL, stream IDs).
func describe(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return streamID.ReplaceAllString(err.Error(), "stream ID N")
}

func (t *tally) gotConn(info httptrace.GotConnInfo) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if info.Reused {
		t.s.ConnsReused++
	} else {
		t.s.ConnsNew++
	}
	if info.Conn != nil {
		t.locals[info.Conn.LocalAddr().String()] = true
	}
}

func (t *tally) record(resp *http.Response, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.s.Requests++
	if err != nil {
		t.s.Errors[describe(err)]++
		return
	}
	t.s.Responses++
	t.s.Status[strconv.Itoa(resp.StatusCode)]++
	t.s.Protos[resp.Proto]++
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		t.s.Ok++
	}
}

// one sends a request and reads the answer to its end.
func one(client *http.Client, target string, t *tally) {
	trace := &httptrace.ClientTrace{GotConn: t.gotConn}
	req, err := http.NewRequest(http.MethodGet, target, nil)
	if err != nil {
		t.record(nil, err)
		return
	}
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
	resp, err := client.Do(req)
	if err != nil {
		t.record(nil, err)
		return
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		err = fmt.Errorf("read body: %w", err)
		t.record(nil, err)
		return
	}
	t.record(resp, nil)
}

func tlsConfig(insecure bool, cacert, serverName string) (*tls.Config, error) {
	cfg := &tls.Config{InsecureSkipVerify: insecure, ServerName: serverName}
	if cacert != "" {
		pem, err := os.ReadFile(cacert)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("no certificate in %s", cacert)
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

func main() {
	target := flag.String("url", "", "URL to GET (required)")
	n := flag.Int("n", 1, "number of requests")
	c := flag.Int("c", 1, "concurrent workers")
	insecure := flag.Bool("insecure", false, "skip certificate verification")
	cacert := flag.String("cacert", "", "PEM file of the CA to trust instead of the system's")
	serverName := flag.String("servername", "", "TLS server name (SNI and verification)")
	h2 := flag.Bool("h2", false, "offer HTTP/2 by ALPN over TLS (ForceAttemptHTTP2)")
	timeout := flag.Duration("timeout", 10*time.Second, "per-request timeout")
	flag.Parse()
	if *target == "" || *n < 0 || *c < 1 {
		flag.Usage()
		os.Exit(2)
	}
	cfg, err := tlsConfig(*insecure, *cacert, *serverName)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	// A transport with its own TLSClientConfig speaks HTTP/1.1 only unless
	// ForceAttemptHTTP2 is set (net/http transport.go, onceSetNextProtoDefaults).
	transport := &http.Transport{
		TLSClientConfig:     cfg,
		ForceAttemptHTTP2:   *h2,
		MaxIdleConnsPerHost: *c,
	}
	client := &http.Client{Transport: transport, Timeout: *timeout}
	t := &tally{
		s: summary{
			Errors: map[string]int{},
			Status: map[string]int{},
			Protos: map[string]int{},
		},
		locals: map[string]bool{},
	}
	jobs := make(chan struct{}, *n)
	for i := 0; i < *n; i++ {
		jobs <- struct{}{}
	}
	close(jobs)
	var wg sync.WaitGroup
	for w := 0; w < *c; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range jobs {
				one(client, *target, t)
			}
		}()
	}
	wg.Wait()
	t.s.LocalAddrs = len(t.locals)
	out, _ := json.Marshal(t.s)
	fmt.Println(string(out))
}
