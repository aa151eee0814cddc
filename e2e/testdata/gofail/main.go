// Command gofail is a Go project whose test fails, for the module's test function.
package main

func main() {}

func answer() int { return 41 }
