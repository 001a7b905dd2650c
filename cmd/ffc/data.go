package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/ffc-stream/ffc/internal/dataset"
	"github.com/ffc-stream/ffc/internal/dataset/glyphs"
	"github.com/ffc-stream/ffc/internal/dataset/objstore"
	"github.com/ffc-stream/ffc/internal/dataset/plot"
	"github.com/ffc-stream/ffc/internal/dataset/synth"
)

// newDataCmd returns "ffc data": build, upload and plot identity data sets.
func newDataCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "data",
		Short: "Build, upload and plot identity data sets (CJK glyphs, synthetic IDs)",
		Long: `Build identity data sets as local file sets (images.bin, index.bin,
manifest.json), upload them to S3-compatible storage as
<bucket>/ids/<id>/<source>.png plus <bucket>/manifest.json, and plot them.`,
	}
	cmd.AddCommand(newDataGlyphsCmd(), newDataSynthCmd(), newDataUploadCmd(), newDataPlotCmd())
	return cmd
}

const dataSetsDir = ".cache/ffc-data"

// dataContext ends on an interrupt as well as with the command's context.
func dataContext(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(cmd.Context(), os.Interrupt)
}

// dataLogger logs to w, honouring the root's --log-level and --log-format
// when the command tree has them.
func dataLogger(cmd *cobra.Command, w io.Writer) *slog.Logger {
	var level slog.Level
	if f := cmd.Flag("log-level"); f != nil {
		if err := level.UnmarshalText([]byte(f.Value.String())); err != nil {
			level = slog.LevelInfo
		}
	}
	opts := &slog.HandlerOptions{Level: level}
	if f := cmd.Flag("log-format"); f != nil && strings.EqualFold(f.Value.String(), "json") {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// dataProgress redraws one line on a terminal every 250 ms; elsewhere (CI
// logs) it prints a line every 10 s.
func dataProgress(w io.Writer) func(dataset.Progress) {
	every := 10 * time.Second
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			every = 250 * time.Millisecond
		}
	}
	return dataset.ProgressLine(w, every)
}

func newDataGlyphsCmd() *cobra.Command {
	o := glyphs.DefaultOptions()
	var packages, ranges string
	cmd := &cobra.Command{
		Use:   "glyphs",
		Short: "Render CJK glyph identities from Debian font packages into a file set",
		Long: `Download the font packages (apt-get download, cached), render every face's
glyphs of the chosen ranges, drop unmapped characters, tofu, empty and
near-duplicate images, split classes (train/openset) and fonts (held out),
and write the file set. A rerun reuses the downloads and per-face renders.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := dataContext(cmd)
			defer cancel()
			pkgs, err := glyphs.PackageList(packages)
			if err != nil {
				return err
			}
			o.Packages = pkgs
			o.Ranges = strings.Split(ranges, ",")
			if !cmd.Flags().Changed("out") && packages != glyphs.PackagesCI {
				o.OutDir = filepath.Join(dataSetsDir, "glyphs-"+strings.TrimSuffix(filepath.Base(packages), filepath.Ext(packages)))
			}
			stderr := cmd.ErrOrStderr()
			o.Logger = dataLogger(cmd, stderr)
			o.Progress = dataProgress(stderr)
			res, err := glyphs.Build(ctx, o)
			if err != nil {
				return err
			}
			m, s := res.Manifest, res.ImagesPerClass
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "glyph set in %s\n", res.Dir)
			fmt.Fprintf(out, "  classes %d (train %d, openset %d), images %d (train %d, heldout %d, openset %d)\n",
				len(m.Classes), m.Counts.TrainClasses, m.Counts.OpensetClasses, m.Counts.Images, m.Counts.Train, m.Counts.Heldout, m.Counts.Openset)
			fmt.Fprintf(out, "  images per class: min %d, p10 %d, median %d, mean %.1f, max %d\n", s.Min, s.P10, s.Median, s.Mean, s.Max)
			fmt.Fprintf(out, "  fonts %d (held out %d), packages %d, faces %d (%d from the render cache), duplicate files %d\n",
				len(m.Fonts), m.Counts.HeldoutFonts, len(m.Packages), res.Faces, res.FacesCached, len(res.DuplicateFiles))
			d := res.Dropped
			fmt.Fprintf(out, "  dropped: unmapped %d, empty %d, glyph errors %d, tofu %d, near-duplicates %d; characters without images %d\n",
				d.Unmapped, d.Empty, d.GlyphErrors, d.Tofu, d.Duplicates, d.EmptyClasses)
			fmt.Fprintf(out, "  unreadable faces %d\n", len(m.Unreadable))
			for _, u := range m.Unreadable {
				fmt.Fprintf(out, "    %s %s#%d: %s\n", u.Package, u.File, u.Face, u.Reason)
			}
			ms := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
			fmt.Fprintf(out, "  time %s (fetch %s, render %s, filter %s, write %s), content sha256 %s\n",
				ms(res.Elapsed), ms(res.FetchTime), ms(res.RenderTime), ms(res.FilterTime), ms(res.WriteTime), m.ContentSHA256)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&packages, "packages", glyphs.PackagesCI, `font packages: "ci" (12 packages, ~19 MB), "full" (71 packages) or a file with one Debian package name a line`)
	f.StringVar(&ranges, "range", glyphs.RangeGB2312L1, `characters, comma-separated: "gb2312-1" (3,755 common hanzi), "uro" (U+4E00-U+9FFF), "hangul" (U+AC00-U+D7A3)`)
	f.IntVar(&o.Size, "size", o.Size, "image side in pixels (32; 64 also sensible)")
	f.StringVar(&o.OutDir, "out", filepath.Join(dataSetsDir, "glyphs-ci"), "output directory of the file set (default with --packages full: "+filepath.Join(dataSetsDir, "glyphs-full")+")")
	f.StringVar(&o.CacheDir, "cache", glyphs.DefaultCacheDir(), "cache of downloaded .deb files, unpacked packages and per-face renders ($FFC_CACHE_DIR/glyphs, else ~/.cache/ffc/glyphs)")
	f.Float64Var(&o.OpensetFrac, "openset-frac", o.OpensetFrac, "fraction of classes never trained on (open-set verification), chosen by --seed")
	f.Float64Var(&o.HeldoutFrac, "heldout-frac", o.HeldoutFrac, "fraction of fonts held out of training (top-1 identification), chosen by --seed")
	f.Uint64Var(&o.Seed, "seed", o.Seed, "seed of the class and font splits")
	f.IntVar(&o.Workers, "workers", 0, "faces rendered in parallel (0: min(GOMAXPROCS, 4))")
	return cmd
}

func newDataSynthCmd() *cobra.Command {
	o := synth.DefaultOptions()
	var out string
	var sample uint64
	var opensetFrac, heldoutFrac float64
	cmd := &cobra.Command{
		Use:   "synth",
		Short: "Describe a synthetic identity set, or write a sample of it as a file set",
		Long: `Synthetic identities: image bytes are a pure function of (seed, id,
instance), and the number of instances of an ID follows a power law
P(k) ∝ k^-alpha on [min, max]. Without --sample this prints the law's
numbers and the render rate; with --sample N it writes IDs 0..N-1 as a
file set.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := dataContext(cmd)
			defer cancel()
			g, err := synth.New(o)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			mean := g.MeanInstances()
			fmt.Fprintf(w, "synthetic set: %d IDs, instances per ID ~ k^-%g on [%d, %d]: mean %.2f, P(k=%d) %.3f, P(k<=10) %.3f; expected images %.0f\n",
				o.IDs, o.Alpha, o.Min, o.Max, mean, o.Min, g.CDF(o.Min), g.CDF(10), mean*float64(o.IDs))
			img := make([]byte, o.Size*o.Size)
			start := time.Now()
			const n = 2000
			for i := range n {
				g.Render(img, uint64(i)%o.IDs, i%3)
			}
			fmt.Fprintf(w, "render rate: %.0f images/s on one core\n", n/time.Since(start).Seconds())
			if sample == 0 {
				return nil
			}
			m, err := synth.WriteSample(ctx, g, out, synth.SampleOptions{
				IDs: sample, OpensetFrac: opensetFrac, HeldoutFrac: heldoutFrac, Progress: dataProgress(cmd.ErrOrStderr()),
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(w, "sample in %s: %d classes, %d images (train %d, heldout %d, openset %d), content sha256 %s\n",
				out, len(m.Classes), m.Counts.Images, m.Counts.Train, m.Counts.Heldout, m.Counts.Openset, m.ContentSHA256)
			return nil
		},
	}
	f := cmd.Flags()
	f.Uint64Var(&o.IDs, "ids", o.IDs, "number of synthetic identities")
	f.Float64Var(&o.Alpha, "alpha", o.Alpha, "power-law exponent of the instances per ID: P(k) ∝ k^-alpha")
	f.IntVar(&o.Min, "min", o.Min, "fewest instances of an ID")
	f.IntVar(&o.Max, "max", o.Max, "most instances of an ID")
	f.Uint64Var(&o.Seed, "seed", o.Seed, "seed of the prototypes, augmentations, counts and splits")
	f.IntVar(&o.Size, "size", o.Size, "image side in pixels")
	f.StringVar(&out, "out", filepath.Join(dataSetsDir, "synth"), "output directory of the --sample file set")
	f.Uint64Var(&sample, "sample", 0, "write IDs 0..N-1 (all their instances) as a file set in --out (0: write nothing)")
	f.Float64Var(&opensetFrac, "openset-frac", 0.1, "fraction of sampled IDs never trained on")
	f.Float64Var(&heldoutFrac, "heldout-frac", 0.2, "fraction of the images of train IDs held out for identification (instance 0 always trains)")
	return cmd
}

func newDataUploadCmd() *cobra.Command {
	var dir, secretFile string
	o := objstore.S3Options{Bucket: "ffc-data", Parallel: 8}
	cmd := &cobra.Command{
		Use:   "upload",
		Short: "Upload a file set to S3-compatible storage (resumable)",
		Long: `Upload a file set as <bucket>/ids/<id>/<source>.png and, last,
<bucket>/manifest.json. The bucket is listed once; objects already there
with the same size and ETag are skipped, so an interrupted upload resumes.
Objects the file set does not have are left alone.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := dataContext(cmd)
			defer cancel()
			if o.Endpoint == "" {
				return errors.New("--s3-endpoint is required")
			}
			if err := resolveSecret(&o.SecretKey, secretFile, "s3 secret key"); err != nil {
				return err
			}
			o.Logger = dataLogger(cmd, cmd.ErrOrStderr())
			o.Progress = dataProgress(cmd.ErrOrStderr())
			res, err := objstore.Upload(ctx, dir, o)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "uploaded %d of %d objects (%d already there), %.1f MB in %s: %.0f objects/s, %.2f MB/s\n",
				res.Uploaded, res.Objects, res.Skipped, float64(res.Bytes)/1e6, res.Elapsed.Round(time.Millisecond), res.ObjectsPerSec, res.MBPerSec)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", filepath.Join(dataSetsDir, "glyphs-ci"), "file set to upload")
	f.StringVar(&o.Endpoint, "s3-endpoint", "", "S3 endpoint as host:port, without a scheme (env FFC_S3_ENDPOINT; required)")
	f.StringVar(&o.AccessKey, "s3-access-key", "", "S3 access key (env FFC_S3_ACCESS_KEY)")
	f.StringVar(&secretFile, "s3-secret-key-file", "", "file holding the S3 secret key (or env FFC_S3_SECRET_KEY)")
	secretFlag(f, &o.SecretKey, "s3-secret-key", "s3-secret-key-file")
	f.StringVar(&o.CAFile, "s3-ca-file", "", "PEM file of the CA that signs the S3 server's certificate (HTTPS)")
	f.StringVar(&o.Bucket, "bucket", o.Bucket, "bucket, created when missing")
	f.BoolVar(&o.Secure, "s3-secure", false, "use HTTPS (env FFC_S3_SECURE; also accepted as --secure)")
	f.SetNormalizeFunc(func(_ *pflag.FlagSet, name string) pflag.NormalizedName {
		if name == "secure" {
			name = "s3-secure"
		}
		return pflag.NormalizedName(name)
	})
	f.IntVar(&o.Parallel, "parallel", o.Parallel, "concurrent uploads")
	return cmd
}

func newDataPlotCmd() *cobra.Command {
	var dir, class, out string
	cmd := &cobra.Command{
		Use:   "plot",
		Short: "Plot a file set: histogram of images per class, or the contact sheet of one class",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := dataset.Open(dir)
			if err != nil {
				return err
			}
			defer r.Close()
			var draw func(io.Writer) error
			if class == "" {
				if out == "" {
					out = filepath.Join(dir, "images-per-class.png")
				}
				draw = func(w io.Writer) error { return plot.Histogram(w, r.Manifest()) }
			} else {
				label, err := r.Manifest().FindClass(class)
				if err != nil {
					return err
				}
				if out == "" {
					out = filepath.Join(dir, "class-"+r.Classes()[label].ID+".png")
				}
				draw = func(w io.Writer) error { return plot.ContactSheet(w, r, label) }
			}
			f, err := os.Create(out)
			if err != nil {
				return err
			}
			if err := draw(f); err != nil {
				f.Close()
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), out)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", filepath.Join(dataSetsDir, "glyphs-ci"), "file set to plot")
	f.StringVar(&class, "class", "", "draw this class's contact sheet instead of the histogram: a label, an id (u4e2d) or a character (中)")
	f.StringVar(&out, "out", "", "PNG to write (default <dir>/images-per-class.png, or <dir>/class-<id>.png with --class)")
	return cmd
}
