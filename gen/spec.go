package gen

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// SpecVersion is the only esgen.yaml version this generator reads.
const SpecVersion = 1

// Spec is a validated esgen.yaml. Aggregates, events, fields and projections keep the
// order of the file, so the generated code follows it.
type Spec struct {
	File        string // as given to Load or Parse; used in error messages
	Version     int
	Aggregates  []*Aggregate
	Projections []*Projection
	Output      Output
	Sqlc        bool // write a starter sqlc.yaml for the module's read-model queries

	aggregatesNode *yaml.Node // where errors about a removed aggregate point
}

// versioned reports whether an event of the spec keeps older versions: then the
// events package decodes them through the versions package and the user's upcasters.
func (s *Spec) versioned() bool {
	for _, agg := range s.Aggregates {
		for _, ev := range agg.Events {
			if len(ev.Older) > 0 {
				return true
			}
		}
	}
	return false
}

// Aggregate is a kind of entity whose state is its events. Its name is the aggregate
// type stored with every event.
type Aggregate struct {
	Name   string
	Events []*Event

	eventsNode *yaml.Node // where errors about a removed event point
}

// Event is one event of an aggregate. Its name is the event type stored in the event
// store, so it is unique across all aggregates.
type Event struct {
	Name      string
	Aggregate *Aggregate
	Version   int32 // the payload schema version, 1 unless given
	Fields    []*Field
	// Older are the earlier versions the spec keeps (versions:), oldest first, each
	// one below the next without a gap: stored events of these versions are decoded
	// and upcast, one version at a time, to Version.
	Older []*EventVersion

	keyNode, versionNode, fieldsNode, versionsNode *yaml.Node
}

// EventVersion is an earlier version of an event's payload, kept so that events
// stored with it still decode.
type EventVersion struct {
	Version int32
	Fields  []*Field

	keyNode, fieldsNode *yaml.Node
}

// Versions returns every version of e the code decodes, oldest first, the current one
// last (with e's fields).
func (e *Event) Versions() []*EventVersion {
	cur := &EventVersion{Version: e.Version, Fields: e.Fields, keyNode: e.versionNode, fieldsNode: e.fieldsNode}
	if cur.keyNode == nil {
		cur.keyNode = e.keyNode
	}
	return append(append([]*EventVersion{}, e.Older...), cur)
}

// Lowest is the oldest version of e the code decodes.
func (e *Event) Lowest() int32 {
	if len(e.Older) > 0 {
		return e.Older[0].Version
	}
	return e.Version
}

// Field is one payload field.
type Field struct {
	Name   string // the JSON name, as written in the spec
	GoName string // the exported Go name, e.g. OwnerID for owner_id
	Type   *Type

	keyNode, typeNode *yaml.Node
}

// Projection is a read model fed by some events.
type Projection struct {
	Name        string // also the Go package name of its generated code and stubs
	Handles     []*Event
	Partitioned bool // true unless the spec says partitioned: false
}

// Output names the folders generate writes to, relative to the spec's folder.
type Output struct {
	Migrations  string // esgen's SQL migrations; default sql/migrations
	Events      string // typed events; default generated/events
	Projections string // handler interfaces and dispatchers; default generated/projections
	Cmd         string // projector mains, <Cmd>/<name>-projector; default cmd
	Handlers    string // user-owned handler stubs; default projections
	Upcasters   string // user-owned upcasters of older event versions; default upcasters
}

// DefaultOutput is the folder layout used for keys the spec leaves out.
var DefaultOutput = Output{
	Migrations:  "sql/migrations",
	Events:      "generated/events",
	Projections: "generated/projections",
	Cmd:         "cmd",
	Handlers:    "projections",
	Upcasters:   "upcasters",
}

// Load reads and validates the spec at file. A spec with mistakes gives an ErrorList
// naming each one; a file that cannot be read gives the read error.
func Load(file string) (*Spec, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read spec: %w", err)
	}
	return Parse(file, data)
}

// Parse validates the spec in data; name is used in error messages.
func Parse(name string, data []byte) (*Spec, error) {
	p := &loader{file: name}
	spec := p.parse(data)
	if len(p.errs) > 0 {
		p.errs.sort()
		return nil, p.errs
	}
	return spec, nil
}

type loader struct {
	file string
	errs ErrorList
}

func (p *loader) errorf(n *yaml.Node, fieldPath, format string, args ...any) {
	e := &Error{File: p.file, Path: fieldPath, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		e.Line, e.Col = n.Line, n.Column
	}
	p.errs = append(p.errs, e)
}

// entry is one key and its value in a YAML mapping.
type entry struct {
	key, val *yaml.Node
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

func (p *loader) parse(data []byte) *Spec {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		p.syntaxError(err)
		return nil
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err != nil && !errors.Is(err, io.EOF) {
		p.syntaxError(err)
	} else if err == nil {
		p.errs = append(p.errs, &Error{File: p.file, Line: extra.Line, Col: extra.Column, Msg: "a second YAML document: the spec is exactly one document"})
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		p.errs = append(p.errs, &Error{File: p.file, Line: 1, Col: 1, Msg: "empty spec: expected keys version, aggregates and projections"})
		return nil
	}
	root := doc.Content[0]
	spec := &Spec{File: p.file, Output: DefaultOutput}
	top := p.mapping(root, "", []string{"version", "aggregates", "projections", "output", "sqlc"}, []string{"version", "aggregates"})
	if top == nil {
		return nil
	}
	if n := top["version"]; n != nil {
		if v, ok := p.integer(n, "version"); ok {
			if v != SpecVersion {
				p.errorf(n, "version", "unsupported version %d (supported: %d)", v, SpecVersion)
			}
			spec.Version = int(v)
		}
	}
	if n := top["sqlc"]; n != nil {
		spec.Sqlc, _ = p.boolean(n, "sqlc")
	}
	if n := top["output"]; n != nil {
		p.output(n, &spec.Output)
	}
	events := map[string]*Event{}
	eventNodes := map[string]*yaml.Node{}
	if n := top["aggregates"]; n != nil {
		spec.aggregatesNode = n
		entries := p.entries(n, "aggregates", "aggregate")
		if entries != nil && len(entries) == 0 {
			p.errorf(n, "aggregates", "declare at least one aggregate")
		}
		for _, e := range entries {
			agg := p.aggregate(e, events, eventNodes)
			if agg != nil {
				spec.Aggregates = append(spec.Aggregates, agg)
			}
		}
	}
	if n := top["projections"]; n != nil {
		for _, e := range p.entries(n, "projections", "projection") {
			if pr := p.projection(e, events); pr != nil {
				spec.Projections = append(spec.Projections, pr)
			}
		}
	}
	p.checkGoNames(spec, eventNodes)
	return spec
}

// syntaxError turns a YAML syntax error into Errors with the file name in front.
func (p *loader) syntaxError(err error) {
	var te *yaml.TypeError
	msgs := []string{err.Error()}
	if errors.As(err, &te) {
		msgs = te.Errors
	}
	for _, m := range msgs {
		e := &Error{File: p.file, Msg: "invalid YAML: " + strings.TrimPrefix(m, "yaml: ")}
		if sm := yamlLine.FindStringSubmatch(m); sm != nil {
			e.Line, _ = strconv.Atoi(sm[1])
			e.Msg = "invalid YAML: " + sm[2]
			// yaml.v3 reports parser errors (unlike scanner errors) with the 0-based
			// line of the enclosing construct.
			if strings.HasPrefix(sm[2], "did not find expected") {
				e.Line++
				e.Msg = "invalid YAML in the block starting on this line: " + sm[2]
			}
		}
		p.errs = append(p.errs, e)
	}
}

func resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

func join(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}

// entries returns the key/value pairs of a mapping of names (aggregates, events, ...),
// reporting duplicate keys; it returns nil when n is not a mapping.
func (p *loader) entries(n *yaml.Node, fieldPath, what string) []entry {
	n = resolve(n)
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return []entry{}
	}
	if n.Kind != yaml.MappingNode {
		p.errorf(n, fieldPath, "expected a mapping of %s names, got %s", what, kindName(n))
		return nil
	}
	seen := map[string]*yaml.Node{}
	out := []entry{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), resolve(n.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			p.errorf(k, fieldPath, "expected a %s name, got %s", what, kindName(k))
			continue
		}
		if prev := seen[k.Value]; prev != nil {
			p.errorf(k, join(fieldPath, k.Value), "duplicate %s %q (first declared at line %d)", what, k.Value, prev.Line)
			continue
		}
		seen[k.Value] = k
		out = append(out, entry{k, v})
	}
	return out
}

// mapping checks that n is a mapping with only allowed keys, none twice and every
// required one present, and returns its values by key (nil when n is not a mapping).
func (p *loader) mapping(n *yaml.Node, fieldPath string, allowed, required []string) map[string]*yaml.Node {
	n = resolve(n)
	if n.Kind != yaml.MappingNode {
		if n.Kind == yaml.ScalarNode && n.Tag == "!!null" && len(required) == 0 {
			return map[string]*yaml.Node{}
		}
		p.errorf(n, fieldPath, "expected a mapping with keys %s, got %s", strings.Join(allowed, ", "), kindName(n))
		return nil
	}
	out := map[string]*yaml.Node{}
	keyNodes := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), resolve(n.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			p.errorf(k, fieldPath, "expected a key, got %s", kindName(k))
			continue
		}
		kp := join(fieldPath, k.Value)
		if prev := keyNodes[k.Value]; prev != nil {
			p.errorf(k, kp, "duplicate key %q (first at line %d)", k.Value, prev.Line)
			continue
		}
		keyNodes[k.Value] = k
		known := false
		for _, a := range allowed {
			known = known || a == k.Value
		}
		if !known {
			p.errorf(k, kp, "unknown key %q%s (allowed: %s)", k.Value, didYouMean(k.Value, allowed), strings.Join(allowed, ", "))
			continue
		}
		out[k.Value] = v
	}
	for _, r := range required {
		if out[r] == nil && keyNodes[r] == nil {
			p.errorf(n, fieldPath, "missing required key %q", r)
		}
	}
	return out
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "nothing"
		}
		return fmt.Sprintf("%q", n.Value)
	}
	return "an unexpected node"
}

func (p *loader) integer(n *yaml.Node, fieldPath string) (int64, bool) {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!int" {
		if v, err := strconv.ParseInt(n.Value, 0, 64); err == nil {
			return v, true
		}
	}
	p.errorf(n, fieldPath, "expected an integer, got %s", kindName(n))
	return 0, false
}

func (p *loader) boolean(n *yaml.Node, fieldPath string) (bool, bool) {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!bool" {
		var b bool
		if err := n.Decode(&b); err == nil {
			return b, true
		}
	}
	p.errorf(n, fieldPath, "expected true or false, got %s", kindName(n))
	return false, false
}

func (p *loader) str(n *yaml.Node, fieldPath, want string) (string, bool) {
	if n.Kind == yaml.ScalarNode && n.Tag != "!!null" {
		return n.Value, true
	}
	p.errorf(n, fieldPath, "expected %s, got %s", want, kindName(n))
	return "", false
}

func (p *loader) output(n *yaml.Node, out *Output) {
	m := p.mapping(n, "output", []string{"migrations", "events", "projections", "cmd", "handlers", "upcasters"}, nil)
	targets := []struct {
		key string
		dst *string
	}{
		{"migrations", &out.Migrations}, {"events", &out.Events}, {"projections", &out.Projections},
		{"cmd", &out.Cmd}, {"handlers", &out.Handlers}, {"upcasters", &out.Upcasters},
	}
	used := map[string]string{}
	for _, t := range targets {
		v := m[t.key]
		if v == nil {
			used[*t.dst] = t.key
			continue
		}
		fp := "output." + t.key
		s, ok := p.str(v, fp, "a folder path")
		if !ok {
			continue
		}
		if s == "" || path.IsAbs(s) || strings.Contains(s, `\`) || path.Clean(s) != s || s == ".." || strings.HasPrefix(s, "../") {
			p.errorf(v, fp, "folder %q must be a clean relative path inside the module, such as %q", s, *t.dst)
			continue
		}
		if other, dup := used[s]; dup {
			p.errorf(v, fp, "folder %q is also used for output.%s", s, other)
			continue
		}
		used[s] = t.key
		*t.dst = s
	}
}

func (p *loader) aggregate(e entry, events map[string]*Event, eventNodes map[string]*yaml.Node) *Aggregate {
	name := e.key.Value
	fp := "aggregates." + name
	if !exportedName.MatchString(name) {
		p.errorf(e.key, fp, "invalid aggregate name %q: must be an exported Go identifier (an upper-case letter, then letters and digits)", name)
	}
	m := p.mapping(e.val, fp, []string{"events"}, []string{"events"})
	if m == nil || m["events"] == nil {
		return nil
	}
	agg := &Aggregate{Name: name, eventsNode: m["events"]}
	entries := p.entries(m["events"], fp+".events", "event")
	if entries != nil && len(entries) == 0 {
		p.errorf(m["events"], fp+".events", "declare at least one event")
	}
	for _, ev := range entries {
		evName := ev.key.Value
		efp := fp + ".events." + evName
		if !exportedName.MatchString(evName) {
			p.errorf(ev.key, efp, "invalid event name %q: must be an exported Go identifier (an upper-case letter, then letters and digits)", evName)
		}
		event := p.event(ev, efp)
		if event == nil {
			continue
		}
		event.Aggregate = agg
		if prev := events[evName]; prev != nil {
			p.errorf(ev.key, efp, "event %q is already declared by aggregate %s at line %d (the event name is the stored event type, so it must be unique across aggregates)", evName, prev.Aggregate.Name, eventNodes[evName].Line)
			continue
		}
		events[evName] = event
		eventNodes[evName] = ev.key
		agg.Events = append(agg.Events, event)
	}
	return agg
}

func (p *loader) event(e entry, fp string) *Event {
	ev := &Event{Name: e.key.Value, Version: 1, keyNode: e.key}
	m := p.mapping(e.val, fp, []string{"version", "fields", "versions"}, nil)
	if m == nil {
		return nil
	}
	if n := m["version"]; n != nil {
		ev.versionNode = n
		if v, ok := p.version(n, fp+".version"); ok {
			ev.Version = v
		}
	}
	if n := m["fields"]; n != nil {
		ev.fieldsNode = n
		ev.Fields = p.fields(n, fp+".fields")
	}
	if n := m["versions"]; n != nil {
		ev.versionsNode = n
		p.olderVersions(ev, n, fp)
	}
	return ev
}

// version reads a version number: 1 to MaxInt32.
func (p *loader) version(n *yaml.Node, fieldPath string) (int32, bool) {
	v, ok := p.integer(n, fieldPath)
	if !ok {
		return 0, false
	}
	if v < 1 || v > math.MaxInt32 {
		p.errorf(n, fieldPath, "version must be between 1 and %d, got %d", math.MaxInt32, v)
		return int32(min(max(v, 1), math.MaxInt32)), false
	}
	return int32(v), true
}

// fields reads a mapping of payload fields.
func (p *loader) fields(n *yaml.Node, fp string) []*Field {
	var out []*Field
	goNames := map[string]string{}
	for _, f := range p.entries(n, fp, "field") {
		ffp := fp + "." + f.key.Value
		if !fieldName.MatchString(f.key.Value) {
			p.errorf(f.key, ffp, "invalid field name %q: use letters, digits and underscores, starting with a letter", f.key.Value)
			continue
		}
		field := &Field{Name: f.key.Value, GoName: goFieldName(f.key.Value), keyNode: f.key, typeNode: f.val}
		switch field.GoName {
		case "EventType", "EventVersion":
			p.errorf(f.key, ffp, "field %q would become the Go field %s, which is the name of a generated method", field.Name, field.GoName)
			continue
		}
		if other, dup := goNames[field.GoName]; dup {
			p.errorf(f.key, ffp, "field %q and field %q both become the Go field %s", other, field.Name, field.GoName)
			continue
		}
		goNames[field.GoName] = field.Name
		s, ok := p.str(f.val, ffp, `a type such as "int64" or "[]string"`)
		if !ok {
			continue
		}
		t, err := ParseType(s)
		if err != nil {
			p.errorf(f.val, ffp, "%v", err)
			continue
		}
		field.Type = t
		out = append(out, field)
	}
	return out
}

// olderVersions reads versions: the earlier versions of ev, by number, each with its
// fields. They must be below the current version and, with it, run without a gap
// (every stored version upcasts to the next one), and no version may have the same
// fields as the one before it.
func (p *loader) olderVersions(ev *Event, n *yaml.Node, fp string) {
	vfp := fp + ".versions"
	entries := p.entries(n, vfp, "version")
	if entries != nil && len(entries) == 0 {
		p.errorf(n, vfp, "no older versions: list at least one (e.g. versions: {1: {fields: {...}}}) or leave the key out")
		return
	}
	byNumber := map[int32]*EventVersion{}
	for _, e := range entries {
		efp := vfp + "." + e.key.Value
		v, err := strconv.ParseInt(e.key.Value, 10, 32)
		if err != nil || v < 1 {
			p.errorf(e.key, efp, "%q is not a version: the keys of versions are the numbers of older versions (1, 2, …)", e.key.Value)
			continue
		}
		if int32(v) >= ev.Version {
			p.errorf(e.key, efp, "version %d is not older than the current version %d: versions lists earlier versions only (the current one is given by version and fields)", v, ev.Version)
			continue
		}
		old := &EventVersion{Version: int32(v), keyNode: e.key}
		m := p.mapping(e.val, efp, []string{"fields"}, nil)
		if m == nil {
			continue
		}
		if fn := m["fields"]; fn != nil {
			old.fieldsNode = fn
			old.Fields = p.fields(fn, efp+".fields")
		}
		byNumber[old.Version] = old
		ev.Older = append(ev.Older, old)
	}
	if len(ev.Older) == 0 {
		return
	}
	slices.SortFunc(ev.Older, func(a, b *EventVersion) int { return cmp.Compare(a.Version, b.Version) })
	// Every version from the oldest kept one up to the current one must be there:
	// stored events are upcast one version at a time.
	newest := ev.Older[len(ev.Older)-1]
	for i := 1; i < len(ev.Older); i++ {
		prev, next := ev.Older[i-1], ev.Older[i]
		if next.Version != prev.Version+1 {
			p.errorf(next.keyNode, vfp+"."+strconv.Itoa(int(next.Version)),
				"the upcaster chain has a hole: versions %d and %d are declared but not %s; stored events are upcast one version at a time (%s), so declare %s with %s fields",
				prev.Version, next.Version, numbers(prev.Version+1, next.Version-1, " and "), chain(prev.Version, next.Version), plural(next.Version-prev.Version-1, "version", "versions")+" "+numbers(prev.Version+1, next.Version-1, " and "), plural(next.Version-prev.Version-1, "its", "their"))
		}
	}
	if ev.Version != newest.Version+1 {
		skipped := plural(ev.Version-newest.Version-1, "version", "versions") + " " + numbers(newest.Version+1, ev.Version-1, " and ")
		at := ev.versionNode
		if at == nil {
			at = ev.keyNode
		}
		p.errorf(at, fp+".version",
			"version %d skips %s: the version after %d is %d; make this version %d, or keep %s under versions with %s fields",
			ev.Version, skipped, newest.Version, newest.Version+1, newest.Version+1, skipped, plural(ev.Version-newest.Version-1, "its", "their"))
	}
	versions := ev.Versions()
	for i := 1; i < len(versions); i++ {
		prev, next := versions[i-1], versions[i]
		if next.Version == prev.Version+1 && sameFields(prev.Fields, next.Fields) {
			at, path := next.keyNode, vfp+"."+strconv.Itoa(int(next.Version))
			if i == len(versions)-1 {
				path = fp + ".version"
			}
			p.errorf(at, path, "version %d has the same fields as version %d: a new version is for a payload that changed (adding an optional field needs none); change its fields or drop the version", next.Version, prev.Version)
		}
	}
}

// sameFields reports whether a and b have the same fields with the same types, in
// any order.
func sameFields(a, b []*Field) bool {
	if len(a) != len(b) {
		return false
	}
	types := map[string]string{}
	for _, f := range a {
		types[f.Name] = f.Type.String()
	}
	for _, f := range b {
		if t, ok := types[f.Name]; !ok || t != f.Type.String() {
			return false
		}
	}
	return true
}

// numbers lists the versions from..to: "2", "2 and 3", "2 to 5".
func numbers(from, to int32, and string) string {
	switch {
	case from == to:
		return strconv.Itoa(int(from))
	case to == from+1:
		return fmt.Sprintf("%d%s%d", from, and, to)
	}
	return fmt.Sprintf("%d to %d", from, to)
}

// chain shows an upcaster chain: "1 → 2 → 3".
func chain(from, to int32) string {
	var parts []string
	for v := from; v <= to; v++ {
		parts = append(parts, strconv.Itoa(int(v)))
	}
	return strings.Join(parts, " → ")
}

func plural(n int32, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func (p *loader) projection(e entry, events map[string]*Event) *Projection {
	name := e.key.Value
	fp := "projections." + name
	if !projectionName.MatchString(name) {
		p.errorf(e.key, fp, "invalid projection name %q: use lower-case letters, digits and underscores, starting with a letter (it is the Go package name)", name)
	} else if why := reservedPackage(name); why != "" {
		p.errorf(e.key, fp, "invalid projection name %q: %s (it is the Go package name)", name, why)
	}
	m := p.mapping(e.val, fp, []string{"handles", "partitioned"}, []string{"handles"})
	if m == nil {
		return nil
	}
	pr := &Projection{Name: name, Partitioned: true}
	if n := m["partitioned"]; n != nil {
		if b, ok := p.boolean(n, fp+".partitioned"); ok {
			pr.Partitioned = b
		}
	}
	n := m["handles"]
	if n == nil {
		return pr
	}
	hfp := fp + ".handles"
	if n.Kind != yaml.SequenceNode {
		p.errorf(n, hfp, "expected a list of Aggregate.Event, got %s", kindName(n))
		return pr
	}
	if len(n.Content) == 0 {
		p.errorf(n, hfp, "handles no events: list at least one Aggregate.Event")
	}
	seen := map[string]int{}
	for i, item := range n.Content {
		item = resolve(item)
		ifp := fmt.Sprintf("%s[%d]", hfp, i)
		s, ok := p.str(item, ifp, "Aggregate.Event")
		if !ok {
			continue
		}
		aggName, evName, ok := strings.Cut(s, ".")
		if !ok || aggName == "" || evName == "" || strings.Contains(evName, ".") {
			p.errorf(item, ifp, "%q is not of the form Aggregate.Event", s)
			continue
		}
		ev := events[evName]
		switch {
		case ev == nil:
			var names []string
			for name, e := range events {
				if e.Aggregate.Name == aggName {
					names = append(names, aggName+"."+name)
				}
			}
			p.errorf(item, ifp, "unknown event %q: no aggregate declares an event %s%s", s, evName, didYouMean(s, names))
			continue
		case ev.Aggregate.Name != aggName:
			p.errorf(item, ifp, "unknown event %q: %s is an event of aggregate %s", s, evName, ev.Aggregate.Name)
			continue
		}
		if prev, dup := seen[evName]; dup {
			p.errorf(item, ifp, "%s is already listed at %s[%d]", s, hfp, prev)
			continue
		}
		seen[evName] = i
		pr.Handles = append(pr.Handles, ev)
	}
	return pr
}

// checkGoNames reports aggregate and event names whose generated identifiers would
// collide: in the events package (e.g. an event named AccountEvent next to aggregate
// Account, whose interface is AccountEvent), and in the versions package and the
// upcasters of versioned events (OrderPlacedV1 of OrderPlaced and an event named
// OrderPlacedV1 with versions of its own).
func (p *loader) checkGoNames(spec *Spec, eventNodes map[string]*yaml.Node) {
	owners := map[string]string{
		"Event":  "the generated Event interface",
		"Encode": "the generated Encode function",
		"Decode": "the generated Decode function",
	}
	for _, agg := range spec.Aggregates {
		for _, id := range []string{agg.Name + "Event", "Append" + agg.Name, "Read" + agg.Name, agg.Name + "AggregateType"} {
			owners[id] = "a generated identifier of aggregate " + agg.Name
		}
	}
	versioned := map[string]string{} // identifiers of the versions and upcasters packages
	for _, agg := range spec.Aggregates {
		for _, ev := range agg.Events {
			ids := []string{ev.Name, ev.Name + "Type", ev.Name + "Version", "Decode" + ev.Name}
			for _, id := range ids {
				if owner, taken := owners[id]; taken {
					n := eventNodes[ev.Name]
					p.errorf(n, "aggregates."+agg.Name+".events."+ev.Name, "event name %q gives the Go identifier %s, which is already %s", ev.Name, id, owner)
					break
				}
			}
			for _, id := range ids {
				owners[id] = "a generated identifier of event " + ev.Name
			}
			if len(ev.Older) == 0 {
				continue
			}
			for _, v := range ev.Versions() {
				for _, id := range []string{versionType(ev, v.Version), upcasterName(ev, v.Version)} {
					if owner, taken := versioned[id]; taken && owner != ev.Name {
						p.errorf(eventNodes[ev.Name], "aggregates."+agg.Name+".events."+ev.Name, "event name %q gives the Go identifier %s (of its version %d), which event %s gives too", ev.Name, id, v.Version, owner)
					}
					versioned[id] = ev.Name
				}
			}
		}
	}
}

// versionType is the struct of version v of ev in the versions package: OrderPlacedV1.
func versionType(ev *Event, v int32) string {
	return fmt.Sprintf("%sV%d", ev.Name, v)
}

// upcasterName is the user's function that upcasts version v of ev to the next
// version: OrderPlacedV1ToV2.
func upcasterName(ev *Event, v int32) string {
	return fmt.Sprintf("%sV%dToV%d", ev.Name, v, v+1)
}

// didYouMean suggests the candidate closest to got, when one is close enough to be
// a typo: ` (did you mean "fields"?)`.
func didYouMean(got string, candidates []string) string {
	best, bestDist := "", 3
	for _, c := range candidates {
		if d := editDistance(strings.ToLower(got), strings.ToLower(c)); d < bestDist || (d == bestDist && best != "" && c < best) {
			best, bestDist = c, d
		}
	}
	if best == "" || best == got {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}
