// Command compose-check validates Compose files the way `docker compose config -q` does, on
// machines without Docker Compose (.ci/deploy-check.sh builds and runs it).
//
// It loads each file with compose-go, the loader Docker Compose itself is built on: YAML
// parsing, variable interpolation (a variable required with ${VAR:?} that is unset is an
// error), the Compose Specification's JSON schema (unknown keys are errors), normalisation,
// and the consistency checks between services, networks, volumes, secrets and configs. Then
// it checks what Compose only finds out at build or up time: every build context and
// Dockerfile, and every bind-mounted file or directory, exists.
//
// Usage: compose-check FILE...
//
// Variables come from the process environment only (not from a .env file), so that the result
// does not depend on a developer's local secrets. Exit status: 0 valid, 1 invalid, 2 usage.
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: compose-check FILE...")
		os.Exit(2)
	}
	failed := false
	for _, file := range os.Args[1:] {
		if err := check(file); err != nil {
			fmt.Fprintf(os.Stderr, "compose-check: %s: INVALID: %v\n", file, err)
			failed = true
		}
	}
	if failed {
		os.Exit(1)
	}
}

func check(file string) error {
	options, err := cli.NewProjectOptions(
		[]string{file},
		cli.WithOsEnv,
		cli.WithInterpolation(true),
		cli.WithNormalization(true),
		cli.WithResolvedPaths(true),
		cli.WithConsistency(true),
		// Services behind a profile are checked too.
		cli.WithProfiles([]string{"*"}),
	)
	if err != nil {
		return err
	}
	project, err := options.LoadProject(context.Background())
	if err != nil {
		return err
	}
	var problems []string
	names := make([]string, 0, len(project.Services))
	for name := range project.Services {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		service := project.Services[name]
		problems = append(problems, checkFiles(name, service)...)
		fmt.Fprintf(os.Stderr, "compose-check:   service %-12s %s\n", name, describe(service))
	}
	if len(problems) > 0 {
		for _, problem := range problems {
			fmt.Fprintf(os.Stderr, "compose-check:   %s\n", problem)
		}
		return fmt.Errorf("%d missing file(s)", len(problems))
	}
	fmt.Fprintf(os.Stderr, "compose-check: %s: valid (project %q, %d services, %d volumes)\n",
		file, project.Name, len(project.Services), len(project.Volumes))
	return nil
}

// checkFiles reports build contexts, Dockerfiles and bind-mount sources that do not exist.
func checkFiles(name string, service types.ServiceConfig) []string {
	var problems []string
	if build := service.Build; build != nil {
		if info, err := os.Stat(build.Context); err != nil || !info.IsDir() {
			problems = append(problems, fmt.Sprintf("service %s: build context %s is not a directory", name, build.Context))
		} else if build.DockerfileInline == "" {
			dockerfile := build.Dockerfile
			if dockerfile == "" {
				dockerfile = "Dockerfile"
			}
			if !filepath.IsAbs(dockerfile) {
				dockerfile = filepath.Join(build.Context, dockerfile)
			}
			if _, err := os.Stat(dockerfile); err != nil {
				problems = append(problems, fmt.Sprintf("service %s: Dockerfile %s does not exist", name, dockerfile))
			}
		}
	}
	for _, volume := range service.Volumes {
		if volume.Type != types.VolumeTypeBind {
			continue
		}
		if _, err := os.Stat(volume.Source); err != nil {
			problems = append(problems, fmt.Sprintf("service %s: bind mount source %s does not exist", name, volume.Source))
		}
	}
	return problems
}

func describe(service types.ServiceConfig) string {
	if service.Build != nil {
		return fmt.Sprintf("build %s (%s) as %s", service.Build.Context, service.Build.Dockerfile, service.Image)
	}
	return "image " + service.Image
}
