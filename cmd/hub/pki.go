package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/warren-mesh/warren/hub/pki"
)

func pkiCmd(g *globals, stdout io.Writer) *cobra.Command {
	c := &cobra.Command{
		Use:   "pki",
		Short: "manage the hub's certificate authority and the edges' certificates",
	}
	c.AddCommand(pkiInitCmd(g, stdout), pkiIssueCmd(g, stdout), pkiListCmd(g, stdout))
	return c
}

func pkiInitCmd(g *globals, stdout io.Writer) *cobra.Command {
	var force bool
	var sans []string
	c := &cobra.Command{
		Use:   "init",
		Short: "make the CA and the hub's server certificate (hub.warren plus pki_sans and --san)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, _, err := g.load()
			if err != nil {
				return err
			}
			opts := pki.InitOptions{Force: force}
			for _, s := range append(append([]string{}, cfg.PKISANs...), sans...) {
				if ip := net.ParseIP(s); ip != nil {
					opts.IPAddresses = append(opts.IPAddresses, ip)
				} else {
					opts.DNSNames = append(opts.DNSNames, s)
				}
			}
			l, err := pki.Init(cfg.PKIPath(), opts)
			if err != nil {
				return err
			}
			names := append([]string{pki.DefaultServerName}, opts.DNSNames...)
			for _, ip := range opts.IPAddresses {
				names = append(names, ip.String())
			}
			fmt.Fprintf(stdout, "CA          %s (key %s)\n", l.CACert, l.CAKey)
			fmt.Fprintf(stdout, "hub         %s (key %s)\n", l.HubCert, l.HubKey)
			fmt.Fprintf(stdout, "hub names   %s\n", strings.Join(names, ", "))
			fmt.Fprintf(stdout, "next: hub pki issue EDGE-ID for every edge\n")
			return nil
		},
	}
	c.Flags().BoolVar(&force, "force", false, "replace an existing PKI (every certificate it signed stops working)")
	c.Flags().StringSliceVar(&sans, "san", nil, "extra DNS name or IP address for the hub certificate (repeatable)")
	return c
}

func pkiIssueCmd(g *globals, stdout io.Writer) *cobra.Command {
	var force bool
	var out string
	c := &cobra.Command{
		Use:   "issue EDGE-ID",
		Short: "make an edge's client certificate (its identity is warren://edge/EDGE-ID)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, _, err := g.load()
			if err != nil {
				return err
			}
			f, err := pki.Issue(cfg.PKIPath(), args[0], pki.IssueOptions{Force: force, OutDir: out})
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "edge %s\n", f.ID)
			fmt.Fprintf(stdout, "  ca    %s\n  cert  %s\n  key   %s\n", f.CACert, f.Cert, f.Key)
			if force {
				fmt.Fprintf(stdout, "the edge's previous certificate is no longer accepted\n")
			}
			return nil
		},
	}
	c.Flags().BoolVar(&force, "force", false, "replace the edge's existing certificate (the old one is refused from then on)")
	c.Flags().StringVar(&out, "out", "", "also write a bundle (ca.crt, edge.crt, edge.key) to DIR/EDGE-ID/")
	return c
}

func pkiListCmd(g *globals, stdout io.Writer) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "list",
		Short: "list the CA, hub and edge certificates with their state",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, _, err := g.load()
			if err != nil {
				return err
			}
			infos, err := pki.List(cfg.PKIPath())
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(infos)
			}
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "KIND\tID\tNOT AFTER\tSTATE\tFINGERPRINT (SHA-256)")
			for _, in := range infos {
				state := "ok"
				switch {
				case in.Problem != "":
					state = "PROBLEM: " + in.Problem
				case in.Expired:
					state = "EXPIRED"
				case in.ExpiringSoon:
					state = "expires soon"
				}
				fp := in.FingerprintSHA256
				if len(fp) > 23 {
					fp = fp[:23] + "..."
				}
				notAfter := "-"
				if !in.NotAfter.IsZero() {
					notAfter = in.NotAfter.UTC().Format(time.DateOnly)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", in.Kind, dash(in.ID), notAfter, state, dash(fp))
			}
			return tw.Flush()
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print the list as JSON")
	return c
}
