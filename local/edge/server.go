package edge

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"
)

// Server is a Gateway listening on a 127.0.0.1 port.
type Server struct {
	g      *Gateway
	ln     net.Listener
	srv    *http.Server
	cancel context.CancelFunc // cancels every request's context: unblocks blackholes
	done   chan struct{}      // closed when Serve has returned

	closeOnce sync.Once
	closeErr  error
}

// Listen listens on addr, which must be "127.0.0.1:PORT" (PORT 0 picks a free
// port), and serves g there in a goroutine until Close. Only the loopback address
// is allowed because the emulators have no authentication: the edge must not be
// reachable from the network.
func Listen(addr string, g *Gateway) (*Server, error) {
	if g == nil {
		return nil, errors.New("edge: Listen needs a Gateway (see New)")
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("edge: bad listen address %q: %v (want 127.0.0.1:PORT)", addr, err)
	}
	if host != "127.0.0.1" {
		return nil, fmt.Errorf("edge: refusing to listen on %s: only 127.0.0.1 is allowed", addr)
	}
	ln, err := net.Listen("tcp4", addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("edge: port %s is taken: %w (stop what uses it, or choose another port)", port, err)
		}
		return nil, fmt.Errorf("edge: listen on %s: %w", addr, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		g:  g,
		ln: ln,
		srv: &http.Server{
			Handler: g,
			// No read or write timeouts: SQS long polls hold a response for 20 s
			// and request bodies may stream. Only idle header reads are bounded.
			ReadHeaderTimeout: 30 * time.Second,
			IdleTimeout:       2 * time.Minute,
			ErrorLog:          discard,
			BaseContext:       func(net.Listener) context.Context { return ctx },
		},
		cancel: cancel,
		done:   make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		_ = s.srv.Serve(ln) // always ErrServerClosed or a listener error after Close
	}()
	return s, nil
}

// Addr is the address the server listens on, "127.0.0.1:PORT".
func (s *Server) Addr() string { return s.ln.Addr().String() }

// URL is the server's base URL, "http://127.0.0.1:PORT", for AWS_ENDPOINT_URL or
// an SDK client's BaseEndpoint.
func (s *Server) URL() string { return "http://" + s.Addr() }

// Close stops listening, closes every connection, releases requests held by
// FaultBlackhole, and drops the gateway's idle upstream connections. It does not
// wait for in-flight handlers to return. Calling it again returns the first result.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.cancel()
		s.closeErr = s.srv.Close()
		<-s.done
		s.g.transport.CloseIdleConnections()
	})
	return s.closeErr
}
