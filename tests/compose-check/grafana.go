package main

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
	"go.yaml.in/yaml/v4"
)

// grafana checks each Grafana service: its provisioning folder is mounted;
// every path the provisioning files name (the dashboards' folders, files of
// certificates) is mounted too; each datasource's address is a service of
// the stack; the dashboards parse and use the datasources provisioned.
func (c *check) grafana() {
	for _, name := range c.serviceNames() {
		service := c.project.Services[name]
		if imageName(service.Image) != "grafana" && imageName(service.Image) != "grafana-oss" {
			continue
		}
		provisioning := "/etc/grafana/provisioning"
		if value := service.Environment["GF_PATHS_PROVISIONING"]; value != nil && *value != "" {
			provisioning = *value
		}
		where := fmt.Sprintf("service %s: provisioning %s", name, provisioning)
		host, by, ok := c.provided(service, provisioning)
		if !ok {
			c.problem("%s is not mounted: Grafana would start with no datasources and no dashboards", where)
			continue
		}
		if host == "" {
			c.problem("%s comes from %s; its files cannot be checked here", where, c.describe(by))
			continue
		}
		files := yamlFiles(host)
		if len(files) == 0 {
			c.problem("%s: %s holds no provisioning files (*.yml, *.yaml)", where, c.rel(host))
			continue
		}
		known := datasourceSet{names: map[string]bool{}, uids: map[string]bool{}}
		var dashboardFolders []string
		for _, file := range files {
			fileWhere := fmt.Sprintf("service %s: %s", name, c.rel(file))
			data, err := os.ReadFile(file)
			if err != nil {
				c.problem("%s: %v", fileWhere, err)
				continue
			}
			var root map[string]any
			if err := yaml.Unmarshal(data, &root); err != nil {
				c.problem("%s: not YAML: %v", fileWhere, err)
				continue
			}
			c.note("%s parses", fileWhere)
			datasources, _ := root["datasources"].([]any)
			for _, item := range datasources {
				datasource, _ := item.(map[string]any)
				c.datasource(service, fileWhere, datasource, &known)
			}
			providers, _ := root["providers"].([]any)
			for _, item := range providers {
				provider, _ := item.(map[string]any)
				options, _ := provider["options"].(map[string]any)
				folder, _ := options["path"].(string)
				if folder == "" {
					continue
				}
				folder = expand(folder, service.Environment)
				if hostFolder, ok := c.containerFile(service, fileWhere+": dashboards provider", folder); ok {
					dashboardFolders = append(dashboardFolders, hostFolder)
				}
			}
			for _, reference := range absolutePaths(root, "", "") {
				c.containerFile(service, fileWhere, expand(reference, service.Environment))
			}
		}
		for _, folder := range dashboardFolders {
			c.dashboards(name, folder, known)
		}
	}
}

// datasourceSet is what the provisioning files declare, to check the
// dashboards' references against.
type datasourceSet struct {
	names, uids map[string]bool
	// Whether any datasource was declared at all.
	any bool
}

// datasource checks one provisioned datasource's address.
func (c *check) datasource(service types.ServiceConfig, where string, datasource map[string]any, known *datasourceSet) {
	name, _ := datasource["name"].(string)
	uid, _ := datasource["uid"].(string)
	known.any = true
	known.names[name] = true
	if uid != "" {
		known.uids[uid] = true
	}
	address, _ := datasource["url"].(string)
	if address == "" {
		return
	}
	c.address(fmt.Sprintf("%s: datasource %q", where, name), expand(address, service.Environment))
}

// yamlFiles lists the YAML files under a folder, in a stable order.
func yamlFiles(dir string) []string {
	var files []string
	_ = filepath.WalkDir(dir, func(p string, entry fs.DirEntry, err error) error {
		if err == nil && !entry.IsDir() && (strings.HasSuffix(p, ".yml") || strings.HasSuffix(p, ".yaml")) {
			files = append(files, p)
		}
		return nil
	})
	sort.Strings(files)
	return files
}

// absolutePaths lists the absolute paths a provisioning file gives in
// settings named like paths or files (`sslRootCertFile`, `tlsCACertPath`),
// except a dashboard provider's `options.path`, which the caller checks.
func absolutePaths(node any, parent, key string) []string {
	var paths []string
	switch value := node.(type) {
	case map[string]any:
		keys := make([]string, 0, len(value))
		for k := range value {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			paths = append(paths, absolutePaths(value[k], key, k)...)
		}
	case []any:
		for _, item := range value {
			paths = append(paths, absolutePaths(item, parent, key)...)
		}
	case string:
		lower := strings.ToLower(key)
		named := strings.HasSuffix(lower, "path") || strings.HasSuffix(lower, "file")
		if named && strings.HasPrefix(value, "/") && !(parent == "options" && key == "path") {
			paths = append(paths, value)
		}
	}
	return paths
}

// Grafana reads `$VAR`, `${VAR}` and `$__env{VAR}` in provisioning files
// from its environment.
var variable = regexp.MustCompile(`\$(?:__env\{(\w+)\}|\{(\w+)\}|(\w+))`)

// expand replaces the variables the service's environment sets; the others
// stay, to be reported.
func expand(text string, environment types.MappingWithEquals) string {
	return variable.ReplaceAllStringFunc(text, func(match string) string {
		groups := variable.FindStringSubmatch(match)
		name := groups[1] + groups[2] + groups[3]
		if value, ok := environment[name]; ok && value != nil {
			return *value
		}
		return match
	})
}

// Datasource uids every Grafana has without provisioning.
var builtinDatasources = map[string]bool{
	"grafana": true, "-- Grafana --": true, "-- Mixed --": true, "-- Dashboard --": true, "__expr__": true,
}

// dashboards checks the dashboards of a provider's folder: each parses, and
// each datasource it names is provisioned (by uid, or by name in the older
// form) or is one of the dashboard's own variables.
func (c *check) dashboards(service, folder string, known datasourceSet) {
	var files []string
	_ = filepath.WalkDir(folder, func(p string, entry fs.DirEntry, err error) error {
		if err == nil && !entry.IsDir() && strings.HasSuffix(p, ".json") {
			files = append(files, p)
		}
		return nil
	})
	sort.Strings(files)
	if len(files) == 0 {
		c.problem("service %s: dashboards folder %s holds no dashboards (*.json)", service, c.rel(folder))
		return
	}
	for _, file := range files {
		where := fmt.Sprintf("service %s: dashboard %s", service, c.rel(file))
		data, err := os.ReadFile(file)
		if err != nil {
			c.problem("%s: %v", where, err)
			continue
		}
		var dashboard map[string]any
		if err := json.Unmarshal(data, &dashboard); err != nil {
			c.problem("%s: not JSON: %v", where, err)
			continue
		}
		if title, _ := dashboard["title"].(string); title == "" {
			c.problem("%s: has no title (Grafana refuses it)", where)
		}
		variables := map[string]bool{}
		templating, _ := dashboard["templating"].(map[string]any)
		list, _ := templating["list"].([]any)
		for _, item := range list {
			variable, _ := item.(map[string]any)
			if name, ok := variable["name"].(string); ok {
				variables[name] = true
			}
		}
		bad := map[string]bool{}
		for _, reference := range datasourceReferences(dashboard) {
			if ok, why := known.resolves(reference, variables); !ok && !bad[reference] {
				bad[reference] = true
				c.problem("%s: datasource %q %s", where, reference, why)
			}
		}
		if len(bad) == 0 {
			c.note("%s parses and uses provisioned datasources", where)
		}
	}
}

// resolves says whether a dashboard's datasource reference will find its
// datasource, and if not, why.
func (known datasourceSet) resolves(reference string, variables map[string]bool) (bool, string) {
	if strings.HasPrefix(reference, "$") {
		name := strings.Trim(strings.TrimPrefix(reference, "$"), "{}")
		name, _, _ = strings.Cut(name, ":")
		if variables[name] {
			return true, ""
		}
		return false, "is no variable of the dashboard (provisioning does not fill an exported dashboard's __inputs)"
	}
	if builtinDatasources[reference] || !known.any {
		return true, ""
	}
	if known.uids[reference] || known.names[reference] {
		return true, ""
	}
	return false, "is not provisioned (no datasource has that uid or name)"
}

// datasourceReferences lists what the dashboard's `datasource` settings
// name: a uid, or a name in the older string form.
func datasourceReferences(node any) []string {
	var references []string
	switch value := node.(type) {
	case map[string]any:
		for key, child := range value {
			if key == "datasource" {
				switch ds := child.(type) {
				case string:
					references = append(references, ds)
					continue
				case map[string]any:
					if uid, ok := ds["uid"].(string); ok && uid != "" {
						references = append(references, uid)
					}
					continue
				}
			}
			references = append(references, datasourceReferences(child)...)
		}
	case []any:
		for _, item := range value {
			references = append(references, datasourceReferences(item)...)
		}
	}
	sort.Strings(references)
	return references
}
