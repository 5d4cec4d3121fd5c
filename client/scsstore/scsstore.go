package scsstore

import (
	"context"
	"errors"
	"time"

	"github.com/alexedwards/scs/v2"

	"github.com/sessionha/sessionha/client"
)

// Attr is the session attribute that holds scs's encoded session data.
const Attr = "scs"

// Store is an scs.Store and scs.CtxStore backed by a sessionha client.Store.
type Store struct {
	store *client.Store
}

var (
	_ scs.Store    = (*Store)(nil)
	_ scs.CtxStore = (*Store)(nil)
)

// New returns an scs store that keeps sessions in store.
func New(store *client.Store) *Store { return &Store{store: store} }

// Find returns the data of the session token names, and found=false (with a nil error)
// when the token is malformed or its session unknown, expired or destroyed.
func (s *Store) Find(token string) ([]byte, bool, error) {
	return s.FindCtx(context.Background(), token)
}

// FindCtx is Find with a context.
func (s *Store) FindCtx(ctx context.Context, token string) ([]byte, bool, error) {
	sess, err := s.store.Load(ctx, token)
	if errors.Is(err, client.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	b, ok := sess.Get(Attr)
	if !ok {
		return nil, false, nil // not a session this adapter wrote
	}
	return b, true, nil
}

// Commit stores b as the session token names, until expiry, replacing what was there,
// and returns once the change is published (web-method frequency).
//
// scs gives an absolute expiry; the session is stored as created now with MaxLife and
// MaxIdle both expiry-now (rounded up to whole seconds), which makes the store's deadline
// min(last access+MaxIdle, created+MaxLife) equal to expiry: scs itself applies its
// IdleTimeout and Lifetime by committing a new expiry. An expiry that has already passed
// deletes the session. A commit to a session destroyed meanwhile (a logout on another
// instance between scs's Find and its Commit) is dropped without error: the logout wins,
// and the next request finds no session.
func (s *Store) Commit(token string, b []byte, expiry time.Time) error {
	return s.CommitCtx(context.Background(), token, b, expiry)
}

// CommitCtx is Commit with a context.
func (s *Store) CommitCtx(ctx context.Context, token string, b []byte, expiry time.Time) error {
	life := time.Until(expiry)
	if life <= 0 {
		return s.DeleteCtx(ctx, token)
	}
	// Whole seconds, rounded up past the store's millisecond creation time, so that the
	// session never ends before scs's expiry.
	life = (life + time.Millisecond + time.Second - 1).Truncate(time.Second)
	// No principal: scs knows no user, so the session stays out of the per-user index
	// (one shared name would put a whole site's sessions under one index key).
	_, err := s.store.SaveAs(ctx, token, client.NewSession{
		MaxIdle: life, MaxLife: life, Attrs: map[string][]byte{Attr: b},
	})
	if errors.Is(err, client.ErrNotFound) {
		return nil // destroyed meanwhile (a logout elsewhere): the logout wins
	}
	return err
}

// Delete destroys the session token names everywhere (a logout on every instance). An
// unknown token is not an error.
func (s *Store) Delete(token string) error {
	return s.DeleteCtx(context.Background(), token)
}

// DeleteCtx is Delete with a context.
func (s *Store) DeleteCtx(ctx context.Context, token string) error {
	return s.store.Destroy(ctx, token)
}
