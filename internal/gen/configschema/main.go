// Command configschema writes the JSON Schema of pushdeploy.yaml. go generate runs it in
// pipeline/config:
//
//	go run ../../internal/gen/configschema -src . -out ../../schema/pushdeploy.schema.json
package main

import (
	"flag"
	"log"
	"os"

	"github.com/pushdeploy/pushdeploy/internal/configschema"
)

func main() {
	src := flag.String("src", ".", "directory of package pipeline/config")
	out := flag.String("out", "pushdeploy.schema.json", "file to write")
	flag.Parse()
	b, err := configschema.Generate(*src)
	if err != nil {
		log.Fatalf("generating the schema: %v", err)
	}
	if err := os.WriteFile(*out, b, 0o644); err != nil {
		log.Fatalf("writing the schema: %v", err)
	}
}
