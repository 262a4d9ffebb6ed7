package gen

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// The lock file records the event schemas a module has published: every version of
// every event that esgen generate has generated code for. Once code is generated for
// a version, events may be stored with it, and stored events never change; so a
// later generate compares the spec with the lock and refuses what would leave stored
// events undecodable or decoding into empty fields: a published event, version or
// field that is gone, a field of a published version renamed or given another type, a
// required field added to it. Adding an optional field to a published version is
// allowed (stored events simply lack it), and so is everything new. With
// Options.AcceptBreaking the refused changes are reported as warnings instead and the
// lock is rewritten from the spec.

// lockComment heads the lock file, which JSON gives no other place to explain itself.
const lockComment = "Published event schemas, written by esgen generate from the spec. Commit this file: " +
	"generate refuses a change to a published version that would break its stored events " +
	"(see docs/spec.md, \"Changing events\")."

// lockFile is the JSON of the lock: per event its aggregate and, per version, its
// fields and their types as the spec writes them.
type lockFile struct {
	Comment string               `json:"comment"`
	Events  map[string]lockEvent `json:"events"`
}

type lockEvent struct {
	Aggregate string                       `json:"aggregate"`
	Versions  map[string]map[string]string `json:"versions"`
}

// lockName is the lock file of a spec file: esgen.yaml → esgen.lock.json, beside it.
func lockName(specFile string) string {
	base := filepath.Base(specFile)
	for _, ext := range []string{".yaml", ".yml"} {
		if b, ok := strings.CutSuffix(base, ext); ok {
			base = b
			break
		}
	}
	return filepath.Join(filepath.Dir(specFile), base+".lock.json")
}

// readLock reads the lock at file; a missing file gives nil (nothing published yet).
func readLock(file, display string) (*lockFile, error) {
	data, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", display, err)
	}
	var lf lockFile
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&lf); err != nil {
		return nil, fmt.Errorf("%s: not a lock file written by esgen generate (%v); restore it from version control", display, err)
	}
	for name, ev := range lf.Events {
		for v, fields := range ev.Versions {
			if n, err := strconv.Atoi(v); err != nil || n < 1 {
				return nil, fmt.Errorf("%s: event %s has a version %q: not a lock file written by esgen generate; restore it from version control", display, name, v)
			}
			for f, t := range fields {
				if _, err := ParseType(t); err != nil {
					return nil, fmt.Errorf("%s: event %s version %s field %s: %v; restore the file from version control", display, name, v, f, err)
				}
			}
		}
	}
	return &lf, nil
}

// newLock is the lock of spec: every version of every event it declares.
func newLock(spec *Spec) *lockFile {
	lf := &lockFile{Comment: lockComment, Events: map[string]lockEvent{}}
	for _, agg := range spec.Aggregates {
		for _, ev := range agg.Events {
			le := lockEvent{Aggregate: agg.Name, Versions: map[string]map[string]string{}}
			for _, v := range ev.Versions() {
				fields := map[string]string{}
				for _, f := range v.Fields {
					fields[f.Name] = f.Type.String()
				}
				le.Versions[strconv.Itoa(int(v.Version))] = fields
			}
			lf.Events[ev.Name] = le
		}
	}
	return lf
}

// encode renders the lock: indented JSON, keys sorted (versions by number), ending in
// a newline, so that the same spec always gives the same bytes.
func (lf *lockFile) encode() ([]byte, error) {
	var b bytes.Buffer
	b.WriteString("{\n  \"comment\": ")
	c, err := json.Marshal(lf.Comment)
	if err != nil {
		return nil, err
	}
	b.Write(c)
	b.WriteString(",\n  \"events\": {")
	names := sortedKeys(lf.Events)
	for i, name := range names {
		ev := lf.Events[name]
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, "\n    %q: {\n      \"aggregate\": %q,\n      \"versions\": {", name, ev.Aggregate)
		versions := sortedKeys(ev.Versions)
		sort.Slice(versions, func(i, j int) bool { return atoi(versions[i]) < atoi(versions[j]) })
		for j, v := range versions {
			if j > 0 {
				b.WriteString(",")
			}
			fields, err := json.Marshal(ev.Versions[v]) // keys sorted
			if err != nil {
				return nil, err
			}
			fields = bytes.ReplaceAll(bytes.ReplaceAll(fields, []byte(`":"`), []byte(`": "`)), []byte(`","`), []byte(`", "`))
			fmt.Fprintf(&b, "\n        %q: %s", v, fields)
		}
		b.WriteString("\n      }\n    }")
	}
	if len(names) > 0 {
		b.WriteString("\n  ")
	}
	b.WriteString("}\n}\n")
	return b.Bytes(), nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// checkLock compares spec with the published schemas in lf and returns every change
// that would break stored events, at the place in the spec it concerns.
func checkLock(spec *Spec, lf *lockFile, lockDisplay string) ErrorList {
	if lf == nil {
		return nil
	}
	var errs ErrorList
	add := func(n *yaml.Node, fieldPath, format string, args ...any) {
		e := &Error{File: spec.File, Path: fieldPath, Msg: fmt.Sprintf(format, args...)}
		if n != nil {
			e.Line, e.Col = n.Line, n.Column
		}
		errs = append(errs, e)
	}
	aggs := map[string]*Aggregate{}
	events := map[string]*Event{}
	for _, agg := range spec.Aggregates {
		aggs[agg.Name] = agg
		for _, ev := range agg.Events {
			events[ev.Name] = ev
		}
	}
	for _, name := range sortedKeys(lf.Events) {
		le := lf.Events[name]
		ev := events[name]
		if ev == nil {
			at, path := spec.aggregatesNode, "aggregates"
			if agg := aggs[le.Aggregate]; agg != nil {
				at, path = agg.eventsNode, "aggregates."+agg.Name+".events"
			}
			add(at, path, "event %s (aggregate %s) is published (%s) but no longer declared: its stored events would no longer decode. Keep it (no projection has to handle it), or pass --accept-breaking to remove it on purpose",
				name, le.Aggregate, lockDisplay)
			continue
		}
		efp := "aggregates." + ev.Aggregate.Name + ".events." + ev.Name
		if ev.Aggregate.Name != le.Aggregate {
			add(ev.keyNode, efp, "event %s is published as an event of aggregate %s (%s): its stored events carry that aggregate type, so it cannot move to %s; declare it under %s again, or pass --accept-breaking to move it on purpose",
				ev.Name, le.Aggregate, lockDisplay, ev.Aggregate.Name, le.Aggregate)
		}
		declared := map[int32]*EventVersion{}
		for _, v := range ev.Versions() {
			declared[v.Version] = v
		}
		versions := sortedKeys(le.Versions)
		sort.Slice(versions, func(i, j int) bool { return atoi(versions[i]) < atoi(versions[j]) })
		for _, vs := range versions {
			v := int32(atoi(vs))
			published := le.Versions[vs]
			dv := declared[v]
			if dv == nil {
				at, path := ev.versionsNode, efp+".versions"
				if at == nil {
					at, path = ev.keyNode, efp
					if ev.versionNode != nil {
						at, path = ev.versionNode, efp+".version"
					}
				}
				hint := fmt.Sprintf("versions: {%d: {fields: %s}}", v, flowFields(published))
				if v > ev.Version {
					add(at, path, "version %d of %s is published (%s), but the spec's current version is %d: stored version-%d events would not decode. A version never goes back; make the current version %d or later, keeping %s",
						v, ev.Name, lockDisplay, ev.Version, v, v, hint)
					continue
				}
				add(at, path, "version %d of %s is published (%s) but no longer declared: stored version-%d events could not be upcast to version %d. Keep it with its fields: %s",
					v, ev.Name, lockDisplay, v, ev.Version, hint)
				continue
			}
			checkVersionFields(spec, ev, dv, published, lockDisplay, efp, add)
		}
	}
	errs.sort()
	return errs
}

// checkVersionFields reports the breaking changes between the published fields of a
// version and the spec's.
func checkVersionFields(spec *Spec, ev *Event, dv *EventVersion, published map[string]string, lockDisplay, efp string,
	add func(*yaml.Node, string, string, ...any)) {
	current := dv.Version == ev.Version
	vfp := efp
	if !current {
		vfp = fmt.Sprintf("%s.versions.%d", efp, dv.Version)
	}
	fieldsAt := dv.fieldsNode
	if fieldsAt == nil {
		fieldsAt = dv.keyNode
	}
	advice := "an older version cannot change: its stored events have the published fields; restore them"
	if current {
		advice = fmt.Sprintf("to change the payload, add version %d: move version %d's fields under versions (versions: {%d: {fields: %s}}), set version: %d with the new fields, and write the upcaster %s in the upcasters package",
			dv.Version+1, dv.Version, dv.Version, flowFields(published), dv.Version+1, upcasterName(ev, dv.Version))
	}
	accept := "or pass --accept-breaking to change the published version on purpose"
	declared := map[string]*Field{}
	for _, f := range dv.Fields {
		declared[f.Name] = f
	}
	var removed []string
	for _, name := range sortedKeys(published) {
		if declared[name] == nil {
			removed = append(removed, name)
		}
	}
	var added []*Field
	for _, f := range dv.Fields {
		if _, ok := published[f.Name]; !ok {
			added = append(added, f)
		}
	}
	// A removed field and an added one of the same type read as a rename.
	renamed := map[string]string{} // added → removed
	for _, a := range added {
		for i, r := range removed {
			if r != "" && published[r] == a.Type.String() {
				renamed[a.Name] = r
				removed[i] = ""
				break
			}
		}
	}
	for _, a := range added {
		ffp := vfp + ".fields." + a.Name
		if old, ok := renamed[a.Name]; ok {
			add(a.keyNode, ffp, "field %s of %s version %d is published as %s (%s): stored events keep %q, so after a rename they would decode with an empty %s; %s; %s",
				a.Name, ev.Name, dv.Version, old, lockDisplay, old, a.GoName, advice, accept)
			continue
		}
		if !a.Type.Optional {
			add(a.keyNode, ffp, "field %s of %s version %d is new and required, but the version is published (%s) and its stored events lack it; make it optional (%q), or %s; %s",
				a.Name, ev.Name, dv.Version, lockDisplay, a.Type.String()+"?", lowerFirst(advice), accept)
		}
	}
	for _, r := range removed {
		if r == "" {
			continue
		}
		add(fieldsAt, vfp+".fields", "field %s (%s) of %s version %d is published (%s) but no longer declared: stored events have it; %s; %s",
			r, published[r], ev.Name, dv.Version, lockDisplay, advice, accept)
	}
	for _, f := range dv.Fields {
		if t, ok := published[f.Name]; ok && t != f.Type.String() {
			add(f.typeNode, vfp+".fields."+f.Name, "field %s of %s version %d is published with type %s (%s), not %s: stored events would not decode, or decode differently; %s; %s",
				f.Name, ev.Name, dv.Version, t, lockDisplay, f.Type.String(), advice, accept)
		}
	}
}

// flowFields writes fields as a YAML flow mapping: {amount: int64, note: "string?"}.
func flowFields(fields map[string]string) string {
	var parts []string
	for _, name := range sortedKeys(fields) {
		t := fields[name]
		if strings.HasPrefix(t, "[") || strings.HasSuffix(t, "?") {
			t = strconv.Quote(t)
		}
		parts = append(parts, name+": "+t)
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

func lowerFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToLower(s[:1]) + s[1:]
}
