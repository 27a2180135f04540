package email

import (
	"errors"
	"testing"
)

func TestNormalize(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{"ascii lower-cased", "  Ada@Example.COM ", "ada@example.com"},
		{"NFC stays", "jos\u00e9@example.com", "jos\u00e9@example.com"},
		{"NFD composed", "jose\u0301@example.com", "jos\u00e9@example.com"},
		{"upper NFD", "JOSE\u0301@example.com", "jos\u00e9@example.com"},
		{"unicode domain to ASCII", "user@b\u00fccher.de", "user@xn--bcher-kva.de"},
		{"ASCII domain stays", "user@xn--bcher-kva.de", "user@xn--bcher-kva.de"},
		{"NFD unicode domain", "user@bu\u0308cher.de", "user@xn--bcher-kva.de"},
		{"upper unicode domain", "user@B\u00dcCHER.DE", "user@xn--bcher-kva.de"},
		{"upper punycode", "user@XN--BCHER-KVA.DE", "user@xn--bcher-kva.de"},
		{"ideographic full stop", "user@example\u3002com", "user@example.com"},
		{"sharp s kept (nontransitional)", "user@fa\u00df.de", "user@xn--fa-hia.de"},
		{"underscore in a mail domain", "john@Mail_Srv.example.com", "john@mail_srv.example.com"},
		{"double hyphen in a label", "a@ab--cd.example.com", "a@ab--cd.example.com"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Normalize(tc.in)
			if err != nil || got != tc.want {
				t.Fatalf("Normalize(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
			if again, err := Normalize(got); err != nil || again != got {
				t.Fatalf("Normalize is not idempotent on %q: %q, %v", got, again, err)
			}
		})
	}
}

func TestNormalizeRefuses(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     error
	}{
		{"zero-width space in local part", "ad\u200ba@example.com", ErrInvisible},
		{"zero-width space in domain", "ada@exam\u200bple.com", ErrInvisible},
		{"zero-width joiner", "ada\u200d@example.com", ErrInvisible},
		{"byte order mark", "\ufeffada@example.com", ErrInvisible},
		{"right-to-left override", "ada\u202e@example.com", ErrInvisible},
		{"soft hyphen", "a\u00adda@example.com", ErrInvisible},
		{"no-break space", "ada\u00a0@example.com", ErrInvisible},
		{"NUL", "ada\x00@example.com", ErrInvisible},
		{"newline", "ada\n@example.com", ErrInvisible},
		{"DEL", "ada\x7f@example.com", ErrInvisible},
		{"Hangul filler", "ada\u3164@example.com", ErrInvisible},
		{"variation selector", "ada\ufe0f@example.com", ErrInvisible},
		{"private use", "ada\ue000@example.com", ErrInvisible},
		{"invalid UTF-8", "ada\xff@example.com", ErrInvalid},
		{"ASCII space", "ad a@example.com", ErrInvalid},
		{"no at", "ada.example.com", ErrInvalid},
		{"empty local", "@example.com", ErrInvalid},
		{"single-label domain", "ada@localhost", ErrInvalid},
		{"display name", "Ada <ada@example.com>", ErrInvalid},
		{"bad domain label", "ada@example..com", ErrInvalid},
		{"bad punycode", "ada@xn--zz.com", ErrInvalid},
		{"too long", "a@" + longDomain(), ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Normalize(tc.in)
			if !errors.Is(err, tc.want) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("Normalize(%q) = %q, %v; want %v", tc.in, got, err, tc.want)
			}
		})
	}
}

func longDomain() string {
	s := ""
	for len(s) < 260 {
		s += "abcdefghij."
	}
	return s + "com"
}
