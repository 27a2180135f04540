package session

import (
	"context"
	"slices"
	"sync"
	"time"
)

// ClientCacheTTL is how long the service keeps a client it read from
// storage. Every token request reads its client before the transaction
// starts; cached, a refresh through POST /oauth/token costs the two round
// trips of its transaction and no third (docs/performance.md). A change
// made through this Service (EnsureClient) is seen at once on this node;
// one made on another node or by an admin command in another process is
// seen within the TTL. 10 s keeps that window short (a rotated client
// secret still works for at most 10 s on the other nodes) while one read
// every 10 s per client is nothing for storage.
const ClientCacheTTL = 10 * time.Second

// clientCache holds clients read from storage, each until ClientCacheTTL
// after it was read. Only found clients are kept, so its size is the
// number of registered clients however many unknown ids are asked for.
type clientCache struct {
	mu      sync.Mutex
	entries map[string]cachedClient
	// gen counts invalidations: a read that began before one does not
	// store what it read (it may be the value just replaced).
	gen uint64
}

type cachedClient struct {
	c       Client
	expires time.Time
}

// Client returns a registered client: from the cache when it was read
// less than ClientCacheTTL ago, otherwise from storage.
func (s *Service) Client(ctx context.Context, id string) (Client, error) {
	now := s.clock()
	cc := &s.clients
	cc.mu.Lock()
	e, ok := cc.entries[id]
	gen := cc.gen
	cc.mu.Unlock()
	if ok && now.Before(e.expires) {
		return cloneClient(e.c), nil
	}
	c, err := s.store.Client(ctx, id)
	cc.mu.Lock()
	defer cc.mu.Unlock()
	switch {
	case err != nil:
		// A client deleted elsewhere, or storage failing: forget it, so
		// nothing stale outlives the TTL.
		delete(cc.entries, id)
	case cc.gen == gen:
		if cc.entries == nil {
			cc.entries = map[string]cachedClient{}
		}
		cc.entries[id] = cachedClient{c: cloneClient(c), expires: now.Add(ClientCacheTTL)}
	}
	return c, err
}

// forgetClient drops id from the cache after the client changed through
// this Service; every method that writes a client calls it after commit.
func (s *Service) forgetClient(id string) {
	cc := &s.clients
	cc.mu.Lock()
	defer cc.mu.Unlock()
	cc.gen++
	delete(cc.entries, id)
}

// cloneClient copies c's slices, so a caller that changes the client it
// got cannot change the cached one.
func cloneClient(c Client) Client {
	c.SecretHash = slices.Clone(c.SecretHash)
	c.Audiences = slices.Clone(c.Audiences)
	c.Grants = slices.Clone(c.Grants)
	c.Scopes = slices.Clone(c.Scopes)
	c.Origins = slices.Clone(c.Origins)
	c.Claims = slices.Clone(c.Claims)
	return c
}

// Clients returns every registered client, from storage (uncached: the
// server reads it at most every few seconds, for the web clients' CORS
// origins).
func (s *Service) Clients(ctx context.Context) ([]Client, error) {
	return s.store.Clients(ctx)
}
