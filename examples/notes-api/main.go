// Command notes-api is a small resource server protected by Latch access
// tokens with the bearer package, with the revocation feed on: a logged-out
// session's token is refused about a second later, with no call to Latch
// per request. Each user (the token's sub) has their own notes, in memory.
//
//	GET  /notes          the caller's notes
//	POST /notes          {"text": "..."} adds one
//	GET  /healthz        unauthenticated; reports the feed's staleness
//	GET  /metrics        unauthenticated; Prometheus metrics from bearer.Stats
//	                     (keep it off the public network)
//
// Configuration (flag, or environment variable):
//
//	--addr           NOTES_ADDR            listen address (127.0.0.1:8081)
//	--issuer         NOTES_ISSUER          Latch's issuer URL (http://127.0.0.1:8080)
//	--audience       NOTES_AUDIENCE        this API's audience (notes-api)
//	--algorithms     NOTES_ALGORITHMS      accepted signing algorithms (EdDSA)
//	--client-id      NOTES_CLIENT_ID       confidential client for the feed (notes-api)
//	--client-secret  NOTES_CLIENT_SECRET   its secret; empty turns the feed off
//	--fail-closed    NOTES_FAIL_CLOSED     refuse requests when the feed is stale (false)
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/latchauth/latch/bearer"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "notes-api:", err)
		os.Exit(1)
	}
}

func env(name, def string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return def
}

func run() error {
	failClosed, _ := strconv.ParseBool(env("NOTES_FAIL_CLOSED", "false"))
	addr := flag.String("addr", env("NOTES_ADDR", "127.0.0.1:8081"), "listen address")
	issuer := flag.String("issuer", env("NOTES_ISSUER", "http://127.0.0.1:8080"), "Latch issuer URL")
	audience := flag.String("audience", env("NOTES_AUDIENCE", "notes-api"), "this API's audience")
	algs := flag.String("algorithms", env("NOTES_ALGORITHMS", "EdDSA"), "accepted signing algorithms, comma-separated")
	clientID := flag.String("client-id", env("NOTES_CLIENT_ID", "notes-api"), "confidential client for the revocation feed")
	secret := flag.String("client-secret", env("NOTES_CLIENT_SECRET", ""), "its secret; empty turns the feed off")
	flag.BoolVar(&failClosed, "fail-closed", failClosed, "refuse requests while the revocation feed is stale")
	flag.Parse()

	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	cfg := bearer.Config{
		Issuer: *issuer, Audience: *audience, Algorithms: strings.Split(*algs, ","), Logger: log,
	}
	if *secret != "" {
		cfg.Revocations = &bearer.FeedConfig{ClientID: *clientID, ClientSecret: *secret, FailClosed: failClosed}
	} else {
		log.Warn("no --client-secret: revocation feed off; logged-out tokens live until they expire")
	}
	start, cancel := context.WithTimeout(ctx, 15*time.Second)
	v, err := bearer.New(start, cfg)
	cancel()
	if err != nil {
		return err
	}
	defer v.Close()

	srv := &http.Server{Addr: *addr, Handler: newHandler(v), ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	log.Info("notes-api listening", "addr", *addr, "issuer", *issuer, "audience", *audience, "feed", cfg.Revocations != nil)
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

type note struct {
	Text      string    `json:"text"`
	CreatedAt time.Time `json:"created_at"`
}

// notes holds every user's notes, keyed by the token's sub.
type notes struct {
	mu     sync.Mutex
	byUser map[string][]note
}

func newHandler(v *bearer.Verifier) http.Handler {
	n := &notes{byUser: map[string][]note{}}
	api := http.NewServeMux()
	api.HandleFunc("GET /notes", n.list)
	api.HandleFunc("POST /notes", n.add)

	mux := http.NewServeMux()
	mux.Handle("/notes", v.Middleware(api))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "feed_staleness_seconds": v.Staleness().Seconds(), "revoked_sessions": v.Revoked()})
	})
	mux.Handle("GET /metrics", metricsHandler(v))
	return mux
}

func (n *notes) list(w http.ResponseWriter, r *http.Request) {
	c, _ := bearer.FromContext(r.Context())
	n.mu.Lock()
	out := append([]note{}, n.byUser[c.Subject]...)
	n.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

func (n *notes) add(w http.ResponseWriter, r *http.Request) {
	c, _ := bearer.FromContext(r.Context())
	var in struct {
		Text string `json:"text"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 16<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil || strings.TrimSpace(in.Text) == "" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request", "error_description": `want {"text": "..."}`})
		return
	}
	nt := note{Text: in.Text, CreatedAt: time.Now().UTC()}
	n.mu.Lock()
	n.byUser[c.Subject] = append(n.byUser[c.Subject], nt)
	n.mu.Unlock()
	writeJSON(w, http.StatusCreated, nt)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
