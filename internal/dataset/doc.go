// Package dataset owns the on-disk file set that every ffc identity data set
// is stored as, and the small vocabulary shared by its builders:
//
//   - the file set: images.bin (fixed-size raw uint8 images back to back, ink
//     = 255, background = 0), index.bin (one fixed-size record per image:
//     class label, source, split) and manifest.json (classes, fonts, packages,
//     counts, content hash, build parameters). Writer creates one; Reader
//     opens one and reads images by index with ReadAt, without loading the
//     images into memory;
//   - deterministic splits: classes into train and openset, and sources
//     (fonts) into kept and held out, by seed and fraction (Select);
//   - Source, the interface producers enumerate identities through, which
//     both the synthetic generator and a Reader satisfy;
//   - Progress, the progress report every long-running step emits.
//
// Builders live in subpackages: glyphs (CJK glyphs rendered from Debian font
// packages), synth (synthetic identities), objstore (upload to S3-compatible
// storage) and plot (histograms and contact sheets).
//
// This package must not import the pipeline packages (producers, trainers,
// centers, kernels) nor its own subpackages.
package dataset
