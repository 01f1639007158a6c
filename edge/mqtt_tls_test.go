package edge

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/warren-mesh/warren/internal/event"
)

// writeServerCert writes a self-signed server certificate for 127.0.0.1 and
// its key, and returns their paths and a pool trusting it.
func writeServerCert(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "edge-mqtt-test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "mqtt.crt"), filepath.Join(dir, "mqtt.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}), 0o600); err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// TestMQTTOverTLSWithLogin: with mqtt.tls set the MQTT listener speaks TLS
// only; a client that trusts the certificate and logs in stores events, a
// plain-TCP client and a TLS client with a wrong password are refused.
// Also: without nats.listen the embedded server opens no NATS port.
func TestMQTTOverTLSWithLogin(t *testing.T) {
	certFile, keyFile, pool := writeServerCert(t)
	pw := filepath.Join(t.TempDir(), "dev.pw")
	if err := os.WriteFile(pw, []byte("tls-s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, t.TempDir())
	cfg.MQTT.TLS = TLSConfig{CertFile: certFile, KeyFile: keyFile}
	cfg.MQTT.Users = []UserConfig{{Name: "dev", PasswordFile: pw}}
	e, logs := startEdge(t, cfg)

	if a := e.Server().Addr(); a != nil {
		t.Errorf("no nats.listen configured, but the server listens on %s", a)
	}
	if e.NATSURL() != "" || e.Status().Listeners.NATS != "" {
		t.Errorf("NATS listener reported: %q", e.NATSURL())
	}

	connect := func(scheme, id, pass string) (mqtt.Client, error) {
		opts := mqtt.NewClientOptions().AddBroker(scheme + "://" + e.MQTTAddr()).SetClientID(id).
			SetUsername("dev").SetPassword(pass).
			SetConnectTimeout(5 * time.Second).SetAutoReconnect(false).SetConnectRetry(false).
			SetTLSConfig(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
		c := mqtt.NewClient(opts)
		tok := c.Connect()
		if !tok.WaitTimeout(10 * time.Second) {
			return nil, os.ErrDeadlineExceeded
		}
		if err := tok.Error(); err != nil {
			return nil, err
		}
		t.Cleanup(func() { c.Disconnect(100) })
		return c, nil
	}

	if _, err := connect("tcp", "plain", "tls-s3cret"); err == nil {
		t.Error("a plain-TCP MQTT client connected to the TLS listener")
	}
	if _, err := connect("ssl", "wrong", "nope"); err == nil {
		t.Error("a TLS client with a wrong password connected")
	}
	c, err := connect("ssl", "right", "tls-s3cret")
	if err != nil {
		t.Fatalf("TLS client with the right password refused: %v", err)
	}
	publish(t, c, "logging/tls", 1, "over tls")
	waitStored(t, e, "over tls")
	for _, m := range storedEvents(t, e.JetStream()) {
		if string(m.Data) == "over tls" && (m.Subject != "ev.logging.tls" || m.Header.Get(event.HdrSource) != event.SourceMQTT) {
			t.Errorf("stored %s with %v", m.Subject, m.Header)
		}
	}
	// The event is in the stream as soon as JetStream stored it; the
	// counter follows when the publisher has read the PubAck.
	waitFor(t, "accepted mqtt 1", 5*time.Second, func() bool { return e.Status().Accepted[event.SourceMQTT] == 1 })
	if logs := logs.String(); strings.Contains(logs, "tls-s3cret") {
		t.Error("the password appears in the log")
	}
}
