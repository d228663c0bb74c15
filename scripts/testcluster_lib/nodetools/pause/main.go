// Command pause is the pod sandbox's process for the test node: it holds the pod's namespaces,
// reaps orphans, and exits on SIGTERM or SIGINT. The test node cannot pull registry.k8s.io/pause,
// so scripts/testcluster builds this one into a local image under the sandbox image's name.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for s := range sigs {
		if s == syscall.SIGCHLD {
			for {
				pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
				if pid <= 0 || err != nil {
					break
				}
			}
			continue
		}
		os.Exit(0)
	}
}
