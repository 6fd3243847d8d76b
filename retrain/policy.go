package retrain

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// admission is a trigger with the admission's switches.
type admission struct {
	Trigger
	// DedupeKey is remembered when a job starts; a trigger with a remembered key is a
	// duplicate (Alertmanager's re-sends and retries).
	DedupeKey string
	// Force skips the cooldown, the label minimum and the budget (an operator's manual
	// retrain); never the one-job-per-model rule.
	Force bool
}

// admit applies the policy to a trigger and starts a job when it passes. It records the
// decision either way. The error is set only when the policy could not be applied (the
// collector is unreachable for the label count): the caller answers 503 so Alertmanager
// retries, and nothing is recorded.
func (c *Controller) admit(ctx context.Context, a admission) (Decision, error) {
	c.m.triggers.WithLabelValues(c.modelLabel(a.Model), a.Source).Inc()
	if _, ok := c.models[a.Model]; !ok {
		return c.skip(a.Trigger, SkipUnknownModel, fmt.Sprintf("model %q is not in the controller's models", a.Model)), nil
	}
	c.admitMu.Lock()
	defer c.admitMu.Unlock()
	if d, skipped := c.precheck(a); skipped {
		return d, nil
	}
	// The label count reads the collector and the bucket: done outside mu (API reads go on)
	// but inside admitMu (no second admission can pass the checks meanwhile).
	var newLabels int
	if !a.Force && (c.cfg.Policy.MinNewLabels > 0 || a.Source == SourceLabels) {
		c.mu.Lock()
		watermark := c.st.model(a.Model).LabelWatermark
		c.mu.Unlock()
		n, err := c.countNewLabels(ctx, a.Model, watermark)
		if err != nil {
			c.logger.Warn("cannot count new labels; the trigger is not decided", "model", a.Model, "source", a.Source, "err", err)
			return Decision{}, fmt.Errorf("%w: %v", errUnavailable, err)
		}
		newLabels = n
		if n < c.cfg.Policy.MinNewLabels {
			return c.skip(a.Trigger, SkipNotEnoughLabels, fmt.Sprintf("%d new labelled samples since the last training, policy.min_new_labels is %d", n, c.cfg.Policy.MinNewLabels)), nil
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	c.st.Seq++
	j := &Job{
		ID: fmt.Sprintf("%s-%d", jobIDPrefix(a.Model), c.st.Seq), Model: a.Model, Phase: PhasePreparing,
		Trigger: a.Trigger, Created: now, Dataset: DatasetSummary{NewLabels: newLabels},
	}
	c.st.Jobs = append(c.st.Jobs, j)
	if a.DedupeKey != "" {
		c.st.Seen[a.DedupeKey] = now
	}
	ms := c.st.model(a.Model)
	ms.LastStart = now
	if day := now.UTC().Format(time.DateOnly); ms.BudgetDay != day {
		ms.BudgetDay, ms.BudgetUsed = day, 0
	}
	ms.BudgetUsed++
	d := Decision{Time: now, Trigger: a.Trigger, Started: j.ID}
	c.st.Decisions = append(c.st.Decisions, d)
	c.save()
	c.m.active.WithLabelValues(a.Model).Set(1)
	c.logger.Info("job started", "job", j.ID, "model", a.Model, "source", a.Source, "alert", a.Alert,
		"by", a.By, "new_labels", newLabels, "forced", a.Force)
	c.startDriver(j)
	return d, nil
}

// precheck applies the checks that need no I/O, cheapest first; it records a skip.
func (c *Controller) precheck(a admission) (Decision, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	reason, detail := "", ""
	if a.DedupeKey != "" {
		if t, seen := c.st.Seen[a.DedupeKey]; seen && c.now().Sub(t) <= c.cfg.Policy.DedupeWindow {
			reason, detail = SkipDuplicate, "already acted on at "+t.UTC().Format(time.RFC3339)
		}
	}
	if reason == "" {
		reason, detail = c.blockedLocked(a.Model, a.Force)
	}
	if reason == "" {
		return Decision{}, false
	}
	return c.skipLocked(a.Trigger, reason, detail), true
}

// blockedLocked says why the model cannot start a job now whatever the trigger: an active
// job, or (unless forced) its cooldown or its spent budget; "" when it can.
func (c *Controller) blockedLocked(model string, force bool) (reason, detail string) {
	if j := c.st.activeJob(model); j != nil {
		return SkipActiveJob, fmt.Sprintf("job %s is %s", j.ID, j.Phase)
	}
	if force {
		return "", ""
	}
	ms, now := c.st.model(model), c.now()
	if until := ms.LastEnd.Add(c.cfg.Policy.Cooldown); !ms.LastEnd.IsZero() && now.Before(until) {
		return SkipCooldown, "the last job ended at " + ms.LastEnd.UTC().Format(time.RFC3339) + "; the cooldown lasts until " + until.UTC().Format(time.RFC3339)
	}
	if ms.BudgetDay == now.UTC().Format(time.DateOnly) && ms.BudgetUsed >= c.cfg.Policy.DailyBudget {
		return SkipBudget, fmt.Sprintf("%d jobs started today (UTC), policy.daily_budget is %d", ms.BudgetUsed, c.cfg.Policy.DailyBudget)
	}
	return "", ""
}

// skip records a trigger that starts nothing.
func (c *Controller) skip(t Trigger, reason, detail string) Decision {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.skipLocked(t, reason, detail)
}

func (c *Controller) skipLocked(t Trigger, reason, detail string) Decision {
	d := Decision{Time: c.now(), Trigger: t, Skipped: reason, Detail: detail}
	c.m.skipped.WithLabelValues(c.modelLabel(t.Model), reason).Inc()
	if c.repeatsLast(d) {
		// The controller's own policies ask again every interval: the same skip again is
		// counted, not recorded, so that it does not push real decisions out of the log.
		return d
	}
	c.st.Decisions = append(c.st.Decisions, d)
	c.save()
	c.logger.Info("trigger skipped", "model", t.Model, "source", t.Source, "alert", t.Alert, "reason", reason, "detail", detail)
	return d
}

// repeatsLast reports whether d is a policy source's skip with the same reason as the
// model's last recorded decision.
func (c *Controller) repeatsLast(d Decision) bool {
	switch d.Trigger.Source {
	case SourceDrift, SourceSchedule, SourceLabels:
	default:
		return false
	}
	for i := len(c.st.Decisions) - 1; i >= 0; i-- {
		p := c.st.Decisions[i]
		if p.Trigger.Model == d.Trigger.Model {
			return p.Trigger.Source == d.Trigger.Source && p.Skipped == d.Skipped
		}
	}
	return false
}

// blocked reports whether the model cannot start a job now whatever the trigger
// (blockedLocked): the policy loops pass over it without a decision.
func (c *Controller) blocked(model string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	reason, _ := c.blockedLocked(model, false)
	return reason != ""
}

// modelLabel bounds the model label to the configured models: alert labels come from
// outside, and each distinct value would be a new series.
func (c *Controller) modelLabel(model string) string {
	if _, ok := c.models[model]; ok {
		return model
	}
	return ""
}

// jobIDPrefix makes a job ID prefix from a model name: jobs.Spec's ID rule allows a-z, 0-9
// and '-' only, starting with a letter.
func jobIDPrefix(model string) string {
	var b strings.Builder
	b.WriteString("job-")
	for _, r := range strings.ToLower(model) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
		if b.Len() >= 40 {
			break
		}
	}
	return b.String()
}

// countNewLabels counts the model's labels written after the watermark.
func (c *Controller) countNewLabels(ctx context.Context, model string, watermark int64) (int, error) {
	m, err := c.data.manifest(ctx, model)
	if err != nil {
		return 0, err
	}
	keys, _ := newLabels(m, watermark)
	return c.data.countLabels(ctx, keys)
}

// policyLoop evaluates the label and schedule policies every policy.check_interval.
func (c *Controller) policyLoop(ctx context.Context) {
	p := c.cfg.Policy
	if p.EveryNewLabels == 0 && p.Schedule == 0 {
		return
	}
	t := time.NewTicker(p.CheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, m := range c.cfg.Models {
			c.checkPolicy(ctx, m.Name)
		}
	}
}

// checkPolicy triggers a model's job when its label count or schedule says so. A model that
// the policy could not admit anyway (active job, cooldown, budget) is passed over silently,
// so that the decisions do not fill with one skip per check.
func (c *Controller) checkPolicy(ctx context.Context, model string) {
	p := c.cfg.Policy
	if c.blocked(model) {
		return
	}
	c.mu.Lock()
	ms := *c.st.model(model)
	now := c.now()
	c.mu.Unlock()
	if p.Schedule > 0 && (ms.LastStart.IsZero() || now.Sub(ms.LastStart) >= p.Schedule) {
		_, err := c.admit(ctx, admission{Trigger: Trigger{Source: SourceSchedule, Model: model,
			Reason: fmt.Sprintf("policy.schedule is %s", p.Schedule)}})
		if err == nil {
			return
		}
	}
	if p.EveryNewLabels > 0 {
		n, err := c.countNewLabels(ctx, model, ms.LabelWatermark)
		if err != nil {
			c.logger.Warn("label policy: cannot count new labels", "model", model, "err", err)
			return
		}
		if n >= p.EveryNewLabels {
			_, _ = c.admit(ctx, admission{Trigger: Trigger{Source: SourceLabels, Model: model,
				Reason: fmt.Sprintf("%d new labelled samples, policy.every_new_labels is %d", n, p.EveryNewLabels)}})
		}
	}
}
