package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

func TestDashboardFlags(t *testing.T) {
	t.Setenv(sessionKeyEnv, "")
	cmd := &cobra.Command{Use: "api"}
	var f dashboardFlags
	f.register(cmd)
	if err := cmd.Flags().Parse(nil); err != nil {
		t.Fatal(err)
	}
	d, err := f.config()
	if err != nil || d.Anonymous || d.SessionKey != nil {
		t.Fatalf("defaults: %+v %v (want anonymous off, key derived by the API)", d, err)
	}
	key := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(key, []byte(strings.Repeat("k", 40)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Flags().Parse([]string{"--dashboard-anonymous", "--session-key-file", key}); err != nil {
		t.Fatal(err)
	}
	if d, err = f.config(); err != nil || !d.Anonymous || string(d.SessionKey) != strings.Repeat("k", 40) {
		t.Fatalf("with flags: %+v %v", d, err)
	}
	t.Setenv(sessionKeyEnv, "short")
	f.sessionKeyFile = ""
	if _, err := f.config(); err == nil || !strings.Contains(err.Error(), "at least 32") {
		t.Fatalf("a short key from $%s: %v", sessionKeyEnv, err)
	}
}
