package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/latchauth/latch/internal/signingkey"
)

// SigningKeys implements the token package's Store.
func (s *Store) SigningKeys(ctx context.Context) ([]signingkey.StoredKey, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT kid, alg, state, private_key, public_jwk, created_at, activated_at, retired_at FROM signing_keys ORDER BY created_at, kid`)
	if err != nil {
		return nil, translate(err)
	}
	defer rows.Close()
	var out []signingkey.StoredKey
	for rows.Next() {
		var (
			k                  signingkey.StoredKey
			created            int64
			activated, retired sql.NullInt64
			jwk                string
		)
		if err := rows.Scan(&k.KID, &k.Alg, &k.State, &k.Sealed, &jwk, &created, &activated, &retired); err != nil {
			return nil, translate(err)
		}
		k.PublicJWK = []byte(jwk)
		k.CreatedAt, k.ActivatedAt, k.RetiredAt = fromMicros(created), fromNull(activated), fromNull(retired)
		out = append(out, k)
	}
	return out, translate(rows.Err())
}

func insertKey(ctx context.Context, tx *sql.Tx, k signingkey.StoredKey) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO signing_keys (kid, alg, state, private_key, public_jwk, created_at, activated_at, retired_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		k.KID, k.Alg, k.State, k.Sealed, string(k.PublicJWK), micros(k.CreatedAt), nullMicros(k.ActivatedAt), nullMicros(k.RetiredAt))
	if isUnique(err) {
		return signingkey.ErrConflict
	}
	return translate(err)
}

// InsertSigningKeys implements the token package's Store.
func (s *Store) InsertSigningKeys(ctx context.Context, keys ...signingkey.StoredKey) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		for _, k := range keys {
			if err := insertKey(ctx, tx, k); err != nil {
				return err
			}
		}
		return nil
	})
}

// RotateSigningKeys implements the token package's Store.
func (s *Store) RotateSigningKeys(ctx context.Context, r signingkey.Rotation) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		at := micros(r.At)
		res, err := tx.ExecContext(ctx, `UPDATE signing_keys SET state = 'retired', retired_at = ? WHERE kid = ? AND state = 'current'`, at, r.RetireKID)
		if err := changed(res, err); err != nil {
			return err
		}
		res, err = tx.ExecContext(ctx, `UPDATE signing_keys SET state = 'current', activated_at = ? WHERE kid = ? AND state = 'next'`, at, r.PromoteKID)
		if err := changed(res, err); err != nil {
			return err
		}
		return insertKey(ctx, tx, r.Next)
	})
}

func changed(res sql.Result, err error) error {
	if err != nil {
		return translate(err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return signingkey.ErrConflict
	}
	return nil
}

// DeleteRetiredKeys implements the token package's Store.
func (s *Store) DeleteRetiredKeys(ctx context.Context, cutoff time.Time) (int64, error) {
	res, err := s.w.ExecContext(ctx, `DELETE FROM signing_keys WHERE state = 'retired' AND retired_at < ?`, micros(cutoff))
	if err != nil {
		return 0, translate(err)
	}
	return res.RowsAffected()
}

// Secret implements the token package's Store.
func (s *Store) Secret(ctx context.Context, name string) ([]byte, error) {
	var v []byte
	err := s.r.QueryRowContext(ctx, `SELECT value FROM secrets WHERE name = ?`, name).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, signingkey.ErrNotFound
	}
	return v, translate(err)
}

// PutSecretIfAbsent implements the token package's Store.
func (s *Store) PutSecretIfAbsent(ctx context.Context, name string, value []byte, at time.Time) ([]byte, error) {
	var v []byte
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO secrets (name, value, created_at) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING`, name, value, micros(at)); err != nil {
			return translate(err)
		}
		return translate(tx.QueryRowContext(ctx, `SELECT value FROM secrets WHERE name = ?`, name).Scan(&v))
	})
	return v, err
}

// Reseal implements the token package's Resealer.
func (s *Store) Reseal(ctx context.Context, fn func(kind, name string, sealed []byte) ([]byte, error)) (int, error) {
	n := 0
	err := s.tx(ctx, func(tx *sql.Tx) error {
		for _, q := range []struct{ kind, sel, upd string }{
			{signingkey.SealedSigningKey, `SELECT kid, private_key FROM signing_keys`, `UPDATE signing_keys SET private_key = ? WHERE kid = ?`},
			{signingkey.SealedSecret, `SELECT name, value FROM secrets`, `UPDATE secrets SET value = ? WHERE name = ?`},
		} {
			type row struct {
				name   string
				sealed []byte
			}
			var all []row
			rows, err := tx.QueryContext(ctx, q.sel)
			if err != nil {
				return translate(err)
			}
			for rows.Next() {
				var r row
				if err := rows.Scan(&r.name, &r.sealed); err != nil {
					rows.Close()
					return translate(err)
				}
				all = append(all, r)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return translate(err)
			}
			for _, r := range all {
				v, err := fn(q.kind, r.name, r.sealed)
				if err != nil {
					return err
				}
				if _, err := tx.ExecContext(ctx, q.upd, v, r.name); err != nil {
					return translate(err)
				}
				n++
			}
		}
		return nil
	})
	return n, err
}
