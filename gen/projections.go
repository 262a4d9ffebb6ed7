package gen

import (
	"fmt"

	"github.com/dave/jennifer/jen"
)

// importPaths are the Go import paths of the packages generate writes, and the
// spec's file name for the headers.
type importPaths struct {
	source      string // the spec file, e.g. esgen.yaml
	events      string // the events package
	projections string // parent of the generated projection packages
	handlers    string // parent of the user's handler packages
	cmd         string // the folder of the projector mains, relative to the module
	versions    string // the versions package (every version of versioned events)
	upcasters   string // the user's upcasters package
}

func handlerParams(eventsPath string, ev *Event) []jen.Code {
	return []jen.Code{
		jen.Id("ctx").Qual("context", "Context"),
		jen.Id("tx").Qual(pgxPkg, "Tx"),
		jen.Id("env").Op("*").Qual(eventstorePkg, "Event"),
		jen.Id("e").Qual(eventsPath, ev.Name),
	}
}

// projectionFile emits generated/projections/<name>/projection.go: the Handler
// interface, the dispatcher that decodes each event for it, and New.
func projectionFile(pr *Projection, paths importPaths) *jen.File {
	f := jen.NewFile(pr.Name)
	f.HeaderComment(generatedHeader)
	f.HeaderComment("source: " + paths.source)
	f.PackageComment(doc(fmt.Sprintf("Package %s is the generated side of the %s projection: the Handler interface its handlers implement, and New, which turns them into a projection the runtime can run partition by partition.", pr.Name, pr.Name)))
	f.ImportName(eventstorePkg, "eventstore")
	f.ImportName(projectionPkg, "projection")
	f.ImportName(pgxPkg, "pgx")
	f.ImportName(paths.events, "events")

	f.Comment(doc("Name is the projection's name, which keys its checkpoints."))
	f.Const().Id("Name").Op("=").Lit(pr.Name)

	f.Comment(doc("Handler handles the events of the projection, one method per event type. Each method runs inside the batch's transaction tx: writes made through tx commit together with the checkpoint, exactly once. env is the stored envelope (position, aggregate, event id, metadata, time) and e its decoded payload."))
	f.Type().Id("Handler").InterfaceFunc(func(g *jen.Group) {
		for _, ev := range pr.Handles {
			g.Comment(wrapComment(fmt.Sprintf("On%s handles %s events of aggregate %s.", ev.Name, ev.Name, ev.Aggregate.Name), 1))
			g.Id("On" + ev.Name).Params(handlerParams(paths.events, ev)...).Error()
		}
		g.Comment(wrapComment("Reset clears the read model when the projection is rebuilt (esgen rebuild): it runs in the transaction that puts the checkpoints back at the start of the stream, before the first event is handled again.", 1))
		g.Id("Reset").Params(jen.Id("ctx").Qual("context", "Context"), jen.Id("tx").Qual(pgxPkg, "Tx")).Error()
	})

	f.Comment(doc("New returns the projection with h as its handler, ready for projector.Main or projection.Run."))
	f.Func().Id("New").Params(jen.Id("h").Id("Handler")).Qual(projectionPkg, "Projection").Block(
		jen.Id("d").Op(":=").Id("dispatcher").Values(field("h", jen.Id("h"))),
		jen.Return(jen.Qual(projectionPkg, "Projection").Add(fields(
			field("Name", jen.Id("Name")),
			jen.Comment("The runtime filters the stream to these types in SQL.").Line().
				Add(field("EventTypes", jen.Index().String().ValuesFunc(func(g *jen.Group) {
					for _, ev := range pr.Handles {
						g.Line().Qual(paths.events, ev.Name+"Type")
					}
					g.Line()
				}))),
			field("Handler", jen.Id("d")),
			field("Partitioned", jen.Lit(pr.Partitioned)),
			field("Reset", jen.Id("d").Dot("reset")),
		))),
	)

	f.Comment(doc("dispatcher calls the Handler method of each event's type with the decoded payload."))
	f.Type().Id("dispatcher").Struct(jen.Id("h").Id("Handler"))

	f.Comment(doc("Handle implements projection.Handler."))
	f.Func().Params(jen.Id("d").Id("dispatcher")).Id("Handle").Params(
		jen.Id("ctx").Qual("context", "Context"),
		jen.Id("tx").Qual(pgxPkg, "Tx"),
		jen.Id("env").Op("*").Qual(eventstorePkg, "Event"),
	).Error().Block(
		jen.Switch(jen.Id("env").Dot("Type")).BlockFunc(func(g *jen.Group) {
			for _, ev := range pr.Handles {
				g.Case(jen.Qual(paths.events, ev.Name+"Type")).Block(
					jen.Return(jen.Id("handle").Call(jen.Id("ctx"), jen.Id("tx"), jen.Id("env"), jen.Qual(paths.events, "Decode"+ev.Name), jen.Id("d").Dot("h").Dot("On"+ev.Name))),
				)
			}
			g.Default().Block(
				jen.Return(jen.Qual("fmt", "Errorf").Call(jen.Lit("%s: unexpected event type %q (event %s of %s %s)"),
					jen.Id("Name"), jen.Id("env").Dot("Type"), jen.Id("env").Dot("EventID"), jen.Id("env").Dot("AggregateType"), jen.Id("env").Dot("AggregateID"))),
			)
		}),
	)

	f.Comment(doc("reset calls the Handler's Reset (a method value of d, which New may take before h is set)."))
	f.Func().Params(jen.Id("d").Id("dispatcher")).Id("reset").Params(jen.Id("ctx").Qual("context", "Context"), jen.Id("tx").Qual(pgxPkg, "Tx")).Error().Block(
		jen.Return(jen.Id("d").Dot("h").Dot("Reset").Call(jen.Id("ctx"), jen.Id("tx"))),
	)

	f.Comment(doc("handle decodes env with decode, by the version it was stored with and up to the current version, and calls on with the event. An event that does not decode, or whose version the code does not know, is an error naming it."))
	f.Func().Id("handle").Types(jen.Id("T").Qual(paths.events, "Event")).Params(
		jen.Id("ctx").Qual("context", "Context"),
		jen.Id("tx").Qual(pgxPkg, "Tx"),
		jen.Id("env").Op("*").Qual(eventstorePkg, "Event"),
		jen.Line().Id("decode").Func().Params(jen.Int32(), jen.Index().Byte()).Params(jen.Id("T"), jen.Error()),
		jen.Line().Id("on").Func().Params(jen.Qual("context", "Context"), jen.Qual(pgxPkg, "Tx"), jen.Op("*").Qual(eventstorePkg, "Event"), jen.Id("T")).Error(),
	).Error().Block(
		jen.List(jen.Id("e"), jen.Err()).Op(":=").Id("decode").Call(jen.Id("env").Dot("Version"), jen.Id("env").Dot("Payload")),
		jen.If(jen.Err().Op("!=").Nil()).Block(
			jen.Return(jen.Qual("fmt", "Errorf").Call(jen.Lit("%s: event %s of %s %s (version %d): %w"),
				jen.Id("Name"), jen.Id("env").Dot("EventID"), jen.Id("env").Dot("AggregateType"), jen.Id("env").Dot("AggregateID"), jen.Id("env").Dot("AggregateVersion"), jen.Err())),
		),
		jen.Return(jen.Id("on").Call(jen.Id("ctx"), jen.Id("tx"), jen.Id("env"), jen.Id("e"))),
	)
	return f
}

// projectorPkg is the process main that generated projector binaries call.
const projectorPkg = "github.com/esgen-dev/esgen/projector"

// projectorMain emits cmd/<name>-projector/main.go. Flags and environment
// (DATABASE_URL, PARTITION_KEY, TOTAL_PARTITIONS, --partition-key, --total-partitions)
// are parsed by the projector package, so every projector behaves the same. With
// constructor (the handler package declares NewHandlers) the main builds the handlers
// with it, handing it the process's dependencies; otherwise it runs &Handlers{}.
func projectorMain(pr *Projection, paths importPaths, constructor bool) *jen.File {
	genPath := paths.projections + "/" + pr.Name
	userPath := paths.handlers + "/" + pr.Name
	f := jen.NewFile("main")
	f.HeaderComment(generatedHeader)
	f.HeaderComment("source: " + paths.source)
	partitioning := "// Run several copies with PARTITION_KEY=k TOTAL_PARTITIONS=n (or the flags\n// --partition-key=k --total-partitions=n, which win; --partition-key=0,1 runs\n// several partitions in one process) to split the work, or identical copies with\n// PARTITION_KEY=auto TOTAL_PARTITIONS=n: they share the partitions through leases in\n// the database and take over those of a copy that stops or dies."
	if !pr.Partitioned {
		partitioning = "// The projection is not partitioned: one worker reads the whole stream in order."
	}
	handlers := "the handlers of\n// " + userPath + "."
	if constructor {
		handlers = "the handlers that\n// " + userPath + "." + constructorName + " builds."
	}
	f.PackageComment(fmt.Sprintf("// Command %s-projector runs the %s projection with %s\n// It connects to the database named by DATABASE_URL.\n%s", pr.Name, pr.Name, handlers, partitioning))
	f.ImportName(projectorPkg, "projector")
	f.ImportAlias(genPath, pr.Name+"gen")
	f.ImportName(userPath, pr.Name)
	if !constructor {
		f.Func().Id("main").Params().Block(
			jen.Qual(projectorPkg, "Main").Call(
				jen.Qual(genPath, "New").Call(jen.Op("&").Qual(userPath, "Handlers").Values()),
			),
		)
		return f
	}
	f.Func().Id("main").Params().Block(
		jen.Qual(projectorPkg, "MainWith").Call(
			jen.Qual(genPath, "New"),
			jen.Func().Params(jen.Id("ctx").Qual("context", "Context"), jen.Id("deps").Qual(projectorPkg, "Deps")).
				Params(jen.Qual(genPath, "Handler"), jen.Error()).Block(
				jen.Return(jen.Qual(userPath, constructorName).Call(jen.Id("ctx"), jen.Id("deps"))),
			),
		),
	)
	return f
}
