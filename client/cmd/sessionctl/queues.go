package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sessionha/sessionha/client"
)

func init() {
	commands = append(commands, &command{
		name: "sweep-queues", args: "[--older-than DURATION] [--yes]",
		summary: "delete the queues of auth server instances gone for good (a dry run without --yes)",
		help: `
Finds the site's instance queues (sessionha-SITE-reply-*, SITE from SESSIONHA_SITE)
whose instance has not been seen alive for longer than --older-than, and with --yes
deletes them, each after removing its subscriptions to the reply and notice topics
(SESSIONHA_REPLY_TOPIC_ARN, SESSIONHA_NOTICE_TOPIC_ARN, and every site's notice topic
listed in SESSIONHA_NOTICE_TOPIC_ARNS). Without --yes it is a dry run:
it lists what it would delete and deletes nothing.

Each auth server instance that reads over the bus or takes destroy notices has a queue
of its own, which outlives its process so that a restart finds it (SQS refuses a
queue's name for 60 s after its deletion); the instance marks it alive every 5 minutes
(the queue's sessionha:last-seen tag). Live instances sweep their site about every hour
(SESSIONHA_SWEEP_QUEUES_EVERY); this command does the same at once, say from a
scheduled job where the instances' sweeps are off.

A queue under the prefix without the tags of this site's instance queues (made by an
older client, or another site's queue whose name starts with this site's prefix) is
listed as skipped and left alone. A queue whose instance was seen again while the sweep
ran is kept. Exit status 1 if some queue could not be removed (the listing says why).`,
		flags: func(fs *flag.FlagSet) func(context.Context, *app, []string) error {
			olderThan := fs.Duration("older-than", client.DefaultOrphanQueueAge,
				fmt.Sprintf("delete queues whose instance was last seen alive longer than `DURATION` ago (at least %s)", client.MinOrphanQueueAge))
			yes := fs.Bool("yes", false, "delete them; without it, only list what would be deleted")
			return func(ctx context.Context, a *app, args []string) error {
				if len(args) > 0 {
					return usagef("sweep-queues takes no arguments, got %q", args[0])
				}
				if *olderThan < client.MinOrphanQueueAge {
					return usagef("sweep-queues: --older-than %s: at least %s, so that no live instance is taken for dead (instances mark their queues alive every 5 minutes)", *olderThan, client.MinOrphanQueueAge)
				}
				return a.sweepQueues(ctx, *olderThan, *yes)
			}
		},
	})
}

func (a *app) sweepQueues(ctx context.Context, olderThan time.Duration, yes bool) error {
	site := env("SESSIONHA_SITE")
	if site == "" {
		site = "local"
	}
	var topics []string
	for _, v := range []string{"SESSIONHA_REPLY_TOPIC_ARN", "SESSIONHA_NOTICE_TOPIC_ARN"} {
		t := env(v)
		if t == "" {
			return fmt.Errorf("%s is not set (the subscriptions to remove with the queues are on it): %s", v, configHint)
		}
		topics = append(topics, t)
	}
	// Every site's notice topic, to which the instance queues are subscribed too (each
	// is asked in its own region).
	for t := range strings.SplitSeq(env("SESSIONHA_NOTICE_TOPIC_ARNS"), ",") {
		if t = strings.TrimSpace(t); t != "" && !slices.Contains(topics, t) {
			topics = append(topics, t)
		}
	}
	if t := env("SESSIONHA_LIFECYCLE_TOPIC_ARN"); t != "" && !slices.Contains(topics, t) {
		topics = append(topics, t) // instances subscribe to it too, where the site has one
	}
	c, err := newClients(ctx)
	if err != nil {
		return err
	}
	report, err := client.SweepInstanceQueues(ctx, c.cfg, client.SweepOptions{Site: site, OlderThan: olderThan, TopicARNs: topics, DryRun: !yes})
	switch {
	case errors.Is(err, client.ErrInvalid):
		return fmt.Errorf("SESSIONHA_SITE: %w", err)
	case err != nil && report == nil:
		return fmt.Errorf("sweep-queues: %w", err)
	}
	now := a.now()
	w := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	header := false
	counts := map[client.QueueState]int{}
	subs := 0
	for _, r := range report {
		counts[r.State]++
		if r.State == client.QueueAlive {
			continue // listed by count only: a fleet has many
		}
		if !header {
			fmt.Fprintln(w, "QUEUE\tINSTANCE\tLAST SEEN\tSUBSCRIPTIONS\tSTATE")
			header = true
		}
		seen, instance := "-", r.Instance
		if !r.LastSeen.IsZero() {
			seen = now.Sub(r.LastSeen).Round(time.Second).String() + " ago"
		}
		if instance == "" {
			instance = "-"
		}
		state := string(r.State)
		switch {
		case r.State == client.QueueOrphan:
			state = "would delete"
		case r.Reason != "":
			state += ": " + r.Reason
		}
		if r.State == client.QueueDeleted || r.State == client.QueueOrphan {
			subs += r.Subscriptions
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\n", r.Name, instance, seen, r.Subscriptions, state)
	}
	w.Flush()
	prefix := client.InstanceQueuePrefix(site)
	switch {
	case !yes && counts[client.QueueOrphan] > 0:
		fmt.Fprintf(a.stdout, "dry run: %d queues of %s* not seen alive for %s would be deleted, with %d subscriptions; %d live kept, %d skipped. Run again with --yes to delete them.\n",
			counts[client.QueueOrphan], prefix, olderThan, subs, counts[client.QueueAlive], counts[client.QueueSkipped])
	default:
		fmt.Fprintf(a.stdout, "deleted %d queues of %s* not seen alive for %s, with %d subscriptions; %d live kept, %d skipped, %d failed\n",
			counts[client.QueueDeleted], prefix, olderThan, subs, counts[client.QueueAlive], counts[client.QueueSkipped], counts[client.QueueFailed])
	}
	if err != nil {
		return fmt.Errorf("sweep-queues: %w", err)
	}
	return nil
}
