// Package partitioned is esgen's partitioned example, with three walk-throughs in
// README.md: workers as processes, a worker pool, a change of the partition count.
// `go generate` in this folder turns esgen.yaml into the migrations, typed events, the
// balances projection and its projector command.
package partitioned

//go:generate go run github.com/esgen-dev/esgen/cmd/esgen generate
