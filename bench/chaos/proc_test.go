//go:build integration

package chaos

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// component is a supervised edgeloop process that the soak kills with SIGKILL and starts
// again with the same arguments, ports and directories, as systemd would.
type component struct {
	name string
	kind string // exporter, collector, controller
	args []string
	env  []string
	// ready is the log message that says the process serves.
	ready string

	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{}
	log    strings.Builder // every incarnation's log, for a failure's report
	lines  int             // ready lines seen in the current incarnation
	starts int
	// readyLines are the ready lines of every incarnation, for the summary.
	readyLines []map[string]any
}

func newComponent(name, kind, ready string, env []string, args ...string) *component {
	return &component{name: name, kind: kind, args: args, env: env, ready: ready}
}

// start runs a new incarnation and waits for its ready line.
func (c *component) start(t testing.TB, timeout time.Duration) error {
	t.Helper()
	c.mu.Lock()
	cmd := exec.Command(binary, c.args...)
	cmd.Env = append(os.Environ(), c.env...)
	// The test's death kills every child (a timeout panics past the cleanups).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		c.mu.Unlock()
		return err
	}
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		c.mu.Unlock()
		return fmt.Errorf("start %s: %w", c.name, err)
	}
	c.starts++
	fmt.Fprintf(&c.log, "----- %s: start #%d (pid %d) at %s\n", c.name, c.starts, cmd.Process.Pid, time.Now().Format(time.RFC3339Nano))
	c.cmd, c.done, c.lines = cmd, make(chan struct{}), 0
	done := c.done
	c.mu.Unlock()
	go c.read(stderr, cmd, done)
	deadline := time.Now().Add(timeout)
	for {
		c.mu.Lock()
		ok := c.lines > 0 && c.cmd == cmd
		c.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("%s exited before %q", c.name, c.ready)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: no %q within %s", c.name, c.ready, timeout)
		}
	}
}

func (c *component) read(r io.Reader, cmd *exec.Cmd, done chan struct{}) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var line map[string]any
		c.mu.Lock()
		c.log.WriteString(sc.Text() + "\n")
		if json.Unmarshal(sc.Bytes(), &line) == nil && line["msg"] == c.ready && c.cmd == cmd {
			c.lines++
			c.readyLines = append(c.readyLines, line)
		}
		c.mu.Unlock()
	}
	_ = cmd.Wait()
	close(done)
}

// kill sends SIGKILL to the running incarnation and waits for it to be gone.
func (c *component) kill() {
	c.mu.Lock()
	cmd, done := c.cmd, c.done
	c.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
	c.mu.Lock()
	fmt.Fprintf(&c.log, "----- %s: killed (SIGKILL) at %s\n", c.name, time.Now().Format(time.RFC3339Nano))
	c.mu.Unlock()
}

// readySum sums the numeric field of every incarnation's ready line.
func (c *component) readySum(field string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, l := range c.readyLines {
		if f, ok := l[field].(float64); ok {
			n += int(f)
		}
	}
	return n
}

// alive reports whether the current incarnation runs.
func (c *component) alive() bool {
	c.mu.Lock()
	done := c.done
	c.mu.Unlock()
	if done == nil {
		return false
	}
	select {
	case <-done:
		return false
	default:
		return true
	}
}

// stop ends the process with SIGTERM (SIGKILL after 15s) at the end of the test.
func (c *component) stop() {
	c.mu.Lock()
	cmd, done := c.cmd, c.done
	c.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-done
	}
}

// tail is the last n bytes of the component's log.
func (c *component) tail(n int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.log.String()
	if len(s) > n {
		s = "…" + s[len(s)-n:]
	}
	return s
}

// runTool runs `edgeloop args...` to its end and returns its combined output.
func runTool(t testing.TB, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("edgeloop %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}
