// Command berth runs Cloudflare-style container applications on your own
// machine.
package main

import (
	"os"

	"github.com/berth-dev/berth/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:]))
}
