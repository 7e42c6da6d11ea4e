package main

import (
	"github.com/spf13/cobra"

	"github.com/passport-attest/passport/api"
)

func newKeysCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "List or rotate the issuer's signing keys (admin API)",
		Long: `keys talks to the issuer's admin API. The issuer publishes the next key in its JWKS at
least one rotation period before it signs with it, signs with exactly one key, and keeps a
retired key published until every JWT it signed has expired.`,
	}
	var admin adminFlags
	list := &cobra.Command{
		Use:   "list --admin URL --credential FILE",
		Short: "Print the signing keys (next, active, retired) as JSON",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var res api.KeysResponse
			if err := adminCall(cmd.Context(), admin, "GET", api.PathAdminKeys, nil, &res); err != nil {
				return err
			}
			return printJSON(cmd.OutOrStdout(), res)
		},
	}
	rotate := &cobra.Command{
		Use:   "rotate --admin URL --credential FILE",
		Short: "Rotate now: the published next key starts signing, the active key retires",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var res api.KeysResponse
			if err := adminCall(cmd.Context(), admin, "POST", api.PathAdminKeysRotate, nil, &res); err != nil {
				return err
			}
			return printJSON(cmd.OutOrStdout(), res)
		},
	}
	for _, c := range []*cobra.Command{list, rotate} {
		addAdminFlags(c.Flags(), &admin)
		_ = c.MarkFlagRequired("admin")
		_ = c.MarkFlagRequired("credential")
		cmd.AddCommand(c)
	}
	return cmd
}
