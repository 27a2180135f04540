package httpapi

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"testing"
)

// FuzzDecodeJSON: any body either decodes into the request type, and was
// then a valid JSON object, or is refused with a 4xx API error; never a
// panic, never a 5xx. Seeds: f.Add below and testdata/fuzz/FuzzDecodeJSON.
func FuzzDecodeJSON(f *testing.F) {
	for _, s := range []string{
		`{"email":"a@example.com","password":"correct horse"}`,
		`{"email":"a@example.com","password":"x","client_id":"app"}`,
		`{"email":"a","email":"b","password":"x"}`,
		`{"EMAIL":"a","password":"x"}`,
		`{"email":1}`,
		`[]`, `null`, `{}`, `{"email":"a"} {}`, "\xef\xbb\xbf{}", `{"email":"\ud800"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		r := httptest.NewRequest("POST", "/v1/login", bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		v, err := decodeJSON[credentials](httptest.NewRecorder(), r)
		if err != nil {
			if e := toError("", err); e.Status < 400 || e.Status > 499 {
				t.Fatalf("body %q: status %d (%v), want a 4xx", body, e.Status, err)
			}
			return
		}
		if !json.Valid(body) {
			t.Fatalf("accepted invalid JSON %q as %+v", body, v)
		}
	})
}

// FuzzDecodeForm: any body either parses with every parameter once, or is
// refused with a 4xx API error.
func FuzzDecodeForm(f *testing.F) {
	for _, s := range []string{
		"grant_type=refresh_token&refresh_token=latch_rt_abc",
		"grant_type=password&username=a%40example.com&password=x&client_id=app",
		"grant_type=a&grant_type=b", "a=%zz", "=", "&&&", "a=1;b=2", "a=" + string(make([]byte, 100)),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		r := httptest.NewRequest("POST", "/oauth/token", bytes.NewReader([]byte(body)))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		form, err := decodeForm(httptest.NewRecorder(), r)
		if err != nil {
			if e := toError("", err); e.Status < 400 || e.Status > 499 {
				t.Fatalf("body %q: status %d (%v), want a 4xx", body, e.Status, err)
			}
			return
		}
		for k, v := range form {
			if len(v) != 1 {
				t.Fatalf("body %q: parameter %q has %d values", body, k, len(v))
			}
		}
	})
}
