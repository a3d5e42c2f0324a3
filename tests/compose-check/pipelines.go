package main

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/BurntSushi/toml"
	"github.com/compose-spec/compose-go/v2/types"
)

// pipelineFile is the part of a pipeline file these checks read.
type pipelineFile struct {
	Name   string `toml:"name"`
	Stages []struct {
		Name   string `toml:"name"`
		Plugin string `toml:"plugin"`
	} `toml:"stages"`
}

// The Rust plugins' workspace in the build context, which the image's build
// stage compiles to wasm32-wasip2.
const pluginWorkspace = "plugins"

// pipelines checks, for each service that runs an image built here, that
// the pipeline files its command names are in its container and that every
// plugin they name is there too: copied from the repository, mounted, or
// built by the image from a crate of the plugins' workspace.
func (c *check) pipelines() {
	for _, name := range c.serviceNames() {
		service := c.project.Services[name]
		img := c.imageOf(service)
		if img == nil {
			continue
		}
		workdir := service.WorkingDir
		if workdir == "" {
			workdir = img.final().workdir
		}
		for _, arg := range commandOf(service, img) {
			if strings.HasPrefix(arg, "-") || !strings.HasSuffix(arg, ".toml") {
				continue
			}
			file := arg
			if !path.IsAbs(file) {
				file = path.Join(workdir, file)
			}
			c.pipeline(service, img, arg, file)
		}
	}
}

// commandOf is what the container runs: its entrypoint and command, each
// from the service or else from the image. An entrypoint set by the service
// drops the image's command, as Docker does.
func commandOf(service types.ServiceConfig, img *image) []string {
	entrypoint, command := img.entrypoint, img.cmd
	if service.Entrypoint != nil {
		entrypoint, command = service.Entrypoint, nil
	}
	if service.Command != nil {
		command = service.Command
	}
	return append(append([]string{}, entrypoint...), command...)
}

// pipeline checks one pipeline file of a service and the plugins it names.
func (c *check) pipeline(service types.ServiceConfig, img *image, arg, file string) {
	where := fmt.Sprintf("service %s: pipeline %s", service.Name, arg)
	origin := c.origin(service, img, file)
	switch {
	case !origin.found:
		c.problem("%s: nothing in the container provides %s (not copied into the image, not mounted)", where, file)
		return
	case origin.host == "":
		c.problem("%s: %s comes from %s; it cannot be checked here", where, file, origin.describe)
		return
	}
	var pipeline pipelineFile
	if _, err := toml.DecodeFile(origin.host, &pipeline); err != nil {
		if os.IsNotExist(err) {
			c.problem("%s: %s does not exist", where, c.rel(origin.host))
		} else {
			c.problem("%s: %s does not parse: %v", where, c.rel(origin.host), err)
		}
		return
	}
	c.note("%s is %s", where, c.rel(origin.host))
	for _, st := range pipeline.Stages {
		plugin := st.Plugin
		if !path.IsAbs(plugin) {
			plugin = path.Join(path.Dir(file), plugin)
		}
		stageWhere := fmt.Sprintf("%s, stage %s: plugin %s", where, st.Name, plugin)
		origin := c.origin(service, img, plugin)
		switch {
		case !origin.found:
			c.problem("%s: nothing in the container provides it (not copied into the image, not mounted)", stageWhere)
		case origin.host != "":
			if _, err := os.Stat(origin.host); err != nil {
				c.problem("%s: %s does not exist", stageWhere, c.rel(origin.host))
			} else {
				c.note("%s is %s", stageWhere, c.rel(origin.host))
			}
		case origin.stage != "":
			crate, err := c.pluginCrate(img, path.Base(origin.stagePath))
			if err != nil {
				c.problem("%s: copied from stage %s as %s, but %v", stageWhere, origin.stage, origin.stagePath, err)
			} else {
				c.note("%s is built in stage %s from the crate %s", stageWhere, origin.stage, crate)
			}
		default:
			c.problem("%s: comes from %s; nothing here shows it is there", stageWhere, origin.describe)
		}
	}
}

// origin is where a file of a container comes from.
type origin struct {
	found bool
	// The host file, when a bind mount or the build context provides it.
	host string
	// The build stage and its path, when the image copies it from a stage.
	stage, stagePath string
	// What provides it, for messages.
	describe string
}

// origin says what provides container path `p` of a service: a mount first
// (mounts hide the image's files), then the image's copies, from the build
// context or from a build stage.
func (c *check) origin(service types.ServiceConfig, img *image, p string) origin {
	if host, by, ok := c.provided(service, p); ok {
		return origin{found: true, host: host, describe: c.describe(by)}
	}
	context, stage, stagePath, ok := img.inImage(p)
	switch {
	case !ok:
		return origin{}
	case stage != "":
		return origin{found: true, stage: stage, stagePath: stagePath, describe: "stage " + stage}
	default:
		return origin{found: true, host: filepath.Join(img.context, filepath.FromSlash(context)), describe: "the build context"}
	}
}

// pluginCrate finds the crate of the plugins' workspace that compiles to
// `wasm` (a crate `session-stats` makes `session_stats.wasm`), and checks
// that it is a member of the workspace and builds a component (cdylib).
func (c *check) pluginCrate(img *image, wasm string) (string, error) {
	want := strings.TrimSuffix(wasm, ".wasm")
	workspace := filepath.Join(img.context, pluginWorkspace, "Cargo.toml")
	var manifest struct {
		Workspace struct {
			Members []string `toml:"members"`
		} `toml:"workspace"`
	}
	if _, err := toml.DecodeFile(workspace, &manifest); err != nil {
		return "", fmt.Errorf("the plugins' workspace %s does not read: %v", c.rel(workspace), err)
	}
	for _, member := range manifest.Workspace.Members {
		var crate struct {
			Package struct {
				Name string `toml:"name"`
			} `toml:"package"`
			Lib struct {
				CrateType []string `toml:"crate-type"`
			} `toml:"lib"`
		}
		file := filepath.Join(img.context, pluginWorkspace, filepath.FromSlash(member), "Cargo.toml")
		if _, err := toml.DecodeFile(file, &crate); err != nil {
			continue
		}
		if strings.ReplaceAll(crate.Package.Name, "-", "_") != want {
			continue
		}
		for _, kind := range crate.Lib.CrateType {
			if kind == "cdylib" {
				return crate.Package.Name, nil
			}
		}
		return "", fmt.Errorf("the crate %s (%s) is not a cdylib, so it builds no %s", crate.Package.Name, c.rel(file), wasm)
	}
	return "", fmt.Errorf("no member of the workspace %s builds %s (a plugin in another language must be built and copied into the image)",
		c.rel(workspace), wasm)
}
