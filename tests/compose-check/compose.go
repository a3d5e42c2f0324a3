package main

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
)

// The ports the stack publishes on the host, and the service each belongs
// to: the docs, the local stack's defaults and Grafana's datasources all
// count on them.
var requiredPorts = []struct {
	port    uint32
	service string
}{
	{9092, "kafka"},
	{8081, "schema-registry"},
	{5432, "postgres"},
	{3000, "grafana"},
	{9090, "prometheus"},
	{7878, "weir"},
}

// serviceNames returns the services in a stable order, for stable output.
func (c *check) serviceNames() []string {
	names := make([]string, 0, len(c.project.Services))
	for name := range c.project.Services {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// services checks what each service takes from the host and from the other
// services.
func (c *check) services() {
	for _, name := range c.serviceNames() {
		service := c.project.Services[name]
		c.mounts(service)
		c.envFiles(service)
		c.build(service)
		c.dependencies(service)
		c.healthcheck(service)
	}
}

// mounts: bind mounts and configs must exist on the host. A missing bind
// source is the dangerous case: Docker creates an empty folder in its place
// and the service starts without what it was meant to read.
func (c *check) mounts(service types.ServiceConfig) {
	for _, volume := range service.Volumes {
		switch volume.Type {
		case types.VolumeTypeBind:
			if _, err := os.Stat(volume.Source); err != nil {
				c.problem("service %s: bind mount %s -> %s: %s does not exist on the host (Docker would mount an empty folder in its place)",
					service.Name, c.rel(volume.Source), volume.Target, c.rel(volume.Source))
			} else {
				c.note("service %s: bind mount %s -> %s exists", service.Name, c.rel(volume.Source), volume.Target)
			}
		case types.VolumeTypeVolume:
			if volume.Source != "" {
				if _, declared := c.project.Volumes[volume.Source]; !declared {
					c.problem("service %s: volume %q is not declared under the top-level `volumes`", service.Name, volume.Source)
				}
			}
		}
	}
	for _, reference := range service.Configs {
		config, ok := c.project.Configs[reference.Source]
		if !ok {
			c.problem("service %s: config %q is not declared under the top-level `configs`", service.Name, reference.Source)
			continue
		}
		if config.File != "" {
			if _, err := os.Stat(config.File); err != nil {
				c.problem("service %s: config %s: file %s does not exist", service.Name, reference.Source, c.rel(config.File))
			}
		}
	}
	for _, reference := range service.Secrets {
		secret, ok := c.project.Secrets[reference.Source]
		if ok && secret.File != "" {
			if _, err := os.Stat(secret.File); err != nil {
				c.problem("service %s: secret %s: file %s does not exist", service.Name, reference.Source, c.rel(secret.File))
			}
		}
	}
}

// envFiles: a required env file that is missing stops `docker compose up`.
func (c *check) envFiles(service types.ServiceConfig) {
	for _, file := range service.EnvFiles {
		if _, err := os.Stat(file.Path); err != nil && bool(file.Required) {
			c.problem("service %s: env_file %s does not exist", service.Name, c.rel(file.Path))
		} else if err == nil {
			c.note("service %s: env_file %s exists", service.Name, c.rel(file.Path))
		}
	}
}

// build: the context folder and its Dockerfile must exist.
func (c *check) build(service types.ServiceConfig) {
	if service.Build == nil {
		return
	}
	context := service.Build.Context
	if strings.Contains(context, "://") || strings.HasPrefix(context, "git@") {
		return
	}
	if info, err := os.Stat(context); err != nil || !info.IsDir() {
		c.problem("service %s: build context %s is not a folder", service.Name, c.rel(context))
		return
	}
	if service.Build.DockerfileInline != "" {
		return
	}
	dockerfile := dockerfilePath(service.Build)
	if _, err := os.Stat(dockerfile); err != nil {
		c.problem("service %s: Dockerfile %s does not exist", service.Name, c.rel(dockerfile))
		return
	}
	c.note("service %s: build context %s and %s exist", service.Name, c.rel(context), c.rel(dockerfile))
}

// dockerfilePath is where a build's Dockerfile is: relative to its context
// unless absolute, `Dockerfile` when not named.
func dockerfilePath(build *types.BuildConfig) string {
	dockerfile := build.Dockerfile
	if dockerfile == "" {
		dockerfile = "Dockerfile"
	}
	if filepath.IsAbs(dockerfile) {
		return dockerfile
	}
	return filepath.Join(build.Context, dockerfile)
}

// dependencies: each condition must be one the dependency can meet, or
// `docker compose up` waits and then fails.
func (c *check) dependencies(service types.ServiceConfig) {
	for target, dependency := range service.DependsOn {
		other, ok := c.project.Services[target]
		if !ok {
			c.problem("service %s: depends on %s, which is not a service", service.Name, target)
			continue
		}
		switch dependency.Condition {
		case types.ServiceConditionHealthy:
			if !c.hasHealthcheck(other) {
				c.problem("service %s: waits for %s to be healthy, but %s has no healthcheck",
					service.Name, target, target)
			} else {
				c.note("service %s: waits for %s, which has a healthcheck", service.Name, target)
			}
		case types.ServiceConditionCompletedSuccessfully:
			if other.Restart == types.RestartPolicyAlways || other.Restart == types.RestartPolicyUnlessStopped {
				c.problem("service %s: waits for %s to complete, but %s restarts %s and never completes",
					service.Name, target, target, other.Restart)
			}
		}
	}
}

// hasHealthcheck is true when the service declares a healthcheck or its
// image, built here, has a HEALTHCHECK.
func (c *check) hasHealthcheck(service types.ServiceConfig) bool {
	if health := service.HealthCheck; health != nil {
		if health.Disable || (len(health.Test) > 0 && health.Test[0] == "NONE") {
			return false
		}
		if len(health.Test) > 0 {
			return true
		}
	}
	if image := c.imageOf(service); image != nil {
		return image.healthcheck
	}
	return false
}

// healthcheck: a test that Docker would not run is no healthcheck.
func (c *check) healthcheck(service types.ServiceConfig) {
	health := service.HealthCheck
	if health == nil || health.Disable || len(health.Test) == 0 {
		return
	}
	switch health.Test[0] {
	case "NONE":
	case "CMD", "CMD-SHELL":
		if len(health.Test) < 2 || strings.TrimSpace(strings.Join(health.Test[1:], "")) == "" {
			c.problem("service %s: healthcheck %s has no command", service.Name, health.Test[0])
		}
	default:
		c.problem("service %s: healthcheck test must start with CMD, CMD-SHELL or NONE, not %q", service.Name, health.Test[0])
	}
}

// ports: each of the stack's ports is published by its service, and no two
// services publish the same host port.
func (c *check) ports() {
	owners := map[string]string{}
	for _, name := range c.serviceNames() {
		for _, port := range c.project.Services[name].Ports {
			for _, published := range publishedPorts(port) {
				key := port.HostIP + ":" + published + "/" + protocol(port)
				if owner, taken := owners[key]; taken && owner != name {
					c.problem("services %s and %s both publish host port %s", owner, name, published)
				}
				owners[key] = name
			}
		}
	}
	for _, required := range requiredPorts {
		want := strconv.FormatUint(uint64(required.port), 10)
		found := ""
		for _, name := range c.serviceNames() {
			for _, port := range c.project.Services[name].Ports {
				for _, published := range publishedPorts(port) {
					if published == want && protocol(port) == "tcp" {
						found = name
					}
				}
			}
		}
		switch {
		case found == "":
			c.problem("no service publishes port %s (%s's)", want, required.service)
		case found != required.service:
			c.problem("port %s is published by %s, not by %s", want, found, required.service)
		default:
			c.note("port %s is published by %s", want, found)
		}
	}
}

// publishedPorts expands a published port or range ("8000-8002").
func publishedPorts(port types.ServicePortConfig) []string {
	published := port.Published
	if published == "" {
		return nil
	}
	low, high, isRange := strings.Cut(published, "-")
	if !isRange {
		return []string{published}
	}
	first, err1 := strconv.Atoi(low)
	last, err2 := strconv.Atoi(high)
	if err1 != nil || err2 != nil || last < first {
		return []string{published}
	}
	var ports []string
	for p := first; p <= last; p++ {
		ports = append(ports, strconv.Itoa(p))
	}
	return ports
}

func protocol(port types.ServicePortConfig) string {
	if port.Protocol == "" {
		return "tcp"
	}
	return port.Protocol
}

// listensOn is true when the service is known to take connections on
// container port `port` (it publishes or exposes it), or when nothing is
// known about its ports.
func listensOn(service types.ServiceConfig, port string) bool {
	if len(service.Ports) == 0 && len(service.Expose) == 0 {
		return true
	}
	for _, p := range service.Ports {
		if strconv.FormatUint(uint64(p.Target), 10) == port {
			return true
		}
	}
	for _, exposed := range service.Expose {
		if strings.SplitN(exposed, "/", 2)[0] == port {
			return true
		}
	}
	return false
}

// mount is one thing a service's container sees at `target`: a host path,
// an inline config, or a named volume (whose content no file here shows).
type mount struct {
	target  string
	host    string
	content *string
	volume  string
}

// mountsOf lists what is mounted into a service's container.
func (c *check) mountsOf(service types.ServiceConfig) []mount {
	var mounts []mount
	for _, volume := range service.Volumes {
		switch volume.Type {
		case types.VolumeTypeBind:
			mounts = append(mounts, mount{target: volume.Target, host: volume.Source})
		case types.VolumeTypeVolume:
			mounts = append(mounts, mount{target: volume.Target, volume: volume.Source})
		}
	}
	for _, reference := range service.Configs {
		target := reference.Target
		if target == "" {
			target = "/" + reference.Source
		}
		config, ok := c.project.Configs[reference.Source]
		if !ok {
			continue
		}
		switch {
		case config.File != "":
			mounts = append(mounts, mount{target: target, host: config.File})
		default:
			content := config.Content
			mounts = append(mounts, mount{target: target, content: &content})
		}
	}
	return mounts
}

// provided says what provides container path `p` of a service: the deepest
// mount that covers it. `host` is the host path that holds it (empty for an
// inline config or a named volume).
func (c *check) provided(service types.ServiceConfig, p string) (host string, by *mount, ok bool) {
	p = path.Clean(p)
	var best *mount
	for _, m := range c.mountsOf(service) {
		target := path.Clean(m.target)
		if p == target || strings.HasPrefix(p, strings.TrimSuffix(target, "/")+"/") {
			if best == nil || len(target) > len(path.Clean(best.target)) {
				m := m
				best = &m
			}
		}
	}
	if best == nil {
		return "", nil, false
	}
	if best.host == "" {
		return "", best, true
	}
	rest := strings.TrimPrefix(p, path.Clean(best.target))
	return filepath.Join(best.host, filepath.FromSlash(rest)), best, true
}

// describe names a mount for messages.
func (c *check) describe(m *mount) string {
	switch {
	case m.host != "":
		return fmt.Sprintf("%s -> %s", c.rel(m.host), m.target)
	case m.content != nil:
		return fmt.Sprintf("inline config -> %s", m.target)
	default:
		return fmt.Sprintf("volume %s -> %s", m.volume, m.target)
	}
}
