package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/warren-mesh/warren/discovery"
	"github.com/warren-mesh/warren/edge"
	"github.com/warren-mesh/warren/internal/admin"
)

func statusCmd(g *globals, stdout io.Writer) *cobra.Command {
	var asJSON bool
	var addr string
	var wait time.Duration
	c := &cobra.Command{
		Use:   "status",
		Short: "show the running edge's state: listeners, counters, backlog, hub link",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if addr == "" {
				cfg, _, err := g.load()
				if err != nil {
					return err
				}
				addr = cfg.Admin.Listen
			}
			if addr == "" {
				return usageError{Err: fmt.Errorf("admin.listen is off; edge status reads the admin listener (or pass --admin ADDR)")}
			}
			raw, err := fetchStatus(addr, wait)
			if err != nil {
				return err
			}
			if asJSON {
				_, err := stdout.Write(raw)
				return err
			}
			var st edge.Status
			if err := json.Unmarshal(raw, &st); err != nil {
				return fmt.Errorf("status: %w", err)
			}
			printStatus(stdout, st)
			var d struct {
				Discovery *discovery.View `json:"discovery"`
			}
			if json.Unmarshal(raw, &d) == nil && d.Discovery != nil {
				printDiscovery(stdout, *d.Discovery, time.Now())
			}
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print the status as JSON")
	c.Flags().StringVar(&addr, "admin", "", "admin listener to ask (default: admin.listen of the configuration)")
	c.Flags().DurationVar(&wait, "wait", 0, "retry this long while the edge is not answering yet")
	return c
}

func fetchStatus(addr string, wait time.Duration) ([]byte, error) {
	deadline := time.Now().Add(wait)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		var raw []byte
		err := admin.Get(ctx, addr, "/status", &raw)
		cancel()
		if err == nil {
			return raw, nil
		}
		if time.Now().After(deadline) {
			return nil, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// printStatus writes the status for people.
func printStatus(w io.Writer, st edge.Status) {
	fmt.Fprintf(w, "edge %s  version %s  epoch %s  up %s\n\n", st.ID, st.Version, st.Epoch,
		(time.Duration(st.UptimeSeconds) * time.Second).String())

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "listeners")
	for _, l := range [][2]string{{"udp", st.Listeners.UDP}, {"mqtt", st.Listeners.MQTT}, {"nats", st.Listeners.NATS}, {"admin", st.Listeners.Admin}} {
		fmt.Fprintf(tw, "  %s\t%s\n", l[0], orOff(l[1]))
	}
	tw.Flush()

	fmt.Fprintf(w, "\nevents accepted: %d  (udp %d, mqtt %d; unsigned udp %d, tst fixed %d)\n",
		sum(st.Accepted), st.Accepted["udp"], st.Accepted["mqtt"], st.UnsignedAccepted, st.TstFixed)
	fmt.Fprintf(w, "datagrams received: v0 %d, v1 %d, unknown %d\n", st.Datagrams["v0"], st.Datagrams["v1"], st.Datagrams["unknown"])
	rej := sum(st.Rejected)
	fmt.Fprintf(w, "events rejected: %d\n", rej)
	if rej > 0 {
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		for _, k := range sortedKeys(st.Rejected) {
			if n := st.Rejected[k]; n > 0 {
				fmt.Fprintf(tw, "  %s\t%d\t\n", k, n)
			}
		}
		tw.Flush()
	}
	if st.Expired > 0 {
		fmt.Fprintf(w, "events expired unforwarded (store.max_age): %d\n", st.Expired)
	}

	s := st.Stream
	fmt.Fprintf(w, "\nstream %s (backlog)\n", s.Name)
	if s.Error != "" {
		fmt.Fprintf(w, "  error: %s\n", s.Error)
	} else {
		fmt.Fprintf(w, "  events   %d\n", s.Messages)
		fmt.Fprintf(w, "  bytes    %s of %s\n", bytesStr(int64(s.Bytes)), limit(s.MaxBytes, bytesStr))
		fmt.Fprintf(w, "  limit    %s events, max age %s\n", limit(s.MaxMsgs, func(n int64) string { return fmt.Sprint(n) }), ageLimit(s.MaxAge))
		if s.Messages > 0 {
			fmt.Fprintf(w, "  oldest   %s ago\n", (time.Duration(s.OldestAgeSeconds*1000) * time.Millisecond).String())
		}
	}
	fmt.Fprintf(w, "  queue    %d of %d waiting to be stored\n", st.Queue.Length, st.Queue.Capacity)

	fmt.Fprintln(w, "\nhub")
	printHub(w, st.Hub)
}

// printHub prints the bridge's link status (whatever its shape) as sorted
// key: value lines, state first.
func printHub(w io.Writer, hub any) {
	m, ok := hub.(map[string]any)
	if !ok {
		b, _ := json.Marshal(hub)
		fmt.Fprintf(w, "  %s\n", b)
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if s, ok := m["state"]; ok {
		fmt.Fprintf(tw, "  state\t%v\n", s)
	}
	for _, k := range sortedKeys(m) {
		if k == "state" {
			continue
		}
		v := m[k]
		if f, ok := v.(float64); ok && f == float64(int64(f)) {
			v = int64(f)
		}
		fmt.Fprintf(tw, "  %s\t%v\n", k, v)
	}
	tw.Flush()
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func sum(m map[string]uint64) uint64 {
	var n uint64
	for _, v := range m {
		n += v
	}
	return n
}

func orOff(s string) string {
	if s == "" {
		return "off"
	}
	return s
}

func limit(v int64, f func(int64) string) string {
	if v < 0 {
		return "unbounded"
	}
	return f(v)
}

func ageLimit(s string) string {
	if s == "" || s == "0s" {
		return "off (kept until forwarded)"
	}
	return s
}

func bytesStr(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %siB", float64(n)/float64(div), strings.Split("K M G T P E", " ")[exp])
}
