// Package dbsqlc is the code sqlc generates (go generate ./..., sqlc.yaml) for esgen's
// own statements in sql/queries against the schema in sql/migrations: typed pgx/v5
// queries for appends, layouts and checkpoints.
//
// Only eventstore and projection use it, and no type of it appears in their APIs. The
// statements that read events are not here: they are rendered in Go, with the
// conditions they share written once, by internal/readsql.
package dbsqlc
