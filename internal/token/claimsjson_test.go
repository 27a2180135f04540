package token

import (
	"bytes"
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/latchauth/latch/bearer"
	"github.com/latchauth/latch/internal/session"
)

// checkClaimsJSON fails unless appendClaims writes c exactly as
// encoding/json does, the encoder bearer.Claims' tags are written for.
// One difference is allowed: jwt.Audience marshals with go-jose's copy of
// encoding/json, which writes U+0008 and U+000C as \u0008 and \u000c
// where encoding/json and appendClaims write \b and \f; with either in an
// audience the two must decode to the same claims.
func checkClaimsJSON(t *testing.T, c bearer.Claims) {
	t.Helper()
	want, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	got := appendClaims(nil, &c)
	if bytes.Equal(got, want) {
		return
	}
	if !slices.ContainsFunc(c.Audience, func(a string) bool { return strings.ContainsAny(a, "\b\f") }) {
		t.Fatalf("appendClaims\n got %s\nwant %s", got, want)
	}
	decode := func(b []byte) (m map[string]any) {
		d := json.NewDecoder(bytes.NewReader(b))
		d.UseNumber()
		if err := d.Decode(&m); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		return m
	}
	if !reflect.DeepEqual(decode(got), decode(want)) {
		t.Fatalf("appendClaims, decoded\n got %s\nwant %s", got, want)
	}
}

// TestClaimsJSONEdges: the shapes Marshal treats specially (no, one or
// several audiences, absent dates and omitempty members, an empty cnf)
// and the strings it escapes or repairs.
func TestClaimsJSONEdges(t *testing.T) {
	now := time.Unix(1700000000, 0)
	base := JWTClaims(sessionClaims(now))
	checkClaimsJSON(t, base)
	checkClaimsJSON(t, bearer.Claims{})
	for _, aud := range []jwt.Audience{nil, {}, {"a"}, {"a", "b"}, {"a", "", "<c>"}, {"\b\f"}, {"x", "\f"}} {
		c := base
		c.Audience = aud
		checkClaimsJSON(t, c)
	}
	c := base
	c.NotBefore, c.Scope, c.Confirmation = nil, "", nil
	checkClaimsJSON(t, c)
	c.Confirmation = &bearer.Confirmation{}
	checkClaimsJSON(t, c)
	c.Confirmation = &bearer.Confirmation{JKT: "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}
	checkClaimsJSON(t, c)
	neg := jwt.NumericDate(-1)
	c.Expiry = &neg
	checkClaimsJSON(t, c)
	for _, s := range []string{"", "plain", `"quoted" \back\slash`, "<script>&amp;</script>", "\x00\x01\x1f\x7f\b\f\n\r\t",
		"é, 日本, 🔑", "\u2028\u2029", "bad \xff utf-8 \xc3", "\xed\xa0\x80 surrogate", "\xf4\x90\x80\x80 too high", "trailing \xe2\x80"} {
		c := base
		c.Subject, c.Scope, c.ID = s, s, s
		checkClaimsJSON(t, c)
	}
}

// FuzzClaimsJSON: for any strings and dates, appendClaims and
// encoding/json write the same bytes, so the hand-written encoder cannot
// drift from bearer.Claims' tags or encoding/json's escaping.
func FuzzClaimsJSON(f *testing.F) {
	f.Add("https://auth.example", "user", "api", "", int64(1700000900), int64(1700000000), int64(1700000000), "jti", "app", "sid", "openid", "")
	f.Add("i", "<&>", "a", "b", int64(0), int64(-5), int64(1), "\xff", "\u2028", "\x00", "", "jkt")
	f.Fuzz(func(t *testing.T, iss, sub, aud1, aud2 string, exp, iat, nbf int64, jti, client, sid, scope, jkt string) {
		c := bearer.Claims{Issuer: iss, Subject: sub, ID: jti, ClientID: client, SessionID: sid, Scope: scope}
		// A zero date stands for an absent one, as jwt.NewNumericDate
		// makes it; a zero first audience for none, an empty second for
		// one audience.
		date := func(v int64) *jwt.NumericDate {
			if v == 0 {
				return nil
			}
			d := jwt.NumericDate(v)
			return &d
		}
		c.Expiry, c.IssuedAt, c.NotBefore = date(exp), date(iat), date(nbf)
		switch {
		case aud1 == "":
		case aud2 == "":
			c.Audience = jwt.Audience{aud1}
		default:
			c.Audience = jwt.Audience{aud1, aud2}
		}
		if jkt != "" {
			c.Confirmation = &bearer.Confirmation{JKT: jkt}
		}
		checkClaimsJSON(t, c)
	})
}

// sessionClaims is a refresh's access-token claims.
func sessionClaims(now time.Time) session.AccessClaims {
	return session.AccessClaims{Issuer: "https://auth.example", Subject: "user", Audience: []string{"api"},
		Expiry: now.Add(15 * time.Minute), IssuedAt: now, NotBefore: now,
		ID: "jti", ClientID: "app", SessionID: "sid", Scope: "openid profile", DPoPJKT: "jkt"}
}

// BenchmarkClaimsJSON compares appendClaims with encoding/json on a
// refresh's claims.
func BenchmarkClaimsJSON(b *testing.B) {
	c := JWTClaims(sessionClaims(time.Unix(1700000000, 0)))
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(c); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("appendClaims", func(b *testing.B) {
		b.ReportAllocs()
		var buf [512]byte
		for b.Loop() {
			appendClaims(buf[:0], &c)
		}
	})
}
