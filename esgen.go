// Package esgen is event sourcing for Go on PostgreSQL, with generated, partitioned
// projections.
//
// A module describes its aggregates, their typed events and its projections in
// esgen.yaml; `esgen generate` turns that into SQL migrations, typed Go events and
// append helpers, and for each projection a handler interface, a dispatcher and a
// partition runner with a ready main. Many copies of the same projector binary split
// the work by partition and coordinate only through checkpoints in PostgreSQL.
//
// The packages:
//   - eventstore: append with optimistic concurrency and gap-safe reading of the stream.
//   - projection: the partitioned, exactly-once projection runtime.
//   - projector: the process main of a generated projector binary.
//   - migrate: esgen's schema, embedded, and a module's own migrations after it,
//     applied with version tracking.
//   - gen: esgen.yaml loading, validation and code generation.
//
// This package holds the files that the others embed: esgen's own migrations and the
// generator's templates. It holds no code, so that every package may import it.
package esgen

import "embed"

//go:generate go tool -modfile=tools/go.mod sqlc generate -f sqlc.yaml

// Migrations holds esgen's schema as numbered SQL files under sql/migrations. Each file
// can be applied as it is with psql -v ON_ERROR_STOP=1 -f, and more than once.
//
//go:embed sql/migrations/*.sql
var Migrations embed.FS

// Templates holds the text templates the generator renders.
//
//go:embed templates
var Templates embed.FS
