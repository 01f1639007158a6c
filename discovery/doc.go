// Package discovery finds the hub for warren edges and lists the fleet for the
// hub, on top of hashicorp/memberlist.
//
// Gossip is encrypted with a rotatable AES-GCM keyring loaded from key files
// and carries a cluster label; it refuses to start without a key unless
// insecure mode is requested explicitly. Every node advertises a small,
// size-checked metadata record (Meta): the hub its NATS URLs and TLS server
// name, an edge its id, backlog and hub-link state. Membership changes come
// out as typed events on a channel that never blocks memberlist.
//
// Gossip is trusted for one thing only: where the hub currently is. Who is who
// is decided by mutual TLS on the NATS connection, never by gossip.
package discovery
