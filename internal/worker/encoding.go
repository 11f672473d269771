package worker

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"
	"unicode/utf8"
)

// decodeUTF8 implements the WHATWG UTF-8 decoder: each maximal invalid
// subpart becomes one U+FFFD (Go's utf8.DecodeRune yields one per byte, and
// strings.ToValidUTF8 one per run, neither of which browsers do). With fatal,
// invalid input is an error instead.
func decodeUTF8(b []byte, fatal bool) (string, error) {
	if utf8.Valid(b) {
		return string(b), nil
	}
	if fatal {
		//lint:ignore ST1005 the exact message browsers throw
		return "", errors.New("The encoded data was not valid for encoding utf-8")
	}
	var out strings.Builder
	out.Grow(len(b) + 8)
	for i := 0; i < len(b); {
		c := b[i]
		if c < 0x80 {
			out.WriteByte(c)
			i++
			continue
		}
		need, lower, upper := 0, byte(0x80), byte(0xBF)
		switch {
		case c >= 0xC2 && c <= 0xDF:
			need = 1
		case c >= 0xE0 && c <= 0xEF:
			need = 2
			if c == 0xE0 {
				lower = 0xA0
			} else if c == 0xED {
				upper = 0x9F
			}
		case c >= 0xF0 && c <= 0xF4:
			need = 3
			if c == 0xF0 {
				lower = 0x90
			} else if c == 0xF4 {
				upper = 0x8F
			}
		default:
			out.WriteRune(utf8.RuneError)
			i++
			continue
		}
		j := i + 1
		ok := true
		for k := 0; k < need; k++ {
			if j >= len(b) || b[j] < lower || b[j] > upper {
				ok = false
				break
			}
			lower, upper = 0x80, 0xBF
			j++
		}
		if !ok {
			out.WriteRune(utf8.RuneError)
			i = j
			continue
		}
		out.Write(b[i:j])
		i = j
	}
	return out.String(), nil
}

// atob is the HTML forgiving-base64 decode, returning a binary string (one
// code point per byte).
func atob(s string) (string, error) {
	s = strings.Map(func(r rune) rune {
		switch r {
		case '\t', '\n', '\f', '\r', ' ':
			return -1
		}
		return r
	}, s)
	if len(s)%4 == 0 {
		s = strings.TrimSuffix(s, "=")
		s = strings.TrimSuffix(s, "=")
	}
	if len(s)%4 == 1 || strings.ContainsAny(s, "=") {
		return "", invalidCharacter("The string to be decoded is not correctly encoded.")
	}
	b, err := base64.RawStdEncoding.DecodeString(s)
	if err != nil {
		return "", invalidCharacter("The string to be decoded is not correctly encoded.")
	}
	return latin1(b), nil
}

// btoa encodes a binary string; code points above U+00FF are an error.
func btoa(s string) (string, error) {
	b := make([]byte, 0, len(s))
	for _, r := range s {
		if r > 0xFF {
			return "", invalidCharacter("The string to be encoded contains characters outside of the Latin1 range.")
		}
		b = append(b, byte(r))
	}
	return base64.StdEncoding.EncodeToString(b), nil
}

func latin1(b []byte) string {
	var out bytes.Buffer
	out.Grow(len(b))
	for _, c := range b {
		out.WriteRune(rune(c))
	}
	return out.String()
}

// domError is thrown into JavaScript as a DOMException with its name; see
// the "err:" prefix handling in runtime.js.
type domError struct{ name, msg string }

func (e *domError) Error() string { return e.name + ": " + e.msg }

func invalidCharacter(msg string) error { return &domError{"InvalidCharacterError", msg} }
