package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
)

// A Dockerfile, read as far as these checks need: its stages, what each
// copies and where, and what the final stage runs. It is not a full parser
// (no ARG substitution): instructions it cannot follow are reported, not
// guessed at.
type image struct {
	dockerfile string
	context    string
	stages     []*stage
	// The final stage's HEALTHCHECK, CMD and ENTRYPOINT.
	healthcheck bool
	cmd         []string
	entrypoint  []string
	parseErrors []string
}

// stage is one FROM of the Dockerfile: where it works, what it copies.
type stage struct {
	name    string
	workdir string
	copies  []copyOp
}

// copyOp is one COPY or ADD: sources (relative to the context, or to the
// stage `from`), destination (absolute, in the image).
type copyOp struct {
	line    int
	keyword string
	from    string
	sources []string
	dest    string
}

// instruction is one logical line: continuations joined, heredoc bodies
// skipped.
type instruction struct {
	line    int
	keyword string
	args    string
}

var heredocMarker = regexp.MustCompile(`<<-?\s*["']?([A-Za-z_][A-Za-z0-9_]*)["']?`)

// splitInstructions reads the instructions of a Dockerfile.
func splitInstructions(text string) []instruction {
	lines := strings.Split(strings.ReplaceAll(text, "\r\n", "\n"), "\n")
	var out []instruction
	for i := 0; i < len(lines); i++ {
		trimmed := strings.TrimSpace(lines[i])
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		start := i + 1
		logical := trimmed
		// Comment lines inside a continuation are dropped, as Docker does.
		for strings.HasSuffix(logical, `\`) && i+1 < len(lines) {
			logical = strings.TrimSuffix(logical, `\`)
			i++
			next := strings.TrimSpace(lines[i])
			if strings.HasPrefix(next, "#") {
				logical += `\`
				continue
			}
			logical += " " + next
		}
		keyword, args, _ := strings.Cut(logical, " ")
		keyword = strings.ToUpper(keyword)
		// A heredoc's body is not instructions: skip it to its terminator.
		for _, marker := range heredocMarker.FindAllStringSubmatch(args, -1) {
			for i+1 < len(lines) {
				i++
				if strings.TrimSpace(lines[i]) == marker[1] {
					break
				}
			}
		}
		out = append(out, instruction{line: start, keyword: keyword, args: strings.TrimSpace(args)})
	}
	return out
}

// words splits an instruction's arguments: the JSON form, or words
// separated by blanks with their quotes removed.
func words(args string) ([]string, bool) {
	if strings.HasPrefix(args, "[") {
		var list []string
		if err := json.Unmarshal([]byte(args), &list); err == nil {
			return list, true
		}
	}
	var out []string
	for _, field := range strings.Fields(args) {
		out = append(out, strings.Trim(field, `"'`))
	}
	return out, false
}

// parseDockerfile reads the Dockerfile of a build.
func parseDockerfile(dockerfile, context string) (*image, error) {
	data, err := os.ReadFile(dockerfile)
	if err != nil {
		return nil, err
	}
	img := &image{dockerfile: dockerfile, context: context}
	var current *stage
	byName := map[string]*stage{}
	for _, in := range splitInstructions(string(data)) {
		if in.keyword != "FROM" && in.keyword != "ARG" && current == nil {
			img.parseErrors = append(img.parseErrors, fmt.Sprintf("line %d: %s before any FROM", in.line, in.keyword))
			continue
		}
		switch in.keyword {
		case "FROM":
			list, _ := words(in.args)
			var base, name string
			for i := 0; i < len(list); i++ {
				switch {
				case strings.HasPrefix(list[i], "--"):
				case strings.EqualFold(list[i], "AS") && i+1 < len(list):
					name = strings.ToLower(list[i+1])
					i++
				case base == "":
					base = list[i]
				}
			}
			current = &stage{name: name, workdir: "/"}
			// A stage built on an earlier one starts where it left off.
			if parent, ok := byName[strings.ToLower(base)]; ok {
				current.workdir = parent.workdir
			}
			img.stages = append(img.stages, current)
			if name != "" {
				byName[name] = current
			}
			img.healthcheck, img.cmd, img.entrypoint = false, nil, nil
		case "WORKDIR":
			dir := strings.Trim(in.args, `"'`)
			if !path.IsAbs(dir) {
				dir = path.Join(current.workdir, dir)
			}
			current.workdir = path.Clean(dir)
		case "COPY", "ADD":
			op := copyOp{line: in.line, keyword: in.keyword}
			list, _ := words(in.args)
			var rest []string
			for _, word := range list {
				if strings.HasPrefix(word, "--") && len(rest) == 0 {
					if from, ok := strings.CutPrefix(word, "--from="); ok {
						op.from = strings.ToLower(from)
					}
					continue
				}
				rest = append(rest, word)
			}
			if len(rest) < 2 {
				if !strings.Contains(in.args, "<<") {
					img.parseErrors = append(img.parseErrors, fmt.Sprintf("line %d: %s needs a source and a destination", in.line, in.keyword))
				}
				continue
			}
			op.sources = rest[:len(rest)-1]
			op.dest = rest[len(rest)-1]
			if !path.IsAbs(op.dest) {
				trailing := strings.HasSuffix(op.dest, "/") || op.dest == "."
				op.dest = path.Join(current.workdir, op.dest)
				if trailing {
					op.dest += "/"
				}
			}
			current.copies = append(current.copies, op)
		case "HEALTHCHECK":
			img.healthcheck = !strings.EqualFold(strings.TrimSpace(in.args), "NONE")
		case "CMD", "ENTRYPOINT":
			list, isJSON := words(in.args)
			if !isJSON {
				list = []string{"/bin/sh", "-c", in.args}
			}
			if in.keyword == "CMD" {
				img.cmd = list
			} else {
				img.entrypoint = list
				// Docker clears an inherited CMD when ENTRYPOINT is set.
				img.cmd = nil
			}
		}
	}
	if len(img.stages) == 0 {
		img.parseErrors = append(img.parseErrors, "no FROM")
	}
	return img, nil
}

// final is the stage the image is made of.
func (img *image) final() *stage {
	if len(img.stages) == 0 {
		return &stage{workdir: "/"}
	}
	return img.stages[len(img.stages)-1]
}

// inImage says where container path `p` of the image comes from: a path of
// the build context (`context` set), or a path of an earlier stage
// (`stage` and `stagePath` set). The latest COPY that covers it wins.
func (img *image) inImage(p string) (context, fromStage, stagePath string, ok bool) {
	p = path.Clean(p)
	copies := img.final().copies
	for i := len(copies) - 1; i >= 0; i-- {
		op := copies[i]
		for _, source := range op.sources {
			var origin string
			dest := op.dest
			directory := strings.HasSuffix(dest, "/") || len(op.sources) > 1
			isDir := strings.HasSuffix(source, "/")
			if op.from == "" {
				if info, err := os.Stat(filepath.Join(img.context, filepath.FromSlash(source))); err == nil && info.IsDir() {
					isDir = true
				}
			}
			switch {
			case isDir:
				// A folder's content goes into the destination folder.
				dest = path.Clean(dest)
				if p == dest {
					origin = path.Clean(source)
				} else if strings.HasPrefix(p, dest+"/") {
					origin = path.Join(source, strings.TrimPrefix(p, dest+"/"))
				}
			case directory:
				if p == path.Join(dest, path.Base(source)) {
					origin = path.Clean(source)
				}
			default:
				if p == path.Clean(dest) {
					origin = path.Clean(source)
				}
			}
			if origin == "" {
				continue
			}
			if op.from != "" {
				return "", op.from, origin, true
			}
			return origin, "", "", true
		}
	}
	return "", "", "", false
}
