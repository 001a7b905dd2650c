package glyphs

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"golang.org/x/text/encoding/simplifiedchinese"
)

// Range names accepted by Range and Chars.
const (
	// RangeGB2312L1 is GB2312 level 1: the 3,755 common hanzi (rows 16-55).
	RangeGB2312L1 = "gb2312-1"
	// RangeURO is the CJK Unified Ideographs block U+4E00-U+9FFF.
	RangeURO = "uro"
	// RangeHangul is the Hangul Syllables block U+AC00-U+D7A3.
	RangeHangul = "hangul"
)

// rangeNames lists the known ranges, for messages.
const rangeNames = RangeGB2312L1 + ", " + RangeURO + ", " + RangeHangul

// Range returns the code points of one named range, ascending.
func Range(name string) ([]rune, error) {
	switch name {
	case RangeGB2312L1:
		return gb2312Level1()
	case RangeURO:
		return span(0x4E00, 0x9FFF), nil
	case RangeHangul:
		return span(0xAC00, 0xD7A3), nil
	}
	return nil, fmt.Errorf("glyphs: unknown range %q (want one of %s)", name, rangeNames)
}

func span(lo, hi rune) []rune {
	r := make([]rune, 0, hi-lo+1)
	for c := lo; c <= hi; c++ {
		r = append(r, c)
	}
	return r
}

// gb2312Level1 decodes the EUC-CN byte pairs 0xB0A1-0xD7F9: rows 16-55 of
// 94 cells each, less the five empty cells at the end of row 55.
func gb2312Level1() ([]rune, error) {
	dec := simplifiedchinese.GBK.NewDecoder()
	var out []rune
	for hi := 0xB0; hi <= 0xD7; hi++ {
		for lo := 0xA1; lo <= 0xFE; lo++ {
			if hi == 0xD7 && lo > 0xF9 {
				break
			}
			s, err := dec.Bytes([]byte{byte(hi), byte(lo)})
			if err != nil {
				return nil, fmt.Errorf("glyphs: decode GB2312 %02X%02X: %w", hi, lo, err)
			}
			rs := []rune(string(s))
			if len(rs) != 1 || rs[0] == 0xFFFD {
				return nil, fmt.Errorf("glyphs: GB2312 %02X%02X decodes to %q", hi, lo, s)
			}
			out = append(out, rs[0])
		}
	}
	// GB2312 orders level 1 by pinyin; callers want code point order.
	slices.Sort(out)
	for i := 1; i < len(out); i++ {
		if out[i] == out[i-1] {
			return nil, fmt.Errorf("glyphs: GB2312 level 1 maps two cells to %U", out[i])
		}
	}
	return out, nil
}

// Chars returns the union of the named ranges, ascending and without
// repeats; blank names are ignored. It fails on an unknown name and when
// no range is named.
func Chars(names []string) ([]rune, error) {
	var all []rune
	for _, n := range names {
		if strings.TrimSpace(n) == "" {
			continue
		}
		r, err := Range(strings.TrimSpace(n))
		if err != nil {
			return nil, err
		}
		all = append(all, r...)
	}
	if len(all) == 0 {
		return nil, errors.New("glyphs: empty character range: name at least one of " + rangeNames)
	}
	slices.Sort(all)
	return slices.Compact(all), nil
}
