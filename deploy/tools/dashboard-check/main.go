// Command dashboard-check validates Grafana dashboard JSON files against the dashboard schema
// of the Grafana Foundation SDK (schema version 42, Grafana 12.2 and later): strict decoding
// (an unknown field anywhere is an error), the types of every field, the options of the core
// panel types and the Prometheus queries (the SDK's default plugins), then the schema's own
// validation. It also refuses a dashboard that declares another schema version than the one
// checked, or a panel whose query names no data source uid.
//
// Usage: dashboard-check FILE...
// Exits 1 when any file is invalid, naming each problem.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
)

// schemaVersion is the dashboard schema version of the SDK release in go.mod.
const schemaVersion = 42

// failure drops the empty cog.BuildErrors the SDK returns as a non-nil error on success.
func failure(err error) error {
	var built cog.BuildErrors
	if errors.As(err, &built) && len(built) == 0 {
		return nil
	}
	return err
}

func check(path string) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var board dashboard.Dashboard
	if err := failure(board.UnmarshalJSONStrict(raw)); err != nil {
		return fmt.Errorf("does not decode strictly: %w", err)
	}
	if err := failure(board.Validate()); err != nil {
		return fmt.Errorf("does not validate: %w", err)
	}
	if board.SchemaVersion != schemaVersion {
		return fmt.Errorf("declares schemaVersion %d; this check knows %d", board.SchemaVersion, schemaVersion)
	}
	for _, item := range board.Panels {
		panel := item.Panel
		if panel == nil {
			continue
		}
		for _, target := range panel.Targets {
			if target == nil {
				return fmt.Errorf("panel %q has an empty query", title(panel))
			}
		}
		if panel.Datasource == nil || panel.Datasource.Uid == nil || *panel.Datasource.Uid == "" {
			return fmt.Errorf("panel %q names no data source uid", title(panel))
		}
	}
	return nil
}

func title(panel *dashboard.Panel) string {
	if panel.Title == nil {
		return "(untitled)"
	}
	return *panel.Title
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: dashboard-check FILE...")
		os.Exit(2)
	}
	plugins.RegisterDefaultPlugins()
	bad := 0
	for _, path := range os.Args[1:] {
		if err := check(path); err != nil {
			fmt.Printf("%s: INVALID: %v\n", path, err)
			bad++
			continue
		}
		fmt.Printf("%s: valid (schemaVersion %d)\n", path, schemaVersion)
	}
	if bad > 0 {
		os.Exit(1)
	}
}
