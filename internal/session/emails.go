package session

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// EmailReport is what [RenormalizeEmails] did and left alone.
type EmailReport struct {
	// Updated counts the addresses rewritten to their canonical form.
	Updated int
	// Collisions are groups of users whose stored addresses differ but
	// normalise to one address. None of them was changed.
	Collisions []EmailCollision
	// Invalid lists the users whose stored address is no longer valid
	// (it holds an invisible or control character); nobody can log in
	// as them. They were left unchanged.
	Invalid []string
}

// EmailCollision is one canonical address that several users' stored
// addresses normalise to.
type EmailCollision struct {
	Email   string
	UserIDs []string // in Users order: oldest first
}

// RenormalizeEmails rewrites every stored address that is not in the
// canonical form of [NormalizeEmail] (rows from before NFC and IDNA
// normalisation), in one transaction. It runs whenever storage is
// migrated, in Go rather than SQL because the rules are Unicode's.
//
// Two rows that normalise to one address are reported, not merged, and
// both are left as they are: merging would pick an owner for someone
// else's sessions and password, and refusing to start would stop every
// login over one pair of accounts. Left alone, login finds only the row
// already in canonical form (if any); the operator decides with the user
// ids (latch users disable ID). Rows that no longer validate are reported
// the same way.
func RenormalizeEmails(ctx context.Context, store interface {
	Transactor
	UserStore
}) (EmailReport, error) {
	users, err := store.Users(ctx)
	if err != nil {
		return EmailReport{}, fmt.Errorf("session: renormalise emails: %w", err)
	}
	var rep EmailReport
	groups := map[string][]User{}
	var order []string
	for _, u := range users {
		e, err := NormalizeEmail(u.Email)
		if err != nil {
			rep.Invalid = append(rep.Invalid, u.ID)
			continue
		}
		if groups[e] == nil {
			order = append(order, e)
		}
		groups[e] = append(groups[e], u)
	}
	type update struct{ id, email string }
	var updates []update
	for _, e := range order {
		g := groups[e]
		if len(g) > 1 {
			c := EmailCollision{Email: e}
			for _, u := range g {
				c.UserIDs = append(c.UserIDs, u.ID)
			}
			rep.Collisions = append(rep.Collisions, c)
			continue
		}
		if g[0].Email != e {
			updates = append(updates, update{g[0].ID, e})
		}
	}
	slices.SortFunc(rep.Collisions, func(a, b EmailCollision) int { return strings.Compare(a.Email, b.Email) })
	if len(updates) == 0 {
		return rep, nil
	}
	n := 0
	err = store.InTx(ctx, func(tx Tx) error {
		n = 0
		for _, up := range updates {
			u, err := tx.LockUser(ctx, up.id)
			if errors.Is(err, ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			u.Email = up.email
			if err := tx.UpdateUser(ctx, u); err != nil {
				return fmt.Errorf("user %s: %w", u.ID, err)
			}
			n++
		}
		return nil
	})
	if err != nil {
		// ErrEmailTaken here means a signup took a canonical address after
		// the rows were read: the next start finds the collision.
		return EmailReport{}, fmt.Errorf("session: renormalise emails: %w", err)
	}
	rep.Updated = n
	return rep, nil
}
