// Package harness is what the load tools under loadtest/ share: building the real
// agentregistry binary, a scratch PostgreSQL database with the demo data and a key,
// starting `agentregistry serve` (and the tool's own helper roles) as separate
// processes that always stop, driving HTTP targets open- and closed-loop, and reading a
// process's memory from /proc.
//
// Separate processes keep the service's RSS and CPU its own and stop a generator from
// sharing a Go runtime (scheduler, GC) with what it measures. Nothing here asserts a
// timing: the machines these tools run on are shared and noisy, so the figures are for
// people to compare.
package harness
