package session

import (
	"context"
	"slices"
	"sync"
	"time"
)

// ClientCacheTTL is how long the service keeps a client it read from
// storage while changes made elsewhere are not pushed to it (see
// ClientChangesHeard): on SQLite, behind a transaction-mode pooler, and
// while the PostgreSQL listener is reconnecting. Every token request reads
// its client before the transaction starts; cached, a refresh through POST
// /oauth/token costs the two round trips of its transaction and no third
// (docs/performance.md). A change made through this Service is seen at once
// on this node; one made by an admin command in another process against
// the same SQLite file is seen within the TTL. 10 s keeps that window short
// (a rotated client secret still works for at most 10 s) while one read
// every 10 s per client is nothing for storage.
const ClientCacheTTL = 10 * time.Second

// ClientCacheHeardTTL is how long a cached client is kept while every
// change, on any node or process, is pushed to the service (ForgetClient,
// by PostgreSQL NOTIFY). It is only a safety net: a notification could be
// lost without the listener noticing at once (a connection that died
// silently, until TCP keepalive ends it), and this bounds how long a stale
// client could then survive.
const ClientCacheHeardTTL = 10 * time.Minute

// clientCache holds clients read from storage, each until its TTL after it
// was read. Only found clients are kept, so its size is the number of
// registered clients however many unknown ids are asked for.
type clientCache struct {
	mu      sync.Mutex
	entries map[string]cachedClient
	// gen counts invalidations: a read that began before one does not
	// store what it read (it may be the value just replaced).
	gen uint64
	// heard: changes made elsewhere are pushed (ClientChangesHeard).
	heard bool
}

type cachedClient struct {
	c    Client
	read time.Time
}

// ttl is how long an entry is good for now; the caller holds mu.
func (cc *clientCache) ttl() time.Duration {
	if cc.heard {
		return ClientCacheHeardTTL
	}
	return ClientCacheTTL
}

// Client returns a registered client: from the cache when it was read
// recently enough (ClientCacheTTL, or ClientCacheHeardTTL while changes are
// pushed), otherwise from storage.
func (s *Service) Client(ctx context.Context, id string) (Client, error) {
	now := s.clock()
	cc := &s.clients
	cc.mu.Lock()
	e, ok := cc.entries[id]
	fresh := ok && now.Before(e.read.Add(cc.ttl()))
	gen := cc.gen
	cc.mu.Unlock()
	if fresh {
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
		cc.entries[id] = cachedClient{c: cloneClient(c), read: now}
	}
	return c, err
}

// ForgetClient drops client id from the cache: it changed, on this node or
// another (every method of this Service that writes a client calls it after
// commit; the PostgreSQL listener calls it for every node's commits).
func (s *Service) ForgetClient(id string) {
	cc := &s.clients
	cc.mu.Lock()
	defer cc.mu.Unlock()
	cc.gen++
	delete(cc.entries, id)
}

// ClientChangesHeard says whether, from now on, every change to a client
// made anywhere reaches the service as ForgetClient (true: the PostgreSQL
// listener is connected; false: it is not, and cached clients are good for
// ClientCacheTTL after they were read again). With true it forgets every
// cached client, since changes made while nobody listened were not heard.
func (s *Service) ClientChangesHeard(heard bool) {
	cc := &s.clients
	cc.mu.Lock()
	defer cc.mu.Unlock()
	cc.heard = heard
	if heard {
		cc.gen++
		clear(cc.entries)
	}
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
