package glyphs

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ffc-stream/ffc/internal/dataset"
	"golang.org/x/sync/errgroup"
)

// The project's own copies of the package lists.
var (
	//go:embed packages/ci.txt
	ciPackages string
	//go:embed packages/full.txt
	fullPackages string
)

// Names of the embedded package lists.
const (
	// PackagesCI is the 12-package CI set (about 19 MB of .deb files).
	PackagesCI = "ci"
	// PackagesFull is the 71-package set.
	PackagesFull = "full"
)

// PackageList returns the package names of an embedded list (PackagesCI,
// PackagesFull) or of a file with one name a line ('#' starts a comment).
func PackageList(nameOrFile string) ([]string, error) {
	var text string
	switch nameOrFile {
	case PackagesCI:
		text = ciPackages
	case PackagesFull:
		text = fullPackages
	default:
		b, err := os.ReadFile(nameOrFile)
		if err != nil {
			return nil, fmt.Errorf("glyphs: package list (want %s, %s or a file): %w", PackagesCI, PackagesFull, err)
		}
		text = string(b)
	}
	var out []string
	seen := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		name := strings.TrimSpace(line)
		if name == "" || seen[name] {
			continue
		}
		if strings.ContainsAny(name, " \t/*?[") {
			return nil, fmt.Errorf("glyphs: package list %s: %q is not a package name", nameOrFile, name)
		}
		seen[name] = true
		out = append(out, name)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("glyphs: package list %s is empty", nameOrFile)
	}
	return out, nil
}

// LocalPackage is a package whose files are unpacked in Dir.
type LocalPackage struct {
	Name    string
	Version string
	// Deb is the .deb file name; empty for font folders not from a .deb.
	Deb string
	Dir string
}

// FetchOptions configures Fetch.
type FetchOptions struct {
	// CacheDir holds debs/ (downloaded packages) and unpacked/.
	CacheDir string
	// Workers unpack packages in parallel; default 1.
	Workers  int
	Logger   *slog.Logger
	Progress func(dataset.Progress)
}

// Fetch makes sure each package's .deb is in the cache (apt-get download,
// skipped when a .deb of the package is already there), reads its version
// (dpkg-deb -f) and unpacks it once (dpkg-deb -x). The error names every
// package that could not be fetched.
func Fetch(ctx context.Context, pkgs []string, opts FetchOptions) ([]LocalPackage, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.CacheDir == "" {
		return nil, errors.New("glyphs: fetch: no cache directory")
	}
	debDir := filepath.Join(opts.CacheDir, "debs")
	if err := os.MkdirAll(debDir, 0o755); err != nil {
		return nil, fmt.Errorf("glyphs: fetch: %w", err)
	}
	var missing []string
	for _, p := range pkgs {
		if d, err := findDeb(debDir, p); err != nil {
			return nil, err
		} else if d == "" {
			missing = append(missing, p)
		}
	}
	start := time.Now()
	if len(missing) > 0 {
		log.Info("downloading font packages", "count", len(missing), "dir", debDir)
		if err := aptDownload(ctx, debDir, missing); err != nil {
			return nil, err
		}
		log.Info("downloaded font packages", "count", len(missing), "elapsed", time.Since(start).Round(time.Millisecond))
	}
	debs := make([]string, len(pkgs))
	for i, p := range pkgs {
		deb, err := findDeb(debDir, p)
		if err != nil {
			return nil, err
		}
		if deb == "" {
			return nil, fmt.Errorf("glyphs: fetch: %s: apt-get download left no .deb in %s", p, debDir)
		}
		debs[i] = deb
	}
	// Unpack with a few dpkg-deb processes at once (decompression is the
	// cost); the first error stops the rest.
	out := make([]LocalPackage, len(pkgs))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(1, opts.Workers))
	var done atomic.Int64
	for i, p := range pkgs {
		if gctx.Err() != nil {
			break
		}
		g.Go(func() error {
			lp, err := unpack(gctx, opts.CacheDir, p, debs[i])
			if err != nil {
				return err
			}
			out[i] = lp
			n := done.Add(1)
			if opts.Progress != nil {
				opts.Progress(dataset.Progress{Stage: "unpack", Done: n, Total: int64(len(pkgs)), Elapsed: time.Since(start), Final: n == int64(len(pkgs))})
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// findDeb returns the path of the cached .deb of pkg ("" when none); of
// several versions, the most recently downloaded.
func findDeb(debDir, pkg string) (string, error) {
	m, err := filepath.Glob(filepath.Join(debDir, pkg+"_*.deb"))
	if err != nil {
		return "", fmt.Errorf("glyphs: fetch: %w", err)
	}
	best, bestT := "", time.Time{}
	for _, p := range m {
		st, err := os.Stat(p)
		if err != nil || !st.Mode().IsRegular() || st.Size() == 0 {
			continue
		}
		if best == "" || st.ModTime().After(bestT) {
			best, bestT = p, st.ModTime()
		}
	}
	return best, nil
}

// aptDownload downloads pkgs into a scratch folder and moves the finished
// .deb files into debDir, so an interrupted download leaves nothing behind.
func aptDownload(ctx context.Context, debDir string, pkgs []string) error {
	tmp, err := os.MkdirTemp(debDir, ".download-")
	if err != nil {
		return fmt.Errorf("glyphs: fetch: %w", err)
	}
	defer os.RemoveAll(tmp)
	var fails []string
	if _, err := runCmd(ctx, tmp, "apt-get", append([]string{"download"}, pkgs...)...); err != nil {
		// Find out which packages failed, one at a time.
		for _, p := range pkgs {
			if _, err := runCmd(ctx, tmp, "apt-get", "download", p); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				fails = append(fails, fmt.Sprintf("%s (%v)", p, err))
			}
		}
	}
	ents, err := os.ReadDir(tmp)
	if err != nil {
		return fmt.Errorf("glyphs: fetch: %w", err)
	}
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".deb") {
			if err := os.Rename(filepath.Join(tmp, e.Name()), filepath.Join(debDir, e.Name())); err != nil {
				return fmt.Errorf("glyphs: fetch: %w", err)
			}
		}
	}
	if len(fails) > 0 {
		hint := ""
		if len(fails) == len(pkgs) {
			hint = "; is apt's package index current (apt-get update)?"
		}
		return fmt.Errorf("glyphs: could not fetch %d of %d packages: %s%s", len(fails), len(pkgs), strings.Join(fails, "; "), hint)
	}
	return nil
}

// unpack reads the package version and unpacks the .deb under
// CacheDir/unpacked/<deb name>, unless already there.
func unpack(ctx context.Context, cacheDir, pkg, deb string) (LocalPackage, error) {
	v, err := runCmd(ctx, "", "dpkg-deb", "-f", deb, "Version")
	if err != nil {
		return LocalPackage{}, fmt.Errorf("glyphs: %s: read version: %w", pkg, err)
	}
	base := strings.TrimSuffix(filepath.Base(deb), ".deb")
	root := filepath.Join(cacheDir, "unpacked")
	dir := filepath.Join(root, base)
	lp := LocalPackage{Name: pkg, Version: strings.TrimSpace(v), Deb: filepath.Base(deb), Dir: dir}
	if st, err := os.Stat(dir); err == nil && st.IsDir() {
		return lp, nil
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return LocalPackage{}, fmt.Errorf("glyphs: unpack %s: %w", pkg, err)
	}
	tmp, err := os.MkdirTemp(root, ".unpack-")
	if err != nil {
		return LocalPackage{}, fmt.Errorf("glyphs: unpack %s: %w", pkg, err)
	}
	if _, err := runCmd(ctx, "", "dpkg-deb", "-x", deb, tmp); err != nil {
		os.RemoveAll(tmp)
		return LocalPackage{}, fmt.Errorf("glyphs: unpack %s: %w", pkg, err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		os.RemoveAll(tmp)
		// Another build may have unpacked the same package meanwhile.
		if st, serr := os.Stat(dir); serr == nil && st.IsDir() {
			return lp, nil
		}
		return LocalPackage{}, fmt.Errorf("glyphs: unpack %s: %w", pkg, err)
	}
	return lp, nil
}

// runCmd runs a command and returns its stdout; the error carries the last
// line of stderr.
func runCmd(ctx context.Context, dir, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := lastErrorLine(stderr.String())
		if msg == "" {
			return "", fmt.Errorf("%s: %w", name, err)
		}
		return "", fmt.Errorf("%s: %w: %s", name, err, msg)
	}
	return stdout.String(), nil
}

// lastErrorLine picks apt's "E: ..." line when there is one, else the last
// non-empty line.
func lastErrorLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.HasPrefix(lines[i], "E: ") {
			return strings.TrimSpace(lines[i])
		}
	}
	return strings.TrimSpace(lines[len(lines)-1])
}

// isFontFile says whether a file name has a font extension: .ttf, .otf,
// .ttc or .otc, in any case.
func isFontFile(name string) bool {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".ttf", ".otf", ".ttc", ".otc":
		return true
	}
	return false
}

// FindFonts returns the font files under dir, as slash-separated paths
// relative to dir, sorted. Symbolic links are skipped: packages link to
// their own files, and each file is read once.
func FindFonts(dir string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		if !isFontFile(p) {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		out = append(out, filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("glyphs: find fonts in %s: %w", dir, err)
	}
	sort.Strings(out)
	return out, nil
}
