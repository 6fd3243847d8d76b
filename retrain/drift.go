package retrain

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// psiMetric is the exporter's drift gauge (docs/metrics.md).
const psiMetric = "edgeloop_confidence_psi"

// driftSeries identifies one model version on one node.
type driftSeries struct{ target, model, version, node string }

// driftLoop reads the exporters' PSI gauges every drift.interval and triggers a retrain
// (source drift) for a model whose PSI on some node has stayed above drift.psi_threshold for
// drift.for: the rule EdgeloopConfidenceDrift evaluates in Prometheus, for sites without one.
// The episode (model, node, onset) is the dedupe key, so one drift episode starts one job.
func (c *Controller) driftLoop(ctx context.Context) {
	above := map[driftSeries]time.Time{} // series → when it went above the threshold
	client := &http.Client{Timeout: c.cfg.Drift.Interval}
	t := time.NewTicker(c.cfg.Drift.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := c.now()
		seen := map[driftSeries]bool{}
		for _, target := range c.cfg.Drift.Targets {
			values, err := scrapePSI(ctx, client, target)
			if err != nil {
				c.logger.Debug("drift: cannot read target", "target", target, "err", err)
				continue
			}
			for s, v := range values {
				s.target = target
				if s.node == "" {
					// Exporters' inference series carry no node label (Prometheus adds it
					// from the target): name the node by its target.
					s.node = target
				}
				if v <= c.cfg.Drift.PSIThreshold {
					continue
				}
				seen[s] = true
				if _, ok := above[s]; !ok {
					above[s] = now
				}
			}
		}
		for s, since := range above {
			if !seen[s] {
				delete(above, s) // back below the threshold (or gone): the episode is over
				continue
			}
			if now.Sub(since) < c.cfg.Drift.For {
				continue
			}
			if _, ok := c.models[s.model]; !ok || c.blocked(s.model) {
				continue
			}
			_, _ = c.admit(ctx, admission{
				Trigger: Trigger{Source: SourceDrift, Model: s.model, Version: s.version, By: s.node,
					Reason: fmt.Sprintf("PSI above %v on %s since %s", c.cfg.Drift.PSIThreshold, s.node, since.UTC().Format(time.RFC3339))},
				DedupeKey: "drift\x00" + s.model + "\x00" + s.node + "\x00" + since.UTC().Format(time.RFC3339Nano),
			})
		}
	}
}

// scrapePSI reads the PSI gauges of one exporter.
func scrapePSI(ctx context.Context, client *http.Client, target string) (map[driftSeries]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	out := map[driftSeries]float64{}
	mf := families[psiMetric]
	if mf == nil {
		return out, nil
	}
	for _, m := range mf.GetMetric() {
		var s driftSeries
		for _, l := range m.GetLabel() {
			switch l.GetName() {
			case "model":
				s.model = l.GetValue()
			case "version":
				s.version = l.GetValue()
			case "node":
				s.node = l.GetValue()
			}
		}
		out[s] = m.GetGauge().GetValue()
	}
	return out, nil
}
