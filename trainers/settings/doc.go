// Package settings owns the training settings: every setting of a run —
// architecture, batch and pool size, loaders, loss, optimizer and
// schedule, checkpoint cadence and the producers' lead — is defined,
// defaulted, derived and validated here, once, for offline training,
// streaming training, the demo, the producer and evaluation.
//
//	s := settings.Defaults(settings.Streaming)   // the flags' defaults
//	settings.AddFlags(fs, settings.Streaming|settings.Offline, &s)
//	d, err := s.Derive(settings.Streaming, classes)  // zero fields derived, validated
//	opts := d.Engine(log)                          // engine.Options
//
// A flag belongs to the modes it applies to; CheckModes refuses a flag
// given on the command line for a mode it does not apply to (and warns
// about one from the environment or the configuration file) instead of
// ignoring it. A checkpoint records the derived settings (settings.json,
// Write and Read); evaluation reads them back, and Resume reconciles a
// restarted trainer's settings with its checkpoint: the architecture and
// the pool size Q must match, the batch may change (the pool is sized from
// Q, not from B).
//
// It imports the engine, whose Options it builds, and nothing that
// produces, consumes or publishes.
package settings
