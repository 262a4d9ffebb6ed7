package bench

import "context"

func (r *runner) latencyGroup(ctx context.Context) error { return nil }
func (r *runner) gapGroup(ctx context.Context) error     { return nil }
