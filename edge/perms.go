package edge

// clientPublishDeny is what no client of the edge's broker (anonymous or
// configured MQTT users, NATS clients on nats.listen) may publish to. The
// edge's own subjects first: only the edge stores events (ev.>) and replay
// records (nonce.>). Then everything that could change or empty the stores
// through the JetStream API: a local MQTT client publishing to
// $JS/API/STREAM/PURGE/EDGE would otherwise wipe accepted, unforwarded
// events, and purging HARE_NONCES would let replays through. Reading stays
// allowed (stream info, message get), which is what local tools need.
// $JS.ACK is denied because acknowledging the bridge's deliveries deletes
// events from the WorkQueue stream; the MQTT gateway acknowledges its own
// QoS 1 deliveries internally, not with the client's permissions.
var clientPublishDeny = []string{
	"ev", "ev.>", nonceToken, nonceToken + ".>",
	"$JS.API.STREAM.CREATE.>",
	"$JS.API.STREAM.UPDATE.>",
	"$JS.API.STREAM.DELETE.>",
	"$JS.API.STREAM.PURGE.>",
	"$JS.API.STREAM.MSG.DELETE.>",
	"$JS.API.STREAM.RESTORE.>",
	"$JS.API.STREAM.PEER.>",
	"$JS.API.STREAM.LEADER.>",
	"$JS.API.CONSUMER.>",
	"$JS.API.ACCOUNT.>",
	"$JS.API.META.>",
	"$JS.API.SERVER.>",
	"$JS.ACK.>",
	"$JS.FC.>",
	"$KV.>",
	"$O.>",
	"$SYS.>",
	"$NRG.>",
}
