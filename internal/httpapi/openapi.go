package httpapi

import (
	_ "embed"
	"net/http"
)

// openAPIDoc is the OpenAPI 3.1 description of the whole HTTP API (user,
// OAuth and admin endpoints). TestOpenAPIRoutes fails when it and the
// router disagree; the integration tests' responses are validated
// against it.
//
//go:embed openapi.json
var openAPIDoc []byte

// OpenAPI returns the OpenAPI document the API serves at GET /openapi.json.
func OpenAPI() []byte { return openAPIDoc }

// GET /openapi.json
func (s *Server) openAPI(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Cache-Control", "public, max-age=3600")
	w.Header().Set("Content-Type", "application/json")
	_, err := w.Write(openAPIDoc)
	return err
}
