package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// childSpec says how to start one kind of child.
type childSpec struct {
	name string // "producer" or "trainer"
	bin  string
	args []string
	// env are FFC_* variables of the child: the credentials, which never
	// go on a command line.
	env         []string
	metricsAddr string // host:port of its --metrics-addr
	logDir      string
	log         *slog.Logger
	// maxUnexpected: after this many unexpected exits (of all children,
	// counted by exits) the child is not restarted and gaveUp is closed.
	maxUnexpected int
	exits         *exitLog
}

// proc is one process of a child.
type proc struct {
	n       int
	cmd     *exec.Cmd
	logPath string
	started time.Time
	done    chan struct{}
	err     error // set before done closes
	killed  bool  // the harness signalled it (guarded by child.mu)
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// ExitRecord is an exit of a child that the harness did not cause.
type ExitRecord struct {
	Child   string        `json:"child"`
	Process int           `json:"process"`
	After   time.Duration `json:"after_ns"` // how long it had run
	Status  string        `json:"status"`
	Log     string        `json:"log"`
	Tail    []string      `json:"tail"`
}

// exitLog collects the unexpected exits of every child.
type exitLog struct {
	mu     sync.Mutex
	exits  []ExitRecord
	gaveUp chan struct{} // closed once the run should stop
	closed bool
}

func newExitLog() *exitLog { return &exitLog{gaveUp: make(chan struct{})} }

// add records an exit and reports whether the run may go on.
func (l *exitLog) add(r ExitRecord, max int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.exits = append(l.exits, r)
	if len(l.exits) >= max && !l.closed {
		l.closed = true
		close(l.gaveUp)
	}
	return !l.closed
}

func (l *exitLog) list() []ExitRecord {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]ExitRecord(nil), l.exits...)
}

// child is a supervised ffc process: started, killed and restarted by the
// harness, and restarted (with backoff) when it exits on its own.
type child struct {
	spec childSpec

	mu       sync.Mutex
	cur      *proc
	n        int
	stopping bool
	quit     chan struct{} // closed by Stop
	bo       *backoff.ExponentialBackOff
	restarts sync.WaitGroup
}

func newChild(spec childSpec) *child {
	bo := &backoff.ExponentialBackOff{InitialInterval: 500 * time.Millisecond, RandomizationFactor: 0.2, Multiplier: 2, MaxInterval: 10 * time.Second}
	bo.Reset()
	return &child{spec: spec, bo: bo, quit: make(chan struct{})}
}

// start starts a new process; c.mu held.
func (c *child) start() error {
	c.n++
	p := &proc{n: c.n, done: make(chan struct{}), started: time.Now(),
		logPath: filepath.Join(c.spec.logDir, fmt.Sprintf("%s-%02d.log", c.spec.name, c.n))}
	f, err := os.Create(p.logPath)
	if err != nil {
		return fmt.Errorf("%s: log: %w", c.spec.name, err)
	}
	p.cmd = exec.Command(c.spec.bin, c.spec.args...)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	// Only the flags and spec.env configure it: no other FFC_* from the
	// environment.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "FFC_") {
			p.cmd.Env = append(p.cmd.Env, kv)
		}
	}
	p.cmd.Env = append(p.cmd.Env, c.spec.env...)
	if err := p.cmd.Start(); err != nil {
		_ = f.Close()
		return fmt.Errorf("%s: start: %w", c.spec.name, err)
	}
	c.cur = p
	c.spec.log.Info("started", "child", c.spec.name, "process", p.n, "pid", p.cmd.Process.Pid, "log", p.logPath)
	go func() {
		err := p.cmd.Wait()
		_ = f.Close()
		c.mu.Lock()
		p.err = err
		close(p.done)
		unexpected := !p.killed
		c.mu.Unlock()
		if unexpected {
			c.onUnexpectedExit(p)
		}
	}()
	return nil
}

// onUnexpectedExit records the exit and restarts the child after a
// backoff, unless the run stops or the harness restarted it meanwhile.
func (c *child) onUnexpectedExit(p *proc) {
	rec := ExitRecord{Child: c.spec.name, Process: p.n, After: time.Since(p.started), Status: exitStatus(p.err), Log: p.logPath, Tail: tail(p.logPath, 8)}
	c.spec.log.Warn("unexpected exit", "child", c.spec.name, "process", p.n, "status", rec.Status, "log", p.logPath)
	goOn := c.spec.exits.add(rec, c.spec.maxUnexpected)
	c.mu.Lock()
	defer c.mu.Unlock()
	if !goOn || c.stopping {
		return
	}
	if time.Since(p.started) > time.Minute {
		c.bo.Reset()
	}
	wait := c.bo.NextBackOff()
	c.restarts.Add(1)
	go func() {
		defer c.restarts.Done()
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-t.C:
		case <-c.spec.exits.gaveUp:
			return
		case <-c.quit:
			return
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.stopping || c.cur != p {
			return
		}
		if err := c.start(); err != nil {
			c.spec.log.Error("restart after an unexpected exit failed", "child", c.spec.name, "err", err)
		}
	}()
}

// Start starts the first process.
func (c *child) Start() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.start()
}

// Kill sends SIGKILL to the running process, waits for it and starts a
// new one.
func (c *child) Kill(ctx context.Context) error {
	c.mu.Lock()
	p := c.cur
	if p != nil && !p.exited() {
		p.killed = true
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
	}
	c.mu.Unlock()
	if p != nil {
		select {
		case <-p.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopping {
		return nil
	}
	return c.start()
}

// Stop ends the child for good: SIGTERM, and SIGKILL after grace. It
// returns the exit status of a process that was running ("" if none) and
// an error when it did not exit 0 by itself.
func (c *child) Stop(grace time.Duration) (string, error) {
	c.mu.Lock()
	if !c.stopping {
		c.stopping = true
		close(c.quit)
	}
	p := c.cur
	running := p != nil && !p.exited()
	if running {
		p.killed = true
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	c.mu.Unlock()
	defer c.restarts.Wait()
	if !running {
		return "", nil
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		_ = p.cmd.Process.Kill()
		<-p.done
		return "killed after " + grace.String(), fmt.Errorf("%s did not exit within %s of SIGTERM", c.spec.name, grace)
	}
	st := exitStatus(p.err)
	if p.err != nil {
		return st, fmt.Errorf("%s after SIGTERM: %s (log %s)", c.spec.name, st, p.logPath)
	}
	return st, nil
}

// running returns the current process if it runs.
func (c *child) running() *proc {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur == nil || c.cur.exited() {
		return nil
	}
	return c.cur
}

// WaitReady waits until the current process answers 200 on /readyz
// (/metrics where there is no /readyz).
func (c *child) WaitReady(ctx context.Context) error {
	cl := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		p := c.running()
		if p != nil {
			if last = probe(ctx, cl, c.spec.metricsAddr); last == nil {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready (%v): %w", c.spec.name, last, ctx.Err())
		case <-tick.C:
		}
	}
}

// probe asks /readyz, falling back to /metrics when there is none.
func probe(ctx context.Context, cl *http.Client, addr string) error {
	for _, path := range []string{"/readyz", "/metrics"} {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
		if err != nil {
			return err
		}
		res, err := cl.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, res.Body)
		_ = res.Body.Close()
		switch res.StatusCode {
		case http.StatusOK:
			return nil
		case http.StatusNotFound:
			continue
		default:
			return fmt.Errorf("%s: %s", path, res.Status)
		}
	}
	return errors.New("neither /readyz nor /metrics answers 200")
}

func exitStatus(err error) string {
	if err == nil {
		return "exit status 0"
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return "signal " + ws.Signal().String()
		}
	}
	return err.Error()
}

// tail returns the last n lines of a file.
func tail(path string, n int) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return lines
}
