package hub

import (
	"crypto/tls"

	"github.com/warren-mesh/warren/hub/pki"
)

// tlsConfig holds the hub's two server TLS configurations, made from the
// same certificate: mutual TLS for edges, server-only for MQTT clients
// (which log in with a user name and password).
type tlsConfig struct {
	nats *tls.Config
	mqtt *tls.Config
}

func loadServerTLS(l pki.Layout, minVersion uint16) (*tlsConfig, error) {
	nc, err := pki.ServerTLSConfig(l.CACert, l.HubCert, l.HubKey, minVersion)
	if err != nil {
		return nil, err
	}
	mc := nc.Clone()
	mc.ClientAuth = tls.NoClientCert
	mc.ClientCAs = nil
	return &tlsConfig{nats: nc, mqtt: mc}, nil
}
