package settings

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/ffc-stream/ffc/kernels/cpu"
	"github.com/ffc-stream/ffc/trainers/engine"
)

func TestDerive(t *testing.T) {
	for _, c := range []struct {
		name    string
		mode    Mode
		classes int
		mut     func(*Settings)
		check   func(Settings) bool
	}{
		{"pool from the batch", Streaming, 0, nil, func(s Settings) bool { return s.Pool == 3*64 }},
		{"pool from the classes", Offline, 5000, nil, func(s Settings) bool { return s.Pool == 500 }},
		{"pool given", Offline, 5000, func(s *Settings) { s.Pool = 1000 }, func(s Settings) bool { return s.Pool == 1000 }},
		{"streaming checkpoint cadence", Streaming, 0, nil, func(s Settings) bool { return s.CheckpointEvery == 50 }},
		{"offline checkpoints at the end", Offline, 10, nil, func(s Settings) bool { return s.CheckpointEvery == 0 }},
		{"lead from batch and cadence", Demo, 0, nil, func(s Settings) bool { return s.MaxLead == 2*32*4 }},
		{"lead given", Produce, 0, func(s *Settings) { s.MaxLead = -1 }, func(s Settings) bool { return s.MaxLead == -1 }},
		{"arcface margin", Offline, 10, func(s *Settings) { s.Margin = "ArcFace" }, func(s Settings) bool { return s.Margin == "arcface" && s.M == 0.5 }},
		{"streamed input length", Streaming, 0, nil, func(s Settings) bool { return s.InLen == 1024 }},
		{"streaming trains ffc with both streams", Streaming, 0, nil, func(s Settings) bool { return s.Head == "ffc" && s.DualLoader }},
		{"no hidden layers for irresnet", Offline, 10, nil, func(s Settings) bool { return s.Hidden == nil }},
		{"hidden layers for mlp", Offline, 10, func(s *Settings) { s.Backbone, s.InLen = "mlp", 64 }, func(s Settings) bool { return reflect.DeepEqual(s.Hidden, []int{512}) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := Defaults(c.mode)
			if c.mut != nil {
				c.mut(&s)
			}
			d, err := s.Derive(c.mode, c.classes)
			if err != nil {
				t.Fatal(err)
			}
			if !c.check(d) {
				t.Errorf("derived %+v", d)
			}
		})
	}
}

func TestValidateCollectsEveryProblem(t *testing.T) {
	for _, c := range []struct {
		name string
		mode Mode
		mut  func(*Settings)
		want []string
	}{
		{"odd streaming batch", Streaming, func(s *Settings) { s.Batch = 7 }, []string{"--batch 7: streaming training takes an even batch"}},
		{"odd offline batch is fine but the pool is small", Offline, func(s *Settings) { s.Batch, s.Pool = 7, 9 }, []string{"--pool 9 is below the 11"}},
		{"wd scope", Offline, func(s *Settings) { s.WDScope = "biases" }, []string{"--wd-scope \"biases\""}},
		{"init", Streaming, func(s *Settings) { s.Init = "xavier" }, []string{"--init \"xavier\""}},
		{"several", Offline, func(s *Settings) { s.Backbone, s.Head, s.Schedule, s.LR, s.EMA = "vgg", "x", "sawtooth", 0, 1 },
			[]string{"--backbone \"vgg\"", "--head \"x\"", "--schedule \"sawtooth\"", "--lr 0", "--ema 1"}},
		{"irresnet on 64×64", Offline, func(s *Settings) { s.InLen = 4096 }, []string{"irresnet takes 32×32"}},
		{"id loader alone without the dual loader", Offline, func(s *Settings) { s.IDOnly, s.DualLoader = true, false }, []string{"--id-only keeps the id loader"}},
		{"id loader alone with fc", Offline, func(s *Settings) { s.IDOnly, s.Head = true, "fc" }, []string{"it needs --head ffc"}},
		{"poly without steps", Offline, func(s *Settings) { s.Schedule, s.Steps, s.Warmup = "poly", 10, 10 }, []string{"poly needs --steps 10 > --warmup 10"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := Defaults(c.mode)
			c.mut(&s)
			_, err := s.Derive(c.mode, 100)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestEngineOptions(t *testing.T) {
	s, err := Defaults(Offline).Derive(Offline, 100)
	if err != nil {
		t.Fatal(err)
	}
	o := s.Engine(Offline, 120, nil)
	if o.Schedule.Kind != "step" || !reflect.DeepEqual(o.Schedule.Milestones, []int{180, 255}) || o.Schedule.TotalSteps != 300 || o.Classes != 120 || o.Pool != s.Pool {
		t.Errorf("offline options %+v", o)
	}
	s.Warmup = 5
	o = s.Engine(Streaming, 0, nil)
	if o.Schedule.Kind != "constant" || o.Schedule.LR(1000000) != s.LR || math.Abs(o.Schedule.LR(0)-s.LR/5) > 1e-12 {
		t.Errorf("streaming schedule %+v: want constant after the warm-up", o.Schedule)
	}
	// The engine accepts what the settings derive.
	small := Defaults(Offline)
	small.Backbone, small.InLen, small.Hidden, small.Dim, small.Batch = "mlp", 16, []int{8}, 8, 4
	for _, head := range []string{"ffc", "fc", "pfc"} {
		small.Head = head
		d, err := small.Derive(Offline, 20)
		if err != nil {
			t.Fatal(err)
		}
		be, err := cpu.New(cpu.Options{Threads: 1})
		if err != nil {
			t.Fatal(err)
		}
		e, err := engine.New(be, d.Engine(Offline, 20, nil))
		if err != nil {
			t.Errorf("%s: %v", head, err)
		} else {
			e.Close()
		}
		be.Close()
	}
}

func TestResume(t *testing.T) {
	saved, err := Defaults(Streaming).Derive(Streaming, 0)
	if err != nil {
		t.Fatal(err)
	}
	given := Defaults(Streaming)
	given.Batch = 32 // another batch, no --pool: keeps the checkpoint's Q
	got, err := Resume(given, saved)
	if err != nil || got.Pool != saved.Pool || got.Batch != 32 {
		t.Fatalf("Resume: %+v, %v; want pool %d, batch 32", got, err, saved.Pool)
	}
	given.Pool = saved.Pool + 1
	if _, err := Resume(given, saved); err == nil || !strings.Contains(err.Error(), "cannot be resized") {
		t.Errorf("another --pool: %v", err)
	}
	given = Defaults(Streaming)
	given.Dim, given.Backbone = 2*DefaultDim, "mlp"
	_, err = Resume(given, saved)
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("--dim %d", 2*DefaultDim)) || !strings.Contains(err.Error(), "--backbone mlp") {
		t.Errorf("another architecture: %v", err)
	}
}

func TestRecord(t *testing.T) {
	dir := t.TempDir()
	s, err := Defaults(Offline).Derive(Offline, 10)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(dir, s); err != nil {
		t.Fatal(err)
	}
	got, err := ReadFile(dir)
	if err != nil || !reflect.DeepEqual(got, s) {
		t.Fatalf("ReadFile: %+v, %v; want %+v", got, err, s)
	}
	// An older checkpoint folder has only model.json.
	old := t.TempDir()
	if err := engine.WriteModel(old, engine.Model{Backbone: "mlp", Dim: 64, InLen: 100, Hidden: []int{32}, Head: "fc"}); err != nil {
		t.Fatal(err)
	}
	got, err = ReadFile(old)
	if err != nil || got.Backbone != "mlp" || got.Dim != 64 || got.InLen != 100 || got.Head != "fc" || !reflect.DeepEqual(got.Hidden, []int{32}) {
		t.Errorf("ReadFile of a model.json folder: %+v, %v", got, err)
	}
	if _, err := ReadFile(t.TempDir()); err == nil {
		t.Error("ReadFile of an empty folder: no error")
	}
	if err := os.WriteFile(filepath.Join(old, File), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadFile(old); err == nil {
		t.Error("a corrupt settings.json accepted")
	}
}

func TestFlagsAndModes(t *testing.T) {
	s := Defaults(Offline | Streaming)
	fs := pflag.NewFlagSet("train", pflag.ContinueOnError)
	AddFlags(fs, Offline|Streaming, &s)
	for name, want := range map[string]bool{"schedule": true, "batch": true, "pool": true, "checkpoint-interval": true, "max-lead": false} {
		if got := fs.Lookup(name) != nil; got != want {
			t.Errorf("train has --%s: %v, want %v", name, got, want)
		}
	}
	if err := fs.Parse([]string{"--schedule", "poly", "--batch", "8", "--pool", "100"}); err != nil {
		t.Fatal(err)
	}
	if s.Schedule != "poly" || s.Batch != 8 || s.Pool != 100 {
		t.Errorf("flags not bound: %+v", s)
	}
	src := map[string]Source{"schedule": "flag", "batch": "flag", "pool": "flag"}
	if _, err := CheckModes(fs, Offline, src); err != nil {
		t.Errorf("offline: %v", err)
	}
	_, err := CheckModes(fs, Streaming, src)
	if err == nil || !strings.Contains(err.Error(), "--schedule applies to offline training") || strings.Contains(err.Error(), "--batch") {
		t.Errorf("streaming: %v, want only --schedule refused", err)
	}
	src["schedule"] = "env"
	warn, err := CheckModes(fs, Streaming, src)
	if err != nil || len(warn) != 1 || !strings.Contains(warn[0], "--schedule") {
		t.Errorf("from the environment: %v, %v; want one warning", warn, err)
	}
	// Produce has the trainers' batch, cadence and the lead only.
	p := Defaults(Produce)
	pf := pflag.NewFlagSet("produce", pflag.ContinueOnError)
	AddFlags(pf, Produce, &p)
	var names []string
	pf.VisitAll(func(f *pflag.Flag) { names = append(names, f.Name) })
	if strings.Join(names, ",") != "batch,checkpoint-every,max-lead" {
		t.Errorf("produce flags %v", names)
	}
}
