package gen_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/esgen-dev/esgen/gen"
)

func ExampleParse() {
	_, err := gen.Parse("esgen.yaml", []byte(`version: 1
aggregates:
  Account:
    events:
      MoneyDeposited: {fields: {amount: int128}}
projections:
  balances:
    handles: [Account.MoneyDepositd]
`))
	fmt.Println(err)
	// Output:
	// esgen.yaml:5:41: aggregates.Account.events.MoneyDeposited.fields.amount: unsupported type "int128" (supported: string, bool, int32, int64, float64, time, uuid, bytes, json, []T, T?)
	// esgen.yaml:8:15: projections.balances.handles[0]: unknown event "Account.MoneyDepositd": no aggregate declares an event MoneyDepositd (did you mean "Account.MoneyDeposited"?)
}

func ExampleGenerate() {
	dir, err := os.MkdirTemp("", "esgen-example-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	spec := `version: 1
aggregates:
  Account:
    events:
      AccountOpened: {fields: {owner: string}}
projections:
  balances:
    handles: [Account.AccountOpened]
`
	if err := os.WriteFile(filepath.Join(dir, "esgen.yaml"), []byte(spec), 0o644); err != nil {
		panic(err)
	}
	for range 2 {
		res, err := gen.Generate(gen.Options{Dir: dir, ModulePath: "example.com/bank"})
		if err != nil {
			panic(err)
		}
		for _, f := range res.Files {
			if !strings.HasPrefix(f.Path, "sql/migrations/0") { // esgen's own migrations, one file each
				fmt.Println(f.Action, f.Path)
			}
		}
	}
	// Output:
	// created generated/events/events.go
	// created generated/projections/balances/projection.go
	// created sql/migrations/100_balances.sql
	// created projections/balances/handlers.go
	// created cmd/balances-projector/main.go
	// created esgen.lock.json
	// unchanged generated/events/events.go
	// unchanged generated/projections/balances/projection.go
	// kept projections/balances/handlers.go
	// unchanged cmd/balances-projector/main.go
	// unchanged esgen.lock.json
}
