package main

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of /proc/stat (100 on Linux).
const clockTicks = 100

// busyCPU is the CPU time, in seconds, every process of the machine has
// spent so far (/proc/stat's first line less idle and iowait).
func busyCPU() (float64, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0, errors.New("/proc/stat: no cpu line")
	}
	var busy float64
	for i, s := range f[1:] {
		if i >= 8 { // guest and guest_nice are already in user and nice
			break
		}
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return 0, err
		}
		if i != 3 && i != 4 { // idle, iowait
			busy += v
		}
	}
	return busy / clockTicks, nil
}

// otherCores is the average number of cores the rest of the machine kept
// busy while a child ran: the machine's busy CPU time over the interval
// less the child's own, divided by the interval; −1 when unknown. The
// machines are shared, and a run that competed for its cores is slower
// than the table's other rows by more than the CPU it lost.
func otherCores(busy0, busy1, childCPU, wall float64) float64 {
	if !(wall > 0) || busy0 < 0 || busy1 < busy0 {
		return -1
	}
	return max(0, busy1-busy0-childCPU) / wall
}

// quietBelow is the busy cores under which the machine counts as quiet.
const quietBelow = 0.15

// waitQuiet waits, up to limit, until the machine has been quiet (fewer
// than quietBelow cores busy) over a window of probe, so that a child does
// not start into someone else's burst on a shared machine. It returns the
// busy cores of the last window (−1: unknown) and whether it was quiet.
func waitQuiet(limit, probe time.Duration, log func(string, ...any)) (float64, bool) {
	deadline := time.Now().Add(limit)
	logged := false
	for {
		b0, err := busyCPU()
		if err != nil {
			return -1, false
		}
		t0 := time.Now()
		time.Sleep(probe)
		b1, err := busyCPU()
		if err != nil {
			return -1, false
		}
		busy := (b1 - b0) / time.Since(t0).Seconds()
		if busy < quietBelow {
			return busy, true
		}
		if time.Now().After(deadline) {
			log("torchref: the machine is still busy (%.2f cores) after %v: running anyway", busy, limit)
			return busy, false
		}
		if !logged {
			log("torchref: waiting for a quiet machine (%.2f cores busy by others), up to %v", busy, limit)
			logged = true
		}
	}
}
