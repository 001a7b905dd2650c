package stage

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fake is a stage that records the order of events in a shared log.
type fake struct {
	Lifecycle
	name    string
	log     *eventLog
	fail    error // returned by Run once ready, when set
	noReady bool
	closes  int
}

type eventLog struct {
	mu     sync.Mutex
	events []string
}

func (l *eventLog) add(e string) {
	l.mu.Lock()
	l.events = append(l.events, e)
	l.mu.Unlock()
}

func (l *eventLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.events, " ")
}

func (f *fake) Run(ctx context.Context) error {
	ctx, end, err := f.Begin(ctx)
	if err != nil {
		return err
	}
	defer end()
	if !f.noReady {
		f.SetReady()
	}
	if f.fail != nil {
		return f.fail
	}
	<-ctx.Done()
	f.log.add("stop:" + f.name)
	return nil
}

func (f *fake) Close() error {
	if f.Stop() {
		f.closes++
		f.log.add("close:" + f.name)
	}
	return nil
}

func TestGroupStopsInOrderAndClosesInReverse(t *testing.T) {
	log := &eventLog{}
	g := NewGroup(context.Background(), nil)
	stages := []*fake{{name: "replica", log: log}, {name: "trainer", log: log}, {name: "producer", log: log}}
	for _, s := range stages {
		g.Go(s.name, s)
	}
	if err := g.WaitReady(context.Background(), "producer", "trainer", "replica"); err != nil {
		t.Fatal(err)
	}
	if err := g.Stop(); err != nil {
		t.Fatal(err)
	}
	if got, want := log.String(), "stop:producer stop:trainer stop:replica"; got != want {
		t.Errorf("events after Stop %q, want %q", got, want)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	want := "stop:producer stop:trainer stop:replica close:producer close:trainer close:replica"
	if got := log.String(); got != want {
		t.Errorf("events %q, want %q", got, want)
	}
	if err := g.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	for _, s := range stages {
		if err := s.Close(); err != nil || s.closes != 1 {
			t.Errorf("%s: Close again: %v, %d closes", s.name, err, s.closes)
		}
	}
}

func TestGroupStopsTheNamedFirst(t *testing.T) {
	log := &eventLog{}
	g := NewGroup(context.Background(), nil)
	for _, name := range []string{"stack", "replica", "producer", "trainer"} {
		g.Go(name, &fake{name: name, log: log})
	}
	if err := g.WaitReady(context.Background(), "stack", "replica", "producer", "trainer"); err != nil {
		t.Fatal(err)
	}
	if err := g.Close(); err != nil { // Close stops the last added first
		t.Fatal(err)
	}
	if got, want := log.String(), "stop:trainer stop:producer stop:replica stop:stack close:trainer close:producer close:replica close:stack"; got != want {
		t.Errorf("events %q, want %q", got, want)
	}
	log = &eventLog{}
	g = NewGroup(context.Background(), nil)
	for _, name := range []string{"stack", "replica", "producer", "trainer"} {
		g.Go(name, &fake{name: name, log: log})
	}
	if err := g.WaitReady(context.Background(), "stack", "replica", "producer", "trainer"); err != nil {
		t.Fatal(err)
	}
	if err := g.StopStages("producer", "trainer"); err != nil {
		t.Fatal(err)
	}
	if got, want := log.String(), "stop:producer stop:trainer"; got != want {
		t.Errorf("events after StopStages %q, want %q", got, want)
	}
	if err := g.Stop("replica"); err != nil {
		t.Fatal(err)
	}
	if got, want := log.String(), "stop:producer stop:trainer stop:replica stop:stack"; got != want {
		t.Errorf("events %q, want %q", got, want)
	}
	_ = g.Close()
}

func TestGroupFailureCancelsTheOthers(t *testing.T) {
	log := &eventLog{}
	boom := errors.New("boom")
	g := NewGroup(context.Background(), nil)
	g.Go("replica", &fake{name: "replica", log: log})
	g.Go("trainer", &fake{name: "trainer", log: log, fail: boom})
	<-g.Failed()
	if err := g.Err(); !errors.Is(err, boom) || !strings.HasPrefix(err.Error(), "trainer: ") {
		t.Fatalf("Err %v, want the trainer's boom", err)
	}
	<-g.Done("replica") // cancelled by the failure, without Stop
	if err := g.Stop(); !errors.Is(err, boom) {
		t.Fatalf("Stop: %v, want boom", err)
	}
	if err := g.Close(); !errors.Is(err, boom) {
		t.Fatalf("Close: %v, want boom", err)
	}
}

func TestWaitReadyNamesTheStage(t *testing.T) {
	g := NewGroup(context.Background(), nil)
	g.Go("replica", &fake{name: "replica", log: &eventLog{}, noReady: true})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := g.WaitReady(ctx, "replica")
	if err == nil || !strings.Contains(err.Error(), "replica: not ready") {
		t.Fatalf("WaitReady: %v", err)
	}
	if err := g.WaitReady(context.Background(), "nope"); err == nil {
		t.Error("WaitReady of a stage never started: no error")
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	// A stage that returns before it is ready.
	g = NewGroup(context.Background(), nil)
	g.Go("early", &fake{name: "early", log: &eventLog{}, noReady: true, fail: errors.New("no bucket")})
	if err := g.WaitReady(context.Background(), "early"); err == nil || !strings.Contains(err.Error(), "early: no bucket") {
		t.Fatalf("WaitReady: %v", err)
	}
	_ = g.Close()
}

func TestLifecycle(t *testing.T) {
	f := &fake{name: "s", log: &eventLog{}}
	if err := f.Close(); err != nil { // never ran
		t.Fatal(err)
	}
	if err := f.Run(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Run after Close: %v", err)
	}
	f = &fake{name: "s", log: &eventLog{}}
	done := make(chan error, 1)
	go func() { done <- f.Run(context.Background()) }()
	if err := WaitReady(context.Background(), "s", f, done); err != nil {
		t.Fatal(err)
	}
	if err := f.Run(context.Background()); !errors.Is(err, ErrRunTwice) {
		t.Errorf("second Run: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Errorf("Run after Close: %v", err)
	}
	// WaitReady reports a Run that ended first.
	f = &fake{name: "s", log: &eventLog{}, noReady: true, fail: errors.New("no bucket")}
	go func() { done <- f.Run(context.Background()) }()
	if err := WaitReady(context.Background(), "s", f, done); err == nil || !strings.Contains(err.Error(), "no bucket") {
		t.Errorf("WaitReady: %v", err)
	}
}
