package password

// common holds frequently used passwords that meet the length rule; NIST SP
// 800-63B section 5.1.1.2 asks verifiers to refuse values from such lists.
// It is short on purpose: a breached-password service is the complete check.
var common = setOf(
	"password", "password1", "password12", "password123", "password1234",
	"12345678", "123456789", "1234567890", "12345678910", "123123123",
	"11111111", "00000000", "87654321", "qwertyuiop", "qwerty123",
	"qwerty12", "1q2w3e4r", "1q2w3e4r5t", "1qaz2wsx", "zaq12wsx",
	"iloveyou", "iloveyou1", "sunshine", "princess", "football",
	"baseball", "welcome1", "welcome123", "abc12345", "abcd1234",
	"letmein1", "trustno1", "superman", "starwars", "whatever",
	"dragon123", "monkey123", "michael1", "jennifer", "computer",
	"internet", "asdfghjkl", "asdfasdf", "qwertyui", "passw0rd",
	"p@ssw0rd", "p@ssword", "changeme", "changeme1", "administrator",
	"admin123", "admin1234", "secret123", "testtest", "test1234",
	"aa123456", "a1234567", "12341234", "98765432", "55555555",
	"66666666", "88888888", "99999999", "q1w2e3r4", "football1",
)

func setOf(v ...string) map[string]struct{} {
	m := make(map[string]struct{}, len(v))
	for _, s := range v {
		m[s] = struct{}{}
	}
	return m
}
