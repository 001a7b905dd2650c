package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is what a run measured.
type Report struct {
	Stack     string        `json:"stack"`
	Seed      uint64        `json:"seed"`
	Scheduled time.Duration `json:"scheduled_ns"`
	Ran       time.Duration `json:"ran_ns"`
	Services  string        `json:"services"`
	Data      string        `json:"data"`
	Binary    string        `json:"binary"`
	WorkDir   string        `json:"work_dir"`
	// Stopped says why the schedule ended early ("" when it did not).
	Stopped string `json:"stopped,omitempty"`

	Faults      []FaultRecord   `json:"faults"`
	Bad         []BadRow        `json:"bad_messages"`
	Audit       Audit           `json:"audit"`
	IDs         IDCheck         `json:"ids"`
	Subscriber  SubscriberStats `json:"subscriber"`
	Exits       []ExitRecord    `json:"unexpected_exits"`
	FailedStops []string        `json:"failed_stops,omitempty"`

	// Errors are failures of the harness's own steps; Notes what it could
	// not measure.
	Errors []string `json:"errors,omitempty"`
	Notes  []string `json:"notes,omitempty"`
}

// BadRow tallies the injected bad messages of one kind.
type BadRow struct {
	Kind            string   `json:"kind"`
	Reason          string   `json:"reason"` // the decoder's reason for the kind
	Injected        int      `json:"injected"`
	DeadLettered    int      `json:"dead_lettered"` // with a reason
	ExpectedReason  int      `json:"expected_reason"`
	OtherReasons    []string `json:"other_reasons,omitempty"`
	NotDeadLettered int      `json:"not_dead_lettered"`
}

// IDCheck is the check of the IDs at the end.
type IDCheck struct {
	InRotation int `json:"in_rotation"`
	// HadCenter: IDs some update gave a center; Lost: those a fresh
	// replica has no center for.
	HadCenter int      `json:"had_center"`
	Lost      int      `json:"lost"`
	Examples  []string `json:"examples,omitempty"`
}

// KindSummary sums the faults of one kind.
type KindSummary struct {
	Kind, How               string
	Injected, NotRecovered  int
	RecoveryP50, RecoveryMx time.Duration
}

// Summaries sums the faults per kind, in report order.
func (r *Report) Summaries() []KindSummary {
	var out []KindSummary
	for _, k := range faultKinds() {
		s := KindSummary{Kind: k}
		var recs []time.Duration
		for _, f := range r.Faults {
			if f.Kind != k {
				continue
			}
			s.Injected++
			if s.How == "" {
				s.How = f.How
			}
			if k == faultBad {
				continue
			}
			if f.Recovered {
				recs = append(recs, f.Recovery)
			} else {
				s.NotRecovered++
			}
		}
		if len(recs) > 0 {
			slices.Sort(recs)
			s.RecoveryP50, s.RecoveryMx = recs[(len(recs)-1)/2], recs[len(recs)-1]
		}
		out = append(out, s)
	}
	return out
}

// check is one asserted column: its value must be 0.
type check struct {
	name  string
	value int64
}

// checks are the columns that must be 0.
func (r *Report) checks() []check {
	var notRecovered, badMissing int64
	for _, s := range r.Summaries() {
		notRecovered += int64(s.NotRecovered)
	}
	for _, b := range r.Bad {
		badMissing += int64(b.NotDeadLettered)
	}
	return []check{
		{"acknowledged samples lost", r.Audit.Lost},
		{"producer messages dropped", r.Audit.ProducerDropped},
		{"injected bad messages not dead-lettered with a reason", badMissing},
		{"IDs lost", int64(r.IDs.Lost)},
		{"per-ID version regressions", r.Subscriber.Regressions},
		{"unexpected exits", int64(len(r.Exits))},
		{"failed graceful stops (SIGTERM)", int64(len(r.FailedStops))},
		{"faults not recovered from", notRecovered},
	}
}

// Failures lists what failed: a non-zero checked column, an undrained
// audit, an error of the harness.
func (r *Report) Failures() []string {
	var out []string
	for _, c := range r.checks() {
		if c.value != 0 {
			out = append(out, fmt.Sprintf("%s: %d", c.name, c.value))
		}
	}
	if !r.Audit.Drained {
		out = append(out, "topics not drained: "+r.Audit.DrainError)
	}
	if r.Stopped != "" {
		out = append(out, r.Stopped)
	}
	for _, e := range r.Errors {
		out = append(out, "harness: "+e)
	}
	return out
}

func dur(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return d.Round(100 * time.Millisecond).String()
}

// print writes the report as tables.
func (r *Report) print(w io.Writer) {
	fmt.Fprintf(w, "Chaos suite: %s stack, seed %d, faults over %s, ran %s\n", r.Stack, r.Seed, r.Scheduled, r.Ran.Round(time.Second))
	fmt.Fprintf(w, "%s\n%s\nbinary: %s\nwork folder: %s\n\n", r.Services, r.Data, r.Binary, r.WorkDir)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "fault\tinjected\trecovered\trecovery p50\trecovery max\thow")
	for _, s := range r.Summaries() {
		rec := fmt.Sprint(s.Injected - s.NotRecovered)
		if s.Kind == faultBad {
			rec = "-"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", s.Kind, s.Injected, rec, dur(s.RecoveryP50), dur(s.RecoveryMx), s.How)
	}
	_ = tw.Flush()
	fmt.Fprintln(w)
	fmt.Fprintln(tw, "bad message\tinjected\tdead-lettered\twith the expected reason\tnot dead-lettered\texpected reason\tother reasons")
	for _, b := range r.Bad {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%s\t%s\n", b.Kind, b.Injected, b.DeadLettered, b.ExpectedReason, b.NotDeadLettered, b.Reason, strings.Join(b.OtherReasons, ","))
	}
	_ = tw.Flush()
	a := r.Audit
	fmt.Fprintf(w, "\nAudit of %d offsets (%d valid, %d invalid; %d fillers): %d trained in a checkpointed step (newest checkpoint: step %d), %d dead-lettered, %d valid yet dead-lettered; lost: %d not drained, %d not checkpointed, %d invalid without a dead letter, %d acknowledged by the producer but missing (acknowledged %d, in Kafka %d). Dead letters: %d of the trainer, %d of the producer.\n",
		a.Offsets, a.Valid, a.Invalid, a.Fillers, a.Trained, a.CheckpointStep, a.DeadLettered, a.ValidDeadLettered,
		a.NotDrained, a.NotCheckpointed, a.InvalidNotDeadLettered, a.ProducerAckedMissing, a.ProducerAcked, a.ProducerInTopics, a.DeadLetterRecords, a.ProducerDeadLetters)
	s := r.Subscriber
	fmt.Fprintf(w, "Subscriber: %d center updates (%d evictions), %d step commits, %d decode errors, %d IDs; %d version regressions on %d IDs.\n",
		s.Updates, s.Evictions, s.Commits, s.DecodeErrors, s.IDsSeen, s.Regressions, s.RegressedIDs)
	fmt.Fprintf(w, "IDs: %d in rotation, %d had a center, %d without one in a fresh replica.\n\n", r.IDs.InRotation, r.IDs.HadCenter, r.IDs.Lost)
	fmt.Fprintln(tw, "check\tvalue\twant")
	for _, c := range r.checks() {
		fmt.Fprintf(tw, "%s\t%d\t0\n", c.name, c.value)
	}
	_ = tw.Flush()
	r.printDetails(w)
}

// printDetails lists examples, exits, errors and notes.
func (r *Report) printDetails(w io.Writer) {
	list := func(title string, items []string) {
		if len(items) == 0 {
			return
		}
		fmt.Fprintf(w, "\n%s:\n", title)
		for _, s := range items {
			fmt.Fprintf(w, "  - %s\n", s)
		}
	}
	list("Unaccounted offsets (examples)", r.Audit.Examples)
	list("Version regressions (examples)", r.Subscriber.Examples)
	list("IDs without a center (examples)", r.IDs.Examples)
	var exits []string
	for _, e := range r.Exits {
		last := ""
		if len(e.Tail) > 0 {
			last = e.Tail[len(e.Tail)-1]
		}
		exits = append(exits, fmt.Sprintf("%s process %d: %s after %s (log %s): %s", e.Child, e.Process, e.Status, e.After.Round(time.Millisecond), e.Log, last))
	}
	list("Unexpected exits", exits)
	list("Failed graceful stops", r.FailedStops)
	var ferrs []string
	for _, f := range r.Faults {
		if f.Error != "" {
			ferrs = append(ferrs, fmt.Sprintf("%s at %s: %s", f.Kind, f.At.Round(time.Second), f.Error))
		}
	}
	list("Fault errors", ferrs)
	if r.Audit.DrainError != "" {
		list("Drain", []string{r.Audit.DrainError})
	}
	if r.Stopped != "" {
		list("Schedule", []string{r.Stopped})
	}
	list("Harness errors", r.Errors)
	list("Notes", r.Notes)
}
