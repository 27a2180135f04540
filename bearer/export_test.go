package bearer

import (
	"encoding/json"
	"testing"

	josejson "github.com/go-jose/go-jose/v4/json"
)

// ExtraClaims is extraClaims with go-jose's JSON fork, for the external
// fuzz test.
func ExtraClaims(t *testing.T, b []byte) map[string]json.RawMessage {
	return extraClaims(t, b, josejson.Unmarshal)
}
