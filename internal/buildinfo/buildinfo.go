// Package buildinfo says which build of esgen a binary is: the module versions and the
// version control information that the Go toolchain records in every binary
// (runtime/debug.ReadBuildInfo). esgen version, esgen --version, a projector's
// --version and its esgen_build_info metric print it.
package buildinfo

import (
	"fmt"
	"runtime/debug"
	"strings"
)

// Module is esgen's module path.
const Module = "github.com/esgen-dev/esgen"

// Info is what a binary knows about its build.
type Info struct {
	// Path and Version are the main module's ("(devel)" for a build from a checkout).
	Path    string
	Version string
	// Esgen is the version of esgen in the binary: the main module's when the binary is
	// esgen itself, else that of the esgen dependency ("" when there is none).
	Esgen string
	// Revision, Time and Modified are the version control information of the main
	// module's checkout, when the binary was built in one ("" and false otherwise).
	Revision string
	Time     string
	Modified bool
	// GoVersion is the toolchain that built the binary.
	GoVersion string
}

// Read returns the build information of the running binary.
func Read() Info {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return Info{Version: "unknown"}
	}
	info := Info{Path: bi.Main.Path, Version: bi.Main.Version, GoVersion: bi.GoVersion}
	if info.Version == "" {
		info.Version = "(devel)"
	}
	if bi.Main.Path == Module {
		info.Esgen = info.Version
	}
	for _, d := range bi.Deps {
		if d.Path == Module {
			info.Esgen = d.Version
			if d.Replace != nil {
				info.Esgen += " => " + d.Replace.Path
				if d.Replace.Version != "" {
					info.Esgen += " " + d.Replace.Version
				}
			}
		}
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			info.Revision = s.Value
		case "vcs.time":
			info.Time = s.Value
		case "vcs.modified":
			info.Modified = s.Value == "true"
		}
	}
	return info
}

// String is the one-line form that --version prints, e.g.
// "github.com/esgen-dev/esgen v0.3.0 (revision 1a2b3c4d5e6f, 2026-11-27T14:05:21Z) go1.26.8".
func (i Info) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", i.Path, i.Version)
	if i.Esgen != "" && i.Path != Module {
		fmt.Fprintf(&b, " (esgen %s)", i.Esgen)
	}
	if i.Revision != "" {
		rev := i.Revision
		if len(rev) > 12 {
			rev = rev[:12]
		}
		fmt.Fprintf(&b, " (revision %s", rev)
		if i.Time != "" {
			fmt.Fprintf(&b, ", %s", i.Time)
		}
		if i.Modified {
			b.WriteString(", modified")
		}
		b.WriteString(")")
	}
	if i.GoVersion != "" {
		fmt.Fprintf(&b, " %s", i.GoVersion)
	}
	return b.String()
}
