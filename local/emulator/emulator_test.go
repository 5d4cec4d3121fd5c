package emulator

import (
	"context"
	"net/http"
	"strings"
	"syscall"
	"testing"
)

func TestStartStop(t *testing.T) {
	ctx := context.Background()
	fq, err := StartFauxqs(ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(fq.Endpoint + "/health")
	if err != nil {
		t.Errorf("GET /health: %v", err)
	} else {
		resp.Body.Close()
	}
	pid := fq.PID()
	fq.Stop()
	if err := syscall.Kill(pid, 0); err == nil {
		t.Errorf("pid %d still running after Stop", pid)
	}
}

func TestPortTaken(t *testing.T) {
	fq, err := StartFauxqs(context.Background(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer fq.Stop()
	port := strings.TrimPrefix(fq.Endpoint, "http://127.0.0.1:")
	var p int
	for _, c := range port {
		p = p*10 + int(c-'0')
	}
	_, err = StartFauxqs(context.Background(), Options{Port: p})
	if err == nil || !strings.Contains(err.Error(), "is taken") {
		t.Fatalf("StartFauxqs on a taken port: got %v, want an error saying the port is taken", err)
	}
}
