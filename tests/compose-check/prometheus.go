package main

import (
	"fmt"
	"os"
	"path"
	"sort"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
	"go.yaml.in/yaml/v4"
)

// prometheus checks each Prometheus service: its configuration file is
// mounted, every file the configuration names is mounted too, and every
// static target is a service of the stack listening on that port.
func (c *check) prometheus() {
	for _, name := range c.serviceNames() {
		service := c.project.Services[name]
		if imageName(service.Image) != "prometheus" {
			continue
		}
		config := "/etc/prometheus/prometheus.yml"
		for i, arg := range service.Command {
			if value, ok := strings.CutPrefix(arg, "--config.file="); ok {
				config = value
			} else if arg == "--config.file" && i+1 < len(service.Command) {
				config = service.Command[i+1]
			}
		}
		where := fmt.Sprintf("service %s: configuration %s", name, config)
		data, ok := c.readConfig(service, where, config)
		if !ok {
			continue
		}
		var root any
		if err := yaml.Unmarshal(data, &root); err != nil {
			c.problem("%s: not YAML: %v", where, err)
			continue
		}
		for _, reference := range prometheusFiles(root, "") {
			file := reference
			if !path.IsAbs(file) {
				file = path.Join(path.Dir(config), file)
			}
			c.containerFile(service, where, file)
		}
		for _, target := range prometheusTargets(root) {
			c.address(where, target)
		}
	}
}

// readConfig returns the content of Prometheus' configuration file, which
// must be provided by a mount.
func (c *check) readConfig(service types.ServiceConfig, where, p string) ([]byte, bool) {
	host, by, ok := c.provided(service, p)
	switch {
	case !ok:
		c.problem("%s is not mounted: Prometheus would run its image's example, or find nothing and stop", where)
		return nil, false
	case by.content != nil:
		return []byte(*by.content), true
	case host == "":
		c.problem("%s comes from %s; it cannot be checked here", where, c.describe(by))
		return nil, false
	}
	data, err := os.ReadFile(host)
	if err != nil {
		c.problem("%s: mounted from %s, which cannot be read: %v", where, c.rel(host), err)
		return nil, false
	}
	c.note("%s is mounted from %s", where, c.rel(host))
	return data, true
}

// prometheusFiles lists the files a Prometheus configuration names: rule
// and scrape-config files, file discovery's files, and every `*_file`
// setting (certificates, keys, passwords, tokens).
func prometheusFiles(node any, key string) []string {
	var files []string
	switch value := node.(type) {
	case map[string]any:
		keys := make([]string, 0, len(value))
		for k := range value {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			files = append(files, prometheusFiles(value[k], k)...)
		}
	case []any:
		for _, item := range value {
			if text, ok := item.(string); ok {
				if key == "rule_files" || key == "scrape_config_files" || key == "files" {
					files = append(files, text)
				}
				continue
			}
			files = append(files, prometheusFiles(item, key)...)
		}
	case string:
		if strings.HasSuffix(key, "_file") && value != "" {
			files = append(files, value)
		}
	}
	return files
}

// prometheusTargets lists the `host:port` of every static target.
func prometheusTargets(root any) []string {
	var targets []string
	config, _ := root.(map[string]any)
	scrapes, _ := config["scrape_configs"].([]any)
	for _, scrape := range scrapes {
		job, _ := scrape.(map[string]any)
		statics, _ := job["static_configs"].([]any)
		for _, static := range statics {
			group, _ := static.(map[string]any)
			list, _ := group["targets"].([]any)
			for _, target := range list {
				if text, ok := target.(string); ok {
					targets = append(targets, text)
				}
			}
		}
	}
	return targets
}
