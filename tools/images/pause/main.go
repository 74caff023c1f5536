// Command pause is the pod sandbox of the tests' real node (containerd's
// sandbox_image): it holds the pod's namespaces and sleeps until it is
// signalled.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
}
