//go:build !cuda

package main

import (
	"errors"
	"strings"
	"testing"
)

// TestDeviceCUDAWithoutCUDA: in an ffc built without the cuda tag, --device
// cuda (flag or environment) fails at once and says how to build with CUDA.
func TestDeviceCUDAWithoutCUDA(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		env  map[string]string
		args []string
	}{
		{nil, []string{"train", "--offline", "--data", dir, "--device", "cuda"}},
		{nil, []string{"train", "--device", "cuda", "--gpu", "1", "--tf32", "--gpu-memory", "8GiB"}},
		{nil, []string{"eval", "--data", dir, "--device", "cuda"}},
		{nil, []string{"demo", "--check-only", "--device", "cuda"}},
		{map[string]string{"FFC_DEVICE": "cuda"}, []string{"demo", "--check-only"}},
	} {
		_, _, err := run(t, c.env, c.args...)
		if !errors.Is(err, errNoCUDA) {
			t.Errorf("%v %v: err = %v, want %v", c.env, c.args, err, errNoCUDA)
			continue
		}
		if !strings.Contains(err.Error(), "built without CUDA") || !strings.Contains(err.Error(), "make cuda") {
			t.Errorf("error %q does not say how to build with CUDA", err)
		}
	}
	if _, err := newBackend(nil, 1, deviceFlags{device: deviceCUDA}); !errors.Is(err, errNoCUDA) {
		t.Errorf("newBackend(cuda) = %v, want %v", err, errNoCUDA)
	}
}
