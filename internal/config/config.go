// Package config owns how ffc commands get their settings: command-line
// flags first, then environment variables (FFC_<FLAG>, upper case, dashes
// as underscores), then an optional YAML file, then the flag defaults.
//
// It works on any cobra command, so every command's flags get environment
// and file support without code of their own. It imports nothing of the
// pipeline.
package config

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

// EnvPrefix starts every environment variable ffc reads.
const EnvPrefix = "FFC_"

// EnvName is the environment variable that sets the flag with this name:
// "kafka-brokers" → "FFC_KAFKA_BROKERS".
func EnvName(flag string) string {
	return EnvPrefix + strings.ToUpper(strings.NewReplacer("-", "_", ".", "_").Replace(flag))
}

// Source tells where a flag's value came from.
type Source string

// The sources, from highest precedence to lowest.
const (
	FromFlag    Source = "flag"
	FromEnv     Source = "env"
	FromFile    Source = "file"
	FromDefault Source = "default"
)

// Applied reports, per flag name, where its value came from.
type Applied map[string]Source

// Options configures Apply.
type Options struct {
	// File is the YAML file to read; empty means none.
	File string
	// LookupEnv reads the environment; default os.LookupEnv.
	LookupEnv func(string) (string, bool)
}

// Apply sets every flag of cmd (its own and inherited ones) that was not
// given on the command line from the environment or, failing that, from
// the YAML file.
//
// The file maps flag names to values. Top-level keys apply to every command
// that has the flag; a key named after a subcommand holds a map that applies
// only to that command and overrides the top level, nested along the
// command path:
//
//	kafka-brokers: [127.0.0.1:19092]
//	train:
//	  batch: 64
//
// A list becomes the comma-joined value. A value that the flag rejects is an
// error that names the file or variable, the key and the reason.
func Apply(cmd *cobra.Command, opts Options) (Applied, error) {
	if opts.LookupEnv == nil {
		opts.LookupEnv = os.LookupEnv
	}
	fileVals, err := fileValues(cmd, opts.File)
	if err != nil {
		return nil, err
	}
	applied := Applied{}
	var errs []error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Changed {
			applied[f.Name] = FromFlag
			return
		}
		if v, ok := opts.LookupEnv(EnvName(f.Name)); ok {
			if err := cmd.Flags().Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("environment %s=%q: invalid value for --%s: %w", EnvName(f.Name), v, f.Name, err))
				return
			}
			applied[f.Name] = FromEnv
			return
		}
		if v, ok := fileVals[f.Name]; ok {
			if err := cmd.Flags().Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("config file %s: key %s: invalid value %q: %w", opts.File, f.Name, v, err))
				return
			}
			applied[f.Name] = FromFile
			return
		}
		applied[f.Name] = FromDefault
	})
	if len(errs) > 0 {
		return applied, errors.Join(errs...)
	}
	return applied, nil
}

// fileValues reads the YAML file and flattens the parts of it that apply to
// cmd: the top level, then the section of each command on its path.
func fileValues(cmd *cobra.Command, file string) (map[string]string, error) {
	if file == "" {
		return nil, nil
	}
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("config file %s: %w", file, err)
	}
	var path []string // command names below the root
	for c := cmd; c != nil && c.HasParent(); c = c.Parent() {
		path = append([]string{c.Name()}, path...)
	}
	out := map[string]string{}
	level := doc
	for i := 0; ; i++ {
		keys := make([]string, 0, len(level))
		for k := range level {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			v := level[k]
			if _, isSection := v.(map[string]any); isSection {
				continue
			}
			s, err := scalar(v)
			if err != nil {
				return nil, fmt.Errorf("config file %s: key %s: %w", file, k, err)
			}
			out[k] = s
		}
		if i >= len(path) {
			break
		}
		next, ok := level[path[i]].(map[string]any)
		if !ok {
			break
		}
		level = next
	}
	return out, nil
}

func scalar(v any) (string, error) {
	switch x := v.(type) {
	case nil:
		return "", nil
	case string:
		return x, nil
	case bool, int, int64, uint64, float64:
		return fmt.Sprint(x), nil
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			s, err := scalar(e)
			if err != nil {
				return "", err
			}
			if _, nested := e.([]any); nested {
				return "", errors.New("nested lists are not supported")
			}
			parts[i] = s
		}
		return strings.Join(parts, ","), nil
	default:
		return "", fmt.Errorf("unsupported value of type %T", v)
	}
}
