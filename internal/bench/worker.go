package bench

// WorkerEnv set in the environment makes RunWorkerIfRequested run a worker.
const WorkerEnv = "ESGEN_BENCH_WORKER"

// RunWorkerIfRequested runs a catch-up worker and exits when WorkerEnv is set.
func RunWorkerIfRequested() {}
