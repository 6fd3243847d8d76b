package retrain

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// maxWebhookError bounds a refused payload's message: maxWebhookProblems problems of at most
// a 64-byte quoted value and their text each, and the "..." after them.
const maxWebhookError = (maxWebhookProblems + 1) * 400

// FuzzDecodeWebhook feeds arbitrary bodies to the Alertmanager webhook decoder (seeds:
// testdata/fuzz/FuzzDecodeWebhook, payloads as Alertmanager 0.27 sends them and broken ones).
// It must never panic; a refusal's message is bounded whatever the body holds; an accepted
// payload meets every rule the handler relies on and decodes the same when encoded again.
func FuzzDecodeWebhook(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		wh, err := decodeWebhook(data)
		if err != nil {
			if wh != nil {
				t.Fatal("a payload returned with an error")
			}
			if n := len(err.Error()); n > maxWebhookError {
				t.Fatalf("a refusal of %d bytes, above %d: the 400 echoes the payload", n, maxWebhookError)
			}
			return
		}
		if wh.Version != "4" || wh.GroupKey == "" || len(wh.Alerts) > maxWebhookAlerts {
			t.Fatalf("accepted version %q, group key %q, %d alerts", wh.Version, wh.GroupKey, len(wh.Alerts))
		}
		for i, a := range wh.Alerts {
			if (a.Status != "firing" && a.Status != "resolved") || a.Labels["alertname"] == "" {
				t.Fatalf("accepted alert %d: status %q, alertname %q", i, a.Status, a.Labels["alertname"])
			}
		}
		again, err := json.Marshal(wh)
		if err != nil {
			t.Fatalf("an accepted payload does not encode: %v", err)
		}
		wh2, err := decodeWebhook(again)
		if err != nil {
			t.Fatalf("an accepted payload, encoded again, is refused: %v", err)
		}
		if len(wh2.Alerts) != len(wh.Alerts) || wh2.GroupKey != wh.GroupKey {
			t.Fatal("an accepted payload changed on a round trip")
		}
	})
}

// TestWebhookRefusalBounded is the regression test of what FuzzDecodeWebhook found: a payload
// of a thousand alerts with a kilobyte status each made a 400 (and a log line) that echoed
// every status whole, several times the payload's size.
func TestWebhookRefusalBounded(t *testing.T) {
	status := strings.Repeat("\u00e9", 512)
	var alerts []string
	for range maxWebhookAlerts {
		alerts = append(alerts, fmt.Sprintf(`{"status":%q,"labels":{}}`, status))
	}
	body := fmt.Sprintf(`{"version":%q,"groupKey":"","alerts":[%s]}`, status, strings.Join(alerts, ","))
	_, err := decodeWebhook([]byte(body))
	if err == nil {
		t.Fatal("accepted")
	}
	if n := len(err.Error()); n > maxWebhookError {
		t.Fatalf("refusal of %d bytes for a %d-byte payload, want at most %d", n, len(body), maxWebhookError)
	}
	if !strings.Contains(err.Error(), "alerts[0].status is") || !strings.HasSuffix(err.Error(), "; ...") {
		t.Fatalf("refusal does not name the first problems and mark the rest: %.200s", err)
	}
}
