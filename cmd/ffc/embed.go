package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ffc-stream/ffc/internal/dataset"
	"github.com/ffc-stream/ffc/schemas"
	"github.com/ffc-stream/ffc/trainers/engine"
	"github.com/ffc-stream/ffc/trainers/nn"
	"github.com/ffc-stream/ffc/trainers/settings"
)

type embedFlags struct {
	net         netFlags
	format, out string
	threads     int
	dev         deviceFlags
}

// errBadEmbedImages: embed refused some of its image files; nothing was
// embedded.
var errBadEmbedImages = errors.New("bad image files, nothing embedded")

const embedLong = `embed computes the embeddings of PNG images with the probe (default) or
the gallery network of a checkpoint folder written by 'ffc train'.

Each IMAGE is a .png file or a folder (its .png files, not those of its
subfolders, sorted by name). Every file is checked first as 'ffc ids add'
checks it (at most 256 KiB, a PNG that decodes, 32×32 pixels): if any
fails, each bad file is reported and nothing is computed.

Images are converted to 8-bit grayscale, scaled as in training,
(x/255 − 0.5)/0.5, and run through the network in eval mode (BatchNorm
running statistics), as 'ffc eval' does. Embeddings are L2-normalised:
the dot product of two is their cosine similarity. They are the outputs
of the model 'ffc export' writes for the same --checkpoint and --network.

--format jsonl (default): one JSON object a line, in the order of the
images, {"path": "a.png", "embedding": [0.01, ...]}, on stdout or in --out.
--format npy: one float32 array of N×dim (NumPy .npy, little-endian),
rows in the same order, in --out (required).`

func newEmbedCmd(a *app) *cobra.Command {
	f := &embedFlags{}
	cmd := &cobra.Command{
		Use:   "embed --checkpoint DIR [--network probe|gallery] [--format jsonl|npy] [--out FILE] IMAGE|DIR...",
		Short: "Print the embeddings of PNG images by a trained network",
		Long:  embedLong,
		Args:  cobra.MinimumNArgs(1),
		RunE:  func(cmd *cobra.Command, args []string) error { return runEmbed(cmd.Context(), a, f, args) },
	}
	fs := cmd.Flags()
	f.net.addFlags(fs)
	fs.StringVar(&f.format, "format", "jsonl", "output format: jsonl (JSON lines) or npy (a float32 N×dim NumPy array; needs --out)")
	fs.StringVar(&f.out, "out", "", "file to write (default: stdout, for jsonl)")
	addThreadsFlag(fs, &f.threads)
	f.dev.addFlags(fs)
	return cmd
}

// embedImage is one checked input: its path and its 8-bit pixels.
type embedImage struct {
	path string
	pix  []byte
}

func runEmbed(ctx context.Context, a *app, f *embedFlags, args []string) error {
	imgs, set, err := f.check(args)
	if err != nil {
		return fmt.Errorf("embed: %w", err)
	}
	be, err := newBackend(a.log, f.threads, f.dev)
	if err != nil {
		return fmt.Errorf("embed: %w", err)
	}
	defer be.Close()
	e, err := f.net.loadNet(be, a.log, set)
	if err != nil {
		return fmt.Errorf("embed: %w", err)
	}
	defer e.Close()
	size := schemas.DefaultLimits().ImageSize
	if e.InLen() != size*size {
		return fmt.Errorf("embed: the checkpoint's network takes %d floats per input, not a %d×%d image", e.InLen(), size, size)
	}
	idx := make([]int, len(imgs))
	for i := range idx {
		idx[i] = i
	}
	emb, err := engine.EmbedImages(ctx, e, pngImages{size: size, imgs: imgs}, idx)
	if err != nil {
		return fmt.Errorf("embed: %w", err)
	}
	var buf bytes.Buffer
	if f.format == "npy" {
		err = writeNPY(&buf, len(imgs), set.Dim, emb)
	} else {
		err = writeEmbeddingsJSONL(&buf, imgs, set.Dim, emb)
	}
	if err != nil {
		return fmt.Errorf("embed: %w", err)
	}
	a.log.Info("embedded", "images", len(imgs), "dim", set.Dim, "network", f.net.network, "checkpoint", f.net.checkpoint, "format", f.format, "out", f.out)
	if f.out == "" {
		_, err = a.stdout.Write(buf.Bytes())
	} else {
		err = writeFileAtomic(f.out, buf.Bytes())
	}
	if err != nil {
		return fmt.Errorf("embed: %w", err)
	}
	return nil
}

// check validates every flag, the checkpoint and every image before any
// work; it returns the images and the checkpoint's settings.
func (f *embedFlags) check(args []string) ([]embedImage, settings.Settings, error) {
	f.format = strings.ToLower(strings.TrimSpace(f.format))
	switch {
	case f.format != "jsonl" && f.format != "npy":
		return nil, settings.Settings{}, fmt.Errorf("--format %q: want jsonl or npy", f.format)
	case f.format == "npy" && f.out == "":
		return nil, settings.Settings{}, errors.New("--format npy needs --out (a binary array is not written to stdout)")
	case f.threads < 0:
		return nil, settings.Settings{}, fmt.Errorf("--threads %d: want ≥ 0 (0: all cores)", f.threads)
	}
	if err := f.dev.check(); err != nil {
		return nil, settings.Settings{}, err
	}
	set, err := f.net.check()
	if err != nil {
		return nil, set, err
	}
	size := schemas.DefaultLimits().ImageSize
	if set.Backbone == "mlp" && set.InLen != size*size {
		return nil, set, fmt.Errorf("--checkpoint %s: its mlp takes %d floats per input, not a %d×%d image", f.net.checkpoint, set.InLen, size, size)
	}
	imgs, rejected := readEmbedImages(args)
	if len(rejected) > 0 {
		var b strings.Builder
		for _, r := range rejected {
			fmt.Fprintf(&b, "\n  %s: %s", r.File, r.Reason)
		}
		return nil, set, fmt.Errorf("%w:%s", errBadEmbedImages, b.String())
	}
	return imgs, set, nil
}

// readEmbedImages reads and checks the .png files of paths (a folder: the
// .png files in it) in order; it returns every file that fails, and why.
func readEmbedImages(paths []string) ([]embedImage, []rejectedFile) {
	var imgs []embedImage
	var rejected []rejectedFile
	for _, p := range paths {
		files, err := pngFiles(p)
		if err == nil && len(files) == 0 {
			err = errors.New("a folder without .png files")
		}
		if err != nil {
			rejected = append(rejected, rejectedFile{File: p, Reason: err.Error()})
			continue
		}
		for _, file := range files {
			pix, err := decodePNGFile(file)
			if err != nil {
				rejected = append(rejected, rejectedFile{File: file, Reason: err.Error()})
				continue
			}
			imgs = append(imgs, embedImage{path: file, pix: pix})
		}
	}
	return imgs, rejected
}

// decodePNGFile checks a PNG file as the producers check images
// (schemas.DecodeImage with the default limits) and returns its 8-bit
// grayscale pixels row by row.
func decodePNGFile(file string) ([]byte, error) {
	_, g, err := readImageFile(file)
	if err != nil {
		return nil, err
	}
	return nn.Pixels(g), nil
}

// pngImages are checked images as engine.Images, for engine.EmbedImages
// (which scales them with nn.AppendScaled, as evaluation does).
type pngImages struct {
	size int
	imgs []embedImage
}

func (p pngImages) Len() int              { return len(p.imgs) }
func (p pngImages) ImageSize() int        { return p.size }
func (p pngImages) Meta(int) dataset.Meta { return dataset.Meta{} }
func (p pngImages) ReadImage(i int, dst []byte) (dataset.Meta, error) {
	if len(dst) != len(p.imgs[i].pix) {
		return dataset.Meta{}, fmt.Errorf("%s: %d pixels, want %d", p.imgs[i].path, len(p.imgs[i].pix), len(dst))
	}
	copy(dst, p.imgs[i].pix)
	return dataset.Meta{}, nil
}

// writeEmbeddingsJSONL writes one {"path", "embedding"} object a line.
func writeEmbeddingsJSONL(w io.Writer, imgs []embedImage, dim int, emb []float32) error {
	enc := json.NewEncoder(w)
	for i, im := range imgs {
		line := struct {
			Path      string    `json:"path"`
			Embedding []float32 `json:"embedding"`
		}{im.path, emb[i*dim : (i+1)*dim]}
		if err := enc.Encode(line); err != nil {
			return fmt.Errorf("%s: %w", im.path, err)
		}
	}
	return nil
}

// writeNPY writes rows×cols float32 values as a NumPy .npy file (format
// version 1.0, little-endian '<f4', C order).
func writeNPY(w io.Writer, rows, cols int, v []float32) error {
	if len(v) != rows*cols {
		return fmt.Errorf("npy: %d values for %d×%d", len(v), rows, cols)
	}
	hdr := fmt.Sprintf("{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }", rows, cols)
	// magic (6) + version (2) + header length (2) + header + '\n' is a
	// multiple of 64.
	pad := (64 - (10+len(hdr)+1)%64) % 64
	hdr += strings.Repeat(" ", pad) + "\n"
	out := make([]byte, 0, 10+len(hdr)+4*len(v))
	out = append(out, "\x93NUMPY\x01\x00"...)
	out = binary.LittleEndian.AppendUint16(out, uint16(len(hdr)))
	out = append(out, hdr...)
	for _, x := range v {
		out = binary.LittleEndian.AppendUint32(out, math.Float32bits(x))
	}
	_, err := w.Write(out)
	return err
}
