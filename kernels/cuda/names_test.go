package cuda

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestKernelNames: the Go name list, the extern "C" kernels of kernels.cu,
// its FFC_KERNELS list and the entries of both embedded PTX files agree.
func TestKernelNames(t *testing.T) {
	src, err := os.ReadFile("kernels.cu")
	if err != nil {
		t.Fatal(err)
	}
	var defined []string
	for _, m := range regexp.MustCompile(`extern "C" __global__ void (?:__launch_bounds__\(FFC_MAX_BLOCK\) )?(\w+)\(`).FindAllStringSubmatch(string(src), -1) {
		defined = append(defined, m[1])
	}
	list := string(src[strings.Index(string(src), "#define FFC_KERNELS(X)"):])
	var listed []string
	for _, m := range regexp.MustCompile(`X\((\w+)\)`).FindAllStringSubmatch(list, -1) {
		listed = append(listed, m[1])
	}
	names := kernelNames[:]
	if !slices.Equal(defined, names) {
		t.Errorf("kernels.cu defines %v\nGo lists %v", defined, names)
	}
	if !slices.Equal(listed, names) {
		t.Errorf("FFC_KERNELS lists %v\nGo lists %v", listed, names)
	}
	for arch, ptx := range map[string]string{"sm_80": ptxSM80, "sm_90": ptxSM90} {
		if !strings.Contains(ptx, ".target "+arch) {
			t.Errorf("PTX for %s does not target it", arch)
		}
		for _, n := range names {
			if !strings.Contains(ptx, ".entry "+n+"(") {
				t.Errorf("PTX for %s lacks kernel %s: run make ptx", arch, n)
			}
		}
	}
}

func TestPTXFor(t *testing.T) {
	for _, c := range []struct {
		major, minor int
		arch         string
	}{{9, 0, "sm_90"}, {10, 0, "sm_90"}, {8, 0, "sm_80"}, {8, 9, "sm_80"}, {7, 5, ""}} {
		arch, _, ok := ptxFor(c.major, c.minor)
		if arch != c.arch || ok != (c.arch != "") {
			t.Errorf("ptxFor(%d.%d) = %q, %v; want %q", c.major, c.minor, arch, ok, c.arch)
		}
	}
}
