package pipeline

import "fmt"

// The output formats every command prints in (-o/--format in the CLI, format in the module).
const (
	FormatText = "text"
	FormatJSON = "json"
)

// CheckFormat refuses an output format other than text and json, before anything runs.
func CheckFormat(format string) error {
	switch format {
	case FormatText, FormatJSON, "":
		return nil
	}
	return fmt.Errorf("unknown output format %q: text or json", format)
}
