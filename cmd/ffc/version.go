package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

func newVersionCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, commit and Go toolchain of this binary",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			version, revision, modified := "(devel)", "unknown", false
			if bi, ok := debug.ReadBuildInfo(); ok {
				if bi.Main.Version != "" {
					version = bi.Main.Version
				}
				for _, s := range bi.Settings {
					switch s.Key {
					case "vcs.revision":
						revision = s.Value
					case "vcs.modified":
						modified = s.Value == "true"
					}
				}
			}
			dirty := ""
			if modified {
				dirty = " (modified)"
			}
			_, err := fmt.Fprintf(a.stdout, "ffc %s\ncommit %s%s\n%s %s/%s\n", version, revision, dirty, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return err
		},
	}
}
