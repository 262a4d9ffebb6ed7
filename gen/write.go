package gen

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// write puts pf under dir when its bytes differ from the file there. A user-owned
// file is written only if it still has the bytes it was planned from: it is only
// ever extended (stubs appended, imports they need added).
func write(dir string, pf plannedFile) (FileResult, error) {
	res := FileResult{Path: pf.path}
	target := filepath.Join(dir, filepath.FromSlash(pf.path))
	existing, err := os.ReadFile(target)
	exists := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return res, fmt.Errorf("read %s: %w", pf.path, err)
	}
	if pf.kind == userOwned && (exists != (pf.base != nil) || !bytes.Equal(existing, pf.base)) {
		return res, fmt.Errorf("%s: changed while esgen generate ran; run it again", pf.path)
	}
	switch {
	case exists && bytes.Equal(existing, pf.content):
		res.Action = Unchanged
		if pf.kind == userOwned {
			res.Action = Kept
		}
		return res, nil
	case exists && pf.kind == userOwned:
		res.Action = Appended
		res.Detail = strings.Join(pf.appended, ", ")
	case exists:
		res.Action = Updated
	default:
		res.Action = Created
	}
	if err := writeAtomic(target, pf.content); err != nil {
		return res, fmt.Errorf("write %s: %w", pf.path, err)
	}
	return res, nil
}

// writeAtomic writes data to a temporary file next to name and renames it over name,
// so a reader sees the old or the new file, never half of one.
func writeAtomic(name string, data []byte) error {
	dir := filepath.Dir(name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	mode := fs.FileMode(0o644)
	if fi, err := os.Stat(name); err == nil {
		mode = fi.Mode().Perm()
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(name)+".esgen-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), name)
}
