package config

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Error is one problem in an environments file: where it is and what is wrong.
type Error struct {
	// File is the file's name as given to Load or Parse; "" for a problem with arguments
	// (FromSettings), whose Path is then the argument, e.g. "--health-interval".
	File string
	// Line and Column locate the problem, 1-based; 0 when unknown (a File built in code).
	Line, Column int
	// Path is the key's path, e.g. "environments.production.health.interval" or
	// "environments.staging.ssh.hosts[1]"; "" for the whole file.
	Path string
	// Msg says what is wrong.
	Msg string
}

// Error reads "pushdeploy.yaml:12: environments.production.health: unknown key ...", or
// "--health-interval: invalid duration ..." for an argument.
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
		}
		b.WriteString(": ")
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in a file, in the order of the file. Load and Parse return
// it as their error; errors.As gets it back.
type Errors []*Error

// Error is one problem per line.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

func (es Errors) sorted() Errors {
	slices.SortStableFunc(es, func(a, b *Error) int {
		return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Column, b.Column), cmp.Compare(a.Path, b.Path))
	})
	return slices.CompactFunc(es, func(a, b *Error) bool { return *a == *b })
}

// linePos is where a key sits in the file.
type linePos struct{ line, col int }
