package main

import (
	_ "github.com/moby/moby/client"
	_ "github.com/moby/moby/api/types/container"
	_ "github.com/moby/moby/api/pkg/stdcopy"
	_ "github.com/spf13/cobra"
	_ "golang.org/x/sys/unix"
	_ "github.com/containerd/errdefs"
	_ "modernc.org/quickjs"
	_ "github.com/evanw/esbuild/pkg/api"
)

func main() {}
