// Command testapp is the program that container tests put into images built
// FROM scratch. Build it static (CGO_ENABLED=0); see package testapp.
package main

import (
	"context"
	"os"

	"github.com/berth-dev/berth/internal/container/testapp"
)

func main() {
	sys := testapp.OSSystem()
	os.Exit(testapp.Main(context.Background(), sys))
}
