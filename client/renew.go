package client

import (
	"context"

	"github.com/sessionha/sessionha/events"
	"github.com/sessionha/sessionha/internal/record"
)

// reasonRenew is the reason a renewal's destroy of the old id carries (op and notice):
// the end of one id, not a logout.
const reasonRenew = "renew"

// Renew gives a login a new session id, the defence against session fixation when the
// user logs in over an existing session or their privileges change: it creates n as a
// new session, then ends the session oldID (if it names one), which every instance then
// refuses, as after Destroy. Unlike Destroy it is not a logout: the other sessions of
// the old session's SSO group stay, and the old session does not count against
// MaxSessionsPerPrincipal when the new one is created. Keeping the old principal, group,
// limits and attributes is the caller's choice, through n.
//
// If the new session cannot be created, the old one is left as it was. If the old one
// cannot be ended (this instance refuses it all the same), the new one is ended too, so
// that one login never leaves two live sessions, and the error is returned.
func (s *Store) Renew(ctx context.Context, oldID string, n NewSession) (*Session, error) {
	if !s.enter() {
		return nil, ErrClosed
	}
	defer s.leave()
	sess, err := s.create(ctx, n)
	if err != nil {
		return nil, err
	}
	if validID(oldID) {
		old := events.HashID(oldID)
		if err := s.destroy(ctx, old, reasonRenew, s.knownOf(ctx, record.Key(s.cfg.Cluster, old)).until); err != nil {
			if err2 := s.destroy(ctx, events.HashID(sess.id), reasonRenew, sess.created.Add(sess.maxLife).UnixMilli()); err2 != nil {
				s.log.Warn("could not end the session a failed renewal created", "reason", err2.Error())
			}
			return nil, err
		}
	}
	// After the old id's destroy, which this instance's reads of the index leave out.
	if err := s.enforceCap(ctx, sess.principal, sess.key); err != nil {
		s.log.Warn("could not end the user's oldest sessions beyond MaxSessionsPerPrincipal", "reason", err.Error())
	}
	return sess.clone(), nil
}
