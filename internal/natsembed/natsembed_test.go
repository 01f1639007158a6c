package natsembed

import (
	"bytes"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func TestStartStop(t *testing.T) {
	var buf syncBuf
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	opts := &server.Options{ServerName: "t1", Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir()}
	s, err := Start(opts, logger, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Publish("x", []byte("y")); err != nil {
		t.Fatal(err)
	}
	nc.Close()
	Stop(s)
	if !strings.Contains(buf.String(), "Server is ready") {
		t.Errorf("server log not routed to slog:\n%s", buf.String())
	}
}

func TestStartFailsOnTakenPort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	logger := slog.New(slog.DiscardHandler)
	s, err := Start(&server.Options{ServerName: "b", Host: "127.0.0.1", Port: port}, logger, 2*time.Second)
	if err == nil {
		Stop(s)
		t.Fatal("Start succeeded on a taken port")
	}
	if !strings.Contains(err.Error(), "not ready") {
		t.Errorf("err = %v", err)
	}
}
