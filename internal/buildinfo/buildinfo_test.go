package buildinfo

import (
	"strings"
	"testing"
)

func TestString(t *testing.T) {
	for _, c := range []struct {
		info Info
		want string
	}{
		{Info{Path: Module, Version: "v0.3.0", Esgen: "v0.3.0", Revision: "1a2b3c4d5e6f7a8b9c0d", Time: "2026-11-27T14:05:21Z", Modified: true, GoVersion: "go1.26.8"},
			"github.com/esgen-dev/esgen v0.3.0 (revision 1a2b3c4d5e6f, 2026-11-27T14:05:21Z, modified) go1.26.8"},
		{Info{Path: "example.com/bank", Version: "(devel)", Esgen: "v0.3.0", GoVersion: "go1.26.8"},
			"example.com/bank (devel) (esgen v0.3.0) go1.26.8"},
	} {
		if got := c.info.String(); got != c.want {
			t.Errorf("got %q, want %q", got, c.want)
		}
	}
	// The test binary's own information: the module's path, and its toolchain.
	if got := Read(); !strings.HasPrefix(got.GoVersion, "go1.") || got.Esgen == "" {
		t.Errorf("Read() = %+v", got)
	}
}
