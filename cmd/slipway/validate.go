package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/slipwayhq/slipway/spec"
)

func newValidateCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "validate FILE...",
		Short: "Check deployment spec files and print every error as file:line:col: path: message",
		Long: `Validate decodes each deployment spec strictly (unknown keys, wrong types, bad durations,
unknown clusters or services, dependency cycles, names Docker would refuse, values out of
range, cluster policy violations) and prints "FILE: ok" or every error found, one per line.
It exits 1 when any file has an error. "-" reads standard input.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "text" && output != "json" {
				return fmt.Errorf("--output: %q is neither text nor json", output)
			}
			ok, err := validateFiles(cmd.InOrStdin(), cmd.OutOrStdout(), args, output == "json")
			if err != nil {
				return err
			}
			if !ok {
				return &exitError{code: 1}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

// validateResult is one file's verdict in --output json.
type validateResult struct {
	File   string      `json:"file"`
	OK     bool        `json:"ok"`
	Errors spec.Errors `json:"errors,omitempty"`
}

// validateFiles checks every file and writes the results; ok is false when any file has an
// error. err is only for failures to write the output.
func validateFiles(stdin io.Reader, w io.Writer, files []string, asJSON bool) (ok bool, err error) {
	results := make([]validateResult, 0, len(files))
	ok = true
	for _, f := range files {
		var perr error
		if f == "-" {
			perr = parseStdin(stdin)
		} else {
			_, perr = spec.Load(f)
		}
		r := validateResult{File: f, OK: perr == nil}
		if perr != nil {
			ok = false
			if !errors.As(perr, &r.Errors) {
				r.Errors = spec.Errors{{File: f, Message: perr.Error(), Err: perr}}
			}
		}
		results = append(results, r)
	}
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		return ok, enc.Encode(results)
	}
	for _, r := range results {
		if r.OK {
			if _, err := fmt.Fprintf(w, "%s: ok\n", r.File); err != nil {
				return ok, err
			}
			continue
		}
		for _, e := range r.Errors {
			if _, err := fmt.Fprintln(w, e.Error()); err != nil {
				return ok, err
			}
		}
	}
	return ok, nil
}

// parseStdin validates a spec read from standard input, with the same size cap as Load.
func parseStdin(stdin io.Reader) error {
	const name = "<stdin>"
	data, err := io.ReadAll(io.LimitReader(stdin, spec.MaxSpecBytes+1))
	if err != nil {
		return spec.Errors{{File: name, Message: fmt.Sprintf("reading: %v", err), Err: err}}
	}
	_, err = spec.Parse(name, data)
	return err
}
