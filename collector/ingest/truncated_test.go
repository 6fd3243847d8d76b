package ingest_test

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/edgeloop/edgeloop/collector/collectortest"
)

// TestTruncatedBodyIsRetried: a batch whose connection ends before its body does (a network
// cut, seen through a proxy that half-closes, so the answer still reaches the node) is not the
// batch's fault. It must be answered with a status the sender retries (408), never with the
// 400 that makes the sender split the batch and dead-letter valid samples. A body that arrives
// whole and does not decode is still a 400.
func TestTruncatedBodyIsRetried(t *testing.T) {
	e := newEnv(t, nil)
	body := batch(t, "edge-a", 0, 20)
	for _, tc := range []struct {
		name   string
		length int // Content-Length sent; 0: chunked
		sent   int // body bytes sent before the half-close
		want   int
	}{
		{"content-length, half the body", len(body), len(body) / 2, http.StatusRequestTimeout},
		{"content-length, no body", len(body), 0, http.StatusRequestTimeout},
		{"chunked, half the body", 0, len(body) / 2, http.StatusRequestTimeout},
		{"content-length, whole truncated batch", len(body) / 2, len(body) / 2, http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code := halfClosedPost(t, strings.TrimPrefix(e.srv.URL, "http://"), body[:tc.sent], tc.length)
			if code != tc.want {
				t.Fatalf("answered %d, want %d", code, tc.want)
			}
		})
	}
}

// halfClosedPost sends a batch request's headers and body as edge-a on a raw connection,
// closes its write side and returns the answer's status.
func halfClosedPost(t *testing.T, addr string, body []byte, length int) int {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	head := "POST /v1/samples HTTP/1.1\r\nHost: collector\r\nContent-Type: application/x-tar\r\nContent-Encoding: zstd\r\n" +
		"Authorization: Bearer " + collectortest.Token("edge-a") + "\r\n"
	if length > 0 {
		head += fmt.Sprintf("Content-Length: %d\r\n\r\n", length)
		if _, err := c.Write(append([]byte(head), body...)); err != nil {
			t.Fatal(err)
		}
	} else {
		head += "Transfer-Encoding: chunked\r\n\r\n"
		if _, err := fmt.Fprintf(c, "%s%x\r\n%s\r\n", head, len(body), body); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
