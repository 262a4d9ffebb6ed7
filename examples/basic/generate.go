// Package basic is esgen's basic example: see README.md. `go generate` in this folder
// turns esgen.yaml into the migrations, typed events, the balances projection and its
// projector command, then runs sqlc for the read model's queries (sql/queries).
package basic

// esgen generate runs `go tool sqlc generate` itself when esgen.yaml says sqlc: true,
// in a module that has sqlc as a tool. esgen keeps sqlc in tools/go.mod instead, so
// this example runs it with that file.
//go:generate go run github.com/esgen-dev/esgen/cmd/esgen generate --no-sqlc
//go:generate go tool -modfile=../../tools/go.mod sqlc generate
