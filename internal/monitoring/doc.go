// Package monitoring holds the tests of the pipeline's monitoring
// assets in deploy/monitoring: the Grafana dashboard uses only series the
// trainer and the producer register, its PromQL and the Prometheus scrape
// configurations pass promtool, and a real Prometheus scrapes a running
// trainer's consumer lag, step time and checkpoint age.
//
// Those tests need the Prometheus binaries (Debian: apt-get install
// prometheus): without them they are skipped, unless FFC_REQUIRE_REAL=1
// (CI), where they fail. The package has no code of its own.
package monitoring
