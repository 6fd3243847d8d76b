package fsfault

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

// Scenario is a store's test: it works in dir through fsys and makes its own assertions.
// Run under a fault, it must find the fault's effect (an error returned, a metric moved, a
// log line) and, after calling fsys.Heal, that nothing acknowledged was lost and that the
// store works again. It must be deterministic: the N-th call of a site must be the same call
// in every run, so no background timers may touch the disk.
type Scenario func(t *testing.T, fsys *FS, dir string)

// Report is what Enumerate ran.
type Report struct {
	// Sites are the call sites the clean run reached, with their counts.
	Sites []SiteCount
	// FaultOnlySites are the call sites that only runs with a fault reached (the paths that
	// handle one: a segment written again after a failed fsync, a position file overwritten
	// in place on a full disk), each with the count of the first run that reached it.
	FaultOnlySites []SiteCount
	// Runs counts the faulted runs; Fired those whose faults were all injected (all, or the
	// test failed). SecondRuns counts those of Runs that injected a second fault into a
	// fault-only site, after the fault that leads there.
	Runs, Fired, SecondRuns int
	// ByKind counts the faulted runs by kind.
	ByKind map[Kind]int
}

// EnumerateOptions configure Enumerate.
type EnumerateOptions struct {
	// FS configures each run's FS.
	FS Options
	// MaxPerSite bounds the occurrences of a site that get a fault of each kind: all of them
	// up to this many, else the first ones, the middle one and the last ones. Default 6.
	MaxPerSite int
	// Repeat makes every fault fail that many calls of its site from its occurrence on
	// (Fault.Repeat); Persistent (any number above the calls a scenario makes) is a disk
	// that stays full or failing until the scenario calls Heal. 0: once.
	Repeat int
}

// Persistent is an EnumerateOptions.Repeat that lasts until Heal.
const Persistent = 1 << 30

// Enumerate runs scenario once without faults to count the call sites it reaches, then
// once per (site, kind of fault its operation can meet, occurrence), each as a subtest with
// a fresh directory and exactly that fault armed. The sites that only a faulted run reached
// (the code handling the fault) get a second round: the first fault that led there, then
// each kind of fault at their first occurrences. A run whose faults do not all fire fails:
// the scenario is not deterministic. It logs the sites and the number of runs.
func Enumerate(t *testing.T, opts EnumerateOptions, scenario Scenario) Report {
	t.Helper()
	var rep Report
	t.Run("clean", func(t *testing.T) {
		dir := t.TempDir()
		fsys := New(dir, opts.FS)
		scenario(t, fsys, dir)
		rep.Sites = fsys.Sites()
	})
	if t.Failed() {
		return rep
	}
	for _, sc := range rep.Sites {
		t.Logf("call site %-40s reached %d times", sc.Site, sc.Count)
	}
	rep.ByKind = map[Kind]int{}
	clean := map[Site]bool{}
	for _, sc := range rep.Sites {
		clean[sc.Site] = true
	}
	type lead struct {
		site  SiteCount
		first Fault
	}
	var leads []lead
	run := func(faults ...Fault) {
		rep.Runs++
		rep.ByKind[faults[len(faults)-1].Kind]++
		var names []string
		for _, ft := range faults {
			names = append(names, ft.String())
		}
		t.Run(strings.ReplaceAll(strings.Join(names, " then "), "/", "|"), func(t *testing.T) {
			dir := t.TempDir()
			fsys := New(dir, opts.FS)
			for _, ft := range faults {
				fsys.Arm(ft)
			}
			scenario(t, fsys, dir)
			if fired := fsys.Fired(); len(fired) != len(faults) {
				t.Errorf("faults %v armed, %v fired: the scenario is not deterministic", faults, fired)
				return
			}
			rep.Fired++
			if len(faults) > 1 {
				return
			}
			for _, sc := range fsys.Sites() {
				if !clean[sc.Site] {
					clean[sc.Site] = true
					leads = append(leads, lead{site: sc, first: faults[0]})
				}
			}
		})
	}
	for _, ft := range Plan(rep.Sites, opts.MaxPerSite) {
		ft.Repeat = opts.Repeat
		run(ft)
	}
	for _, l := range leads {
		rep.FaultOnlySites = append(rep.FaultOnlySites, l.site)
		t.Logf("fault-only call site %-40s reached %d times after %s", l.site.Site, l.site.Count, l.first)
		for _, ft := range Plan([]SiteCount{l.site}, 2) {
			ft.Repeat = opts.Repeat
			rep.SecondRuns++
			run(l.first, ft)
		}
	}
	t.Logf("%d call sites, %d reached only under a fault; %d faulted runs (%d with a second fault), %d fired; by kind %v",
		len(rep.Sites), len(rep.FaultOnlySites), rep.Runs, rep.SecondRuns, rep.Fired, rep.ByKind)
	return rep
}

// Plan returns the faults to inject for the sites a clean run reached.
func Plan(sites []SiteCount, maxPerSite int) []Fault {
	if maxPerSite <= 0 {
		maxPerSite = 6
	}
	var out []Fault
	for _, sc := range sites {
		for _, k := range Kinds(sc.Site.Op) {
			for _, n := range occurrences(sc.Count, maxPerSite) {
				out = append(out, Fault{Site: sc.Site, Kind: k, N: n})
			}
		}
	}
	return out
}

// occurrences picks at most max of 1..count: every one when they fit, else the first and
// last ones and the middle.
func occurrences(count, max int) []int {
	if count <= max {
		out := make([]int, count)
		for i := range out {
			out[i] = i + 1
		}
		return out
	}
	seen := map[int]bool{}
	var out []int
	add := func(n int) {
		if n >= 1 && n <= count && !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	half := max / 2
	for i := 1; i <= half; i++ {
		add(i)
	}
	add((count + 1) / 2)
	for i := count - (max - half - 1) + 1; i <= count; i++ {
		add(i)
	}
	return out
}

// Logs is a slog.Handler that keeps the records at Warn and above, so a scenario can check
// that a fault was logged.
type Logs struct {
	mu   sync.Mutex
	recs []string
}

// Logger returns a logger writing to l.
func (l *Logs) Logger() *slog.Logger { return slog.New(l) }

// Enabled implements slog.Handler: Warn and above.
func (l *Logs) Enabled(_ context.Context, lv slog.Level) bool { return lv >= slog.LevelWarn }

// Handle implements slog.Handler.
func (l *Logs) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", r.Level, r.Message)
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	l.mu.Lock()
	l.recs = append(l.recs, b.String())
	l.mu.Unlock()
	return nil
}

// WithAttrs implements slog.Handler; attributes given here are dropped.
func (l *Logs) WithAttrs([]slog.Attr) slog.Handler { return l }

// WithGroup implements slog.Handler.
func (l *Logs) WithGroup(string) slog.Handler { return l }

// Records returns the records kept, formatted.
func (l *Logs) Records() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.recs...)
}

// Injected reports whether some record kept mentions an injected fault.
func (l *Logs) Injected() bool {
	for _, r := range l.Records() {
		if strings.Contains(r, "(injected)") {
			return true
		}
	}
	return false
}
