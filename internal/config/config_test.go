package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
)

// newTree builds root → train with a few flags of different types.
func newTree() (root, train *cobra.Command, got *settings) {
	got = &settings{}
	root = &cobra.Command{Use: "ffc"}
	root.PersistentFlags().StringSliceVar(&got.brokers, "kafka-brokers", nil, "")
	train = &cobra.Command{Use: "train", RunE: func(*cobra.Command, []string) error { return nil }}
	train.Flags().IntVar(&got.batch, "batch", 32, "")
	train.Flags().DurationVar(&got.every, "checkpoint-every", time.Minute, "")
	train.Flags().BoolVar(&got.dual, "dual-loader", true, "")
	root.AddCommand(train)
	return root, train, got
}

type settings struct {
	brokers []string
	batch   int
	every   time.Duration
	dual    bool
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ffc.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPrecedence(t *testing.T) {
	file := `
kafka-brokers: [file1:9092, file2:9092]
batch: 8
checkpoint-every: 5m
train:
  batch: 16
`
	tests := []struct {
		name       string
		args       []string
		env        map[string]string
		file       string
		wantBatch  int
		wantBroker string
		wantEvery  time.Duration
		wantDual   bool
		wantSource Source
	}{
		{name: "defaults", wantBatch: 32, wantEvery: time.Minute, wantDual: true, wantSource: FromDefault},
		{name: "file section beats file top level", file: file, wantBatch: 16, wantBroker: "file1:9092,file2:9092", wantEvery: 5 * time.Minute, wantDual: true, wantSource: FromFile},
		{name: "env beats file", file: file, env: map[string]string{"FFC_BATCH": "24", "FFC_KAFKA_BROKERS": "env:9092", "FFC_DUAL_LOADER": "false"}, wantBatch: 24, wantBroker: "env:9092", wantEvery: 5 * time.Minute, wantDual: false, wantSource: FromEnv},
		{name: "flag beats env", file: file, args: []string{"--batch", "64", "--kafka-brokers", "flag:9092"}, env: map[string]string{"FFC_BATCH": "24", "FFC_KAFKA_BROKERS": "env:9092"}, wantBatch: 64, wantBroker: "flag:9092", wantEvery: 5 * time.Minute, wantDual: true, wantSource: FromFlag},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root, train, got := newTree()
			var applied Applied
			train.PreRunE = func(cmd *cobra.Command, _ []string) error {
				var f string
				if tc.file != "" {
					f = writeFile(t, tc.file)
				}
				var err error
				applied, err = Apply(cmd, Options{File: f, LookupEnv: func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok }})
				return err
			}
			root.SetArgs(append([]string{"train"}, tc.args...))
			if err := root.Execute(); err != nil {
				t.Fatal(err)
			}
			if got.batch != tc.wantBatch || strings.Join(got.brokers, ",") != tc.wantBroker || got.every != tc.wantEvery || got.dual != tc.wantDual {
				t.Errorf("got batch %d brokers %q every %s dual %v", got.batch, strings.Join(got.brokers, ","), got.every, got.dual)
			}
			if applied["batch"] != tc.wantSource {
				t.Errorf("batch came from %q, want %q", applied["batch"], tc.wantSource)
			}
		})
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name    string
		file    string
		env     map[string]string
		wantErr string
	}{
		{name: "bad env value", env: map[string]string{"FFC_BATCH": "many"}, wantErr: "FFC_BATCH"},
		{name: "bad file value", file: "batch: many\n", wantErr: "key batch"},
		{name: "bad yaml", file: "batch: [1,\n", wantErr: "config file"},
		{name: "nested list", file: "kafka-brokers: [[a]]\n", wantErr: "nested lists"},
		{name: "missing file", file: "\x00missing", wantErr: "config file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, train, _ := newTree()
			var f string
			switch {
			case tc.file == "\x00missing":
				f = filepath.Join(t.TempDir(), "nope.yaml")
			case tc.file != "":
				f = writeFile(t, tc.file)
			}
			_, err := Apply(train, Options{File: f, LookupEnv: func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok }})
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want one mentioning %q", err, tc.wantErr)
			}
		})
	}
}

func TestEnvName(t *testing.T) {
	for in, want := range map[string]string{"kafka-brokers": "FFC_KAFKA_BROKERS", "s3-endpoint": "FFC_S3_ENDPOINT", "pool": "FFC_POOL"} {
		if got := EnvName(in); got != want {
			t.Errorf("EnvName(%q) = %q, want %q", in, got, want)
		}
	}
}
