package main

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

// imageOf returns the image a service runs when it is built here: by the
// service itself, or by another service that builds the same image name.
func (c *check) imageOf(service types.ServiceConfig) *image {
	build := service.Build
	if build == nil && service.Image != "" {
		for _, name := range c.serviceNames() {
			other := c.project.Services[name]
			if other.Build != nil && other.Image == service.Image {
				build = other.Build
				break
			}
		}
	}
	if build == nil || build.DockerfileInline != "" {
		return nil
	}
	dockerfile := dockerfilePath(build)
	if c.parsedImages == nil {
		c.parsedImages = map[string]*image{}
	}
	if img, ok := c.parsedImages[dockerfile]; ok {
		return img
	}
	img, err := parseDockerfile(dockerfile, build.Context)
	if err != nil {
		return nil
	}
	c.parsedImages[dockerfile] = img
	return img
}

// images checks every Dockerfile the project builds: each file it copies
// from the build context exists there and is not left out of the context
// by .dockerignore, and each `--from` names an earlier stage or an image.
func (c *check) images() {
	seen := map[string]bool{}
	for _, name := range c.serviceNames() {
		service := c.project.Services[name]
		if service.Build == nil || service.Build.DockerfileInline != "" {
			continue
		}
		dockerfile := dockerfilePath(service.Build)
		if seen[dockerfile] {
			continue
		}
		seen[dockerfile] = true
		if _, err := os.Stat(dockerfile); err != nil {
			continue // reported by build()
		}
		img := c.imageOf(service)
		if img == nil {
			c.problem("%s: cannot be read", c.rel(dockerfile))
			continue
		}
		for _, message := range img.parseErrors {
			c.problem("%s: %s", c.rel(dockerfile), message)
		}
		ignored, err := dockerignore(dockerfile, img.context)
		if err != nil {
			c.problem("%s", err)
		}
		stages := map[string]bool{}
		for index, st := range img.stages {
			for _, op := range st.copies {
				if op.from != "" {
					// Docker takes a name that is no stage for an image; here
					// that is far more likely a misspelt stage.
					if !stages[op.from] && !strings.ContainsAny(op.from, ":/@") {
						c.problem("%s:%d: %s --from=%s names no earlier stage (an image needs its tag, as in name:tag)",
							c.rel(img.dockerfile), op.line, op.keyword, op.from)
					}
					continue
				}
				for _, source := range op.sources {
					c.contextSource(img, ignored, op, source)
				}
			}
			stages[fmt.Sprint(index)] = true
			if st.name != "" {
				stages[st.name] = true
			}
		}
	}
}

// contextSource checks one source of a COPY or ADD from the build context.
func (c *check) contextSource(img *image, ignored *patternmatcher.PatternMatcher, op copyOp, source string) {
	where := fmt.Sprintf("%s:%d: %s %s", c.rel(img.dockerfile), op.line, op.keyword, source)
	if op.keyword == "ADD" && (strings.Contains(source, "://") || strings.HasPrefix(source, "git@")) {
		return
	}
	if strings.Contains(source, "$") {
		c.problem("%s: a variable in a source cannot be checked here; name the path", where)
		return
	}
	clean := path.Clean("/" + filepath.ToSlash(source))[1:]
	if strings.HasPrefix(path.Clean(source), "..") {
		c.problem("%s: the source is outside the build context", where)
		return
	}
	if clean == "" {
		clean = "."
	}
	host := filepath.Join(img.context, filepath.FromSlash(clean))
	if strings.ContainsAny(clean, "*?[") {
		matches, _ := filepath.Glob(host)
		if len(matches) == 0 {
			c.problem("%s: matches nothing in the build context %s", where, c.rel(img.context))
			return
		}
	} else if _, err := os.Stat(host); err != nil {
		c.problem("%s: %s does not exist in the build context", where, c.rel(host))
		return
	}
	if ignored != nil && clean != "." {
		if excluded, _ := ignored.MatchesOrParentMatches(clean); excluded {
			c.problem("%s: left out of the build context by .dockerignore", where)
			return
		}
	}
	c.note("%s: in the build context", where)
}

// dockerignore reads the patterns that leave files out of a build's
// context: `<Dockerfile>.dockerignore` beside the Dockerfile when there is
// one, else `.dockerignore` at the context's root, as BuildKit does.
func dockerignore(dockerfile, context string) (*patternmatcher.PatternMatcher, error) {
	for _, candidate := range []string{dockerfile + ".dockerignore", filepath.Join(context, ".dockerignore")} {
		file, err := os.Open(candidate)
		if err != nil {
			continue
		}
		defer file.Close()
		patterns, err := ignorefile.ReadAll(file)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", candidate, err)
		}
		matcher, err := patternmatcher.New(patterns)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", candidate, err)
		}
		return matcher, nil
	}
	return nil, nil
}
