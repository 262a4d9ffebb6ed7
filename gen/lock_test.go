package gen

import (
	"bytes"
	"errors"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

const orderSpec = `version: 1
aggregates:
  Order:
    events:
      OrderPlaced: %s
projections:
  orders:
    handles: [Order.OrderPlaced]
`

func orderModule(t *testing.T, placed string) string {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "go.mod"), "module example.com/shop\n\ngo 1.26\n")
	writeOrderSpec(t, dir, placed)
	return dir
}

func writeOrderSpec(t *testing.T, dir, placed string) {
	t.Helper()
	writeFile(t, filepath.Join(dir, "esgen.yaml"), strings.Replace(orderSpec, "%s", placed, 1))
}

// The first generate publishes every version; a rename in place is then refused with
// the line and the advice, and nothing is written, the lock included.
func TestLockRefusesARenameAndWritesNothing(t *testing.T) {
	dir := orderModule(t, "{fields: {customer_id: string, amount: int64}}")
	res := generate(t, dir)
	if actions(res)["esgen.lock.json"] != Created {
		t.Fatalf("the first generate did not create the lock: %v", res.Files)
	}
	lock := string(readFile(t, filepath.Join(dir, "esgen.lock.json")))
	if !strings.Contains(lock, `"1": {"amount": "int64", "customer_id": "string"}`) {
		t.Fatalf("the lock does not publish version 1:\n%s", lock)
	}
	before := snapshot(t, dir)

	writeOrderSpec(t, dir, "{fields: {buyer_id: string, amount: int64}}")
	_, err := Generate(Options{Dir: dir})
	var list ErrorList
	if !errors.As(err, &list) || len(list) != 1 {
		t.Fatalf("Generate = %v, want one spec error", err)
	}
	msg := list[0].Error()
	for _, want := range []string{"esgen.yaml:5:30: aggregates.Order.events.OrderPlaced.fields.buyer_id:", "published as customer_id",
		"add version 2", "versions: {1: {fields: {amount: int64, customer_id: string}}}", "--accept-breaking"} {
		if !strings.Contains(msg, want) {
			t.Errorf("the error does not say %q:\n%s", want, msg)
		}
	}
	after := snapshot(t, dir)
	for rel, b := range before {
		if rel != "esgen.yaml" && !bytes.Equal(after[rel], b) {
			t.Errorf("%s changed although generate refused the spec", rel)
		}
	}
	if len(after) != len(before) {
		t.Errorf("generate refused the spec but left %d files, want %d", len(after), len(before))
	}

	// The same change as a new version is accepted: the lock publishes both.
	writeOrderSpec(t, dir, "{version: 2, fields: {buyer_id: string, amount: int64}, versions: {1: {fields: {customer_id: string, amount: int64}}}}")
	res = generate(t, dir)
	if a := actions(res)["upcasters/upcasters.go"]; a != Created {
		t.Errorf("upcasters/upcasters.go: %s, want created", a)
	}
	lock = string(readFile(t, filepath.Join(dir, "esgen.lock.json")))
	if !strings.Contains(lock, `"1": {"amount": "int64", "customer_id": "string"},`) || !strings.Contains(lock, `"2": {"amount": "int64", "buyer_id": "string"}`) {
		t.Errorf("the lock does not publish both versions:\n%s", lock)
	}
}

// An optional field may join a published version; the lock then publishes it too, so
// that removing it later is refused.
func TestLockAllowsAnOptionalField(t *testing.T) {
	dir := orderModule(t, "{fields: {amount: int64}}")
	generate(t, dir)
	writeOrderSpec(t, dir, `{fields: {amount: int64, coupon: "string?"}}`)
	res := generate(t, dir)
	if actions(res)["esgen.lock.json"] != Updated {
		t.Errorf("esgen.lock.json: %s, want updated", actions(res)["esgen.lock.json"])
	}
	writeOrderSpec(t, dir, "{fields: {amount: int64}}")
	_, err := Generate(Options{Dir: dir})
	if err == nil || !strings.Contains(err.Error(), "field coupon (string?) of OrderPlaced version 1 is published") {
		t.Errorf("removing the published optional field: %v", err)
	}
}

// --accept-breaking writes anyway, reports each break, and publishes the new schema.
func TestAcceptBreaking(t *testing.T) {
	dir := orderModule(t, "{fields: {customer_id: string, amount: int64}}")
	generate(t, dir)
	writeOrderSpec(t, dir, "{fields: {buyer_id: string, amount: int32}}")
	res, err := Generate(Options{Dir: dir, AcceptBreaking: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Breaking) != 2 || !strings.Contains(res.Breaking[0], "esgen.yaml:5:30:") || !strings.Contains(res.Breaking[1], "published with type int64") {
		t.Errorf("Breaking = %q, want the rename and the type change", res.Breaking)
	}
	lock := string(readFile(t, filepath.Join(dir, "esgen.lock.json")))
	if !strings.Contains(lock, `"1": {"amount": "int32", "buyer_id": "string"}`) {
		t.Errorf("the lock does not publish the accepted schema:\n%s", lock)
	}
	// Once accepted, the next run has nothing to refuse.
	if res = generate(t, dir); len(res.Breaking) != 0 {
		t.Errorf("the accepted change is reported again: %q", res.Breaking)
	}
}

func TestCorruptLockIsAnError(t *testing.T) {
	dir := orderModule(t, "{fields: {amount: int64}}")
	writeFile(t, filepath.Join(dir, "esgen.lock.json"), `{"events": {"OrderPlaced": {"aggregate": "Order", "versions": {"1": {"amount": "int65"}}}}}`)
	_, err := Generate(Options{Dir: dir})
	if err == nil || !strings.Contains(err.Error(), "esgen.lock.json: event OrderPlaced version 1 field amount") || !strings.Contains(err.Error(), "restore") {
		t.Errorf("Generate with a corrupt lock: %v", err)
	}
	if got := listFiles(t, dir); len(got) != 3 {
		t.Errorf("files after the refusal: %v", got)
	}
}

// A new version of an event appends the upcaster stub to the user's file, with the
// imports it needs, and touches nothing else of it.
func TestNewVersionAppendsAnUpcasterStub(t *testing.T) {
	dir := orderModule(t, "{version: 2, fields: {buyer_id: string}, versions: {1: {fields: {customer_id: string}}}}")
	generate(t, dir)
	file := filepath.Join(dir, "upcasters", "upcasters.go")
	src := string(readFile(t, file))
	if !strings.Contains(src, "func OrderPlacedV1ToV2(e versions.OrderPlacedV1) (versions.OrderPlacedV2, error) {") ||
		!strings.Contains(src, "// BuyerID string: new in version 2") || !strings.Contains(src, "// e.CustomerID (string): not in version 2") {
		t.Fatalf("the upcaster stub:\n%s", src)
	}
	// The user writes it: the errors import goes.
	filled := strings.Replace(strings.Replace(src, "\t\t// BuyerID string: new in version 2\n", "\t\tBuyerID: e.CustomerID,\n", 1),
		`}, errors.New("upcasters: OrderPlacedV1ToV2 not implemented")`, "}, nil", 1)
	filled = strings.Replace(filled, "\t\"errors\"\n\n", "", 1)
	writeFile(t, file, filled)

	writeOrderSpec(t, dir, `{version: 3, fields: {buyer_id: string, total: int64}, versions: {1: {fields: {customer_id: string}}, 2: {fields: {buyer_id: string}}}}`)
	res := generate(t, dir)
	if f := actions(res)["upcasters/upcasters.go"]; f != Appended {
		t.Fatalf("upcasters.go: %s, want appended", f)
	}
	got := string(readFile(t, file))
	withImport := strings.Replace(filled, "import (\n", "import (\n\t\"errors\"\n\n", 1)
	if !strings.HasPrefix(got, withImport) {
		t.Fatalf("the user's bytes changed beyond the errors import:\n%s", got)
	}
	added := strings.TrimPrefix(got, withImport)
	if !strings.Contains(added, "func OrderPlacedV2ToV3(e versions.OrderPlacedV2) (versions.OrderPlacedV3, error) {") || !strings.Contains(added, "BuyerID: e.BuyerID,") || strings.Contains(added, "V1ToV2") {
		t.Errorf("appended:\n%s", added)
	}
}

// A handler package from before rebuilds gets a Reset stub appended, once.
func TestResetStubIsAppendedToAnOldPackage(t *testing.T) {
	dir := bankModule(t, "Account.AccountOpened")
	generate(t, dir)
	stubs := filepath.Join(dir, "projections", "balances", "handlers.go")
	src := string(readFile(t, stubs))
	i, j := strings.Index(src, "// Reset clears"), strings.Index(src, "// OnAccountOpened")
	// The handler writes through tx: the file does not import projection, and the Reset
	// stub needs no import it lacks.
	old := src[:i] + src[j:]
	old = strings.Replace(old, "\t\"github.com/esgen-dev/esgen/projection\"\n", "", 1)
	old = regexp.MustCompile(`(?m)^\t(//.*|q := .*|_ = q.*)\n`).ReplaceAllString(old, "")
	writeFile(t, stubs, old)
	res := generate(t, dir)
	if f := res.Files; actions(res)["projections/balances/handlers.go"] != Appended {
		t.Fatalf("handlers.go not appended: %v", f)
	}
	got := string(readFile(t, stubs))
	if !strings.HasPrefix(got, old) || !strings.Contains(got[len(old):], "func (h *Handlers) Reset(ctx context.Context, tx pgx.Tx) error {") {
		t.Errorf("Reset was not appended as a stub:\n%s", got[len(old):])
	}
	if strings.Contains(got, "esgen/projection\"") {
		t.Errorf("the Reset stub brought an import it does not use:\n%s", got)
	}
	if res := generate(t, dir); actions(res)["projections/balances/handlers.go"] != Kept {
		t.Error("Reset appended twice")
	}
}
