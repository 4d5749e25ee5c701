package spec

import (
	"fmt"
	"math/big"
	"regexp"
)

var memoryRE = regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)?)([A-Za-z]*)$`)

var memoryUnits = map[string]int64{
	"":   1,
	"k":  1000,
	"K":  1000,
	"M":  1000 * 1000,
	"G":  1000 * 1000 * 1000,
	"T":  1000 * 1000 * 1000 * 1000,
	"Ki": 1 << 10,
	"Mi": 1 << 20,
	"Gi": 1 << 30,
	"Ti": 1 << 40,
}

// ParseMemory reads a memory size in bytes: plain bytes ("67108864"), binary units
// ("64Mi", "1Gi", "512Ki", "1Ti") or decimal units ("512M" = 512,000,000, "1G", "100k"),
// as Kubernetes writes quantities. Fractions are allowed ("1.5Gi") and rounded down to a
// byte. Lower-case m and g are refused: Docker reads 512m as MiB, Kubernetes as milli.
func ParseMemory(s string) (int64, error) {
	m := memoryRE.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("invalid memory %q: use bytes or a number with a unit, e.g. 64Mi, 1Gi, 512M", s)
	}
	unit, ok := memoryUnits[m[2]]
	if !ok {
		hint := ""
		switch m[2] {
		case "m", "mb", "MB", "MiB", "mi":
			hint = fmt.Sprintf(" (write %sMi for mebibytes or %sM for megabytes)", m[1], m[1])
		case "g", "gb", "GB", "GiB", "gi":
			hint = fmt.Sprintf(" (write %sGi for gibibytes or %sG for gigabytes)", m[1], m[1])
		}
		return 0, fmt.Errorf("invalid memory unit %q in %q: use Ki, Mi, Gi, Ti, k, M, G or T%s", m[2], s, hint)
	}
	r, ok := new(big.Rat).SetString(m[1])
	if !ok {
		return 0, fmt.Errorf("invalid memory %q", s)
	}
	r.Mul(r, new(big.Rat).SetInt64(unit))
	n := new(big.Int).Quo(r.Num(), r.Denom())
	if !n.IsInt64() {
		return 0, fmt.Errorf("memory %q is too large", s)
	}
	return n.Int64(), nil
}
