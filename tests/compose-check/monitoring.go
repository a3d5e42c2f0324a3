package main

import (
	"net"
	"net/url"
	"os"
	"path"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
)

// What prometheus.go and grafana.go share: the files a monitoring service
// reads inside its container, and the addresses it connects to.

// imageName is an image reference without registry, owner and tag:
// `prom/prometheus:v3.5.0` -> `prometheus`.
func imageName(image string) string {
	image, _, _ = strings.Cut(image, "@")
	name := image[strings.LastIndex(image, "/")+1:]
	name, _, _ = strings.Cut(name, ":")
	return name
}

// address checks that `address` (a URL or host:port) names a service of the
// stack that takes connections on that port. Loopback addresses are the
// container itself, so they are left alone.
func (c *check) address(where, address string) {
	hostport := address
	if strings.Contains(address, "://") {
		parsed, err := url.Parse(address)
		if err != nil {
			c.problem("%s: %q is not a URL: %v", where, address, err)
			return
		}
		hostport = parsed.Host
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		host, port = hostport, ""
	}
	if host == "localhost" || strings.HasPrefix(host, "127.") || host == "::1" {
		return
	}
	target, ok := c.project.Services[host]
	if !ok {
		c.problem("%s: %s is not a service of the stack (services: %s)", where, host, strings.Join(c.serviceNames(), ", "))
		return
	}
	if port != "" && !listensOn(target, port) {
		c.problem("%s: service %s neither publishes nor exposes port %s", where, host, port)
		return
	}
	c.note("%s: %s is a service of the stack", where, address)
}

// containerFile checks that container path `p` of a service is provided by
// a mount and, for a bind mount, exists on the host. Glob patterns need only
// their folder. It returns the host path.
func (c *check) containerFile(service types.ServiceConfig, where, p string) (string, bool) {
	if strings.Contains(p, "$") {
		c.problem("%s: %s names a variable the service's environment does not set", where, p)
		return "", false
	}
	checked := p
	if strings.ContainsAny(p, "*?[") {
		checked = path.Dir(p)
	}
	host, by, ok := c.provided(service, checked)
	if !ok {
		c.problem("%s: names %s, which no mount provides (the container has no such file of ours)", where, p)
		return "", false
	}
	if host == "" {
		if by.content == nil {
			c.problem("%s: names %s, in %s, whose content cannot be checked here", where, p, c.describe(by))
			return "", false
		}
		c.note("%s: %s is %s", where, p, c.describe(by))
		return "", true
	}
	if _, err := os.Stat(host); err != nil {
		c.problem("%s: names %s, mounted from %s, which does not exist", where, p, c.rel(host))
		return "", false
	}
	c.note("%s: %s is provided by %s", where, p, c.describe(by))
	return host, true
}
