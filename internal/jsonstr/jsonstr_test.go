package jsonstr

import (
	"encoding/json"
	"testing"
)

// FuzzAppend holds Append to encoding/json.Marshal of a string, the
// behaviour it copies (HTML escaping, U+2028/9, invalid UTF-8).
func FuzzAppend(f *testing.F) {
	for _, s := range []string{"", "plain", `q"b\s`, "<a>&", "\x00\x1f\n\r\t\b\f", "\u2028\u2029", "\xff\xfe", "é😀", "a\xc3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := Append([]byte("x"), s); string(got) != "x"+string(want) {
			t.Fatalf("Append(%q) = %s, encoding/json %s", s, got[1:], want)
		}
	})
}
