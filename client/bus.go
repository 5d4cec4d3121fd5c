package client

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	snstypes "github.com/aws/aws-sdk-go-v2/service/sns/types"

	"github.com/sessionha/sessionha/events"
	"github.com/sessionha/sessionha/internal/record"
)

// flight is one failover query under way; concurrent Loads of one id share it.
type flight struct {
	done chan struct{}
	it   *record.Item // the answer: nil for missing, State Destroyed for destroyed
	err  error
}

// ask reads a session over the bus, as the old products' failover did: it publishes a
// query on the query topic and waits at most MaxWait for the answer on this instance's
// queue. The wait belongs to the query, not to the first caller, so that a caller that
// gives up does not fail the others sharing it.
func (s *Store) ask(ctx context.Context, key, hashed string) (*record.Item, error) {
	s.mu.Lock()
	f, ok := s.flights[key]
	if !ok {
		f = &flight{done: make(chan struct{})}
		s.flights[key] = f
		go s.fly(f, key, hashed)
	}
	s.mu.Unlock()
	select {
	case <-f.done:
		return f.it, f.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (s *Store) fly(f *flight, key, hashed string) {
	defer func() {
		s.mu.Lock()
		delete(s.flights, key)
		s.mu.Unlock()
		close(f.done)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.MaxWait)
	defer cancel()
	s.stats.busQueries.Add(1)
	if err := s.inbox.readyForReplies(); err != nil {
		f.err = err // no reply could reach this instance: say so now rather than after MaxWait
		return
	}
	id := requestID()
	replies, stop := s.inbox.wait(id)
	defer stop()
	body, err := events.EncodeQuery(&events.Query{
		V: events.SchemaVersion, Cluster: s.cfg.Cluster, ID: hashed, Requester: s.cfg.InstanceID,
		RequestID: id, At: time.Now().UnixMilli(),
	})
	if err != nil {
		f.err = fmt.Errorf("%w: %v", ErrInvalid, err)
		return
	}
	if _, err := s.bus.Publish(ctx, &sns.PublishInput{
		TopicArn: aws.String(s.cfg.QueryTopicARN), Message: aws.String(string(body)),
		MessageAttributes: map[string]snstypes.MessageAttributeValue{
			"requester": {DataType: aws.String("String"), StringValue: aws.String(s.cfg.InstanceID)},
		},
	}); err != nil {
		if ctx.Err() != nil {
			s.stats.busTimeouts.Add(1)
			f.err = fmt.Errorf("%w (%s): the query could not be published: %v", ErrTimeout, s.cfg.MaxWait, err)
			return
		}
		f.err = fmt.Errorf("%w: publish failover query: %v", ErrUnavailable, err)
		return
	}
	select {
	case r := <-replies:
		f.it = replyItem(key, r)
	case <-ctx.Done():
		s.stats.busTimeouts.Add(1)
		f.err = fmt.Errorf("%w (%s): no answer to the failover query", ErrTimeout, s.cfg.MaxWait)
	}
}

// replyItem turns an answer into the item it describes (nil for missing).
func replyItem(key string, r *events.Reply) *record.Item {
	switch r.Status {
	case events.ReplyDestroyed:
		return &record.Item{Key: key, State: record.Destroyed}
	case events.ReplyFound:
		x := r.Session
		return &record.Item{
			Key: key, Version: r.Version, State: record.Active, Principal: x.Principal, Group: x.Group,
			Created: x.Created, LastAccess: x.LastAccess, MaxIdle: x.MaxIdle, MaxLife: x.MaxLife, Attrs: x.Attrs,
		}
	}
	return nil
}
