// Package bridge is the edge→hub store-and-forward link that runs inside the
// edge. It reads the edge's durable JetStream stream (EDGE, subjects ev.>)
// with a durable pull consumer, publishes every event to the hub over mutual
// TLS on edge.<edge-id>.<subject> with Nats-Msg-Id <edge-id>:<epoch>:<seq>,
// and acknowledges the event at the edge only after the hub's PubAck. It keeps
// the edge's order, pipelines publishes for throughput, reconnects forever
// with exponential backoff and jitter, dials through a hook so discovery can
// supply the hub's address, and reports the link's state (Status) and
// Prometheus metrics.
//
// The algorithm and its ordering and exactly-once argument are written up in
// ARCHITECTURE.md ("Bridge").
package bridge
