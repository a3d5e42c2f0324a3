// compose-check validates weir's Docker path without a Docker engine.
//
//	go run . [--project-directory DIR] docker-compose.yml [override.yml ...]
//
// The compose files are loaded by compose-go, the Compose Specification's
// own loader (the code `docker compose` runs): it checks them against the
// Compose schema, interpolates variables, merges the files in order and
// resolves relative paths against the project directory (by default, the
// first file's folder). On top of that it checks what only shows when the
// stack starts:
//
//   - compose.go: bind mounts, configs, env files, build contexts and
//     Dockerfiles exist; `depends_on` conditions can be met; the stack's
//     ports are published by the services that own them;
//   - dockerfile.go (image.go reads the Dockerfile): every file a
//     Dockerfile copies from its context exists and is not left out by
//     .dockerignore;
//   - pipelines.go: the pipeline files the weir image runs exist, and each
//     plugin they name is in the image;
//   - prometheus.go, grafana.go (with monitoring.go): every file
//     Prometheus' configuration and Grafana's provisioning name inside their
//     containers is provided by a mount, the addresses they use are services
//     of the stack, and the dashboards use the datasources provisioned.
//
// Each problem is printed on a line of its own; the exit status is 1 when
// there is any, 2 when the files cannot be loaded at all.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

// check holds the loaded project and collects what is wrong with it.
type check struct {
	project  *types.Project
	problems []string
	notes    []string
	// Dockerfiles read so far, by path.
	parsedImages map[string]*image
}

// problem records something that would break the stack.
func (c *check) problem(format string, args ...any) {
	c.problems = append(c.problems, fmt.Sprintf(format, args...))
}

// note records something that was checked, for the summary.
func (c *check) note(format string, args ...any) {
	c.notes = append(c.notes, fmt.Sprintf(format, args...))
}

// rel shows a host path relative to the project directory when it is inside it.
func (c *check) rel(path string) string {
	if r, err := filepath.Rel(c.project.WorkingDir, path); err == nil && !strings.HasPrefix(r, "..") {
		return r
	}
	return path
}

func main() {
	projectDir := flag.String("project-directory", "",
		"folder that relative paths resolve against (default: the first file's folder)")
	verbose := flag.Bool("v", false, "also list what was checked")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: compose-check [--project-directory DIR] [-v] COMPOSE_FILE [OVERRIDE_FILE ...]")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}

	project, err := load(flag.Args(), *projectDir)
	if err != nil {
		fmt.Fprintf(os.Stderr, "problem: %s does not load: %v\n", strings.Join(flag.Args(), ", "), err)
		os.Exit(2)
	}
	c := &check{project: project}
	c.services()
	c.ports()
	c.images()
	c.pipelines()
	c.prometheus()
	c.grafana()

	if *verbose {
		for _, note := range c.notes {
			fmt.Printf("ok: %s\n", note)
		}
	}
	for _, problem := range c.problems {
		fmt.Printf("problem: %s\n", problem)
	}
	files := strings.Join(flag.Args(), ", ")
	if len(c.problems) > 0 {
		fmt.Printf("compose-check: %s: %d problem(s)\n", files, len(c.problems))
		os.Exit(1)
	}
	fmt.Printf("compose-check: %s: project %q, %d services, %d checks passed\n",
		files, project.Name, len(project.Services), len(c.notes))
}

// load reads the compose files as `docker compose -f FILE ...
// [--project-directory DIR]` would: the process environment and the
// project's .env file feed interpolation.
func load(files []string, projectDir string) (*types.Project, error) {
	var options []cli.ProjectOptionsFn
	// The working directory first: the .env file is read from it.
	if projectDir != "" {
		dir, err := filepath.Abs(projectDir)
		if err != nil {
			return nil, err
		}
		options = append(options, cli.WithWorkingDirectory(dir))
	}
	options = append(options, cli.WithOsEnv, cli.WithEnvFiles(), cli.WithDotEnv)
	projectOptions, err := cli.NewProjectOptions(files, options...)
	if err != nil {
		return nil, err
	}
	return projectOptions.LoadProject(context.Background())
}
