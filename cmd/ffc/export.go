package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/ffc-stream/ffc/internal/onnx"
	"github.com/ffc-stream/ffc/kernels"
	"github.com/ffc-stream/ffc/kernels/cpu"
	"github.com/ffc-stream/ffc/trainers/engine"
	"github.com/ffc-stream/ffc/trainers/nn"
	"github.com/ffc-stream/ffc/trainers/settings"
)

// The networks of a checkpoint (--network).
const (
	netProbe   = "probe"
	netGallery = "gallery"
)

// netFlags select a trained network: the commands that load one (export,
// embed) share them.
type netFlags struct {
	checkpoint, network string
}

func (f *netFlags) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&f.checkpoint, "checkpoint", "runs/latest", "checkpoint folder written by 'ffc train' (settings.json, probe.params, gallery.params)")
	fs.StringVar(&f.network, "network", netProbe, "network of the checkpoint: probe (the trained network) or gallery (its moving average; FFC checkpoints only)")
}

// check validates the flags and reads the checkpoint's settings; it loads
// no weights.
func (f *netFlags) check() (settings.Settings, error) {
	f.network = strings.ToLower(strings.TrimSpace(f.network))
	if err := checkNetwork(f.network); err != nil {
		return settings.Settings{}, err
	}
	if f.checkpoint == "" {
		return settings.Settings{}, errors.New("--checkpoint is required")
	}
	set, err := settings.ReadFile(f.checkpoint)
	if err != nil {
		return set, fmt.Errorf("--checkpoint: %w", err)
	}
	if _, err := os.Stat(f.paramsFile()); err != nil {
		if f.network == netGallery && errors.Is(err, os.ErrNotExist) {
			return set, fmt.Errorf("--network gallery: no %s in %s (only FFC checkpoints have a gallery; this one's head is %s)", engine.GalleryFile, f.checkpoint, set.Head)
		}
		return set, fmt.Errorf("--checkpoint: %w", err)
	}
	return set, nil
}

// paramsFile is the weights file of the selected network.
func (f *netFlags) paramsFile() string { return networkFile(f.checkpoint, f.network) }

// checkNetwork reports a --network that is neither probe nor gallery.
func checkNetwork(network string) error {
	if network != netProbe && network != netGallery {
		return fmt.Errorf("--network %q: want probe or gallery", network)
	}
	return nil
}

// networkFile is the weights file of network in the checkpoint folder dir.
func networkFile(dir, network string) string {
	if network == netGallery {
		return filepath.Join(dir, engine.GalleryFile)
	}
	return filepath.Join(dir, engine.ProbeFile)
}

// loadNet builds the checkpoint's network on be in an evaluation engine,
// as ffc eval does, and loads the weights of the selected network (the
// gallery has the probe's architecture). The caller closes the engine.
func (f *netFlags) loadNet(be kernels.Backend, log *slog.Logger, set settings.Settings) (*engine.Engine, error) {
	e, err := probeEngine(be, set, settings.Offline, log)
	if err != nil {
		return nil, err
	}
	if f.network == netProbe {
		err = e.LoadProbe(f.checkpoint)
	} else {
		err = loadParamsFile(f.paramsFile(), be, e.Probe())
	}
	if err != nil {
		return nil, errors.Join(err, e.Close())
	}
	return e, nil
}

func loadParamsFile(path string, be kernels.Backend, net nn.Net) error {
	fh, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	defer fh.Close()
	if err := nn.LoadParams(fh, be, nn.Tensors(net)); err != nil {
		return fmt.Errorf("checkpoint %s: %w", path, err)
	}
	return nil
}

type exportFlags struct {
	net         netFlags
	format, out string
}

const exportLong = `export writes the probe (default) or the gallery network of a checkpoint
folder written by 'ffc train' as a file another runtime can serve.

--format onnx (the only format) writes an ONNX model, opset 17, IR version 8:
  input  "input"      float32 N×1×32×32 (NCHW) for the irresnet backbone,
                      N×in_len for mlp; N is symbolic. Pixels are scaled
                      as in training: (x/255 − 0.5)/0.5, in [−1, 1], from
                      8-bit grayscale (ink 255, background 0);
  output "embedding"  float32 N×dim, L2-normalised per row (the network's
                      last layer), so a dot product is a cosine similarity.
BatchNorm uses the running statistics (eval mode), as 'ffc eval' and
'ffc embed' do: the model's embeddings are those of 'ffc embed' with the
same --checkpoint and --network.`

func newExportCmd(a *app) *cobra.Command {
	f := &exportFlags{}
	cmd := &cobra.Command{
		Use:   "export --format onnx --checkpoint DIR --out FILE",
		Short: "Write a trained network as an ONNX model",
		Long:  exportLong,
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return runExport(cmd.Context(), a, f) },
	}
	fs := cmd.Flags()
	f.net.addFlags(fs)
	fs.StringVar(&f.format, "format", "onnx", "model format: onnx")
	fs.StringVar(&f.out, "out", "", "file to write (required), e.g. model.onnx")
	return cmd
}

func runExport(ctx context.Context, a *app, f *exportFlags) error {
	if strings.ToLower(f.format) != "onnx" {
		return fmt.Errorf("export: --format %q: want onnx", f.format)
	}
	if f.out == "" {
		return errors.New("export: --out is required")
	}
	set, err := f.net.check()
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	be, err := cpu.New(cpu.Options{Threads: 1})
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	defer be.Close()
	e, err := f.net.loadNet(be, a.log, set)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	defer e.Close()
	m, err := onnx.Export(ctx, be, e.Probe(), onnx.Options{
		GraphName:       "ffc-" + f.net.network,
		ProducerVersion: currentVersion().Version,
		DocString:       "ffc " + f.net.network + " network of " + f.net.checkpoint + "; input: pixels scaled (x/255-0.5)/0.5; output: L2-normalised embeddings",
		Metadata: map[string]string{
			"ffc.network": f.net.network, "ffc.backbone": set.Backbone, "ffc.dim": strconv.Itoa(set.Dim),
			"ffc.input_scaling": "(x/255-0.5)/0.5", "ffc.output": "l2-normalised",
		},
	})
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	b, err := onnx.Marshal(m)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if err := writeFileAtomic(f.out, b); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	a.log.Info("exported", "network", f.net.network, "checkpoint", f.net.checkpoint, "out", f.out, "bytes", len(b), "opset", onnx.Opset)
	_, err = fmt.Fprintf(a.stdout, "export: %s network of %s (%s, dim %d) → %s (ONNX opset %d, %d nodes, %.1f MiB)\n",
		f.net.network, f.net.checkpoint, set.Backbone, set.Dim, f.out, onnx.Opset, len(m.GetGraph().GetNode()), float64(len(b))/(1<<20))
	return err
}

// writeFileAtomic writes data to path through a temporary file in the same
// folder, so a reader never sees a partial file.
func writeFileAtomic(path string, data []byte) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err = tmp.Write(data); err != nil {
		return err
	}
	if err = tmp.Chmod(0o644); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
