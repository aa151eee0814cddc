// Command pushdeploy runs pushdeploy's pipeline without a container engine: on CI runners
// that have none, and by hand to drive and debug targets. It is a thin layer over package
// pipeline, the same code the Dagger module calls; it has no deploy logic of its own.
//
//	go install github.com/pushdeploy/pushdeploy/cmd/pushdeploy@latest
//
// Its exit code says what happened (pipeline.ExitCode; pushdeploy --help lists them).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/pushdeploy/pushdeploy/pipeline"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := execute(ctx, newRoot())
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "pushdeploy:", err)
		os.Exit(pipeline.ExitCode(err))
	}
}
