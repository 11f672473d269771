package container

import (
	"fmt"
	"sort"
	"strings"
)

// InstanceType is the size of a container, named as on Cloudflare.
type InstanceType struct {
	Name      string // canonical name; "custom" for a custom size
	VCPU      float64
	MemoryMiB int64
	DiskMB    int64
}

const mib = 1 << 20

// instanceTypes is Cloudflare's table. Disk is decimal megabytes there.
var instanceTypes = map[string]InstanceType{
	"lite":       {"lite", 1.0 / 16, 256, 2000},
	"basic":      {"basic", 0.25, 1024, 4000},
	"standard-1": {"standard-1", 0.5, 4096, 8000},
	"standard-2": {"standard-2", 1, 6144, 12000},
	"standard-3": {"standard-3", 2, 8192, 16000},
	"standard-4": {"standard-4", 4, 12288, 20000},
}

var instanceTypeAliases = map[string]string{"dev": "lite", "standard": "standard-1"}

// DefaultInstanceType is what a container gets when its config names none
// (Cloudflare's schema default, "dev").
const DefaultInstanceType = "lite"

// LookupInstanceType returns a named instance type; aliases resolve to their
// canonical type. Unknown names are an error wrapping ErrInvalid that lists
// the valid ones.
func LookupInstanceType(name string) (InstanceType, error) {
	if canon, ok := instanceTypeAliases[name]; ok {
		name = canon
	}
	t, ok := instanceTypes[name]
	if !ok {
		return InstanceType{}, fmt.Errorf("instance type %q: %w: want one of %s, or {vcpu, memory_mib, disk_mb}",
			name, ErrInvalid, strings.Join(InstanceTypeNames(), ", "))
	}
	return t, nil
}

// InstanceTypeNames lists the named types and aliases, sorted.
func InstanceTypeNames() []string {
	var names []string
	for n := range instanceTypes {
		names = append(names, n)
	}
	for n := range instanceTypeAliases {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// CustomInstanceType validates a custom size against Cloudflare's bounds
// (at most 4 vCPU, 12 GiB and 20 GB) and returns it.
func CustomInstanceType(vcpu float64, memoryMiB, diskMB int64) (InstanceType, error) {
	switch {
	case vcpu <= 0 || vcpu > 4:
		return InstanceType{}, fmt.Errorf("custom instance type: vcpu %g: %w: want more than 0 and at most 4", vcpu, ErrInvalid)
	case memoryMiB <= 0 || memoryMiB > 12288:
		return InstanceType{}, fmt.Errorf("custom instance type: memory_mib %d: %w: want 1 to 12288", memoryMiB, ErrInvalid)
	case diskMB < 0 || diskMB > 20000:
		return InstanceType{}, fmt.Errorf("custom instance type: disk_mb %d: %w: want 0 to 20000", diskMB, ErrInvalid)
	}
	return InstanceType{Name: "custom", VCPU: vcpu, MemoryMiB: memoryMiB, DiskMB: diskMB}, nil
}

// pidsPerVCPU bounds the processes a container may run: enough for a build
// or a test suite, not enough for a fork bomb to hurt the host.
const pidsPerVCPU = 1024

// Limits converts the type to runtime limits.
func (t InstanceType) Limits() Limits {
	pids := int64(t.VCPU * pidsPerVCPU)
	if pids < 256 {
		pids = 256
	}
	return Limits{
		NanoCPUs:    int64(t.VCPU * 1e9),
		MemoryBytes: t.MemoryMiB * mib,
		Pids:        pids,
		DiskBytes:   t.DiskMB * 1000 * 1000,
	}
}
