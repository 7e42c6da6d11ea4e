package main

import (
	"github.com/spf13/cobra"

	"github.com/passport-attest/passport/api"
)

func newRevokeCmd() *cobra.Command {
	var (
		admin adminFlags
		req   api.RevokeRequest
	)
	cmd := &cobra.Command{
		Use:   "revoke --admin URL --credential FILE (--jti ID | --subject SUB | --reference-value DIGEST)",
		Short: "Revoke live tokens: one by jti, all of an attester, or all that matched a reference value",
		Long: `revoke asks the issuer's admin API to set the status of live tokens to invalid in their
Token Status Lists (draft-ietf-oauth-status-list): one token by --jti, every token of an
attester by --subject (its sub, the AK thumbprint), or every token whose evidence carried a
digest by --reference-value (hex: a reference value listed in the token's
submods.tpm.measurements.reference_values or, under a policy with reference-value sets, any
event digest of PCRs 0-9 the issuer recorded with the token). --reference-value also makes
every issuer sharing the store refuse new tokens whose evidence carries DIGEST (and, under a
policy that manages reference values, refuse such evidence outright), atomically with the
revocation, until "passport policy reinstate-value DIGEST". Relying parties see revocations in
the next status list they fetch, and those following the issuer's revocation stream at once.
It prints the revoked entries as JSON; a --jti naming no live token is an error.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var res api.RevokeResponse
			if err := adminCall(cmd.Context(), admin, "POST", api.PathAdminRevoke, req, &res); err != nil {
				return err
			}
			return printJSON(cmd.OutOrStdout(), res)
		},
	}
	fl := cmd.Flags()
	addAdminFlags(fl, &admin)
	fl.StringVar(&req.JTI, "jti", "", "revoke the token with this jti")
	fl.StringVar(&req.Subject, "subject", "", "revoke every live token of this attester (sub: AK thumbprint)")
	fl.StringVar(&req.ReferenceValue, "reference-value", "", "revoke every live token whose evidence carried this digest (hex), and refuse new ones until it is reinstated")
	_ = cmd.MarkFlagRequired("admin")
	_ = cmd.MarkFlagRequired("credential")
	cmd.MarkFlagsMutuallyExclusive("jti", "subject", "reference-value")
	cmd.MarkFlagsOneRequired("jti", "subject", "reference-value")
	return cmd
}
