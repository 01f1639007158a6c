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

	"github.com/warren-mesh/warren/hub"
	"github.com/warren-mesh/warren/hub/notify"
	"github.com/warren-mesh/warren/internal/admin"
)

// fetch reads path from the running hub's admin listener, retrying for
// up to wait.
func fetch(g *globals, path string, wait time.Duration) ([]byte, error) {
	cfg, _, err := g.load()
	if err != nil {
		return nil, err
	}
	if cfg.Admin.Listen == "" {
		return nil, usageError{Err: fmt.Errorf("admin.listen is off; the status commands read the admin listener")}
	}
	deadline := time.Now().Add(wait)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		var raw []byte
		err := admin.Get(ctx, cfg.Admin.Listen, path, &raw)
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

func statusCmd(g *globals, stdout io.Writer) *cobra.Command {
	var asJSON bool
	var wait time.Duration
	c := &cobra.Command{
		Use:   "status",
		Short: "show the running hub's state: edges, stream, MQTT clients, counters",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			raw, err := fetch(g, "/status", wait)
			if err != nil {
				return err
			}
			if asJSON {
				_, err := stdout.Write(raw)
				return err
			}
			var st hub.Status
			if err := json.Unmarshal(raw, &st); err != nil {
				return fmt.Errorf("status: %w", err)
			}
			printStatus(stdout, st, time.Now())
			// The notifier's queues, when it runs (hub notify status has
			// the per-target table).
			if raw, err := fetch(g, "/notify", 0); err == nil {
				var ns notify.Status
				if json.Unmarshal(raw, &ns) == nil {
					var queued uint64
					for _, t := range ns.Targets {
						queued += t.Queued + uint64(t.InFlight)
					}
					fmt.Fprintf(stdout, "\nnotifier: %d events waiting, %d notifications queued for %d targets, %d dead letters (hub notify status)\n",
						ns.EventsPending+uint64(ns.EventsInFlight), queued, len(ns.Targets), ns.DeadLetters)
				}
			}
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print the status as JSON")
	c.Flags().DurationVar(&wait, "wait", 0, "retry this long while the hub is not answering yet")
	return c
}

func edgesCmd(g *globals, stdout io.Writer) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "edges",
		Short: "list the edges the running hub knows: from NATS connections and heartbeats, and from gossip when discovery runs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			raw, err := fetch(g, "/edges", 0)
			if err != nil {
				return err
			}
			if asJSON {
				_, err := stdout.Write(raw)
				return err
			}
			var edges []hub.EdgeStatus
			if err := json.Unmarshal(raw, &edges); err != nil {
				return fmt.Errorf("edges: %w", err)
			}
			printEdges(stdout, edges, time.Now())
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print the list as JSON")
	return c
}

func printStatus(w io.Writer, st hub.Status, now time.Time) {
	fmt.Fprintf(w, "hub %s  version %s  up %s\n", st.ServerName, st.Version, st.Uptime)
	l := st.Listeners
	fmt.Fprintf(w, "listeners  nats %s  mqtt %s  mqtt-tls %s  admin %s\n", orOff(l.NATS), orOff(l.MQTT), orOff(l.MQTTTLS), orOff(l.Admin))
	s := st.Stream
	limit := "unlimited"
	if s.MaxBytes > 0 {
		limit = humanBytes(uint64(s.MaxBytes))
	}
	fmt.Fprintf(w, "stream %s  %d events, %s  dedup window %s  max %s (discard %s)", s.Name, s.Messages, humanBytes(s.Bytes), s.DuplicateWindow, limit, s.Discard)
	if s.Error != "" {
		fmt.Fprintf(w, "  ERROR %s", s.Error)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "ingest  %s  republished %d\n", counters(st.Ingest), st.Republished)
	if len(st.Refused) > 0 {
		fmt.Fprintf(w, "refused connections  %s\n", counters(st.Refused))
	}
	fmt.Fprintln(w)
	printEdges(w, st.Edges, now)
	fmt.Fprintln(w)
	fmt.Fprintf(w, "MQTT clients: %d\n", len(st.MQTT.Clients))
	if len(st.MQTT.Clients) > 0 {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  CLIENT\tUSER\tVIA\tADDRESS\tSINCE")
		for _, c := range st.MQTT.Clients {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", c.ClientID, c.User, c.Via, c.Address, ago(&c.Since, now))
		}
		tw.Flush()
	}
}

func printEdges(w io.Writer, edges []hub.EdgeStatus, now time.Time) {
	fmt.Fprintf(w, "edges: %d\n", len(edges))
	if len(edges) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  EDGE\tLINK\tVERSION\tTLS\tSINCE\tBACKLOG\tOLDEST\tSTORED\tADDRESS\tGOSSIP")
	for _, e := range edges {
		link := "down"
		since := "last seen " + ago(e.LastSeen, now)
		if e.Connected {
			link = "up"
			since = ago(e.Since, now)
			if e.Connections > 1 {
				link = fmt.Sprintf("up x%d", e.Connections)
			}
		}
		if !e.Listed && e.Connected {
			link += " UNLISTED"
		}
		if !e.Connected && e.Link != "" {
			link = e.Link // what the edge advertises in gossip
		}
		if e.Mark != "" {
			link += " " + strings.ToUpper(e.Mark)
		}
		gossip := "-"
		if e.Gossip != "" {
			gossip = e.Gossip + " " + e.GossipAddr
		}
		oldest := "-"
		if e.OldestAgeMS > 0 {
			oldest = (time.Duration(e.OldestAgeMS) * time.Millisecond).Round(time.Second).String()
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%d (%s)\t%s\t%d\t%s\t%s\n", e.ID, link, dash(e.Version), dash(e.TLSVersion), since,
			e.BacklogMsgs, humanBytes(e.BacklogBytes), oldest, e.Stored, dash(e.Address), gossip)
	}
	tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func ago(t *time.Time, now time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	return now.Sub(*t).Round(time.Second).String() + " ago"
}

func counters(m map[string]uint64) string {
	keys := make([]string, 0, len(m))
	for k, v := range m {
		if v > 0 {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return "none"
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
