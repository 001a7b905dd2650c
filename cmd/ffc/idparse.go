package main

import (
	"errors"
	"fmt"
	"strconv"
	"unicode"
	"unicode/utf8"
)

// idForms describes the accepted ID forms, for errors and help texts.
const idForms = "a decimal number (19968), a code point (U+4E00, u+4e00, U4E00, u4e00) or one character (一)"

// parseID parses an identity given on the command line: a decimal number;
// a hexadecimal Unicode code point written U+XXXX, u+XXXX, UXXXX or uXXXX;
// or a single character other than an ASCII digit, whose code point is the
// ID (the glyph data sets key their identities so). Anything else — empty,
// several characters that are none of these, a number beyond uint64, a
// code point beyond U+10FFFF — is an error that says why.
func parseID(s string) (uint64, error) {
	switch {
	case s == "":
		return 0, errors.New("empty ID: want " + idForms)
	case allDigits(s):
		id, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("ID %q: beyond the largest ID %d", s, uint64(1<<64-1))
		}
		return id, nil
	}
	if hex, ok := codePointDigits(s); ok {
		cp, err := strconv.ParseUint(hex, 16, 64)
		if err != nil || cp > unicode.MaxRune {
			return 0, fmt.Errorf("ID %q: U+%s is beyond the last code point U+10FFFF", s, hex)
		}
		return cp, nil
	}
	r, size := utf8.DecodeRuneInString(s)
	if size != len(s) {
		return 0, fmt.Errorf("ID %q: want %s", s, idForms)
	}
	if r == utf8.RuneError || !unicode.IsGraphic(r) || unicode.IsSpace(r) {
		return 0, fmt.Errorf("ID %q: not a printable character; want %s", s, idForms)
	}
	return uint64(r), nil
}

// allDigits reports whether s is non-empty and only ASCII digits.
func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// codePointDigits returns the hexadecimal digits of U+XXXX, u+XXXX, UXXXX
// or uXXXX (at least one digit).
func codePointDigits(s string) (string, bool) {
	if len(s) < 2 || (s[0] != 'U' && s[0] != 'u') {
		return "", false
	}
	hex := s[1:]
	if hex[0] == '+' {
		hex = hex[1:]
	}
	if hex == "" {
		return "", false
	}
	for i := 0; i < len(hex); i++ {
		c := hex[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return "", false
		}
	}
	return hex, true
}
