package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/edgeloop/edgeloop/exporter/sender"
	"github.com/edgeloop/edgeloop/internal/sample"
)

// liteSender is a wire-compatible stand-in for exporter/sender, for fleets too large to
// simulate with the real one: each real Sender holds its own zstd encoder, about 1.8 MiB once
// it has sent (the simulator's heap profile: 97 % of its memory at 1,000 nodes), so 10,000
// nodes would need 18 GiB. A liteSender does what the collector sees the same way: its own
// connection (an http.Transport per node), its own token, batches of the node's queue after
// batch_delay, decoded from the spool record format and encoded as a zstd tar as the sender
// does, a 200 taken only when accepted + duplicates + rejected add up to the batch, and
// retries with full-jitter backoff or the collector's Retry-After. The encoder is shared by
// every node (EncodeAll is safe for concurrent use). It has no dead letter, rate limit, batch
// splitting or credential refresh: none happen in a healthy run, and a rejected sample or a
// 400/413 is counted as an error instead.
type liteSender struct {
	cfg      sender.Config
	q        *node
	name     string
	token    string
	endpoint string
	tr       *http.Transport
	client   *http.Client
	enc      *zstd.Encoder
	rec      *recorder
	rng      *rand.Rand
	failures int
}

func newLiteSender(cfg sender.Config, q *node, name, token string, enc *zstd.Encoder, rec *recorder, seed uint64) *liteSender {
	tr := &http.Transport{
		DialContext:           (&net.Dialer{Timeout: min(cfg.Timeout, 30*time.Second), KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          2,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	return &liteSender{
		cfg: cfg, q: q, name: name, token: token, enc: enc, rec: rec, tr: tr,
		endpoint: strings.TrimRight(cfg.URL, "/") + sender.SamplesPath,
		client:   &http.Client{Transport: tr, Timeout: cfg.Timeout},
		rng:      rand.New(rand.NewPCG(seed, 0x5e4d)),
	}
}

// Close releases the idle connections.
func (l *liteSender) Close() { l.tr.CloseIdleConnections() }

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Run sends batches until ctx ends; a batch not answered for then stays queued.
func (l *liteSender) Run(ctx context.Context) error {
	for {
		if l.q.Wait(ctx) != nil {
			return nil
		}
		recs, err := l.q.Peek(l.cfg.MaxBatchSamples, l.cfg.MaxBatchBytes)
		if err != nil {
			return err
		}
		if len(recs) == 0 {
			continue
		}
		if wait := l.cfg.BatchDelay - time.Since(recs[0].Time); len(recs) < l.cfg.MaxBatchSamples && wait > 0 {
			if sleepCtx(ctx, wait) != nil {
				return nil
			}
			if recs, err = l.q.Peek(l.cfg.MaxBatchSamples, l.cfg.MaxBatchBytes); err != nil {
				return err
			}
		}
		body, err := l.encode(recs)
		if err != nil {
			return err
		}
		for {
			reason, retryAfter := l.post(body, len(recs))
			if reason == "" {
				l.failures = 0
				l.rec.batches.Add(1)
				if err := l.q.Ack(recs[len(recs)-1].Seq); err != nil {
					return err
				}
				break
			}
			l.rec.failed(reason)
			wait := retryAfter
			if wait > 0 {
				wait = min(wait, l.cfg.MaxBackoff)
			} else {
				ceiling := l.cfg.InitialBackoff
				for i := 0; i < l.failures && ceiling < l.cfg.MaxBackoff; i++ {
					ceiling *= 2
				}
				wait = time.Duration(l.rng.Float64() * float64(min(ceiling, l.cfg.MaxBackoff)))
			}
			l.failures++
			if sleepCtx(ctx, wait) != nil {
				return nil
			}
		}
	}
}

// encode decodes the records (validating each, as the sender does) and returns the batch as
// a zstd-compressed tar.
func (l *liteSender) encode(recs []sender.Record) ([]byte, error) {
	samples := make([]*sample.Sample, len(recs))
	for i, r := range recs {
		s, err := sample.UnmarshalRecord(r.Data)
		if err != nil {
			return nil, fmt.Errorf("fleet: %s: record %d: %w", l.name, r.Seq, err)
		}
		samples[i] = s
	}
	// A buffer per batch, not one per node kept: after a backlog each node's would stay at
	// its largest batch (up to max_batch_bytes), gigabytes over a fleet.
	var tarBuf bytes.Buffer
	if err := sample.WriteTar(&tarBuf, samples); err != nil {
		return nil, fmt.Errorf("fleet: %s: %w", l.name, err)
	}
	return l.enc.EncodeAll(tarBuf.Bytes(), make([]byte, 0, tarBuf.Len()/2)), nil
}

// post makes one request; reason is "" when the collector answered for every sample, else the
// sender's errors_total reason, with the Retry-After it gave.
func (l *liteSender) post(body []byte, n int) (reason string, retryAfter time.Duration) {
	req, err := http.NewRequest(http.MethodPost, l.endpoint, bytes.NewReader(body))
	if err != nil {
		return "network", 0
	}
	req.Header.Set("Content-Type", "application/x-tar")
	req.Header.Set("Content-Encoding", "zstd")
	req.Header.Set(sender.NodeHeader, l.name)
	req.Header.Set("Authorization", "Bearer "+l.token)
	resp, err := l.client.Do(req)
	if err != nil {
		return "network", 0
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	resp.Body.Close()
	if secs, perr := strconv.Atoi(strings.TrimSpace(resp.Header.Get("Retry-After"))); perr == nil && secs > 0 {
		retryAfter = time.Duration(secs) * time.Second
	}
	switch {
	case resp.StatusCode == http.StatusOK && err == nil:
		var a struct {
			Accepted   *int              `json:"accepted"`
			Duplicates *int              `json:"duplicates"`
			Rejected   []json.RawMessage `json:"rejected"`
		}
		if json.Unmarshal(data, &a) != nil || a.Accepted == nil || a.Duplicates == nil || *a.Accepted+*a.Duplicates+len(a.Rejected) != n {
			return "bad_response", 0
		}
		if len(a.Rejected) > 0 {
			// The real sender dead-letters them; here they are acknowledged and counted.
			l.rec.failed("rejected")
		}
		return "", 0
	case resp.StatusCode == http.StatusOK:
		return "network", 0
	case resp.StatusCode == http.StatusServiceUnavailable:
		return "http_503", retryAfter
	case resp.StatusCode == http.StatusTooManyRequests:
		return "http_429", retryAfter
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return "http_4xx_auth", retryAfter
	case resp.StatusCode >= 500:
		return "http_5xx", retryAfter
	default:
		return "http_" + strconv.Itoa(resp.StatusCode), retryAfter
	}
}

// failures counts the lite senders' failed requests by reason (the real senders' are in
// their metrics).
type failures struct {
	mu sync.Mutex
	by map[string]int64
}

func (r *recorder) failed(reason string) {
	r.fails.mu.Lock()
	if r.fails.by == nil {
		r.fails.by = map[string]int64{}
	}
	r.fails.by[reason]++
	r.fails.mu.Unlock()
	if reason != "rejected" {
		r.retries.Add(1)
	}
}
