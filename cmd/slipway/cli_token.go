package main

import (
	"bufio"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/slipwayhq/slipway/starter"
)

func newTokenCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "Manage API tokens"}
	var (
		name, fromStdin = "", false
		envs, perms     []string
	)
	hash := &cobra.Command{
		Use:   "hash",
		Short: "Make a new random API token and print it with the entry for the tokens file",
		Long: `Prints a new random token (give it to its user once; it is not stored anywhere) and the
tokens-file entry holding only its SHA-256. With --stdin it hashes a token read from
standard input instead.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var token, sum string
			if fromStdin {
				line, err := bufio.NewReader(os.Stdin).ReadString('\n')
				token = strings.TrimSpace(line)
				if token == "" {
					return fmt.Errorf("no token on standard input: %v", err)
				}
				sum = starter.HashToken(token)
			} else {
				var err error
				if token, sum, err = starter.NewToken(); err != nil {
					return err
				}
			}
			entry := starter.TokenEntry{Name: name, SHA256: sum, Environments: envs}
			for _, p := range perms {
				entry.Permissions = append(entry.Permissions, starter.Permission(p))
			}
			if _, err := starter.NewTokens(entry); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if !fromStdin {
				fmt.Fprintf(out, "# token (shown once; give it to %s, e.g. as SLIPWAY_TOKEN):\n# %s\n", name, token)
			}
			fmt.Fprintf(out, "- name: %s\n  sha256: %s\n  environments: [%s]\n  permissions: [%s]\n",
				name, sum, quoteList(envs), strings.Join(perms, ", "))
			return nil
		},
	}
	hash.Flags().StringVar(&name, "name", "ci", "token name (the actor recorded in releases)")
	hash.Flags().StringSliceVar(&envs, "environments", []string{"*"}, `environments the token may act on ("*" for all)`)
	hash.Flags().StringSliceVar(&perms, "permissions", []string{"read"}, "read, release, approve")
	hash.Flags().BoolVar(&fromStdin, "stdin", false, "hash a token read from standard input")
	cmd.AddCommand(hash)
	return cmd
}

func quoteList(l []string) string {
	q := make([]string, len(l))
	for i, s := range l {
		q[i] = fmt.Sprintf("%q", s)
	}
	return strings.Join(q, ", ")
}
