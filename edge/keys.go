package edge

import (
	"errors"
	"fmt"
)

// lookupKey finds a hare key in the current keyring (see ReloadKeys).
func (e *Edge) lookupKey(id string) ([]byte, bool) {
	kr := e.keyring.Load()
	if kr == nil {
		return nil, false
	}
	return kr.Lookup(id)
}

// ReloadKeys reads udp.keys_file again and, if it is valid, makes its keys
// the ones datagrams are checked with from the next datagram on (a new
// host's key, or a rotated one, needs no restart). On any error the keys in
// use stay. It returns the number of keys now in use. `edge run` calls it on
// SIGHUP.
func (e *Edge) ReloadKeys() (int, error) {
	if e.cfg.UDP.KeysFile == "" {
		return 0, errors.New("udp.keys_file is not set")
	}
	if e.keyring.Load() == nil {
		// Without a keys file at start the UDP core was built without a
		// lookup; keep the rule simple: a keys file is configured from the
		// start or not at all.
		return 0, errors.New("the edge started without keys; restart it to add udp.keys_file")
	}
	keys, err := e.loadKeys()
	if err != nil {
		return len(*e.keyring.Load()), fmt.Errorf("keeping the keys in use: %w", err)
	}
	e.keyring.Store(&keys)
	return len(keys), nil
}
