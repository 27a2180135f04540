// Package chart draws the small SVG bar charts in Latch's docs from
// measured numbers, so a figure is regenerated with the run that made it.
package chart

import (
	"bytes"
	"fmt"
	"html"
	"math"
)

// Bar is one labelled value.
type Bar struct {
	Label string
	Value float64
	// Note is printed after the value (units, a percentile).
	Note string
	// Accent draws the bar in the second colour (a baseline to compare).
	Accent bool
}

// Chart is a horizontal bar chart.
type Chart struct {
	Title string
	// Log draws the bars on a log10 scale, for values spanning decades.
	Log  bool
	Bars []Bar
}

const (
	width    = 760
	labelW   = 260
	valueW   = 170
	barH     = 22
	gap      = 8
	titleH   = 34
	padRight = 12
)

// SVG renders the chart. The output is deterministic for the same input.
func (c Chart) SVG() []byte {
	var b bytes.Buffer
	height := titleH + len(c.Bars)*(barH+gap) + gap
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="13">`+"\n", width, height, width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="#ffffff"/>`+"\n")
	fmt.Fprintf(&b, `<text x="8" y="22" font-size="15" font-weight="bold">%s</text>`+"\n", html.EscapeString(c.Title))
	span := float64(width - labelW - valueW - padRight)
	maxV := 0.0
	for _, bar := range c.Bars {
		maxV = math.Max(maxV, c.scale(bar.Value))
	}
	for i, bar := range c.Bars {
		y := titleH + i*(barH+gap)
		w := 0.0
		if maxV > 0 {
			w = math.Max(1, span*c.scale(bar.Value)/maxV)
		}
		fill := "#3b6ea5"
		if bar.Accent {
			fill = "#c0504d"
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%s</text>`+"\n", labelW-8, y+barH-6, html.EscapeString(bar.Label))
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>`+"\n", labelW, y, w, barH, fill)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d">%s</text>`+"\n", float64(labelW)+w+6, y+barH-6, html.EscapeString(format(bar.Value)+" "+bar.Note))
	}
	if c.Log {
		fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="11" fill="#666">log scale</text>`+"\n", width-70, height-4)
	}
	b.WriteString("</svg>\n")
	return b.Bytes()
}

// scale maps a value to bar length units: log10(1+v) on a log chart, so
// zero stays zero and every decade gets the same length.
func (c Chart) scale(v float64) float64 {
	if v <= 0 {
		return 0
	}
	if c.Log {
		return math.Log10(1 + v)
	}
	return v
}

// format prints a value with sensible precision.
func format(v float64) string {
	switch {
	case v == math.Trunc(v) && math.Abs(v) < 1e9:
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 100:
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}
