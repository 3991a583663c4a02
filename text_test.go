package ordercore_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	"ordercore"
)

func TestValidText(t *testing.T) {
	for s, want := range map[string]bool{
		"Tee, black, M":          true,
		"línea 1\nline 2\tend\r": true,
		"":                       true,
		"a\x00b":                 false,
		"bell\a":                 false,
		"del\x7f":                false,
		"c1\u0085":               false,
		"bad \xff utf-8":         false,
	} {
		if got := ordercore.ValidText(s); got != want {
			t.Errorf("ValidText(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestCleanText(t *testing.T) {
	for _, tc := range []struct {
		in   string
		max  int
		want string
	}{
		{"fine", 10, "fine"},
		{"nul\x00here", 20, "nul here"},
		{"bad\xffbyte", 20, "bad\uFFFDbyte"},
		{"ééé", 5, "éé"}, // 6 bytes: not cut inside the third é
		{"abc", 0, ""},
	} {
		got := ordercore.CleanText(tc.in, tc.max)
		if got != tc.want {
			t.Errorf("CleanText(%q, %d) = %q, want %q", tc.in, tc.max, got, tc.want)
		}
		if !ordercore.ValidText(got) || len(got) > tc.max {
			t.Errorf("CleanText(%q, %d) = %q: not valid text within the bound", tc.in, tc.max, got)
		}
	}
}

func FuzzCleanText(f *testing.F) {
	f.Add("a\x00\xffé", 3)
	f.Fuzz(func(t *testing.T, s string, max int) {
		if max < 0 || max > 1<<16 {
			t.Skip()
		}
		got := ordercore.CleanText(s, max)
		if !ordercore.ValidText(got) || len(got) > max || !utf8.ValidString(got) {
			t.Fatalf("CleanText(%q, %d) = %q", s, max, got)
		}
		if ordercore.ValidText(s) && len(s) <= max && got != s {
			t.Fatalf("valid text changed: %q -> %q", s, got)
		}
		if ordercore.ValidText(s) && !strings.HasPrefix(s, got) {
			t.Fatalf("valid text not cut to a prefix: %q -> %q", s, got)
		}
	})
}

func TestCutRunes(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"", 3, ""},
		{"abc", 3, "abc"},
		{"abcd", 3, "abc"},
		{"退货退款", 2, "退货"},
		{"é退a", 0, ""},
		{"aé", 5, "aé"},
	} {
		if got := ordercore.CutRunes(tc.in, tc.n); got != tc.want {
			t.Errorf("CutRunes(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}
