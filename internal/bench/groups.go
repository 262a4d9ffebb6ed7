package bench

// The catch-up, latency and gap-safety groups follow once the projection runtime lands.

import "context"

func (r *runner) catchUpGroup(ctx context.Context) error { return nil }
func (r *runner) latencyGroup(ctx context.Context) error { return nil }
func (r *runner) gapGroup(ctx context.Context) error     { return nil }
