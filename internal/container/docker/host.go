package docker

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/berth-dev/berth/internal/config"
)

// ResolveHost is the address of the Docker engine to use, found as
// wrangler finds it: configured (a project's dev.container_engine), else
// $WRANGLER_DOCKER_HOST, else $DOCKER_HOST (which the Docker client reads
// itself: ""), else the endpoint of the docker CLI's current context
// (Docker Desktop, colima and the like set one up instead of
// $DOCKER_HOST), else "" for the default socket.
func ResolveHost(configured string, getenv func(string) string) (string, error) {
	if configured != "" {
		return configured, nil
	}
	if v := getenv("WRANGLER_DOCKER_HOST"); v != "" {
		host, err := config.EngineHost(v)
		if err != nil {
			return "", fmt.Errorf("WRANGLER_DOCKER_HOST: %w", err)
		}
		return host, nil
	}
	if getenv("DOCKER_HOST") != "" {
		return "", nil
	}
	return contextHost(getenv)
}

// contextHost is the docker endpoint of the docker CLI's current context
// ($DOCKER_CONTEXT, else currentContext in $DOCKER_CONFIG/config.json),
// read from the CLI's context store; "" for the default context or none.
func contextHost(getenv func(string) string) (string, error) {
	dir := getenv("DOCKER_CONFIG")
	if dir == "" {
		home := getenv("HOME")
		if home == "" {
			return "", nil
		}
		dir = filepath.Join(home, ".docker")
	}
	name := getenv("DOCKER_CONTEXT")
	if name == "" {
		raw, err := os.ReadFile(filepath.Join(dir, "config.json"))
		if err != nil {
			return "", nil // no CLI configuration: the default
		}
		var cfg struct {
			CurrentContext string `json:"currentContext"`
		}
		if err := json.Unmarshal(raw, &cfg); err != nil {
			return "", fmt.Errorf("docker CLI config %s: %w", filepath.Join(dir, "config.json"), err)
		}
		name = cfg.CurrentContext
	}
	if name == "" || name == "default" {
		return "", nil
	}
	// The store keeps a context under the hex SHA-256 of its name.
	sum := sha256.Sum256([]byte(name))
	meta := filepath.Join(dir, "contexts", "meta", hex.EncodeToString(sum[:]), "meta.json")
	raw, err := os.ReadFile(meta)
	if err != nil {
		return "", fmt.Errorf("docker context %q: %w", name, err)
	}
	var m struct {
		Endpoints struct {
			Docker struct {
				Host string `json:"Host"`
			} `json:"docker"`
		} `json:"Endpoints"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return "", fmt.Errorf("docker context %q: %s: %w", name, meta, err)
	}
	if m.Endpoints.Docker.Host == "" {
		return "", fmt.Errorf("docker context %q: %s names no docker endpoint", name, meta)
	}
	return m.Endpoints.Docker.Host, nil
}
