package dataset

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// Progress reports how far a long-running step is.
type Progress struct {
	// Stage names the step, e.g. "render" or "upload".
	Stage string
	// Done of Total units (glyphs, objects, ...); Total 0 when unknown.
	Done, Total int64
	// Bytes moved so far, when the step moves bytes.
	Bytes   int64
	Elapsed time.Duration
	// Final is set on the last report of a stage.
	Final bool
}

// Rate is units per second.
func (p Progress) Rate() float64 {
	if p.Elapsed <= 0 {
		return 0
	}
	return float64(p.Done) / p.Elapsed.Seconds()
}

// ETA is the estimated time left at the current rate (0 when unknown).
func (p Progress) ETA() time.Duration {
	r := p.Rate()
	if r <= 0 || p.Total <= p.Done {
		return 0
	}
	return time.Duration(float64(p.Total-p.Done) / r * float64(time.Second)).Round(time.Second)
}

func (p Progress) String() string {
	s := fmt.Sprintf("%s %d", p.Stage, p.Done)
	if p.Total > 0 {
		s += fmt.Sprintf("/%d (%.1f%%)", p.Total, 100*float64(p.Done)/float64(p.Total))
	}
	s += fmt.Sprintf(" %.0f/s", p.Rate())
	if p.Bytes > 0 {
		s += fmt.Sprintf(" %.1f MB/s", float64(p.Bytes)/1e6/max(p.Elapsed.Seconds(), 1e-9))
	}
	if eta := p.ETA(); eta > 0 && !p.Final {
		s += fmt.Sprintf(" ETA %s", eta)
	}
	return s + fmt.Sprintf(" elapsed %s", p.Elapsed.Round(100*time.Millisecond))
}

// ProgressLine returns a progress callback that writes p.String() to w at
// most every interval, and always on a Final report. On a terminal it
// redraws one line; elsewhere (a CI log) it writes one line per report.
// It is safe for concurrent use.
func ProgressLine(w io.Writer, interval time.Duration) func(Progress) {
	term := false
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			term = true
		}
	}
	var mu sync.Mutex
	var last time.Time
	return func(p Progress) {
		mu.Lock()
		defer mu.Unlock()
		if !p.Final && time.Since(last) < interval {
			return
		}
		last = time.Now()
		switch {
		case !term:
			fmt.Fprintln(w, p)
		case p.Final:
			fmt.Fprintf(w, "\r\033[K%s\n", p)
		default:
			fmt.Fprintf(w, "\r\033[K%s", p)
		}
	}
}
