package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"testing"
)

// RequirePostgres skips (or, in CI, fails) t unless a PostgreSQL server can be run here:
// Debian's package (/usr/lib/postgresql/*/bin, installed by scripts/ensure-postgres.sh), or
// initdb and pg_ctl on PATH; as root it also needs the postgres system user (initdb refuses
// root). It returns the directory of initdb. It calls RequireDocker first (the tests that
// need PostgreSQL release to the engine), so it skips t in short mode.
func RequirePostgres(t testing.TB) string {
	t.Helper()
	RequireDocker(t)
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin") // a constant, valid pattern
	sort.Strings(dirs)
	dir := ""
	for i := len(dirs) - 1; i >= 0; i-- {
		if _, err := os.Stat(filepath.Join(dirs[i], "initdb")); err == nil {
			dir = dirs[i]
			break
		}
	}
	if dir == "" {
		p, err := exec.LookPath("initdb")
		if err != nil {
			unavailable(t, "no PostgreSQL server (initdb): install it (scripts/ensure-postgres.sh; Debian: apt-get install -y postgresql)")
		}
		dir = filepath.Dir(p)
	}
	if os.Geteuid() == 0 {
		if err := exec.Command("id", "postgres").Run(); err != nil {
			unavailable(t, "running as root with no postgres system user to run PostgreSQL as (apt-get install -y postgresql makes it)")
		}
	}
	return dir
}
