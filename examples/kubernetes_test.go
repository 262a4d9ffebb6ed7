package examples_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/esgen-dev/esgen/projection"
)

// manifest is one document of a Kubernetes YAML file, as far as the tests read it.
type manifest struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name   string            `yaml:"name"`
		Labels map[string]string `yaml:"labels"`
	} `yaml:"metadata"`
	Spec struct {
		Replicas *int `yaml:"replicas"`
		Selector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		Template podTemplate `yaml:"template"`
	} `yaml:"spec"`
}

type podTemplate struct {
	Metadata struct {
		Labels map[string]string `yaml:"labels"`
	} `yaml:"metadata"`
	Spec struct {
		TerminationGracePeriodSeconds *int        `yaml:"terminationGracePeriodSeconds"`
		RestartPolicy                 string      `yaml:"restartPolicy"`
		Containers                    []container `yaml:"containers"`
	} `yaml:"spec"`
}

type container struct {
	Name    string   `yaml:"name"`
	Image   string   `yaml:"image"`
	Command []string `yaml:"command"`
	Env     []struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom *struct {
			SecretKeyRef *struct{ Name, Key string } `yaml:"secretKeyRef"`
			FieldRef     *struct {
				FieldPath string `yaml:"fieldPath"`
			} `yaml:"fieldRef"`
		} `yaml:"valueFrom"`
	} `yaml:"env"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	LivenessProbe  *probe `yaml:"livenessProbe"`
	ReadinessProbe *probe `yaml:"readinessProbe"`
}

type probe struct {
	HTTPGet *struct {
		Path string    `yaml:"path"`
		Port yaml.Node `yaml:"port"`
	} `yaml:"httpGet"`
}

// readManifests parses every document of a YAML file strictly (an unknown or
// misspelt field of the parts the test reads is not caught, but a syntax error is).
func readManifests(t *testing.T, path string) []manifest {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []manifest
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var m manifest
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if m.APIVersion == "" || m.Kind == "" || m.Metadata.Name == "" {
			t.Errorf("%s: a document without apiVersion, kind or metadata.name: %+v", path, m)
		}
		out = append(out, m)
	}
	return out
}

// env returns a container's environment: literal values, and "secret:NAME/KEY" or
// "field:PATH" for values taken from elsewhere.
func (c container) env() map[string]string {
	out := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
			out[e.Name] = "secret:" + e.ValueFrom.SecretKeyRef.Name + "/" + e.ValueFrom.SecretKeyRef.Key
		case e.ValueFrom != nil && e.ValueFrom.FieldRef != nil:
			out[e.Name] = "field:" + e.ValueFrom.FieldRef.FieldPath
		default:
			out[e.Name] = e.Value
		}
	}
	return out
}

// TestKubernetesManifests checks that examples/kubernetes's manifests parse and say
// what its README promises: identical replicas with PARTITION_KEY=auto, settings the
// projector knows, probes on the port it serves them on, a grace period above its
// shutdown timeout, and no secret in the manifests.
func TestKubernetesManifests(t *testing.T) {
	t.Parallel()
	dir := "kubernetes"
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in %s (%v)", dir, err)
	}
	byKind := map[string][]manifest{}
	for _, f := range files {
		for _, m := range readManifests(t, f) {
			byKind[m.Kind] = append(byKind[m.Kind], m)
		}
	}
	if len(byKind["Deployment"]) != 1 || len(byKind["Job"]) != 1 || len(byKind["PodDisruptionBudget"]) != 1 {
		t.Fatalf("want one Deployment, one Job and one PodDisruptionBudget, got %v", kinds(byKind))
	}

	dep := byKind["Deployment"][0]
	if dep.Spec.Replicas == nil || *dep.Spec.Replicas < 2 {
		t.Errorf("the Deployment should run several identical replicas, has replicas %v", dep.Spec.Replicas)
	}
	for k, v := range dep.Spec.Selector.MatchLabels {
		if dep.Spec.Template.Metadata.Labels[k] != v {
			t.Errorf("the Deployment's selector %s=%s does not match its pod template's labels %v", k, v, dep.Spec.Template.Metadata.Labels)
		}
	}
	if len(dep.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("want one container in the projector's pod, got %d", len(dep.Spec.Template.Spec.Containers))
	}
	c := dep.Spec.Template.Spec.Containers[0]
	env := c.env()
	if env["PARTITION_KEY"] != "auto" {
		t.Errorf("PARTITION_KEY = %q, want auto: identical replicas share the partitions", env["PARTITION_KEY"])
	}
	total, err := strconv.Atoi(env["TOTAL_PARTITIONS"])
	if err != nil || total < 1 || total > projection.MaxPartitions {
		t.Errorf("TOTAL_PARTITIONS = %q, want 1..%d", env["TOTAL_PARTITIONS"], projection.MaxPartitions)
	}
	ttl, err := time.ParseDuration(env["LEASE_TTL"])
	if err != nil || ttl <= 0 {
		t.Errorf("LEASE_TTL = %q, want a duration", env["LEASE_TTL"])
	}
	if !strings.HasPrefix(env["DATABASE_URL"], "secret:") {
		t.Errorf("DATABASE_URL must come from a Secret, not be written in the manifest (got %q)", env["DATABASE_URL"])
	}
	if env["WORKER_ID"] != "field:metadata.name" {
		t.Errorf("WORKER_ID = %q, want the pod's name (fieldRef metadata.name)", env["WORKER_ID"])
	}
	// The probes reach the projector's health endpoints on the port METRICS_ADDR
	// listens on.
	addr := env["METRICS_ADDR"]
	port := addr[strings.LastIndex(addr, ":")+1:]
	portNames := map[string]string{}
	for _, p := range c.Ports {
		portNames[p.Name] = strconv.Itoa(p.ContainerPort)
	}
	for _, pr := range []struct {
		name string
		p    *probe
		path string
	}{{"liveness", c.LivenessProbe, "/healthz"}, {"readiness", c.ReadinessProbe, "/readyz"}} {
		if pr.p == nil || pr.p.HTTPGet == nil {
			t.Errorf("no %s probe", pr.name)
			continue
		}
		if pr.p.HTTPGet.Path != pr.path {
			t.Errorf("%s probe on %s, want %s", pr.name, pr.p.HTTPGet.Path, pr.path)
		}
		got := pr.p.HTTPGet.Port.Value
		if named, ok := portNames[got]; ok {
			got = named
		}
		if got != port {
			t.Errorf("%s probe on port %s, but METRICS_ADDR=%q", pr.name, got, addr)
		}
	}
	// Kubernetes kills the pod after the grace period: it must leave the projector
	// its shutdown timeout to finish the batch in hand and release its leases.
	shutdown := projection.DefaultShutdownTimeout
	if v, ok := env["SHUTDOWN_TIMEOUT"]; ok {
		if shutdown, err = time.ParseDuration(v); err != nil {
			t.Errorf("SHUTDOWN_TIMEOUT = %q: %v", v, err)
		}
	}
	if g := dep.Spec.Template.Spec.TerminationGracePeriodSeconds; g == nil || time.Duration(*g)*time.Second <= shutdown {
		t.Errorf("terminationGracePeriodSeconds %v must exceed the shutdown timeout %s", g, shutdown)
	}

	// Every variable set is one the projector reads: its -h lists them.
	help := projectorHelp(t)
	for name := range env {
		if !strings.Contains(help, "env "+name) {
			t.Errorf("the Deployment sets %s, which the projector does not read (-h):\n%s", name, help)
		}
	}

	job := byKind["Job"][0]
	if rp := job.Spec.Template.Spec.RestartPolicy; rp != "OnFailure" && rp != "Never" {
		t.Errorf("the migration Job's restartPolicy is %q", rp)
	}
	for _, jc := range job.Spec.Template.Spec.Containers {
		if v := jc.env()["DATABASE_URL"]; !strings.HasPrefix(v, "secret:") {
			t.Errorf("the Job's DATABASE_URL must come from a Secret (got %q)", v)
		}
	}
	pdb := byKind["PodDisruptionBudget"][0]
	for k, v := range pdb.Spec.Selector.MatchLabels {
		if dep.Spec.Template.Metadata.Labels[k] != v {
			t.Errorf("the PodDisruptionBudget selects %s=%s, which the projector's pods do not have", k, v)
		}
	}
}

// TestKubernetesFilesNamed checks the README's commands and the Containerfile against
// the tree: every file a kubectl or podman command names exists, and every package
// the Containerfile builds and path it copies is there.
func TestKubernetesFilesNamed(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile(filepath.Join("kubernetes", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	named := 0
	for _, m := range regexp.MustCompile(`(?m)(?:kubectl [^\n]*?-f|podman build -f)\s+(\S+)`).FindAllStringSubmatch(string(readme), -1) {
		named++
		// kubectl runs in examples/kubernetes; podman build at the module's root.
		path := m[1]
		if !strings.HasPrefix(path, "examples/") {
			path = filepath.Join("kubernetes", path)
		} else {
			path = filepath.Join("..", path)
		}
		if _, err := os.Stat(path); err != nil {
			t.Errorf("README.md names %s: %v", m[1], err)
		}
	}
	if named < 3 {
		t.Errorf("README.md names %d manifests or Containerfiles in kubectl/podman commands; want the Containerfile, the Job and the Deployment", named)
	}
	containerfile, err := os.ReadFile(filepath.Join("kubernetes", "Containerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var built, copied int
	for _, m := range regexp.MustCompile(`go build [^\n]*?(\./\S+)`).FindAllStringSubmatch(string(containerfile), -1) {
		built++
		if _, err := os.Stat(filepath.Join("..", m[1])); err != nil {
			t.Errorf("the Containerfile builds %s: %v", m[1], err)
		}
	}
	for _, m := range regexp.MustCompile(`(?m)^COPY (examples/\S+)`).FindAllStringSubmatch(string(containerfile), -1) {
		copied++
		if _, err := os.Stat(filepath.Join("..", m[1])); err != nil {
			t.Errorf("the Containerfile copies %s: %v", m[1], err)
		}
	}
	if built < 2 || copied < 2 {
		t.Errorf("the Containerfile builds %d packages and copies %d example paths; want the projector and esgen, the spec and the migrations", built, copied)
	}
	images := regexp.MustCompile(`(?m)^FROM \S+ AS (\S+)`).FindAllStringSubmatch(string(containerfile), -1)
	var stages []string
	for _, m := range images {
		stages = append(stages, m[1])
	}
	for _, want := range []string{"projector", "migrate"} {
		if !slices.Contains(stages, want) {
			t.Errorf("the Containerfile has no stage %q (stages %v)", want, stages)
		}
	}
}

// projectorHelp builds the partitioned example's projector and returns its -h.
func projectorHelp(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "balances-projector")
	build := exec.Command("go", "build", "-o", bin, "./partitioned/cmd/balances-projector")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "-h").CombinedOutput()
	if err != nil {
		t.Fatalf("balances-projector -h: %v\n%s", err, out)
	}
	return string(out)
}

func kinds(m map[string][]manifest) string {
	var out []string
	for k, v := range m {
		out = append(out, fmt.Sprintf("%s×%d", k, len(v)))
	}
	slices.Sort(out)
	return strings.Join(out, ", ")
}

// leaseHolders returns the number of live leases of the balances projection per
// holder.
func leaseHolders(ctx context.Context, r *runner) (map[string]int, error) {
	rows, err := r.pool.Query(ctx, `SELECT l.owner, count(*) FROM esgen_partition_leases l
		JOIN esgen_projections p ON p.name = l.projection AND p.generation = l.generation
		WHERE l.projection = 'balances' AND l.owner IS NOT NULL AND l.expires_at > now() GROUP BY l.owner`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var owner string
		var n int
		if err := rows.Scan(&owner, &n); err != nil {
			return nil, err
		}
		out[owner] = n
	}
	return out, rows.Err()
}

// sharedBy holds when every event is handled and the 8 partitions are held by exactly
// the given replicas, each with a fair share.
func sharedBy(replicas ...string) check {
	return func(ctx context.Context, r *runner) error {
		if err := handledCaughtUp(ctx, r); err != nil {
			return err
		}
		holders, err := leaseHolders(ctx, r)
		if err != nil {
			return err
		}
		total := 0
		for _, n := range holders {
			total += n
		}
		lo, hi := 8/len(replicas), (8+len(replicas)-1)/len(replicas)
		for _, name := range replicas {
			if n := holders[name]; n < lo || n > hi {
				return fmt.Errorf("leases %v: want %v holding %d..%d of 8 each", holders, replicas, lo, hi)
			}
		}
		if len(holders) != len(replicas) || total != 8 {
			return fmt.Errorf("leases %v: want exactly %v holding the 8 partitions", holders, replicas)
		}
		return nil
	}
}

// holdersShown checks the output of esgen status: a row per partition 0/8…7/8, each
// held by one of the given replicas, each of which holds one.
func holdersShown(replicas ...string) check {
	return func(ctx context.Context, r *runner) error {
		out := r.lastOutput()
		seen := map[string]bool{}
		for k := range 8 {
			m := regexp.MustCompile(fmt.Sprintf(`(?m)^\s*%d/8\s.*?\s(replica-\d)\s`, k)).FindStringSubmatch(out)
			if m == nil {
				return fatalf("esgen status shows no holder for partition %d/8:\n%s", k, out)
			}
			if !slices.Contains(replicas, m[1]) {
				return fatalf("esgen status shows partition %d/8 held by %s, want one of %v:\n%s", k, m[1], replicas, out)
			}
			seen[m[1]] = true
		}
		if len(seen) != len(replicas) || !strings.Contains(out, "LEASE EXPIRES") {
			return fatalf("esgen status shows holders %v and no LEASE EXPIRES column, want %v:\n%s", seen, replicas, out)
		}
		return nil
	}
}

// TestKubernetes runs the README's walk-through without a cluster: three replicas with
// PARTITION_KEY=auto share the partitions, one is stopped and the others take its
// partitions over at once; every event is handled once, by the partition of its
// account.
func TestKubernetes(t *testing.T) {
	t.Parallel()
	r := runExample(t, "kubernetes", map[string]check{
		"shared-by-3":    sharedBy("replica-1", "replica-2", "replica-3"),
		"status-shows-3": holdersShown("replica-1", "replica-2", "replica-3"),
		"shared-by-2":    sharedBy("replica-1", "replica-3"),
		"status-shows-2": holdersShown("replica-1", "replica-3"),
		"handled-once": func(ctx context.Context, r *runner) error {
			if !regexp.MustCompile(`(?m)^\s*1300\s*\|\s*1300\s*$`).MatchString(r.lastOutput()) {
				return fatalf("psql does not show 1300 events and 1300 handled:\n%s", r.lastOutput())
			}
			return nil
		},
	})
	if t.Failed() {
		return
	}
	checkRouting(t, r)
	checkBalances(t, r, 100, 2*(5*10-5), 7+6) // the append program twice: opened once, then deposits and a withdrawal each time
	// The stopped replica released its partitions (it did not leave them to expire).
	if log := r.logOf("replica-2"); !strings.Contains(log, "partition released") {
		t.Errorf("replica-2 did not log that it released its partitions:\n%s", log)
	}
}
