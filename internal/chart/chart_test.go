package chart

import (
	"encoding/xml"
	"strings"
	"testing"
)

func TestSVG(t *testing.T) {
	c := Chart{Title: "DB round trips per 1,000 API requests <&>", Log: true, Bars: []Bar{
		{Label: "TTL 1m", Value: 333.3, Note: "round trips"},
		{Label: "TTL 24h", Value: 0.23},
		{Label: "lookup per request", Value: 1000, Accent: true},
		{Label: "nothing", Value: 0},
	}}
	out := c.SVG()
	// Well-formed XML: the docs embed it as an image.
	dec := xml.NewDecoder(strings.NewReader(string(out)))
	for {
		if _, err := dec.Token(); err != nil {
			if err.Error() == "EOF" {
				break
			}
			t.Fatalf("not well-formed: %v\n%s", err, out)
		}
	}
	for _, want := range []string{"&lt;&amp;&gt;", "333", "0.23", "1000", "#c0504d", "log scale"} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("SVG lacks %q:\n%s", want, out)
		}
	}
	if string(out) != string(c.SVG()) {
		t.Fatal("SVG is not deterministic")
	}
}

func TestScale(t *testing.T) {
	tests := []struct {
		log  bool
		v    float64
		want float64
	}{
		{false, 5, 5}, {true, 9, 1}, {true, 99, 2}, {true, 0, 0}, {false, -1, 0},
	}
	for _, tt := range tests {
		if got := (Chart{Log: tt.log}).scale(tt.v); got != tt.want {
			t.Errorf("scale(log=%v, %v) = %v, want %v", tt.log, tt.v, got, tt.want)
		}
	}
}
