// Package scaling is esgen's scaling example: see README.md. `go generate` in this
// folder turns esgen.yaml into the migrations, typed events, the balances projection
// and its projector command.
package scaling

//go:generate go run github.com/esgen-dev/esgen/cmd/esgen generate
