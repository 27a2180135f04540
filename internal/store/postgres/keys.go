package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/latchauth/latch/internal/signingkey"
)

// SigningKeys implements the token package's Store.
func (s *Store) SigningKeys(ctx context.Context) ([]signingkey.StoredKey, error) {
	return collect(ctx, s.db, func(r pgx.Row) (signingkey.StoredKey, error) {
		var (
			k                  signingkey.StoredKey
			activated, retired *time.Time
			jwk                string
		)
		if err := r.Scan(&k.KID, &k.Alg, &k.State, &k.Sealed, &jwk, &k.CreatedAt, &activated, &retired); err != nil {
			return k, translate(err)
		}
		k.PublicJWK = []byte(jwk)
		k.CreatedAt, k.ActivatedAt, k.RetiredAt = utc(k.CreatedAt), fromNull(activated), fromNull(retired)
		return k, nil
	}, `SELECT kid, alg, state, private_key, public_jwk, created_at, activated_at, retired_at FROM signing_keys ORDER BY created_at, kid`)
}

func insertKey(ctx context.Context, tx pgx.Tx, k signingkey.StoredKey) error {
	_, err := tx.Exec(ctx, `INSERT INTO signing_keys (kid, alg, state, private_key, public_jwk, created_at, activated_at, retired_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		k.KID, k.Alg, k.State, k.Sealed, string(k.PublicJWK), k.CreatedAt, nullTime(k.ActivatedAt), nullTime(k.RetiredAt))
	if isUnique(err) {
		return signingkey.ErrConflict
	}
	return translate(err)
}

// InsertSigningKeys implements the token package's Store.
func (s *Store) InsertSigningKeys(ctx context.Context, keys ...signingkey.StoredKey) error {
	return s.tx(ctx, func(tx pgx.Tx) error {
		for _, k := range keys {
			if err := insertKey(ctx, tx, k); err != nil {
				return err
			}
		}
		return notifyKeys(ctx, tx)
	})
}

// RotateSigningKeys implements the token package's Store. The state conditions make it a
// compare-and-swap: of two nodes rotating at once, one wins and the other
// gets ErrConflict.
func (s *Store) RotateSigningKeys(ctx context.Context, r signingkey.Rotation) error {
	return s.tx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE signing_keys SET state = 'retired', retired_at = $1 WHERE kid = $2 AND state = 'current'`, r.At, r.RetireKID)
		if err := changed(tag, err); err != nil {
			return err
		}
		tag, err = tx.Exec(ctx, `UPDATE signing_keys SET state = 'current', activated_at = $1 WHERE kid = $2 AND state = 'next'`, r.At, r.PromoteKID)
		if err := changed(tag, err); err != nil {
			return err
		}
		if err := insertKey(ctx, tx, r.Next); err != nil {
			return err
		}
		return notifyKeys(ctx, tx)
	})
}

// notifyKeys tells every node, at commit, to reload the signing keys
// (Listen): a new next key is then published at once, not at the next
// reload.
func notifyKeys(ctx context.Context, tx pgx.Tx) error {
	_, err := tx.Exec(ctx, `SELECT pg_notify($1, '')`, keysChannel)
	return translate(err)
}

func changed(tag pgconn.CommandTag, err error) error {
	if isUnique(err) {
		return signingkey.ErrConflict
	}
	if err != nil {
		return translate(err)
	}
	if tag.RowsAffected() != 1 {
		return signingkey.ErrConflict
	}
	return nil
}

// DeleteRetiredKeys implements the token package's Store.
func (s *Store) DeleteRetiredKeys(ctx context.Context, cutoff time.Time) (int64, error) {
	tag, err := s.db.Exec(ctx, `DELETE FROM signing_keys WHERE state = 'retired' AND retired_at < $1`, cutoff)
	if err != nil {
		return 0, translate(err)
	}
	return tag.RowsAffected(), nil
}

// Secret implements the token package's Store.
func (s *Store) Secret(ctx context.Context, name string) ([]byte, error) {
	var v []byte
	err := s.db.QueryRow(ctx, `SELECT value FROM secrets WHERE name = $1`, name).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, signingkey.ErrNotFound
	}
	return v, translate(err)
}

// PutSecretIfAbsent implements the token package's Store.
func (s *Store) PutSecretIfAbsent(ctx context.Context, name string, value []byte, at time.Time) ([]byte, error) {
	// Insert unless present, then read whichever won. When another node's
	// insert commits while ours waits on it, our statement's snapshot does
	// not see that row; the second read, with a new snapshot, does.
	var v []byte
	err := s.db.QueryRow(ctx, `WITH ins AS (
		INSERT INTO secrets (name, value, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING RETURNING value
	) SELECT value FROM ins UNION ALL SELECT value FROM secrets WHERE name = $1 LIMIT 1`, name, value, at).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		err = s.db.QueryRow(ctx, `SELECT value FROM secrets WHERE name = $1`, name).Scan(&v)
	}
	return v, translate(err)
}

// Reseal implements the token package's Resealer. It locks the rows it rewrites, so a
// rotation on another node waits for it.
func (s *Store) Reseal(ctx context.Context, fn func(kind, name string, sealed []byte) ([]byte, error)) (int, error) {
	n := 0
	err := s.tx(ctx, func(tx pgx.Tx) error {
		for _, q := range []struct{ kind, sel, upd string }{
			{signingkey.SealedSigningKey, `SELECT kid, private_key FROM signing_keys FOR UPDATE`, `UPDATE signing_keys SET private_key = $1 WHERE kid = $2`},
			{signingkey.SealedSecret, `SELECT name, value FROM secrets FOR UPDATE`, `UPDATE secrets SET value = $1 WHERE name = $2`},
		} {
			type row struct {
				name   string
				sealed []byte
			}
			rows, err := tx.Query(ctx, q.sel)
			if err != nil {
				return translate(err)
			}
			all, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
				var v row
				return v, r.Scan(&v.name, &v.sealed)
			})
			if err != nil {
				return translate(err)
			}
			for _, r := range all {
				v, err := fn(q.kind, r.name, r.sealed)
				if err != nil {
					return err
				}
				if _, err := tx.Exec(ctx, q.upd, v, r.name); err != nil {
					return translate(err)
				}
				n++
			}
		}
		return nil
	})
	return n, err
}
