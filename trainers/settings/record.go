package settings

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/ffc-stream/ffc/trainers/engine"
)

// File is the name of the settings record in a checkpoint (a file of an
// offline checkpoint folder, a part of a streaming checkpoint).
const File = "settings.json"

// Marshal encodes s as the checkpoint record.
func (s Settings) Marshal() ([]byte, error) {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("settings: %w", err)
	}
	return append(b, '\n'), nil
}

// Unmarshal decodes a checkpoint record.
func Unmarshal(b []byte) (Settings, error) {
	var s Settings
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("settings: %w", err)
	}
	if s.Backbone == "" || s.Dim <= 0 {
		return s, errors.New("settings: record without backbone or dim")
	}
	return s, nil
}

// WriteFile writes s into the checkpoint folder dir.
func WriteFile(dir string, s Settings) error {
	b, err := s.Marshal()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("settings: %w", err)
	}
	return os.WriteFile(filepath.Join(dir, File), b, 0o644)
}

// ReadFile reads the settings of the checkpoint folder dir; a folder
// written before settings were recorded has the architecture only
// (model.json), which is all evaluation needs.
func ReadFile(dir string) (Settings, error) {
	b, err := os.ReadFile(filepath.Join(dir, File))
	if errors.Is(err, os.ErrNotExist) {
		m, merr := engine.ReadModel(dir)
		if merr != nil {
			return Settings{}, fmt.Errorf("settings: no %s in %s, and %w", File, dir, merr)
		}
		s := Defaults(Offline)
		s.Backbone, s.Dim, s.InLen, s.Hidden, s.Head = m.Backbone, m.Dim, m.InLen, m.Hidden, m.Head
		return s, nil
	}
	if err != nil {
		return Settings{}, fmt.Errorf("settings: %w", err)
	}
	s, err := Unmarshal(b)
	if err != nil {
		return s, fmt.Errorf("%s: %w", filepath.Join(dir, File), err)
	}
	return s, nil
}

// Resume reconciles the settings a trainer restarts with (given; Pool 0
// when --pool was not set) with those of the checkpoint it restores
// (saved). The architecture must match. The pool keeps its checkpoint's
// size Q: when --pool was not set the checkpoint's Q is taken, and a
// different --pool is refused, since the pool's rows, order and pos bits
// cannot be resized. The batch may change: the pool is sized from Q, and
// Derive checks the new batch against it. Everything else (learning
// rate, cadence, ...) takes the new values.
func Resume(given, saved Settings) (Settings, error) {
	var errs []error
	diff := func(name string, now, then any) {
		errs = append(errs, fmt.Errorf("--%s %v, but the checkpoint was trained with %v", name, now, then))
	}
	if given.Backbone != saved.Backbone {
		diff("backbone", given.Backbone, saved.Backbone)
	}
	if given.Dim != saved.Dim {
		diff("dim", given.Dim, saved.Dim)
	}
	if given.Backbone == "mlp" && saved.Backbone == "mlp" && !slices.Equal(given.Hidden, saved.Hidden) {
		diff("hidden", given.Hidden, saved.Hidden)
	}
	if given.InLen != 0 && saved.InLen != 0 && given.InLen != saved.InLen {
		errs = append(errs, fmt.Errorf("inputs of %d pixels, but the checkpoint was trained on %d", given.InLen, saved.InLen))
	}
	switch {
	case given.Pool == 0:
		given.Pool = saved.Pool
	case given.Pool != saved.Pool:
		errs = append(errs, fmt.Errorf("--pool %d, but the checkpoint's pool has %d slots: a pool cannot be resized on restart (drop --pool to keep %d, or train a new --model)", given.Pool, saved.Pool, saved.Pool))
	}
	if len(errs) > 0 {
		return given, fmt.Errorf("settings: cannot resume the checkpoint: %w", errors.Join(errs...))
	}
	return given, nil
}
