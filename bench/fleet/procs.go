package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's CPU times: 100 on every Linux the
// project runs on (sysconf(_SC_CLK_TCK) would need cgo).
const clockTicks = 100

// procStat is what the simulator reads of a process from /proc.
type procStat struct {
	CPUSeconds float64 // user + system since the process started
	RSSMiB     float64 // VmRSS
	PeakMiB    float64 // VmHWM: the peak RSS so far
	FDs        int     // open file descriptors
	Sockets    int     // of which sockets
}

// readProc reads pid's CPU time and memory; withFDs also counts its descriptors (a readlink
// each, so only for the progress lines).
func readProc(pid int, withFDs bool) (procStat, error) {
	var st procStat
	dir := "/proc/" + strconv.Itoa(pid)
	b, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return st, fmt.Errorf("fleet: %w", err)
	}
	// The command name, in parentheses, may hold spaces: fields count from after it.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return st, fmt.Errorf("fleet: %s/stat: %d fields", dir, len(f))
	}
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	st.CPUSeconds = (utime + stime) / clockTicks
	status, err := os.ReadFile(dir + "/status")
	if err != nil {
		return st, fmt.Errorf("fleet: %w", err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
		if k == "VmRSS" {
			st.RSSMiB = kb / 1024
		} else {
			st.PeakMiB = kb / 1024
		}
	}
	if withFDs {
		ents, err := os.ReadDir(dir + "/fd")
		if err != nil {
			return st, fmt.Errorf("fleet: %w", err)
		}
		st.FDs = len(ents)
		for _, e := range ents {
			if l, err := os.Readlink(dir + "/fd/" + e.Name()); err == nil && strings.HasPrefix(l, "socket:") {
				st.Sockets++
			}
		}
	}
	return st, nil
}

// schedWait returns the seconds pid's threads have spent runnable but waiting for a CPU
// (the second field of each /proc/<pid>/task/<tid>/schedstat), and running: a process
// starved by others waits longer than it runs.
func schedWait(pid int) (wait, ran float64) {
	dir := "/proc/" + strconv.Itoa(pid) + "/task"
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, 0
	}
	for _, e := range ents {
		b, err := os.ReadFile(dir + "/" + e.Name() + "/schedstat")
		if err != nil {
			continue
		}
		f := strings.Fields(string(b))
		if len(f) < 2 {
			continue
		}
		r, _ := strconv.ParseFloat(f[0], 64)
		w, _ := strconv.ParseFloat(f[1], 64)
		ran += r / 1e9
		wait += w / 1e9
	}
	return wait, ran
}

// loadAvg returns the one-minute load average.
func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return -1
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// raiseFDLimit raises RLIMIT_NOFILE, soft and hard, to want (or the kernel's fs.nr_open): a
// fleet holds a connection per node on each side, and the collector, started after this,
// inherits the limit. Raising the hard limit needs root (CAP_SYS_RESOURCE); without it the
// soft limit goes up to the hard one. It returns the limit in force.
func raiseFDLimit(want uint64) (uint64, error) {
	if b, err := os.ReadFile("/proc/sys/fs/nr_open"); err == nil {
		if n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil {
			want = min(want, n)
		}
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("fleet: getrlimit: %w", err)
	}
	if lim.Cur >= want {
		return lim.Cur, nil
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: want, Max: max(want, lim.Max)}); err == nil {
		return want, nil
	}
	// Not root: as far as the hard limit goes. syscall.Setrlimit also makes children inherit
	// the new soft limit (os/exec otherwise restores the one the process started with).
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: lim.Max, Max: lim.Max}); err != nil {
		return lim.Cur, fmt.Errorf("fleet: setrlimit: %w", err)
	}
	return lim.Max, nil
}

// portRange returns the kernel's ephemeral port range: each connection from the simulator to
// the collector's one address takes a port from it.
func portRange() (lo, hi int) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0, 0
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0, 0
	}
	lo, _ = strconv.Atoi(f[0])
	hi, _ = strconv.Atoi(f[1])
	return lo, hi
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("fleet: free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// child is a process the simulator started: MinIO or the collector.
type child struct {
	name   string
	cmd    *exec.Cmd
	exited chan struct{}
	err    error
	log    *os.File
}

// startChild starts bin with args and env, its output in logPath. It dies with the simulator
// (PR_SET_PDEATHSIG) so that no server outlives an interrupted run.
func startChild(name, bin, logPath string, env []string, args ...string) (*child, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("fleet: %s log: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("fleet: start %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, exited: make(chan struct{}), log: logf}
	go func() {
		c.err = cmd.Wait()
		close(c.exited)
	}()
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// waitHTTP polls url until it answers 200, the process exits or timeout passes.
func (c *child) waitHTTP(url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-c.exited:
			return fmt.Errorf("fleet: %s exited before %s answered 200: %v (log %s)", c.name, url, c.err, c.log.Name())
		case <-ctx.Done():
			return fmt.Errorf("fleet: %s: %s did not answer 200 within %s (log %s)", c.name, url, timeout, c.log.Name())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// stop sends SIGTERM and waits up to 30s, then SIGKILL.
func (c *child) stop() {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(30 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.exited
	}
	c.log.Close()
}

// scrape reads the metrics at url (Prometheus text format) and sums each metric's series by
// name, labels dropped.
func scrape(ctx context.Context, url string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return nil, fmt.Errorf("fleet: %w", err)
	}
	defer resp.Body.Close()
	sums := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name, rest := line, ""
		if i := strings.IndexAny(line, "{ "); i >= 0 {
			name, rest = line[:i], line[i:]
		}
		f := strings.Fields(rest[strings.LastIndex(rest, "}")+1:])
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return nil, fmt.Errorf("fleet: %s: %q", url, line)
		}
		sums[name] += v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("fleet: read %s: %w", url, err)
	}
	return sums, nil
}

// cpuPressure returns the share of the last ten seconds in which some runnable task waited
// for a CPU (/proc/pressure/cpu "some avg10"), -1 where the kernel has no PSI.
func cpuPressure() float64 {
	b, err := os.ReadFile("/proc/pressure/cpu")
	if err != nil {
		return -1
	}
	for _, f := range strings.Fields(string(b)) {
		if v, ok := strings.CutPrefix(f, "avg10="); ok {
			p, _ := strconv.ParseFloat(v, 64)
			return p
		}
	}
	return -1
}

// buildEdgeloop builds cmd/edgeloop from the working tree into dir.
func buildEdgeloop(dir string) (string, error) {
	out := filepath.Join(dir, "edgeloop")
	cmd := exec.Command("go", "build", "-o", out, "github.com/edgeloop/edgeloop/cmd/edgeloop")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("fleet: build edgeloop: %w", err)
	}
	return out, nil
}

// findMinIO returns the MinIO binary: flag, $MINIO, or PATH.
func findMinIO(flag string) (string, error) {
	for _, p := range []string{flag, os.Getenv("MINIO")} {
		if p != "" {
			return p, nil
		}
	}
	if p, err := exec.LookPath("minio"); err == nil {
		return p, nil
	}
	return "", errors.New("fleet: no MinIO binary: pass -minio, set MINIO (MINIO=$(scripts/tools.sh path minio)) or put minio in PATH")
}
