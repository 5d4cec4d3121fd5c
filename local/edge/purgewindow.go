package edge

// The purge window: AWS warns that a PurgeQueue may also delete the messages that reach
// the queue in the 60 s after it. The edge makes it happen to every one of them, so
// that code which purges and then expects what is sent next (replies, notices) fails
// in tests as it would, at times, on AWS.
//
// Messages reach a queue by SendMessage through the edge, and by SNS fan-out inside
// fauxqs, which never crosses the edge; so the edge cannot stop them on the way in.
// It takes them on the way out instead: a ReceiveMessage on a queue with a purge
// window asks fauxqs for each message's SentTimestamp too (and strips it again from
// the answer if the client did not ask for it, so the answer is shaped exactly as
// without the rules), leaves out the messages sent within a window, and deletes them
// in fauxqs with DeleteMessageBatch. If that delete fails, the messages come back
// after their visibility timeout and are taken again. A long poll whose messages were
// all taken polls on for the rest of its WaitTimeSeconds.
//
// Clocks: a window is PurgeWindow long on the edge's clock (Options.Now, a fake one in
// tests), while SentTimestamp is on fauxqs's, the real clock. The edge places a
// window's end in real time when it first sees its clock past the end (at the next
// SQS or SNS request): at the real instant the end had if the clock is real, but never
// before the last SQS or SNS request under the rules completed, since what a request
// that arrived in the window sent was sent in the window. So a test may move its clock
// between requests (not while one is under way): what was sent before the move is
// taken, what is sent after it is kept.
//
// Limits: only ReceiveMessage answers through the edge are filtered: the queue's
// ApproximateNumberOfMessages still counts the taken messages until a receive takes
// them, and a client that reaches fauxqs directly sees them. A message moved to a
// purged dead-letter queue keeps its original SentTimestamp, and is judged by it.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"slices"
	"strconv"
	"time"
)

// maxRetention is SQS's longest message retention: a window older than that can no
// longer hold a message.
const maxRetention = 14 * 24 * time.Hour

// window is the time after one purge of one queue.
type window struct {
	end       time.Time // edge clock: the purge's time + PurgeWindow
	realStart time.Time // real time the purge reached the edge
	realEnd   time.Time // real time of end; zero while the edge has not yet placed it
}

// takes reports whether a message sent at sentMs (Unix milliseconds, real time) is
// taken by the window.
func (w *window) takes(sentMs int64) bool {
	return sentMs >= w.realStart.UnixMilli() && (w.realEnd.IsZero() || sentMs < w.realEnd.UnixMilli())
}

// addWindow opens the window of a purge that reached the edge at now (edge clock),
// real (real time). The caller holds ru.mu.
func (ru *rules) addWindow(q *queueState, now, real time.Time) {
	q.windows = slices.DeleteFunc(q.windows, func(w *window) bool {
		return !w.realEnd.IsZero() && real.Sub(w.realEnd) > maxRetention
	})
	w := &window{end: now.Add(PurgeWindow), realStart: real}
	q.windows = append(q.windows, w)
	ru.open = append(ru.open, w)
}

// observe places in real time the end of every open window the edge's clock has passed.
// It runs at the start of every request under the rules, before the request is
// forwarded. SentTimestamp counts whole milliseconds, so an end is placed on a
// millisecond boundary after every message sent before it, and observe waits for that
// boundary (at most 1 ms) so that what the request it runs for sends is after it.
func (ru *rules) observe() {
	wait := ru.placeEnds()
	if wait > 0 {
		time.Sleep(wait)
	}
}

func (ru *rules) placeEnds() (wait time.Duration) {
	now, real := ru.now(), time.Now()
	ru.mu.Lock()
	defer ru.mu.Unlock()
	ru.open = slices.DeleteFunc(ru.open, func(w *window) bool {
		if now.Before(w.end) {
			return false
		}
		end := real.Add(-now.Sub(w.end)) // the end's real instant, if the clock is real
		if end.Before(ru.lastDone) {
			end = ru.lastDone // a request of the window completed later, or the clock jumped
		}
		if end.Before(w.realStart) {
			end = w.realStart
		}
		w.realEnd = end.Truncate(time.Millisecond).Add(time.Millisecond)
		wait = max(wait, w.realEnd.Sub(real))
		return true
	})
	return wait
}

// done notes that a request under the rules completed.
func (ru *rules) done() {
	real := time.Now()
	ru.mu.Lock()
	defer ru.mu.Unlock()
	if real.After(ru.lastDone) {
		ru.lastDone = real
	}
}

func without(ws, drop []*window) []*window {
	return slices.DeleteFunc(ws, func(w *window) bool { return slices.Contains(drop, w) })
}

func (ru *rules) hasWindows(key queueKey) bool {
	ru.mu.Lock()
	defer ru.mu.Unlock()
	q := ru.queues[key]
	return q != nil && len(q.windows) > 0
}

func (ru *rules) taken(key queueKey, sentMs int64) bool {
	ru.mu.Lock()
	defer ru.mu.Unlock()
	q := ru.queues[key]
	if q == nil {
		return false
	}
	return slices.ContainsFunc(q.windows, func(w *window) bool { return w.takes(sentMs) })
}

// receive answers a ReceiveMessage on a queue with purge windows, without the messages
// they take.
func (g *Gateway) receive(w http.ResponseWriter, r *http.Request, rt *route, body []byte, key queueKey, in *sqsInput) {
	asked := slices.Contains(in.AttributeNames, "All") || slices.Contains(in.AttributeNames, "SentTimestamp") ||
		slices.Contains(in.MessageSystemAttributeNames, "All") || slices.Contains(in.MessageSystemAttributeNames, "SentTimestamp")
	var req map[string]json.RawMessage
	if err := json.Unmarshal(body, &req); err != nil {
		g.forwardBody(w, r, rt, body)
		return
	}
	if !asked {
		req["MessageSystemAttributeNames"] = mustJSON(append(slices.Clone(in.MessageSystemAttributeNames), "SentTimestamp"))
	}
	var deadline time.Time
	if in.WaitTimeSeconds != nil && *in.WaitTimeSeconds > 0 {
		deadline = time.Now().Add(time.Duration(*in.WaitTimeSeconds) * time.Second)
	}
	rt.count.Add(1)
	rt.total.Add(1)
	for {
		resp, respBody, err := g.upstream(r.Context(), r, rt, "", mustJSON(req))
		if err != nil {
			if r.Context().Err() != nil {
				return // the client is gone
			}
			writeError(w, r, http.StatusBadGateway, "BadGateway", fmt.Sprintf("edge: sqs emulator at %s did not answer: %v", rt.target, err))
			return
		}
		if resp.StatusCode != http.StatusOK {
			copyResponse(w, resp, respBody)
			return
		}
		g.rules.observe()
		out, taken, left, err := g.rules.filter(key, respBody, asked)
		if err != nil {
			copyResponse(w, resp, respBody) // not the answer we know: pass it on as it is
			return
		}
		if len(taken) > 0 {
			g.deleteTaken(r, rt, in.QueueURL, taken)
		}
		if len(taken) > 0 && left == 0 && !deadline.IsZero() {
			if wait := time.Until(deadline); wait >= time.Second {
				req["WaitTimeSeconds"] = mustJSON(int(wait / time.Second))
				continue
			}
		}
		copyResponse(w, resp, out)
		return
	}
}

// filter takes out of a ReceiveMessage answer the messages a purge window takes, and
// strips SentTimestamp if the client did not ask for it. It returns the new answer
// (the old one, byte for byte, if nothing changed), the receipt handles of the
// messages taken, and how many messages are left.
func (ru *rules) filter(key queueKey, answer []byte, asked bool) (out []byte, taken []string, left int, err error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(answer, &top); err != nil {
		return nil, nil, 0, err
	}
	raw, ok := top["Messages"]
	if !ok {
		return answer, nil, 0, nil
	}
	var msgs []map[string]json.RawMessage
	if err := json.Unmarshal(raw, &msgs); err != nil {
		return nil, nil, 0, err
	}
	kept := msgs[:0]
	for _, m := range msgs {
		var attrs map[string]string
		if a, ok := m["Attributes"]; ok {
			if err := json.Unmarshal(a, &attrs); err != nil {
				return nil, nil, 0, err
			}
		}
		if sent, err := strconv.ParseInt(attrs["SentTimestamp"], 10, 64); err == nil && ru.taken(key, sent) {
			var handle string
			if err := json.Unmarshal(m["ReceiptHandle"], &handle); err != nil {
				return nil, nil, 0, err
			}
			taken = append(taken, handle)
			continue
		}
		if !asked {
			delete(attrs, "SentTimestamp")
			if len(attrs) == 0 {
				delete(m, "Attributes")
			} else {
				m["Attributes"] = mustJSON(attrs)
			}
		}
		kept = append(kept, m)
	}
	if asked && len(taken) == 0 {
		return answer, nil, len(kept), nil
	}
	if len(kept) == 0 {
		delete(top, "Messages") // as fauxqs answers when it has no message
	} else {
		top["Messages"] = mustJSON(kept)
	}
	return mustJSON(top), taken, len(kept), nil
}

// deleteTaken deletes the taken messages in fauxqs, as the client's call; even if the
// client has gone meanwhile.
func (g *Gateway) deleteTaken(r *http.Request, rt *route, queueURL string, handles []string) {
	type entry struct {
		ID            string `json:"Id"`
		ReceiptHandle string
	}
	entries := make([]entry, len(handles))
	for i, h := range handles {
		entries[i] = entry{ID: "m" + strconv.Itoa(i), ReceiptHandle: h}
	}
	body := mustJSON(struct {
		QueueURL string `json:"QueueUrl"`
		Entries  []entry
	}{queueURL, entries})
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 10*time.Second)
	defer cancel()
	_, _, _ = g.upstream(ctx, r, rt, "AmazonSQS.DeleteMessageBatch", body) // if it fails, the next receive takes them again
}

// upstream sends a request like in, with body (and target as X-Amz-Target if not ""),
// to rt's emulator, and returns the answer read whole.
func (g *Gateway) upstream(ctx context.Context, in *http.Request, rt *route, target string, body []byte) (*http.Response, []byte, error) {
	out := in.Clone(ctx)
	out.RequestURI = ""
	out.Body = io.NopCloser(bytes.NewReader(body))
	out.ContentLength = int64(len(body))
	for _, h := range []string{"Content-Length", "Accept-Encoding", "Connection", "Keep-Alive", "Te", "Trailer", "Transfer-Encoding", "Upgrade", "Expect"} {
		out.Header.Del(h) // Accept-Encoding: the edge reads the answer, so it must come plain
	}
	if target != "" {
		out.Header.Set("X-Amz-Target", target)
	}
	(&httputil.ProxyRequest{In: in, Out: out}).SetURL(rt.target)
	out.Host = in.Host
	resp, err := g.transport.RoundTrip(out)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, nil, err
	}
	return resp, b, nil
}

// copyResponse answers with resp's status and headers and body.
func copyResponse(w http.ResponseWriter, resp *http.Response, body []byte) {
	h := w.Header()
	for k, vs := range resp.Header {
		switch http.CanonicalHeaderKey(k) {
		case "Content-Length", "Connection", "Keep-Alive", "Transfer-Encoding", "Trailer":
			continue
		}
		h[k] = slices.Clone(vs)
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(body)
}

// mustJSON encodes v, which cannot fail for the values the rules build, without
// escaping HTML (message bodies pass through as they are).
func mustJSON(v any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic(fmt.Sprintf("edge: encode %T: %v", v, err))
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}
