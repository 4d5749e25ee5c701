package starter

import (
	"errors"

	"github.com/slipwayhq/slipway/spec"
)

// loadSpec parses a spec (strict decode, validation, defaults) and applies version overrides.
// Every problem comes back as spec.Errors naming the file, line and field path.
func loadSpec(name string, data []byte, overrides map[string]string) (*spec.Environment, error) {
	env, err := spec.Parse(name, data)
	if err != nil {
		return nil, err
	}
	if len(overrides) > 0 {
		if err := spec.ApplyOverrides(env, overrides); err != nil {
			var es spec.Errors
			if errors.As(err, &es) {
				for _, e := range es {
					if e.File == "" {
						e.File = name
					}
					if e.Path != "" {
						e.Path = "set." + e.Path
					}
				}
			}
			return nil, err
		}
	}
	return env, nil
}
