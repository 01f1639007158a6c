package pki

import (
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// TestNATSServerMapsEdgeCertToUser proves the SAN scheme against the real
// nats-server: with TLSMap on, an edge certificate logs in as
// EdgeUserName(id) and gets that user's permissions; an unknown edge and a
// certificate of another CA are refused.
func TestNATSServerMapsEdgeCertToUser(t *testing.T) {
	f := newFixture(t)
	edge2 := mustIssue(t, f.l.Dir, "edge-2", IssueOptions{})
	stranger := mustIssue(t, f.l.Dir, "stranger", IssueOptions{}) // valid cert, no user

	srvTLS, err := ServerTLSConfig(f.l.CACert, f.l.HubCert, f.l.HubKey, 0)
	if err != nil {
		t.Fatal(err)
	}
	var users []*server.User
	for _, id := range []string{"edge-1", "edge-2"} {
		users = append(users, &server.User{
			Username: EdgeUserName(id),
			Permissions: &server.Permissions{
				Publish:   &server.SubjectPermission{Allow: []string{"edge." + id + ".>"}},
				Subscribe: &server.SubjectPermission{Allow: []string{"_INBOX.>"}},
			},
		})
	}
	opts := &server.Options{
		ServerName: "pki-test",
		Host:       "127.0.0.1",
		Port:       -1,
		NoLog:      true,
		NoSigs:     true,
		TLSConfig:  srvTLS,
		TLSVerify:  true,
		TLSMap:     true,
		TLSTimeout: 5,
		Users:      users,
	}
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	url := "tls://" + s.Addr().String()

	connect := func(cfg *tls.Config, errs chan<- error) (*nats.Conn, error) {
		o := []nats.Option{nats.Secure(cfg), nats.NoReconnect(), nats.Timeout(5 * time.Second)}
		if errs != nil {
			o = append(o, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
				select {
				case errs <- err:
				default:
				}
			}))
		}
		return nats.Connect(url, o...)
	}
	clientCfg := func(files EdgeFiles) *tls.Config {
		cfg, err := ClientTLSConfig(files.CACert, files.Cert, files.Key)
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}

	// Both edges log in as their own user.
	errs1 := make(chan error, 4)
	nc1, err := connect(clientCfg(f.edge), errs1)
	if err != nil {
		t.Fatalf("edge-1 connect: %v", err)
	}
	defer nc1.Close()
	nc2, err := connect(clientCfg(edge2), nil)
	if err != nil {
		t.Fatalf("edge-2 connect: %v", err)
	}
	defer nc2.Close()

	cz, err := s.Connz(&server.ConnzOptions{Username: true})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{} // authorized user -> TLS version
	for _, c := range cz.Conns {
		got[c.AuthorizedUser] = c.TLSVersion
	}
	for _, id := range []string{"edge-1", "edge-2"} {
		v, ok := got[EdgeUserName(id)]
		if !ok {
			t.Fatalf("no connection authorized as %q; connz users: %v", EdgeUserName(id), got)
		}
		if v != "1.3" {
			t.Errorf("%s: TLS version %q, want 1.3", id, v)
		}
	}

	// The mapped user's permissions apply: edge-1 may publish under its own
	// prefix only.
	if err := nc1.Publish("edge.edge-1.logging.hare", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	if err := nc1.Publish("edge.edge-2.logging.hare", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	if err := nc1.Flush(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errs1:
		if !strings.Contains(strings.ToLower(err.Error()), "permissions violation") || !strings.Contains(err.Error(), "edge.edge-2") {
			t.Fatalf("async error %v, want a permissions violation for edge.edge-2", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("publishing as edge-1 on edge-2's prefix was not refused")
	}

	// A valid certificate of this CA without a user: authorization refused.
	if nc, err := connect(clientCfg(stranger), nil); err == nil {
		nc.Close()
		t.Fatal("edge without a user connected")
	} else if !strings.Contains(strings.ToLower(err.Error()), "authorization violation") {
		t.Errorf("stranger refused with %v, want an authorization violation", err)
	}

	// A certificate of another CA, sent even though the hub does not list
	// that CA: the TLS handshake fails.
	rogue, err := LoadKeyPair(f.rogueEdge.Cert, f.rogueEdge.Key)
	if err != nil {
		t.Fatal(err)
	}
	rogueCfg := clientCfg(f.edge).Clone()
	rogueCfg.Certificates = nil
	rogueCfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &rogue, nil }
	if nc, err := connect(rogueCfg, nil); err == nil {
		nc.Close()
		t.Fatal("edge certificate of another CA connected")
	}
}
