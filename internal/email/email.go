// Package email defines when two email addresses name one account: the
// canonical form of an address, and the characters an address may not
// hold.
//
// An address is canonical when its local part is lower-cased and in
// Unicode Normalization Form C (UAX #15), and its domain is in IDNA ASCII
// form (UTS #46 processing for lookup, RFC 5891), lower-case. So
// "José@Example.com" typed with a precomposed é or with e and a combining
// accent, and "user@bücher.de" and "user@xn--bcher-kva.de", are one
// address each. Addresses holding a control, format (zero-width space,
// joiners, bidirectional marks), private-use or other default-ignorable
// character, or any space, are refused: they would display like another
// address and be stored as a different one.
package email

import (
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/idna"
	"golang.org/x/text/unicode/norm"
)

var (
	// ErrInvalid reports a string that is not a bare addr-spec (RFC 5322
	// section 3.4.1) with a domain of at least two labels.
	ErrInvalid = errors.New("email: not a valid address")
	// ErrInvisible reports an address holding a control, format,
	// default-ignorable or space character. It wraps ErrInvalid.
	ErrInvisible = fmt.Errorf("%w: contains an invisible or control character", ErrInvalid)
)

// maxLen is the longest address, in octets (RFC 5321 section 4.5.3.1.3
// path limit less the angle brackets).
const maxLen = 254

// domains converts a domain to its ASCII form for lookup (UTS #46 with
// nontransitional processing, as browsers and registries use today: "ß"
// stays "ß" and becomes xn--), checking label lengths. The strict hostname rules are off (StrictDomainName,
// CheckHyphens): mail domains such as "mail_srv.example.com" or
// "ab--cd.example.com" exist and were accepted before normalisation came in,
// and refusing them now would lock their users out; normalisation is about
// one spelling per address, not about policing DNS.
var domains = idna.New(idna.MapForLookup(), idna.StrictDomainName(false), idna.CheckHyphens(false),
	idna.BidiRule(), idna.VerifyDNSLength(true), idna.Transitional(false))

// Normalize returns the canonical form of addr, trimmed of surrounding
// white space, or an error wrapping ErrInvalid.
func Normalize(addr string) (string, error) {
	addr = strings.TrimSpace(addr)
	if addr == "" || len(addr) > 4*maxLen {
		return "", ErrInvalid
	}
	if !utf8.ValidString(addr) {
		return "", ErrInvalid
	}
	for _, r := range addr {
		if invisible(r) {
			return "", fmt.Errorf("%w (U+%04X)", ErrInvisible, r)
		}
	}
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 || at == len(addr)-1 {
		return "", ErrInvalid
	}
	local := norm.NFC.String(strings.ToLower(norm.NFC.String(addr[:at])))
	domain, err := domains.ToASCII(addr[at+1:])
	if err != nil {
		// Not wrapped: idna's errors quote the label, and addresses stay
		// out of logs.
		return "", fmt.Errorf("%w: the domain is not a valid internationalised domain name", ErrInvalid)
	}
	domain = strings.ToLower(domain)
	e := local + "@" + domain
	if len(e) > maxLen || !strings.Contains(domain, ".") || strings.HasSuffix(domain, ".") {
		return "", ErrInvalid
	}
	a, err := mail.ParseAddress(e)
	if err != nil || a.Address != e || a.Name != "" {
		return "", ErrInvalid
	}
	return e, nil
}

// invisible reports a rune that renders as nothing, or as space, or
// changes how its neighbours render: control (Cc), format (Cf: zero-width
// space and joiners, bidirectional controls, the BOM, soft hyphen),
// private use (Co), surrogates (Cs), white space and separators (Z) other
// than the ASCII space, and
// the other default-ignorable code points (Hangul fillers, variation
// selectors).
func invisible(r rune) bool {
	if r == ' ' {
		return false // visible enough; the address parser refuses it
	}
	return unicode.In(r, unicode.Cc, unicode.Cf, unicode.Co, unicode.Cs, unicode.Z, unicode.Other_Default_Ignorable_Code_Point, unicode.Variation_Selector) ||
		unicode.IsSpace(r) || r == utf8.RuneError
}
