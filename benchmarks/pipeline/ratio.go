package main

import (
	"fmt"
	"time"
)

// ratio is one measure of a phase on the embedded stack and on the secure
// one.
type ratio struct {
	phase, measure string
	plain, secure  float64
	// latency: the measure is a time in seconds (lower is better), not a
	// rate.
	latency bool
}

// of is secure/plaintext.
func (x ratio) of() float64 { return x.secure / x.plain }

// measured is one measure a phase reports: a rate, or a time in seconds.
type measured struct {
	name    string
	v       float64
	latency bool
}

// measures are what a phase reports as its rate (the fresh phase: its
// announcement → center times).
func measures(x result) []measured {
	switch x.phase {
	case "s3get":
		return []measured{{"GETs/s", x.getsPerSec, false}}
	case "consume":
		return []measured{{"samples/s", x.samplesPerSec, false}, {"topic fill, messages/s", x.fillPerSec, false}}
	case "fresh":
		if x.got == 0 {
			return nil
		}
		return []measured{{"announcement → center p50", x.p50.Seconds(), true}, {"announcement → center p99", x.p99.Seconds(), true}}
	}
	return []measured{{"samples/s", x.samplesPerSec, false}}
}

// ratios pairs each phase (and fresh lead) of the secure stack with the
// same on the embedded stack, measure by measure; measures missing or
// zero on either side are left out.
func ratios(all []result) []ratio {
	var out []ratio
	for _, s := range all {
		if s.stack != secureStack {
			continue
		}
		for _, p := range all {
			if p.stack != "embedded" || p.phase != s.phase || p.lead != s.lead {
				continue
			}
			sm, pm := measures(s), measures(p)
			for i := range min(len(sm), len(pm)) {
				if sm[i].v > 0 && pm[i].v > 0 {
					out = append(out, ratio{phase: phaseLabel(s), measure: pm[i].name, plain: pm[i].v, secure: sm[i].v, latency: pm[i].latency})
				}
			}
		}
	}
	return out
}

// phaseLabel names a result's phase in the tables.
func phaseLabel(x result) string {
	switch x.phase {
	case "s3get":
		return "S3 GET"
	case "fresh":
		return fmt.Sprintf("fresh, lead %d", x.lead)
	}
	return x.phase
}

// printRatios prints the secure/plaintext table (nothing without both
// stacks).
func (r *report) printRatios(rs []ratio) {
	if len(rs) == 0 {
		return
	}
	r.printf("\n### Secure mode against plaintext\n\n%s\n\n", secureMeaning)
	r.printf("A rate's ratio below 1 (a time's above 1) is what secure mode costs. The stacks run one after the other, once each: on a shared or loaded host (see the load averages) a difference of some tens of percent either way can be noise; repeat the run before reading a cost into it.\n\n")
	r.printf("| phase | measure | embedded | %s | secure/plaintext |\n|---|---|---:|---:|---:|\n", secureStack)
	for _, x := range rs {
		if x.latency {
			r.printf("| %s | %s | %s | %s | %.2f |\n", x.phase, x.measure, seconds(x.plain), seconds(x.secure), x.of())
			continue
		}
		r.printf("| %s | %s | %.0f | %.0f | %.2f |\n", x.phase, x.measure, x.plain, x.secure, x.of())
	}
}

// seconds formats s seconds as a duration to the millisecond.
func seconds(s float64) string {
	return time.Duration(s * float64(time.Second)).Round(time.Millisecond).String()
}
