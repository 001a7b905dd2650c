package schemas

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"strconv"
	"strings"
	"unicode/utf8"
)

// ImageKey returns the object key of an image of id: "ids/<id>/<name>.png".
// name is the image's base name without the extension.
func ImageKey(id uint64, name string) string {
	return "ids/" + strconv.FormatUint(id, 10) + "/" + name + ".png"
}

// ParseImageKey splits an object key of the form
// "[<prefix>/]ids/<id>/<name>.png" into the ID (canonical decimal) and the
// base name (without ".png"). The error wraps ErrMissingField, ErrTooLarge
// or ErrMalformed.
func ParseImageKey(key string) (id uint64, name string, err error) {
	return parseImageKey("key", key)
}

func parseImageKey(field, key string) (uint64, string, error) {
	if key == "" {
		return 0, "", bad(ErrMissingField, field, "empty")
	}
	if len(key) > MaxKeyBytes {
		return 0, "", bad(ErrTooLarge, field, "%d bytes > %d", len(key), MaxKeyBytes)
	}
	if !utf8.ValidString(key) {
		return 0, "", bad(ErrMalformed, field, "not UTF-8")
	}
	malformed := bad(ErrMalformed, field, "%q is not [<prefix>/]ids/<id>/<name>.png", key)
	dir, base, ok := cutLast(key)
	if !ok {
		return 0, "", malformed
	}
	name, ok := strings.CutSuffix(base, ".png")
	if !ok || name == "" {
		return 0, "", malformed
	}
	parent, idStr, ok := cutLast(dir)
	if !ok || (parent != "ids" && !strings.HasSuffix(parent, "/ids")) {
		return 0, "", malformed
	}
	// Canonical decimal only: digits, no leading zero.
	if idStr == "" || (len(idStr) > 1 && idStr[0] == '0') || idStr[0] < '0' || idStr[0] > '9' {
		return 0, "", malformed
	}
	id, err := strconv.ParseUint(idStr, 10, 64)
	if err != nil {
		return 0, "", malformed
	}
	return id, name, nil
}

// cutLast splits s around its last '/'.
func cutLast(s string) (before, after string, ok bool) {
	i := strings.LastIndexByte(s, '/')
	if i < 0 {
		return "", "", false
	}
	return s[:i], s[i+1:], true
}

// checkKey validates an image key and that it names id.
func checkKey(field, key string, id uint64) error {
	got, _, err := parseImageKey(field, key)
	if err != nil {
		return err
	}
	if got != id {
		return bad(ErrMalformed, field, "%q names id %d, message id is %d", key, got, id)
	}
	return nil
}

// checkImage validates PNG bytes: present, within MaxImageBytes, an IHDR of
// the expected size (checked cheaply first), then a full decode.
func checkImage(field string, data []byte, lim Limits) (image.Image, error) {
	if len(data) == 0 {
		return nil, bad(ErrMissingField, field, "empty")
	}
	if len(data) > lim.MaxImageBytes {
		return nil, bad(ErrTooLarge, field, "%d bytes > %d", len(data), lim.MaxImageBytes)
	}
	cfg, err := png.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		return nil, bad(ErrBadImage, field, "%v", err)
	}
	if lim.ImageSize > 0 {
		if cfg.Width != lim.ImageSize || cfg.Height != lim.ImageSize {
			return nil, bad(ErrBadImage, field, "%d×%d, want %d×%d", cfg.Width, cfg.Height, lim.ImageSize, lim.ImageSize)
		}
	} else if cfg.Width <= 0 || cfg.Height <= 0 {
		return nil, bad(ErrBadImage, field, "empty %d×%d image", cfg.Width, cfg.Height)
	} else if int64(cfg.Width)*int64(cfg.Height) > MaxAnyImagePixels {
		return nil, bad(ErrTooLarge, field, "%d×%d > %d pixels", cfg.Width, cfg.Height, MaxAnyImagePixels)
	}
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, bad(ErrBadImage, field, "%v", err)
	}
	return img, nil
}

// DecodeImage validates PNG bytes as the decoders do (size within
// lim.MaxImageBytes, lim.ImageSize square) and returns the image as 8-bit
// grayscale (color.GrayModel; transparent pixels become black). Errors wrap
// ErrMissingField, ErrTooLarge or ErrBadImage.
func DecodeImage(data []byte, lim Limits) (*image.Gray, error) {
	img, err := checkImage("image", data, lim.norm())
	if err != nil {
		return nil, err
	}
	return toGray(img), nil
}

// toGray converts any image to an *image.Gray with bounds at the origin.
func toGray(img image.Image) *image.Gray {
	b := img.Bounds()
	if g, ok := img.(*image.Gray); ok && b.Min == (image.Point{}) {
		return g
	}
	g := image.NewGray(image.Rect(0, 0, b.Dx(), b.Dy()))
	for y := 0; y < b.Dy(); y++ {
		for x := 0; x < b.Dx(); x++ {
			g.SetGray(x, y, color.GrayModel.Convert(img.At(b.Min.X+x, b.Min.Y+y)).(color.Gray))
		}
	}
	return g
}
