// Package alerts holds edgeloop's Prometheus rules and the examples around them; it has no
// Go code of its own, only the tests that keep those files honest.
//
//   - rules/edgeloop-alerts.yml: the alerting rules (GPU, inference and drift, capture,
//     collector, model sync, retrain, scrape targets), each with a runbook in docs/alerts.md;
//   - rules/edgeloop-recording.yml: the recording rules the dashboards and alerts read;
//   - tests/*.yml: `promtool test rules` unit tests, each alert firing and staying silent;
//   - prometheus.yml and alertmanager.yml: example configurations that load the rules and
//     route the drift alerts to the retrain controller's webhook.
//   - lab/: the lab profile (docs/timings.md), generated from the production files by
//     lab_test.go with only the drift alerts' `for:` and the retrain route's timings shortened,
//     and lab/tests/*.yml, its promtool tests.
//
// The tests run `promtool check rules`, `promtool test rules` and `promtool check config`
// (found through internal/testenv), `amtool check-config` where amtool is installed, and
// check that every alert has a runbook section and every metric it reads is documented.
package alerts
