package dynamo

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// Server is a replica listening on a 127.0.0.1 port.
type Server struct {
	ln  net.Listener
	srv *http.Server
}

// Listen serves r on addr, which must be "127.0.0.1:PORT" (PORT 0 picks a free port):
// the emulator has no authentication, so it must not be reachable from the network.
// Closing the server and listening again on its address is how tests take the table
// offline and back, as an outage would, with the data kept (as AWS keeps it).
func (r *Replica) Listen(addr string) (*Server, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host != "127.0.0.1" {
		return nil, fmt.Errorf("dynamo: listen address %q: want 127.0.0.1:PORT (the emulator must not be reachable from the network)", addr)
	}
	ln, err := net.Listen("tcp4", addr)
	if err != nil {
		return nil, fmt.Errorf("dynamo: listen on %s: %w", addr, err)
	}
	s := &Server{ln: ln, srv: &http.Server{Handler: r, ReadHeaderTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute}}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

// Addr is "127.0.0.1:PORT".
func (s *Server) Addr() string { return s.ln.Addr().String() }

// URL is "http://127.0.0.1:PORT", an SDK client's endpoint.
func (s *Server) URL() string { return "http://" + s.Addr() }

// Close stops listening and closes every connection; requests under way are cut off.
func (s *Server) Close() error {
	if err := s.srv.Close(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
