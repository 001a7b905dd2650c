package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// Set at link time by `make build` (-ldflags "-X main.version=... -X
// main.revision=..."): the output of git describe and the commit. Empty
// in a plain `go build`, where the build info's module version and VCS
// stamp stand in.
var (
	version  string
	revision string
)

// buildVersion is what `ffc version` reports.
type buildVersion struct {
	Version  string `json:"version"`
	Revision string `json:"revision"`
	Modified bool   `json:"modified"`
	Go       string `json:"go"`
	Platform string `json:"platform"`
}

// currentVersion reads the link-time values, then the build info.
func currentVersion() buildVersion {
	v := buildVersion{Version: version, Revision: revision, Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if v.Revision == "" {
					v.Revision = s.Value
				}
			case "vcs.modified":
				v.Modified = s.Value == "true"
			}
		}
	}
	if v.Version == "" {
		v.Version = "devel (built without make: no version stamped)"
	}
	if v.Revision == "" {
		v.Revision = "unknown"
	}
	return v
}

func newVersionCmd(a *app) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version, commit and Go toolchain of this binary",
		Long: `version prints the version and commit stamped by 'make build' (git describe
and the commit, through -ldflags), else those of Go's build info.`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			v := currentVersion()
			if asJSON {
				return writeJSONTo(a.stdout, v)
			}
			dirty := ""
			if v.Modified {
				dirty = " (modified)"
			}
			_, err := fmt.Fprintf(a.stdout, "ffc %s\ncommit %s%s\n%s %s\n", v.Version, v.Revision, dirty, v.Go, v.Platform)
			return err
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	return cmd
}
