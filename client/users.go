package client

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/sessionha/sessionha/events"
	"github.com/sessionha/sessionha/internal/record"
)

// SessionInfo describes one of a user's sessions for listing: never its id (a bearer
// credential), but a Handle that names it for Revoke.
type SessionInfo struct {
	Handle     string // Handle(id) of the session
	Group      string // SSO group, "" for none
	Site       string // site of its last writer
	Created    time.Time
	LastAccess time.Time
	ExpiresAt  time.Time
}

// Handle is the name of a session that may be shown and stored, unlike its id: the hash
// that the table and the bus use. Handle(s.ID()) matches SessionInfo.Handle.
func Handle(id string) string { return events.HashID(id) }

// ErrIndexUnavailable means List and the per-user operations need the table's per-user
// index, which persistence memory and file do not have.
var ErrIndexUnavailable = errors.New("client: sessions per user need persistence ha")

// List returns the user's live sessions, oldest first, from the table's per-user index
// (persistence ha), less those logged out (their logout items). The index lags writes
// by about a second: a session created or ended a moment ago may be missing or still
// listed.
func (s *Store) List(ctx context.Context, principal string) ([]SessionInfo, error) {
	if !s.enter() {
		return nil, ErrClosed
	}
	defer s.leave()
	entries, err := s.entries(ctx, principal)
	if err != nil {
		return nil, err
	}
	out := make([]SessionInfo, 0, len(entries))
	for _, e := range entries {
		out = append(out, SessionInfo{
			Handle: e.Hash(), Group: e.Group, Site: e.Site,
			Created: time.UnixMilli(e.Created), LastAccess: time.UnixMilli(e.LastAccess), ExpiresAt: e.Deadline(),
		})
	}
	return out, nil
}

// entries reads the index, leaving out what this instance knows is destroyed and the
// sessions with a logout item: the index projects session items only, and a session item
// another region's save left live beside a logout (last writer wins) is still listed
// there. The logout items are read 100 to a consistent BatchGetItem (one read unit each).
func (s *Store) entries(ctx context.Context, principal string) ([]record.Entry, error) {
	if s.index == nil {
		return nil, ErrIndexUnavailable
	}
	if principal == "" {
		return nil, fmt.Errorf("%w: principal is required", ErrInvalid)
	}
	entries, err := record.ByPrincipal(ctx, s.index, s.cfg.Table, s.cfg.Cluster, principal, time.Now())
	if err != nil {
		return nil, fmt.Errorf("%w: list sessions: %v", ErrUnavailable, err)
	}
	entries = slices.DeleteFunc(entries, func(e record.Entry) bool { return s.isRevoked(e.Key) })
	keys := make([]string, len(entries))
	for i, e := range entries {
		keys[i] = e.Key
	}
	out, err := s.table.LoggedOut(ctx, keys)
	if err != nil {
		return nil, fmt.Errorf("%w: list sessions: read their logout items: %v", ErrUnavailable, err)
	}
	return slices.DeleteFunc(entries, func(e record.Entry) bool { return out[e.Key] }), nil
}

// DestroyAll ends every session of the user (revoke all, e.g. after a password change),
// each with its tombstone and notice, and returns how many it ended.
func (s *Store) DestroyAll(ctx context.Context, principal string) (int, error) {
	if !s.enter() {
		return 0, ErrClosed
	}
	defer s.leave()
	n := 0
	err := s.destroyWhereCount(ctx, principal, "revoke-all", func(record.Entry) bool { return true }, &n)
	return n, err
}

// Revoke ends one of the user's sessions, named by its handle (SessionInfo.Handle). A
// handle that is not one of the user's live sessions fails with ErrNotFound, so that a
// user can only revoke their own.
func (s *Store) Revoke(ctx context.Context, principal, handle string) error {
	if !s.enter() {
		return ErrClosed
	}
	defer s.leave()
	n := 0
	if err := s.destroyWhereCount(ctx, principal, "revoked", func(e record.Entry) bool { return e.Hash() == handle }, &n); err != nil {
		return err
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}

// destroyWhere ends the user's sessions that match.
func (s *Store) destroyWhere(ctx context.Context, principal, reason string, match func(record.Entry) bool) error {
	n := 0
	return s.destroyWhereCount(ctx, principal, reason, match, &n)
}

func (s *Store) destroyWhereCount(ctx context.Context, principal, reason string, match func(record.Entry) bool, n *int) error {
	entries, err := s.entries(ctx, principal)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		if !match(e) {
			continue
		}
		if err := s.destroy(ctx, e.Hash(), reason, e.Created+e.MaxLife*1000); err != nil {
			errs = append(errs, err)
			continue
		}
		*n++
	}
	return errors.Join(errs...)
}

// enforceCap destroys the user's oldest sessions beyond MaxSessionsPerPrincipal, keeping
// keep (the session just created, which the index may not list yet).
func (s *Store) enforceCap(ctx context.Context, principal, keep string) error {
	max := s.cfg.MaxSessionsPerPrincipal
	if max <= 0 || s.index == nil || principal == "" { // no principal: not in the index
		return nil
	}
	entries, err := s.entries(ctx, principal)
	if err != nil {
		return err
	}
	entries = slices.DeleteFunc(entries, func(e record.Entry) bool { return e.Key == keep })
	// The new session counts as one: the others may number max-1.
	var errs []error
	for len(entries) > max-1 {
		oldest := entries[0] // the index sorts by creation
		entries = entries[1:]
		if err := s.destroy(ctx, oldest.Hash(), "session-cap", oldest.Created+oldest.MaxLife*1000); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
