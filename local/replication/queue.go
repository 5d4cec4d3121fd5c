package replication

import (
	"container/heap"
	"time"

	"github.com/sessionha/sessionha/local/dynamo"
)

// delivery is one change owed to one destination.
type delivery struct {
	c        dynamo.Change
	due      time.Time // not before
	seq      uint64    // order of queueing, to break ties of due
	attempts int       // failed attempts so far
}

// queue is a link's deliveries, earliest due first.
type queue []*delivery

func (q queue) Len() int { return len(q) }
func (q queue) Less(i, j int) bool {
	if !q[i].due.Equal(q[j].due) {
		return q[i].due.Before(q[j].due)
	}
	return q[i].seq < q[j].seq
}
func (q queue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *queue) Push(x any)   { *q = append(*q, x.(*delivery)) }
func (q *queue) Pop() any {
	old := *q
	d := old[len(old)-1]
	old[len(old)-1] = nil
	*q = old[:len(old)-1]
	return d
}

func (q *queue) push(d *delivery) { heap.Push(q, d) }
func (q *queue) pop() *delivery   { return heap.Pop(q).(*delivery) }
func (q queue) peek() *delivery {
	if len(q) == 0 {
		return nil
	}
	return q[0]
}
