// Package workerpool is esgen's worker-pool example: see README.md. `go generate` in
// this folder turns esgen.yaml into the migrations, typed events, the balances
// projection and its projector command.
package workerpool

//go:generate go run github.com/esgen-dev/esgen/cmd/esgen generate
