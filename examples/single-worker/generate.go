// Package singleworker is esgen's single-worker example: see README.md. `go generate`
// in this folder turns esgen.yaml into the migrations, typed events, the ledger
// projection and its projector command.
package singleworker

//go:generate go run github.com/esgen-dev/esgen/cmd/esgen generate
