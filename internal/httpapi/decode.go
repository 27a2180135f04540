package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"reflect"
	"strings"
)

// maxBody bounds every request body; Latch's requests are small.
const maxBody = 64 << 10

// readBody reads the request body, at most maxBody bytes. A failure to
// read it is the client's: too large (413), not received within the
// server's read timeout (408: a stalled or one-byte-a-second sender), or
// cut short (400: the connection ended before Content-Length, or broke).
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err == nil {
		// Before the targets of errors.As below, which escape: declared
		// on this path they would cost two allocations a request.
		return body, nil
	}
	var tooLarge *http.MaxBytesError
	var ne net.Error
	switch {
	case errors.As(err, &tooLarge):
		return body, err
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return nil, fmt.Errorf("%w after %d bytes: %w", errBodyTimeout, len(body), err)
	}
	return nil, fmt.Errorf("%w after %d bytes: %w", errTruncatedBody, len(body), err)
}

// decodeJSON reads a JSON object into a T: it requires the JSON media type,
// limits the body, and rejects unknown, duplicate and case-variant keys and
// trailing data.
func decodeJSON[T any](w http.ResponseWriter, r *http.Request) (T, error) {
	var v T
	if err := requireType(r, "application/json"); err != nil {
		return v, err
	}
	body, err := readBody(w, r)
	if err != nil {
		return v, err
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return v, badRequest("request body is empty; a JSON object is required")
	}
	if err := checkKeys(body, jsonFields(reflect.TypeFor[T]())); err != nil {
		return v, err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		return v, badRequest(fmt.Sprintf("malformed JSON body: %s", jsonProblem(err)))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return v, badRequest("malformed JSON body: data after the object")
	}
	return v, nil
}

// checkKeys rejects a top-level key that appears twice or that names a
// field only case-insensitively. encoding/json accepts both (last one wins,
// any case matches), so two parsers could read one request differently;
// RFC 8259 section 4 leaves duplicate names undefined. Syntax errors are
// left for the decoder to report.
func checkKeys(body []byte, fields map[string]bool) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil
		}
		key, _ := tok.(string)
		if seen[key] {
			return badRequest(fmt.Sprintf("malformed JSON body: field %q appears more than once", key))
		}
		seen[key] = true
		if !fields[key] {
			return badRequest(fmt.Sprintf("malformed JSON body: unknown field %q", key))
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return nil
		}
	}
	return nil
}

// jsonFields lists the JSON names of a struct's fields, including those of
// embedded structs.
func jsonFields(t reflect.Type) map[string]bool {
	out := map[string]bool{}
	if t.Kind() != reflect.Struct {
		return out
	}
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch {
		case name == "-":
		case f.Anonymous && name == "":
			for k := range jsonFields(f.Type) {
				out[k] = true
			}
		case name != "":
			out[name] = true
		case f.IsExported():
			out[f.Name] = true
		}
	}
	return out
}

// jsonProblem describes a decode error without echoing request data.
func jsonProblem(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("syntax error at byte %d", syn.Offset)
	case errors.As(err, &typ) && typ.Field == "":
		return fmt.Sprintf("the body must be a JSON object, not %s", jsonValue(typ.Value))
	case errors.As(err, &typ):
		return fmt.Sprintf("field %q must be %s, not %s", typ.Field, jsonKind(typ.Type), jsonValue(typ.Value))
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return strings.TrimPrefix(err.Error(), "json: ")
	}
	return "not a JSON object"
}

// jsonKind names a Go type as the JSON value it decodes from, so that a
// client reads "a string", never a Go type.
func jsonKind(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	}
	return "an object"
}

// jsonValue names the kind of value encoding/json found ("number 5" is
// reported as "a number": request data is never echoed).
func jsonValue(v string) string {
	kind, _, _ := strings.Cut(v, " ")
	switch kind {
	case "string", "number":
		return "a " + kind
	case "bool":
		return "true or false"
	case "array", "object":
		return "an " + kind
	}
	return "null"
}

// decodeForm reads an application/x-www-form-urlencoded body. Parameters in
// the URL are ignored, and a parameter sent twice is an error (RFC 6749
// section 3.2: "MUST NOT be included more than once").
func decodeForm(w http.ResponseWriter, r *http.Request) (url.Values, error) {
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/x-www-form-urlencoded" {
		// RFC 6749 section 3.2 fixes the media type; a violation is an
		// ordinary invalid_request on the OAuth endpoints.
		return nil, badRequest("Content-Type must be application/x-www-form-urlencoded")
	}
	body, err := readBody(w, r)
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
