package web

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestBodyDeadline: a body that stalls is cut off once it falls below the minimum rate (after
// the grace period), so a handler is not held by it; one that keeps the rate passes, however
// long it takes in all; and a handler that works after reading its whole body is not cut.
func TestBodyDeadline(t *testing.T) {
	type outcome struct {
		n   int
		err error
	}
	got := make(chan outcome, 1)
	s, err := Listen(Config{Listen: "127.0.0.1:0", BodyMinBytesPerSecond: 4000, BodyGracePeriod: 300 * time.Millisecond},
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, err := io.ReadAll(r.Body)
			got <- outcome{len(b), err}
			if err != nil {
				http.Error(w, err.Error(), http.StatusRequestTimeout)
				return
			}
			time.Sleep(600 * time.Millisecond) // past where a deadline left behind would fire
			fmt.Fprintf(w, "%d", len(b))
		}), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	url := "http://" + s.Addr() + "/"

	// send writes chunks of size every interval, count times, then closes the body.
	send := func(size, count int, interval time.Duration) (*http.Response, error) {
		pr, pw := io.Pipe()
		go func() {
			for range count {
				if _, err := pw.Write([]byte(strings.Repeat("x", size))); err != nil {
					return
				}
				time.Sleep(interval)
			}
			pw.Close()
		}()
		defer pw.CloseWithError(errors.New("test over"))
		return http.Post(url, "application/octet-stream", pr)
	}

	t.Run("stalled body is cut off", func(t *testing.T) {
		start := time.Now()
		resp, err := send(100, 1, time.Hour) // 100 bytes, then nothing
		if err == nil {
			resp.Body.Close()
		}
		o := <-got
		if !errors.Is(o.err, ErrBodyTooSlow) {
			t.Fatalf("handler read %d bytes, err %v; want ErrBodyTooSlow", o.n, o.err)
		}
		// 300ms of grace and 100 bytes at 4000/s: due at 325ms.
		if el := time.Since(start); el < 300*time.Millisecond || el > 5*time.Second {
			t.Errorf("cut off after %s, want soon after 325ms", el)
		}
	})
	t.Run("trickle below the rate is cut off", func(t *testing.T) {
		resp, err := send(100, 100, 100*time.Millisecond) // 1000 bytes a second
		if err == nil {
			resp.Body.Close()
		}
		if o := <-got; !errors.Is(o.err, ErrBodyTooSlow) || o.n >= 10000 {
			t.Fatalf("handler read %d bytes, err %v; want ErrBodyTooSlow before the end", o.n, o.err)
		}
	})
	t.Run("body at the rate passes", func(t *testing.T) {
		resp, err := send(1000, 12, 100*time.Millisecond) // 10,000 bytes a second for 1.2s
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if o := <-got; o.err != nil || o.n != 12000 {
			t.Fatalf("handler read %d bytes, err %v", o.n, o.err)
		}
		if resp.StatusCode != http.StatusOK || string(b) != "12000" {
			t.Fatalf("answer %d %q: the handler working after the body was cut", resp.StatusCode, b)
		}
	})
}
