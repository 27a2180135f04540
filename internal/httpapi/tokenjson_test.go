package httpapi

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/latchauth/latch/internal/session"
)

// tokenResponseByEncoder is what writeTokens wrote before its body was
// written by hand: the tokenResponse through json.Encoder.
func tokenResponseByEncoder(t session.Tokens, typ string, withScope bool) []byte {
	resp := tokenResponse{AccessToken: t.AccessToken, TokenType: typ, ExpiresIn: t.ExpiresIn,
		RefreshToken: t.RefreshToken, SessionID: t.SessionID, DeviceToken: t.DeviceToken}
	if withScope {
		resp.Scope = &t.Scope
	}
	var b bytes.Buffer
	if err := json.NewEncoder(&b).Encode(resp); err != nil {
		panic(err)
	}
	return b.Bytes()
}

func TestTokenResponseJSON(t *testing.T) {
	full := session.Tokens{AccessToken: "eyJ.a.b", ExpiresIn: 600, RefreshToken: "latch_rt_x", SessionID: "s1", Scope: "openid notes", DeviceToken: "latch_dt_y"}
	tests := []struct {
		name      string
		tok       session.Tokens
		typ       string
		withScope bool
	}{
		{"refresh", full, "Bearer", true},
		{"dpop", full, "DPoP", true},
		{"client credentials: no refresh token, session or device", session.Tokens{AccessToken: "eyJ.c.d", ExpiresIn: 300}, "Bearer", false},
		{"an empty scope named because one was asked for", session.Tokens{AccessToken: "a", ExpiresIn: 1, RefreshToken: "r", SessionID: "s"}, "Bearer", true},
		{"negative and zero expiry", session.Tokens{AccessToken: "a", ExpiresIn: -5}, "Bearer", false},
		{"characters JSON escapes", session.Tokens{AccessToken: "<\"\\&>\n\u2028\xff", ExpiresIn: 0, Scope: "é😀", SessionID: "\x00"}, "Bearer", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := tokenResponseByEncoder(tt.tok, tt.typ, tt.withScope)
			if got := appendTokenResponse(nil, tt.tok, tt.typ, tt.withScope); !bytes.Equal(got, want) {
				t.Fatalf("appendTokenResponse = %s\nencoding/json     = %s", got, want)
			}
		})
	}
}

func FuzzTokenResponseJSON(f *testing.F) {
	f.Add("eyJ.a.b", "latch_rt_x", "s1", "openid", "latch_dt_y", int64(600), true, true)
	f.Add("", "", "", "", "", int64(0), false, false)
	f.Fuzz(func(t *testing.T, access, refresh, sid, scope, device string, exp int64, dpop, withScope bool) {
		tok := session.Tokens{AccessToken: access, RefreshToken: refresh, SessionID: sid, Scope: scope, DeviceToken: device, ExpiresIn: exp}
		typ := "Bearer"
		if dpop {
			typ = "DPoP"
		}
		want := tokenResponseByEncoder(tok, typ, withScope)
		if got := appendTokenResponse(nil, tok, typ, withScope); !bytes.Equal(got, want) {
			t.Fatalf("appendTokenResponse = %s\nencoding/json     = %s", got, want)
		}
	})
}
