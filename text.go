package ordercore

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// ValidText reports whether s is text ordercore stores as a client gave it (a name, a
// reason, an operator's note): valid UTF-8 without control characters other than tab,
// line feed and carriage return. NUL is among those refused: PostgreSQL cannot store it
// in text, and one such value would fail a whole group commit.
func ValidText(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) && r != '\t' && r != '\n' && r != '\r' {
			return false
		}
	}
	return true
}

// CutRunes cuts s to its first n characters: for a channel field whose bound counts
// characters, where ordercore's own text may be longer (a refund reason to a channel that
// takes fewer).
func CutRunes(s string, n int) string {
	seen := 0
	for i := range s {
		if seen == n {
			return s[:i]
		}
		seen++
	}
	return s
}

// CleanText makes text that comes from outside and is only recorded (a participant's
// answer, a webhook receiver's error) storable: invalid UTF-8 becomes U+FFFD, control
// characters other than tab, line feed and carriage return become spaces, and the result
// is cut to at most max bytes without splitting a character.
func CleanText(s string, max int) string {
	if ValidText(s) && len(s) <= max {
		return s
	}
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) && r != '\t' && r != '\n' && r != '\r' {
			return ' '
		}
		return r
	}, s)
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}
