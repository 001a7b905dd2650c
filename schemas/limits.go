package schemas

// CurrentVersion is the schema version this package writes and the only
// one it reads.
const CurrentVersion uint32 = 1

// Defaults of Limits.
const (
	DefaultMaxMessageBytes = 1 << 20   // 1 MiB
	DefaultMaxImageBytes   = 256 << 10 // 256 KiB per image
	DefaultImageSize       = 32        // 32×32 pixels
	DefaultDim             = 512       // embedding dimension D
)

// Hard bounds that hold whatever the Limits say.
const (
	// MaxAnyImagePixels bounds width×height when Limits.ImageSize < 0, so
	// a small PNG that declares a huge image cannot make the decoder
	// allocate it.
	MaxAnyImagePixels = 1 << 24
	// MaxAnyDim bounds a vector's length when Limits.Dim < 0.
	MaxAnyDim = 1 << 16
	// MaxKeyBytes bounds object keys (S3's own limit).
	MaxKeyBytes = 1024
	// MaxNameBytes bounds names: model, source, topic, part name, hash
	// algorithm.
	MaxNameBytes = 256
)

// Limits bound what a decoder accepts. A zero field takes its default, so
// Limits{} is DefaultLimits().
type Limits struct {
	// MaxMessageBytes bounds the encoded message, checked before parsing.
	MaxMessageBytes int
	// MaxImageBytes bounds each PNG, checked before decoding it.
	MaxImageBytes int
	// ImageSize is the width and the height every image must have, in
	// pixels. Negative: any size up to MaxAnyImagePixels pixels.
	ImageSize int
	// Dim is the length every center vector must have. Negative: any
	// length from 1 to MaxAnyDim.
	Dim int
}

// DefaultLimits returns 1 MiB messages, 256 KiB images, 32×32 images and
// 512-float vectors.
func DefaultLimits() Limits {
	return Limits{
		MaxMessageBytes: DefaultMaxMessageBytes,
		MaxImageBytes:   DefaultMaxImageBytes,
		ImageSize:       DefaultImageSize,
		Dim:             DefaultDim,
	}
}

func (l Limits) norm() Limits {
	d := DefaultLimits()
	if l.MaxMessageBytes <= 0 {
		l.MaxMessageBytes = d.MaxMessageBytes
	}
	if l.MaxImageBytes <= 0 {
		l.MaxImageBytes = d.MaxImageBytes
	}
	if l.ImageSize == 0 {
		l.ImageSize = d.ImageSize
	}
	if l.Dim == 0 {
		l.Dim = d.Dim
	}
	return l
}
