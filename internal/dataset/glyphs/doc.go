// Package glyphs owns the real identity data set: CJK characters as
// identities, rendered as small grayscale images from the fonts in Debian
// font packages, one image per (character, font face).
//
// It fetches packages with apt-get download into a cache, unpacks them with
// dpkg-deb, parses every .ttf/.otf/.ttc/.otc face with x/image/font/sfnt
// (rewriting collection faces whose tables sfnt rejects as unaligned into
// standalone fonts), renders the chosen character ranges, drops unmapped
// characters, tofu, empty and near-duplicate images, splits classes and
// fonts deterministically, and writes a dataset file set.
//
// Rendering (see Render): every glyph of a font is scaled by the same factor,
// the font's em box mapped onto the image minus a margin of size/16 pixels
// on each side (2 px at 32), and its ink bounding box is centred in the
// image. A glyph whose ink would still overflow the image is shrunk to fit.
// Images are ink 255 on background 0.
//
// This package must not import the pipeline packages (producers, trainers,
// centers, kernels).
package glyphs
