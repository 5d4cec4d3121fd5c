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
	ddb, err := StartDynamoDB(ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	fq, err := StartFauxqs(ctx, Options{})
	if err != nil {
		ddb.Stop()
		t.Fatal(err)
	}
	for _, ep := range []string{ddb.Endpoint, fq.Endpoint + "/health"} {
		resp, err := http.Get(ep)
		if err != nil {
			t.Errorf("GET %s: %v", ep, err)
			continue
		}
		resp.Body.Close()
	}
	pids := []int{ddb.PID(), fq.PID()}
	ddb.Stop()
	fq.Stop()
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); err == nil {
			t.Errorf("pid %d still running after Stop", pid)
		}
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
	_, err = StartDynamoDB(context.Background(), Options{Port: p})
	if err == nil || !strings.Contains(err.Error(), "is taken") {
		t.Fatalf("StartDynamoDB on a taken port: got %v, want an error saying the port is taken", err)
	}
}
