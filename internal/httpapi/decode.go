package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
)

// maxBody bounds every request body; Latch's requests are small.
const maxBody = 64 << 10

// decodeJSON reads a JSON object into a T: it requires the JSON media type,
// limits the body, rejects unknown fields and trailing data.
func decodeJSON[T any](w http.ResponseWriter, r *http.Request) (T, error) {
	var v T
	if err := requireType(r, "application/json"); err != nil {
		return v, err
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		var maxBytes *http.MaxBytesError
		if errors.As(err, &maxBytes) {
			return v, err
		}
		if errors.Is(err, io.EOF) {
			return v, badRequest("request body is empty; a JSON object is required")
		}
		return v, badRequest(fmt.Sprintf("malformed JSON body: %s", jsonProblem(err)))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return v, badRequest("malformed JSON body: data after the object")
	}
	return v, nil
}

// jsonProblem describes a decode error without echoing request data.
func jsonProblem(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("syntax error at byte %d", syn.Offset)
	case errors.As(err, &typ):
		return fmt.Sprintf("field %q must be %s", typ.Field, typ.Type)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return strings.TrimPrefix(err.Error(), "json: ")
	}
	return "not a JSON object"
}

// decodeForm reads an application/x-www-form-urlencoded body. Parameters in
// the URL are ignored, and a parameter sent twice is an error (RFC 6749
// section 3.2: "MUST NOT be included more than once").
func decodeForm(w http.ResponseWriter, r *http.Request) (url.Values, error) {
	if err := requireType(r, "application/x-www-form-urlencoded"); err != nil {
		return nil, err
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		return nil, err
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, badRequest("malformed form body")
	}
	for k, v := range form {
		if len(v) > 1 {
			return nil, badRequest(fmt.Sprintf("parameter %q appears more than once", k))
		}
	}
	return form, nil
}

func requireType(r *http.Request, want string) error {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != want {
		return apiError(http.StatusUnsupportedMediaType, CodeUnsupportedMediaType, "Content-Type must be "+want)
	}
	return nil
}
