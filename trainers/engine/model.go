package engine

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// ModelFile describes the network of a checkpoint folder written before
// the settings were recorded (settings.json, package trainers/settings,
// which reads this file for those folders).
const ModelFile = "model.json"

// Model is the architecture part of Options.
type Model struct {
	Backbone string `json:"backbone"`
	Dim      int    `json:"dim"`
	InLen    int    `json:"in_len,omitempty"`
	Hidden   []int  `json:"hidden,omitempty"`
	Head     string `json:"head"`
}

// ModelOf returns the architecture of opts.
func ModelOf(o Options) Model {
	return Model{Backbone: o.Backbone, Dim: o.Dim, InLen: o.InLen, Hidden: o.Hidden, Head: o.Head}
}

// WriteModel writes model.json into dir.
func WriteModel(dir string, m Model) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("model: %w", err)
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, ModelFile), append(b, '\n'), 0o644)
}

// ReadModel reads model.json from dir.
func ReadModel(dir string) (Model, error) {
	var m Model
	b, err := os.ReadFile(filepath.Join(dir, ModelFile))
	if err != nil {
		return m, fmt.Errorf("model: %w (is %s a checkpoint folder written by ffc train?)", err, dir)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("model: %s: %w", filepath.Join(dir, ModelFile), err)
	}
	if m.Backbone == "" || m.Dim <= 0 {
		return m, fmt.Errorf("model: %s: missing backbone or dim", filepath.Join(dir, ModelFile))
	}
	return m, nil
}
