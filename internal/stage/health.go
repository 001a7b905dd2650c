package stage

import (
	"log/slog"
	"sort"
	"sync"
	"time"
)

// Health is the live readiness of a running stage, as opposed to Ready,
// which closes once: a stage that has started may become unhealthy (object
// storage down, NATS unreachable, no partitions assigned) and recover.
// Each named condition is set by the part that knows it; the stage is
// healthy when every condition is. A state change is logged once, not at
// every check (a condition first set failing is logged at Info: it has
// not happened yet). Its zero value is usable (no logger: nothing logged).
type Health struct {
	Log *slog.Logger
	// OnChange, when set, is called (outside the lock) after a condition
	// changes state, e.g. to update a metric.
	OnChange func(name string, ok bool)

	mu    sync.Mutex
	conds map[string]Condition
}

// Condition is the state of one health condition.
type Condition struct {
	Name   string    `json:"name"`
	OK     bool      `json:"ok"`
	Reason string    `json:"reason,omitempty"`
	Since  time.Time `json:"since"`
}

// Set records condition name as ok or failing with reason. It reports
// whether the state changed (a change is logged: Warn when it fails,
// Info when it recovers).
func (h *Health) Set(name string, ok bool, reason string) bool {
	h.mu.Lock()
	if h.conds == nil {
		h.conds = map[string]Condition{}
	}
	old, seen := h.conds[name]
	changed := !seen || old.OK != ok
	c := Condition{Name: name, OK: ok, Reason: reason, Since: old.Since}
	if changed {
		c.Since = time.Now()
	}
	h.conds[name] = c
	h.mu.Unlock()
	if !changed {
		return false
	}
	if h.Log != nil {
		switch {
		case !ok && !seen:
			h.Log.Info("health: "+name+" not yet", "reason", reason)
		case !ok:
			h.Log.Warn("health: "+name+" failing", "reason", reason)
		case seen:
			h.Log.Info("health: " + name + " recovered")
		}
	}
	if h.OnChange != nil {
		h.OnChange(name, ok)
	}
	return true
}

// OK reports whether every condition holds (true when none is set).
func (h *Health) OK() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, c := range h.conds {
		if !c.OK {
			return false
		}
	}
	return true
}

// Conditions returns every condition, sorted by name.
func (h *Health) Conditions() []Condition {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]Condition, 0, len(h.conds))
	for _, c := range h.conds {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
