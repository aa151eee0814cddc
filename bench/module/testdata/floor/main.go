// Package main is the smallest Go module: one function that returns a constant. What
// `dagger call hello` costs is what any function of any Go module costs on the engine (the
// CLI's connection and module load, the function's runtime container, the result), the
// floor the module benchmark measures pushdeploy's overhead against.
package main

// Floor is the module's object.
type Floor struct{}

// Return a fixed string.
// +cache="never"
func (m *Floor) Hello() string { return "hello" }
