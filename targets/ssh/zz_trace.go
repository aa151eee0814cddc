package ssh

import (
	"fmt"
	"os"
	"time"
)

var traceOn = os.Getenv("PD_TRACE") != ""
var traceT0 time.Time

func tr(ev string, a ...any) {
	if !traceOn {
		return
	}
	if ev == "start" {
		traceT0 = time.Now()
	}
	fmt.Fprintf(os.Stderr, "TRACE %7.1fms %s\n", float64(time.Since(traceT0).Microseconds())/1000, fmt.Sprintf(ev, a...))
}
