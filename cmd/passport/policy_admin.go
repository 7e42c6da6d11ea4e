package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"

	"github.com/spf13/cobra"

	"github.com/passport-attest/passport/api"
)

// policyAdminFlags reach a running issuer's admin API (serve --admin-addr, --admin-credential).
type policyAdminFlags struct {
	admin, credential string
}

func (a *policyAdminFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&a.admin, "admin", "", "admin API base URL (serve --admin-addr), e.g. http://127.0.0.1:9443")
	cmd.Flags().StringVar(&a.credential, "credential", "", "file holding the admin bearer credential")
	_ = cmd.MarkFlagRequired("admin")
	_ = cmd.MarkFlagRequired("credential")
}

// do sends one admin request through adminCall and decodes a JSON answer into out (when
// non-nil). A non-2xx answer is an error carrying the issuer's error_description.
func (a *policyAdminFlags) do(ctx context.Context, method, path string, body, out any) error {
	return adminCall(ctx, adminFlags{url: a.admin, credential: a.credential}, method, path, body, out)
}

func newPolicyRevokeCmd() *cobra.Command {
	var a policyAdminFlags
	var reason string
	cmd := &cobra.Command{
		Use:   "revoke-value --admin URL --credential FILE [--reason TEXT] DIGEST",
		Short: "Revoke a reference value: the issuer refuses new evidence containing DIGEST",
		Long: `revoke-value tells a running issuer to stop accepting a configuration: from now on any
evidence whose PCR values or event-log events contain DIGEST (hex) is refused, whatever its
reference-value sets say. The live tokens already issued for evidence that carried DIGEST
(as a matched reference value, or an event digest of PCRs 0-9 the issuer recorded with them)
are revoked too, and the revocation is listed (list-revoked). It prints the stored revocation
as JSON.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var res api.RevokeReferenceValueResponse
			if err := a.do(cmd.Context(), http.MethodPost, api.PathReferenceValueRevocations,
				api.RevokeReferenceValueRequest{Digest: args[0], Reason: reason}, &res); err != nil {
				return err
			}
			return printJSON(cmd.OutOrStdout(), res)
		},
	}
	a.register(cmd)
	cmd.Flags().StringVar(&reason, "reason", "", "why, in operator words (e.g. a CVE identifier)")
	return cmd
}

func newPolicyReinstateCmd() *cobra.Command {
	var a policyAdminFlags
	cmd := &cobra.Command{
		Use:   "reinstate-value --admin URL --credential FILE DIGEST",
		Short: "Lift the revocation of a reference value: evidence and new tokens carrying it are accepted again",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := a.do(cmd.Context(), http.MethodDelete, api.PathReferenceValueRevocations+"/"+url.PathEscape(args[0]), nil, nil); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "reinstated", args[0])
			return nil
		},
	}
	a.register(cmd)
	return cmd
}

func newPolicyListRevokedCmd() *cobra.Command {
	var a policyAdminFlags
	cmd := &cobra.Command{
		Use:   "list-revoked --admin URL --credential FILE",
		Short: "List the revoked reference values as JSON",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var res api.ReferenceValueRevocationList
			if err := a.do(cmd.Context(), http.MethodGet, api.PathReferenceValueRevocations, nil, &res); err != nil {
				return err
			}
			return printJSON(cmd.OutOrStdout(), res)
		},
	}
	a.register(cmd)
	return cmd
}
