package client

import (
	"context"
	"fmt"

	"github.com/sessionha/sessionha/events"
)

// SaveAs stores a whole session under an id the caller chose: it creates the session, or
// replaces whatever is stored under that id. It is stored as Create stores a session:
// with web-method frequency, before SaveAs returns.
//
// It exists for adapters to session frameworks that make their own tokens, such as
// client/scsstore (alexedwards/scs hands its store a token of the same form as ours).
// Applications should call Create, which makes the id.
//
// id must have the form of the ids Create makes (43 base64url characters: 32 bytes),
// else the error wraps ErrInvalid; it is hashed like any id and never leaves in clear.
// n is read as Create reads it, but n.Principal may be "" for a session of no known user
// (then with no Group): such a session is not in the per-user index, so List, Revoke,
// DestroyAll and MaxSessionsPerPrincipal never see it. The session counts as created
// now. An id this
// instance destroyed fails with ErrNotFound; one destroyed on another instance is not
// brought back either, since the table's tombstone is final.
func (s *Store) SaveAs(ctx context.Context, id string, n NewSession) (*Session, error) {
	if !validID(id) {
		return nil, fmt.Errorf("%w: the id must be 32 bytes in unpadded base64url", ErrInvalid)
	}
	sess, err := newSession(id, s.cfg.Cluster, n, s.cfg.MaxSessionLife, true)
	if err != nil {
		return nil, err
	}
	if err := s.publish(ctx, sess, events.OpSave); err != nil {
		return nil, err
	}
	return sess.clone(), nil
}
